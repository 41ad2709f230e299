"""``edgedistill split train``: head network distillation, one head per bottleneck size.

HND (Matsubara et al. 2019) trains only the small head: its output must reproduce
the teacher's head output (MSE) while the teacher's tail stays frozen, which needs
no labels and converges in a few epochs. Generalized HND also matches the outputs
of chosen tail modules; an optional KD stage then fine-tunes the head on the final
output through the frozen tail. Each head is a normal Trainer run directory
(``RUN/c4``, ``RUN/c4-kd``); the run root gets ``split.json`` (what serving and
planning need), ``table.json`` / ``table.md`` and ``summary.json``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill import api
from edgedistill.config.split import SplitExperiment
from edgedistill.errors import UsageError
from edgedistill.models import FeatureExtractor, resolve_layer_aliases
from edgedistill.split.model import HEADS, SplitModel, head_output_shape
from edgedistill.train.callbacks import Callback, PrintProgress
from edgedistill.train.trainer import Trainer, evaluate


class HNDTask(nn.Module):
    """Loss ``mse(head(x), teacher_head(x))`` (+ generalized terms on tail modules)."""

    def __init__(self, model: SplitModel, tail_layers: list[str] = (), tail_weight: float = 1.0):
        super().__init__()
        self.model = model
        self.tail_weight = tail_weight
        self.hooks = FeatureExtractor(model.teacher, list(tail_layers)) if tail_layers else None

    @property
    def eval_model(self) -> nn.Module:
        return self.model

    def forward(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = batch.images
        with torch.no_grad():
            target = self.model.teacher_head(x)
        out = self.model.head(x)
        losses = {"hnd": F.mse_loss(out, target)}
        if self.hooks is None:
            with torch.no_grad():
                return self.model.tail(out), losses
        with torch.no_grad():
            self.model.tail(target)
            wanted = [t.detach() for t in self.hooks.tensors()]
        logits = self.model.tail(out)
        for path, got, want in zip(self.hooks.paths, self.hooks.tensors(), wanted, strict=True):
            losses[f"ghnd/{path}"] = self.tail_weight * F.mse_loss(got, want)
        return logits, losses

    def close(self) -> None:
        """Remove the hooks from the teacher, which the next bottleneck's task reuses."""
        if self.hooks is not None:
            self.hooks.remove()


