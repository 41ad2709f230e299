"""The library entry points the CLI calls: build data, models and runs from configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedistill.config import DataConfig, RunBase, TrainExperiment
from edgedistill.errors import UsageError


def configure_torch(cfg: RunBase) -> None:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    torch.manual_seed(cfg.seed)


def build_data(cfg: DataConfig, seed: int):
    """(train, test); with ``val_split`` the training set already lacks the held-out part."""
    train, _, test = build_splits(cfg, seed)
    return train, test


def build_splits(cfg: DataConfig, seed: int):
    """(train, validation or None, test)."""
    from edgedistill.data import load_splits

    return load_splits(cfg.dataset, root=cfg.root, limit_train=cfg.limit_train,
                       limit_test=cfg.limit_test, seed=seed, val_split=cfg.val_split,
                       **cfg.options)


def augment_spec(cfg: DataConfig, data):
    from edgedistill.data import AugmentSpec

    if not cfg.augment.enabled:
        return None
    default = data.augment
    return AugmentSpec(
        crop_pad=default.crop_pad if cfg.augment.crop_pad is None else cfg.augment.crop_pad,
        hflip=default.hflip if cfg.augment.hflip is None else cfg.augment.hflip)


def build_pipelines(cfg: DataConfig, train_data, test_data, seed: int, device,
                    num_draws: int | None = None):
    from edgedistill.data import BatchPipeline

    train = BatchPipeline(train_data, cfg.batch_size, train=True, seed=seed,
                          augment=augment_spec(cfg, train_data), device=device,
                          num_draws=num_draws or cfg.num_draws)
    return train, eval_pipeline(cfg, test_data, seed, device)


def eval_pipeline(cfg: DataConfig, data, seed: int, device):
    """Batches of ``data`` in order, un-augmented (test and validation sets); None for None."""
    from edgedistill.data import BatchPipeline

    if data is None:
        return None
    return BatchPipeline(data, cfg.eval_batch_size, train=False, seed=seed, augment=None,
                         device=device)


def model_from_weights(path: str | Path) -> nn.Module:
    from edgedistill.models import create_model
    from edgedistill.train.checkpoint import load_weights

    tensors, spec = load_weights(path)
    model = create_model(**spec)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        from edgedistill.errors import CheckpointError

        raise CheckpointError(f"{path}: weights do not fit model {spec.get('name')}: "
                              f"{str(err).splitlines()[0]}") from None
    return model


def load_model(source: str | Path) -> nn.Module:
    """A trained model from ``zoo:NAME``, a run directory, a .safetensors file or a
    checkpoint (.pt). Returned in eval mode on the CPU."""
    from edgedistill import pretrained
    from edgedistill.models import create_model
    from edgedistill.train.checkpoint import load_checkpoint

    source = str(source)
    if source.startswith("zoo:"):
        model = model_from_weights(pretrained.weights_path(source[4:]))
    else:
        path = Path(source)
        if path.is_dir():
            if not (path / "model.safetensors").exists():
                raise UsageError(f"{path} is not a finished run directory (no model.safetensors)")
            model = model_from_weights(path / "model.safetensors")
        elif path.suffix == ".safetensors":
            model = model_from_weights(path)
        elif path.is_file():
            state = load_checkpoint(path)
            spec = json.loads(state.get("spec", "{}"))
            if not spec:
                raise UsageError(f"{path}: checkpoint records no model spec")
            model = create_model(**spec)
            prefix = next((p for p in ("model.", "student.")
                           if any(k.startswith(p) for k in state["model"])), "")
            model.load_state_dict({k[len(prefix):]: v for k, v in state["model"].items()
                                   if k.startswith(prefix) and "terms." not in k})
        else:
            raise UsageError(f"model source {source!r} is not zoo:NAME, a run dir or a file "
                             "that exists")
    return model.eval()


def prepare_run_dir(out: str | Path, resume: bool) -> Path:
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise UsageError(f"run directory {str(out)!r} already has results; pass --resume to "
                         "continue it or --out to write elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    return out


def train(cfg: TrainExperiment, out: str | Path, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data``; returns the run's summary."""
    from edgedistill.models import create_model
    from edgedistill.train.callbacks import PrintProgress
    from edgedistill.train.device import resolve_device
    from edgedistill.train.halting import halting_callbacks
    from edgedistill.train.tasks import Supervised
    from edgedistill.train.trainer import Trainer

    run_dir = prepare_run_dir(out, resume)
    configure_torch(cfg)
    device = resolve_device(cfg.train.device)
    train_data, val_data, test_data = build_splits(cfg.data, cfg.seed)
    model = create_model(cfg.model.name, num_classes=train_data.num_classes,
                         in_channels=train_data.images.shape[1], **cfg.model.kwargs)
    train_pipe, test_pipe = build_pipelines(cfg.data, train_data, test_data, cfg.seed, device)
    callbacks = halting_callbacks(cfg)
    if progress and cfg.train.progress:
        callbacks.append(PrintProgress())
    trainer = Trainer(Supervised(model, cfg.train.label_smoothing), train_pipe, test_pipe, cfg,
                      run_dir, callbacks, device,
                      val_pipe=eval_pipeline(cfg.data, val_data, cfg.seed, device))
    return trainer.fit(resume=resume)
