"""The library entry points the CLI calls: build data, models and runs from configs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedistill.config import DataConfig, RunBase, TrainExperiment
from edgedistill.errors import OutputError, UsageError, disk_problem


def configure_torch(cfg: RunBase) -> None:
    from edgedistill.train.distributed import init

    init(cfg.train.device)  # joins torchrun's process group when run as one of its ranks
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


def build_splits(cfg: DataConfig, seed: int, log=print):
    """(train, validation or None, test): ``ImageData`` in memory, or ``StreamingData``
    read from disk while training (``data.streaming``, or a set over the memory budget)."""
    from dataclasses import replace

    from edgedistill.data import load_splits
    from edgedistill.data.stream_sources import load_streaming, wants_streaming

    if wants_streaming(cfg, log):
        return limit_splits(cfg, seed, *load_streaming(cfg, seed))
    splits = load_splits(cfg.dataset, root=cfg.root, limit_train=cfg.limit_train,
                         limit_test=cfg.limit_test, seed=seed, val_split=cfg.val_split,
                         **cfg.options)
    if cfg.mean is None:
        return splits
    return tuple(s if s is None else replace(s, mean=tuple(cfg.mean), std=tuple(cfg.std))
                 for s in splits)


def limit_splits(cfg: DataConfig, seed: int, train, test):
    """``val_split``, ``limit_train`` and ``limit_test`` applied as ``load_splits`` does."""
    val = None
    if cfg.val_split is not None:
        train, val = train.split_off(cfg.val_split, 0)
    if cfg.limit_train is not None:
        train = train.subset(cfg.limit_train, seed)
    if cfg.limit_test is not None:
        test = test.subset(cfg.limit_test, 0)
    return train, val, test


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
    from edgedistill.data.streaming import StreamingData

    if isinstance(train_data, StreamingData):
        train = streaming_pipeline(cfg, train_data, True, seed, device, num_draws)
    else:
        train = BatchPipeline(train_data, cfg.batch_size, train=True, seed=seed,
                              augment=augment_spec(cfg, train_data), device=device,
                              num_draws=num_draws or cfg.num_draws)
    return train, eval_pipeline(cfg, test_data, seed, device)


def streaming_pipeline(cfg: DataConfig, data, train: bool, seed: int, device,
                       num_draws: int | None = None):
    """A ``StreamingPipeline`` over ``StreamingData`` with the config's workers and recipe."""
    from edgedistill.data.streaming import StreamingPipeline

    return StreamingPipeline(
        data, cfg.batch_size if train else cfg.eval_batch_size, train=train, seed=seed,
        augment=augment_spec(cfg, data) if train else None,
        augment_enabled=train and cfg.augment.enabled, device=device,
        num_draws=(num_draws or cfg.num_draws) if train else None, workers=cfg.workers,
        prefetch=cfg.prefetch, on_corrupt=cfg.on_corrupt, transform=cfg.transform,
        transform_options=cfg.transform_options)


def eval_pipeline(cfg: DataConfig, data, seed: int, device):
    """Batches of ``data`` in order, un-augmented (test and validation sets); None for None."""
    from edgedistill.data import BatchPipeline
    from edgedistill.data.streaming import StreamingData

    if data is None:
        return None
    if isinstance(data, StreamingData):
        return streaming_pipeline(cfg, data, False, seed, device)
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


def build_model(ref: Any, num_classes: int | None = None,
                in_channels: int | None = None) -> nn.Module:
    """The model a config names (``ModelConfig``, ``StudentConfig`` with ``name`` or
    ``factory``, or the same as a dict): zoo, ``torchvision:``/``timm:`` or a factory,
    with its ``weights`` or ``pretrained`` ones loaded. Dataset sizes apply unless its
    kwargs set them."""
    from edgedistill.config import ModelConfig
    from edgedistill.models.foreign import build

    if isinstance(ref, dict):
        from edgedistill.config import validate

        ref = validate(ref, ModelConfig, "model")
    return build(ref.factory or ref.name, num_classes, in_channels, kwargs=ref.kwargs,
                 weights=ref.weights, pretrained=ref.pretrained, strict=ref.strict)