class KDTask(nn.Module):
    """Fine-tuning stage: KD (and optionally CE) on the logits through the frozen tail."""

    def __init__(self, model: SplitModel, temperature: float, kd_weight: float, ce_weight: float):
        super().__init__()
        self.model = model
        self.temperature, self.kd_weight, self.ce_weight = temperature, kd_weight, ce_weight

    @property
    def eval_model(self) -> nn.Module:
        return self.model

    def forward(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from edgedistill.losses.kd import kd_divergence

        with torch.no_grad():
            teacher_logits = self.model.teacher(batch.images)
        logits = self.model(batch.images)
        losses = {"kd": self.kd_weight * kd_divergence(logits, teacher_logits, self.temperature)}
        if self.ce_weight:
            losses["ce"] = self.ce_weight * F.cross_entropy(logits, batch.labels)
        return logits, losses


class RateHNDTask(HNDTask):
    """HND through an entropy bottleneck: ``mse + beta * bits per sample + aux``, the
    bottleneck noised as in training (``EntropyHead.rate``)."""

    def __init__(self, model: SplitModel, beta: float):
        super().__init__(model)
        self.beta = beta

    def forward(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        head, x = self.model.head, batch.images
        with torch.no_grad():
            target = self.model.teacher_head(x)
        z_hat, bits = head.rate(x)
        out = head.decoder(z_hat)
        losses = {"hnd": F.mse_loss(out, target), "rate": self.beta * bits,
                  "aux": head.aux_loss()}
        with torch.no_grad():
            return self.model.tail(out), losses


class RateKDTask(KDTask):
    """The KD stage through an entropy bottleneck: KD (+ CE) + ``beta * bits`` + aux."""

    def __init__(self, model: SplitModel, temperature: float, kd_weight: float,
                 ce_weight: float, beta: float):
        super().__init__(model, temperature, kd_weight, ce_weight)
        self.beta = beta

    def forward(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from edgedistill.losses.kd import kd_divergence

        head = self.model.head
        with torch.no_grad():
            teacher_logits = self.model.teacher(batch.images)
        z_hat, bits = head.rate(batch.images)
        logits = self.model.tail(head.decoder(z_hat))
        losses = {"kd": self.kd_weight * kd_divergence(logits, teacher_logits, self.temperature),
                  "rate": self.beta * bits, "aux": head.aux_loss()}
        if self.ce_weight:
            losses["ce"] = self.ce_weight * F.cross_entropy(logits, batch.labels)
        return logits, losses


def head_stages(cfg: SplitExperiment, model: SplitModel, name: str, tail_layers: list[str],
                beta: float | None) -> list[tuple]:
    """``(run name, stage, config, task)`` of one head: HND, then the optional KD stage;
    with a ``beta``, their entropy-bottleneck versions."""
    ft = cfg.finetune
    if beta is None:
        stages = [(name, "hnd", cfg, HNDTask(model, tail_layers, cfg.hnd.tail_weight))]
        kd = KDTask(model, ft.temperature, ft.kd_weight, ft.ce_weight)
    else:
        if tail_layers:
            raise UsageError("hnd.tail_layers (generalized HND) is not supported with "
                             "bottleneck.betas (entropy-coded heads); leave one of them empty")
        stages = [(name, "hnd", cfg, RateHNDTask(model, beta))]
        kd = RateKDTask(model, ft.temperature, ft.kd_weight, ft.ce_weight, beta)
    if ft.epochs:
        stages.append((f"{name}-kd", "kd", _finetune_cfg(cfg), kd))
    return stages


def _fix_entropy_tables(model: SplitModel, run: Path, train_pipe, density_steps: int) -> None:
    """After a stage of an entropy head: refit its density on the training images
    (``EntropyHead.refit_density``), fix its CDF tables and store them with the weights
    (``model.safetensors``) and for the device (``entropy.safetensors``)."""
    from edgedistill.split.entropy import EntropyCodec
    from edgedistill.train.checkpoint import save_weights

    device = next(model.head.parameters()).device
    batches = [b.images.to(device) for b in train_pipe.epoch(0)]
    model.head.refit_density(batches, density_steps)
    model.head.fix_tables()
    save_weights(run / "model.safetensors", model.state_dict(), model.spec)
    EntropyCodec(model.head.entropy).save(run)


class TeacherAccuracy(Callback):
    """Adds the teacher's test accuracy to every epoch record, for comparison."""

    def __init__(self, teacher_acc: float):
        self.teacher_acc = teacher_acc

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        record["teacher_acc"] = self.teacher_acc
        return None


class HeadMSE(Callback):
    """Adds ``test_head_mse``: how far the head's output is from the teacher head's, on
    the test set; the quantity HND minimizes, measured where it was not trained."""

    def __init__(self, model: SplitModel, test_pipe):
        self.model, self.test_pipe = model, test_pipe

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        record["test_head_mse"] = head_mse(self.model, self.test_pipe, trainer.device)
        return None


@torch.no_grad()
def head_mse(model: SplitModel, pipe, device: torch.device) -> float:
    """Mean squared error between head and teacher head outputs over ``pipe``."""
    was_training = model.training
    model.eval()
    total, seen = 0.0, 0
    for batch in pipe.epoch(0):
        x = batch.images.to(device)
        total += F.mse_loss(model.head(x), model.teacher_head(x), reduction="sum").item()
        seen += x.shape[0]
    model.train(was_training)
    return total / max(seen, 1) / math.prod(model.head.spec["out_shape"])


def load_split_data(cfg: SplitExperiment):
    """(train, test) with the config's resizing applied."""
    from edgedistill.split.images import resize_splits

    train_data, test_data = api.build_data(cfg.data, cfg.seed)
    return resize_splits(train_data, test_data, cfg.input.size, cfg.input.channels)


def check_teacher(teacher: nn.Module, data, source: str) -> None:
    spec = getattr(teacher, "spec", {})
    want = {"num_classes": data.num_classes, "in_channels": data.images.shape[1]}
    for key, value in want.items():
        if spec.get(key) not in (None, value):
            raise UsageError(f"teacher {source!r} has {key}={spec[key]} but the data has "
                             f"{value}; the teacher must be trained on the same (resized) data")


def _fit(task: nn.Module, cfg: SplitExperiment, pipes, out: Path, callbacks, device,
         resume: bool) -> dict[str, Any]:
    trainer = Trainer(task, pipes[0], pipes[1], cfg, out, callbacks, device)
    return trainer.fit(resume=resume)


def _finetune_cfg(cfg: SplitExperiment) -> SplitExperiment:
    ft = cfg.finetune
    train = cfg.train.model_copy(update={"epochs": ft.epochs, "optimizer": ft.optimizer})
    return cfg.model_copy(update={"train": train})


def train_heads(cfg: SplitExperiment, run_dir: Path, teacher: nn.Module, pipes, input_shape,
                device, resume: bool, progress: bool, teacher_acc: float):
    """Train one head per bottleneck size (and its KD fine-tune).

    A generator: it yields ``(name, channels, stage, summary, model)`` after each
    stage, while the model still holds that stage's weights, so the caller can
    measure the HND head before the KD stage changes it.
    """
    from edgedistill.export.onnx import export_onnx

    tail_layers = resolve_layer_aliases(teacher, cfg.hnd.tail_layers)
    out_shape = head_output_shape(teacher, cfg.teacher.split_at, input_shape)
    b = cfg.bottleneck
    shared = {"width": b.width, "extra_downsample": b.extra_downsample,
              "encoder_layers": b.encoder_layers, "decoder_layers": b.decoder_layers}
    for channels, beta in [(c, beta) for c in b.channels for beta in (b.betas or [None])]:
        if beta is None:
            head = HEADS.get("8bit")(input_shape, out_shape, channels, **shared)
            name = f"c{channels}"
        else:
            head = HEADS.get("entropy")(input_shape, out_shape, channels, **shared, beta=beta)
            name = f"c{channels}-e{beta:g}"
        model = SplitModel(teacher, cfg.teacher.split_at, head, keep=tail_layers)
        callbacks: list[Callback] = [TeacherAccuracy(teacher_acc), HeadMSE(model, pipes[1])]
        if progress and cfg.train.progress:
            callbacks.append(PrintProgress())
        for stage_name, stage, stage_cfg, task in head_stages(cfg, model, name, tail_layers,
                                                              beta):
            torch.manual_seed(cfg.seed)
            summary = _fit(task, stage_cfg, pipes, run_dir / stage_name, callbacks, device, resume)
            getattr(task, "close", lambda: None)()
            if beta is not None:
                _fix_entropy_tables(model, run_dir / stage_name, pipes[0], b.density_steps)
            export_onnx(model.device_part, (1, *input_shape), run_dir / stage_name / "head.onnx")
            model.to(device)
            yield stage_name, channels, stage, summary, model


def run_split_train(cfg: SplitExperiment, out: str | Path, resume: bool = False,
                    progress: bool = True) -> dict[str, Any]:
    """Train every bottleneck of ``cfg``, measure each, write the table and ``split.json``."""
    from edgedistill.config import dump_config
    from edgedistill.split import report
    from edgedistill.split.splitter import resolve_split_point
    from edgedistill.train.device import resolve_device

    run_dir = api.check_run_dir(out, resume)
    api.configure_torch(cfg)
    device = resolve_device(cfg.train.device)
    train_data, test_data = load_split_data(cfg)
    teacher = api.load_model(cfg.teacher.source, train_data.num_classes,
                             train_data.images.shape[1])
    source = cfg.teacher.source
    source = source if isinstance(source, str) else source.model_dump(mode="json",
                                                                       exclude_defaults=True)
    check_teacher(teacher, train_data, str(source))
    # a bad split point fails here, before any file is written
    head_output_shape(teacher, cfg.teacher.split_at, tuple(train_data.images.shape[1:]))
    api.prepare_run_dir(run_dir, resume)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    pipes = api.build_pipelines(cfg.data, train_data, test_data, cfg.seed, device)
    teacher_acc = evaluate(teacher.to(device), pipes[1], device, cfg.train.amp)["acc"]
    input_shape = tuple(train_data.images.shape[1:])
    rows = [report.bottleneck_row(model, name, channels, stage, summary, pipes[1], cfg.wire,
                                  input_shape, device)
            for name, channels, stage, summary, model in train_heads(
                cfg, run_dir, teacher, pipes, input_shape, device, resume, progress,
                teacher_acc)]
    meta = {"teacher_source": source, "teacher_spec": teacher.spec,
            "split_at": resolve_split_point(teacher, cfg.teacher.split_at),
            "input_shape": list(input_shape), "mean": list(train_data.mean),
            "std": list(train_data.std), "classes": list(train_data.classes),
            "dataset": cfg.data.dataset, "teacher_acc": teacher_acc,
            "test_images": len(test_data), "wire": cfg.wire.model_dump()}
    inputs = report.input_rows(teacher, test_data, teacher_acc, device)
    return report.write_report(run_dir, meta, rows, inputs, cfg.tolerance)