def describe_source(source: Any) -> str:
    """A teacher or model source in one short line (for summaries and logs)."""
    if isinstance(source, nn.Module):
        return f"python {type(source).__name__}"
    if isinstance(source, (str, Path)):
        return str(source)
    text = source.factory or source.name
    if source.weights:
        text += f" weights={source.weights}"
    return text + (" pretrained" if source.pretrained else "")


def load_model(source: Any, num_classes: int | None = None,
               in_channels: int | None = None) -> nn.Module:
    """A trained model from ``zoo:NAME``, a run directory, a .safetensors file, a
    checkpoint (.pt), a model config (``{factory: ..., weights: ...}``, see ``build_model``;
    ``num_classes``/``in_channels`` apply to these) or an ``nn.Module`` (returned as it is).
    Returned in eval mode on the CPU."""
    from edgedistill import pretrained
    from edgedistill.models import create_model
    from edgedistill.train.checkpoint import load_checkpoint

    if isinstance(source, nn.Module):
        return source.eval()
    if not isinstance(source, (str, Path)):
        return build_model(source, num_classes, in_channels).eval()
    source = str(source)
    if source.startswith("zoo:"):
        model = model_from_weights(pretrained.weights_path(source[4:]))
    else:
        path = Path(source)
        if path.is_dir():
            if not (path / "model.safetensors").exists():
                raise UsageError(f"{path} is not a finished run directory (no model.safetensors)")
            if (path / "config.yaml").is_file():
                run_config(path)  # its plugins: a plugin model family is rebuilt by name
            model = model_from_weights(path / "model.safetensors")
        elif path.suffix == ".safetensors":
            model = _with_hint(model_from_weights, path)
        elif path.is_file():
            state = _with_hint(load_checkpoint, path)
            spec = json.loads(state.get("spec", "{}"))
            if not spec:
                raise UsageError(f"{path}: checkpoint records no model spec; {FOREIGN_HINT}")
            model = create_model(**spec)
            prefix = next((p for p in ("model.", "student.")
                           if any(k.startswith(p) for k in state["model"])), "")
            model.load_state_dict({k[len(prefix):]: v for k, v in state["model"].items()
                                   if k.startswith(prefix) and "terms." not in k})
        else:
            raise UsageError(f"model source {source!r} is not zoo:NAME, a run dir or a file "
                             "that exists")
    return model.eval()


FOREIGN_HINT = ("for weights saved elsewhere name the model: teacher.source: {name: "
                "torchvision:NAME, weights: PATH} or {factory: pkg.mod:fn, weights: PATH}")


def _with_hint(read, path: Path):
    """``read(path)``; a file without edgedistill's metadata gets the way to load it."""
    from edgedistill.errors import CheckpointError

    try:
        return read(path)
    except CheckpointError as err:
        if "no model spec" in str(err) or "not ours" in str(err):
            raise CheckpointError(f"{err}; {FOREIGN_HINT}") from None
        raise


def check_run_dir(out: str | Path, resume: bool) -> Path:
    """Refuse an output folder that cannot become this run's directory, creating nothing:
    a file in its place, earlier results without ``resume``, or no way to write there.

    Commands call this first and create the folder only once everything that can fail on
    bad input (config, data, models, teacher) has been built, so a failed command leaves
    no half-written run behind."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {str(out)!r} is a file, not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise UsageError(f"run directory {str(out)!r} already has results; pass --resume to "
                         "continue it or --out to write elsewhere")
    base = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not base.is_dir():
        raise OutputError(f"--out {str(out)!r}: {base} is a file, not a folder; choose "
                          "another --out")
    if not os.access(base, os.W_OK | os.X_OK):
        problem = "is read-only" if _read_only(base) else "is not writable by this user"
        raise OutputError(f"--out {str(out)!r}: {base} {problem}; choose another --out")
    return out


def _read_only(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def prepare_run_dir(out: str | Path, resume: bool) -> Path:
    """``check_run_dir``, then create the folder."""
    out = check_run_dir(out, resume)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create run directory {str(out)!r}: "
                          f"{disk_problem(err) or err.strerror}") from None
    return out


def run_dir_of(source: str | Path) -> Path | None:
    """The run directory that holds ``source``: the run dir itself, its
    ``model.safetensors`` or a checkpoint in its ``checkpoints/``; None for anything else
    (``zoo:NAME``, a loose weights file)."""
    if str(source).startswith("zoo:"):
        return None
    path = Path(source)
    if path.is_dir():
        return path if (path / "config.yaml").is_file() else None
    parent = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return parent if (parent / "config.yaml").is_file() else None


def run_config(run_dir: str | Path, schema: type | None = None) -> Any:
    """A run's resolved ``config.yaml``: as ``schema`` when given, else the raw mapping.

    Every command that reads a run (eval, export, split, design, reports) goes through
    this, so all of them see the data, model and training settings the run really used;
    a missing or damaged file is a ``UsageError`` naming it. The run's ``plugins`` are
    imported, so a plugin's dataset or model family is known to whoever reads the run."""
    from edgedistill.config import read_yaml_mapping, validate
    from edgedistill.plugins import load_plugins

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UsageError(f"{str(run_dir)!r} is not a run directory (no config.yaml)")
    raw = read_yaml_mapping(path, "run config")
    plugins = raw.get("plugins")
    if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins):
        load_plugins(plugins)
    return raw if schema is None else validate(raw, schema, str(path))


def run_data_config(source: str | Path) -> DataConfig | None:
    """The data settings (dataset, root, options, batch sizes) of the run holding
    ``source``, or None when ``source`` is not part of a run."""
    from edgedistill.config import validate

    run_dir = run_dir_of(source)
    if run_dir is None:
        return None
    data = run_config(run_dir).get("data") or {}
    return validate(data, DataConfig, f"{run_dir / 'config.yaml'}: data")


def source_data_config(source: str | Path, dataset: str | None = None) -> DataConfig:
    """The data a model from ``source`` takes: its run's own data settings (root, options,
    batch sizes) when ``source`` is part of a run and ``dataset`` names no other set; else
    ``dataset`` (for ``zoo:NAME`` by default the manifest's) with default settings."""
    from edgedistill import pretrained
    from edgedistill.config import validate

    run_data = run_data_config(source)
    if run_data is not None and dataset in (None, run_data.dataset):
        return run_data
    if dataset is None and str(source).startswith("zoo:"):
        dataset = pretrained.manifest().get(str(source)[4:], {}).get("dataset")
    if dataset is None:
        raise UsageError(f"cannot tell which dataset {str(source)!r} was trained on; pass "
                         "--dataset")
    return validate({"dataset": dataset}, DataConfig, "dataset")


def train(cfg: TrainExperiment, out: str | Path, resume: bool = False,
          progress: bool = True, *, model: nn.Module | None = None,
          splits: tuple | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data``; returns the run's summary. ``model`` (a built
    module) and ``splits`` ((train, validation or None, test) ``ImageData``) stand in for
    the ones the config names: the Python API passes a user's own this way."""
    from edgedistill.train.callbacks import PrintProgress
    from edgedistill.train.device import resolve_device
    from edgedistill.train.halting import halting_callbacks
    from edgedistill.train.tasks import Supervised
    from edgedistill.train.trainer import Trainer

    run_dir = check_run_dir(out, resume)  # the trainer creates it, once all is built
    configure_torch(cfg)
    device = resolve_device(cfg.train.device)
    train_data, val_data, test_data = splits or build_splits(cfg.data, cfg.seed)
    if model is None:
        model = build_model(cfg.model, train_data.num_classes, train_data.image_shape[0])
    train_pipe, test_pipe = build_pipelines(cfg.data, train_data, test_data, cfg.seed, device)
    callbacks = halting_callbacks(cfg)
    if progress and cfg.train.progress:
        callbacks.append(PrintProgress())
    trainer = Trainer(Supervised(model, cfg.train.label_smoothing), train_pipe, test_pipe, cfg,
                      run_dir, callbacks, device,
                      val_pipe=eval_pipeline(cfg.data, val_data, cfg.seed, device))
    return trainer.fit(resume=resume)
