"""The library face: ``edgedistill.distill``, ``train``, ``evaluate``, ``export`` and
``Distiller``, for a user's own models, datasets and training loops.

These build the same validated configs the CLI reads from YAML (so a misspelt keyword
is the same one-line error) and call the same runners (``distill/run.py``, ``api.train``),
handing them the user's modules and data. Rules:

* models: an ``nn.Module`` (trained in place), or anything a config takes: a zoo name,
  ``zoo:NAME``, a run directory or file, ``torchvision:NAME``/``timm:NAME``, or a dict
  ``{"factory": "pkg.mod:fn", "kwargs": {...}, "weights": PATH}``;
* data: an edgedistill dataset name, or any map-style ``Dataset`` yielding
  ``(image, label)`` with images uint8 or float in [0, 1], shape (C, H, W) or (H, W).
  It is read once into memory as uint8 (the in-memory fast path) and normalized with
  the training set's per-channel mean and std; with ``data.streaming: true``, or by
  itself (saying so) when it would exceed ``data.memory_budget_gb`` (4 GiB by default),
  it streams instead: ``DataLoader`` workers read and transform each batch
  (``data.transform``, to squares of ``data.options.image_size`` or of the first image's
  shorter side), normalized with ``data.mean``/``data.std`` or ImageNet's; the run's
  ``config.yaml`` records how it was read, for ``evaluate``/``export``. ``test=None`` holds
  out a fixed, class-stratified tenth of ``train``;
* ``out``: the run directory (the CLI's layout); ``None`` makes a new temporary one,
  kept, whose path the returned summary gives as ``run_dir``.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedistill.errors import UsageError

HELD_OUT = 10  # test=None: 1/HELD_OUT of train becomes the test set


def _fill(raw: dict, settings: dict[str, Any], where: str) -> dict:
    """Sections (``train={...}``) merged into ``raw``; dotted keys (``"train.epochs"``) set."""
    for key, value in settings.items():
        parts = key.split(".")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"{where}: {key!r}: {part!r} is not a section")
            node = child
        last = parts[-1]
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            node[last] = _fill(dict(node[last]), value, where)
        else:
            node[last] = value
    return raw


def loss_list(losses: Any) -> list[dict]:
    """``["ce", ("kd", 0.9), {"name": "at", ...}]`` as LossConfig mappings."""
    out = []
    for item in losses:
        if isinstance(item, str):
            out.append({"name": item})
        elif isinstance(item, tuple) and len(item) == 2:
            out.append({"name": item[0], "weight": item[1]})
        elif isinstance(item, dict):
            out.append(dict(item))
        else:
            raise UsageError(f"losses: {item!r} is not a name, (name, weight) or a mapping; "
                             "e.g. [\"ce\", (\"kd\", 0.9), {\"name\": \"at\", \"weight\": 1000}]")
    return out


def _model_entry(model: Any, what: str) -> dict:
    if isinstance(model, nn.Module):
        return {"name": f"python:{type(model).__name__}"}
    if isinstance(model, dict):
        return dict(model)
    if isinstance(model, (str, Path)):
        return {"name": str(model)}
    raise UsageError(f"{what} must be an nn.Module, a model name or a mapping "
                     f"({{'factory': 'pkg.mod:fn'}}), got {type(model).__name__}")


def _teacher_source(teacher: Any) -> Any:
    if isinstance(teacher, nn.Module):
        return f"python:{type(teacher).__name__}"
    if isinstance(teacher, (str, Path)):
        name = str(teacher)
        foreign = ":" in name and not name.startswith("zoo:") and not Path(name).exists()
        return {"name": name} if foreign else name
    if isinstance(teacher, dict):
        return dict(teacher)
    raise UsageError(f"teacher must be an nn.Module, a source (zoo:NAME, run dir, file) or a "
                     f"mapping ({{'factory': 'pkg.mod:fn', 'weights': PATH}}), got "
                     f"{type(teacher).__name__}")


def _data_section(train: Any, test: Any, batch_size: int) -> dict:
    if isinstance(train, str):
        if test is not None and test != train:
            raise UsageError("with a dataset name for train, leave test=None (its own test "
                             "split is used)")
        return {"dataset": train, "batch_size": batch_size}
    return {"dataset": "python", "batch_size": batch_size}


def _config(schema, raw: dict, settings: dict, where: str):
    from edgedistill.config import validate

    return validate(_fill(raw, settings, where), schema, where)


def _splits(cfg, train: Any, test: Any, log=print):
    """(train, validation or None, test) for the runners: ``ImageData`` in memory, or
    ``StreamingData`` when ``data.streaming`` says so or the sets exceed
    ``data.memory_budget_gb``; None to let them load ``cfg.data.dataset`` themselves."""
    from dataclasses import replace

    from edgedistill.data.torch_dataset import from_dataset, stream_dataset, wants_streaming

    if isinstance(train, str):
        return None
    streamed = wants_streaming(cfg.data, (train, test), log)
    if streamed:
        train_data = stream_dataset(train, "train", cfg.data)
        test_data = None if test is None else stream_dataset(test, "test", cfg.data,
                                                             like=train_data)
    else:
        limit = int(cfg.data.memory_budget_gb * 2**30)
        train_data = from_dataset(train, "train", limit=limit)
        if cfg.data.mean is not None:
            train_data = replace(train_data, mean=tuple(cfg.data.mean), std=tuple(cfg.data.std))
        test_data = None if test is None else from_dataset(test, "test", like=train_data,
                                                           limit=limit)
    _record(cfg.data, train_data, streamed)
    if test_data is None:
        train_data, test_data = train_data.split_off(max(1, len(train_data) // HELD_OUT), 0)
        test_data.split = "test"
    val_data = None
    if cfg.data.val_split is not None:
        train_data, val_data = train_data.split_off(cfg.data.val_split, 0)
    if cfg.data.limit_train is not None:
        train_data = train_data.subset(cfg.data.limit_train, cfg.seed)
    if cfg.data.limit_test is not None:
        test_data = test_data.subset(cfg.data.limit_test, 0)
    return train_data, val_data, test_data


def _record(data_cfg, train_data, streamed: bool) -> None:
    """Write into the run's config (its ``config.yaml``) how the Dataset was read: its
    normalization and, when it streamed, that it did and at which size, so ``evaluate``
    and ``export`` of the run read a Dataset as the model was trained on it."""
    data_cfg.mean, data_cfg.std = list(train_data.mean), list(train_data.std)
    if streamed:
        data_cfg.streaming = True
        data_cfg.options = {**data_cfg.options, "image_size": train_data.image_size}


def _run_dir(out: str | Path | None) -> Path:
    return Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="edgedistill-run-"))


def _remember_stats(model: nn.Module, cfg, splits) -> None:
    """How ``evaluate``/``export`` read a user's own data for this model: normalized as
    it was trained (``input_stats``), streamed at its size when it streamed
    (``input_data``, the run's data settings)."""
    if splits is not None:
        model.input_stats = {"mean": splits[0].mean, "std": splits[0].std}
        model.input_data = cfg.data


def distill(teacher: Any, student: Any, train: Any, /, test: Any = None, *,
            losses: list | None = None, epochs: int, batch_size: int = 128,
            out: str | Path | None = None, resume: bool = False,
            **settings: Any) -> dict[str, Any]:
    """Distil ``teacher`` into ``student`` on ``train``; returns the run's summary (with
    ``run_dir``). ``settings`` are config sections (``train={"optimizer": {"lr": 0.05}}``,
    ``seed=1``) or dotted keys (``**{"train.optimizer.lr": 0.05}``), validated like YAML;
    the first three arguments are positional, so ``train=`` is the config section.
    ``student`` may also be ``{"derive": "shallower"}`` and the like."""
    from edgedistill.config import DistillExperiment
    from edgedistill.distill.run import run_distill

    raw: dict[str, Any] = {
        "teacher": {"source": _teacher_source(teacher)},
        "student": _model_entry(student, "student"),
        "train": {"epochs": epochs},
        "data": _data_section(train, test, batch_size),
    }
    if losses is not None:
        raw["losses"] = loss_list(losses)
    cfg = _config(DistillExperiment, raw, settings, "edgedistill.distill()")
    splits = _splits(cfg, train, test)
    module = student if isinstance(student, nn.Module) else None
    run_dir = _run_dir(out)
    summary = run_distill(cfg, run_dir, resume=resume,
                          teacher=teacher if isinstance(teacher, nn.Module) else None,
                          student=module, splits=splits)
    if module is not None:
        _remember_stats(module, cfg, splits)
    return {**summary, "run_dir": str(run_dir)}


def train(model: Any, train: Any, /, test: Any = None, *, epochs: int, batch_size: int = 128,
          out: str | Path | None = None, resume: bool = False,
          **settings: Any) -> dict[str, Any]:
    """Train ``model`` with labels only (no teacher); arguments as for ``distill``."""
    from edgedistill import api
    from edgedistill.config import TrainExperiment

    raw = {"model": _model_entry(model, "model"), "train": {"epochs": epochs},
           "data": _data_section(train, test, batch_size)}
    cfg = _config(TrainExperiment, raw, settings, "edgedistill.train()")
    splits = _splits(cfg, train, test)
    module = model if isinstance(model, nn.Module) else None
    run_dir = _run_dir(out)
    summary = api.train(cfg, run_dir, resume=resume, model=module, splits=splits)
    if module is not None:
        _remember_stats(module, cfg, splits)
    return {**summary, "run_dir": str(run_dir)}


# the data settings of training that decide how evaluate/export read a Dataset
READ_KEYS = ("streaming", "memory_budget_gb", "workers", "prefetch", "transform",
             "transform_options", "on_corrupt", "mean", "std", "options")


def _trained_data(source: Any, module: nn.Module) -> dict:
    """How the model's training read its Dataset (``READ_KEYS``): from ``distill``/
    ``train`` in this process, or the ``config.yaml`` of the run ``source`` is part of."""
    from edgedistill import api
    from edgedistill.config.builtins import PYTHON_DATA

    recorded = getattr(module, "input_data", None)
    if recorded is None and isinstance(source, (str, Path)):
        recorded = api.run_data_config(source)
    if recorded is None or recorded.dataset != PYTHON_DATA:
        return {}
    return {k: v for k, v in recorded.model_dump().items() if k in READ_KEYS}


@functools.cache
def _read_schema():
    from edgedistill.config import DataConfig
    from edgedistill.config.base import Strict

    class ReadSettings(Strict):
        data: DataConfig

    return ReadSettings


def _read_config(source: Any, module: nn.Module, data: Any, batch_size: int,
                 settings: dict[str, Any], where: str):
    """The ``DataConfig`` ``data`` is read with: the model's training settings (a
    Dataset), then ``settings`` (``data={...}`` or ``"data.KEY"``), validated like YAML."""
    if isinstance(data, str):
        base = {"dataset": data}
    else:
        base = {**_trained_data(source, module), "dataset": "python"}
    raw = _fill({"data": {**base, "eval_batch_size": batch_size}}, settings, where)
    size = base.get("options", {}).get("image_size")
    if size is not None and raw["data"].get("streaming") is False:
        raise UsageError(f"{where}: the model was trained on a Dataset streamed at {size} x "
                         f"{size}; with data.streaming: false this one would be read at its "
                         "own size: leave data.streaming unset")
    return _config(_read_schema(), raw, {}, where).data


def _eval_data(cfg, data: Any, log=print):
    """``data`` as ``cfg`` reads it: a dataset name's test split, or a ``Dataset``
    streamed (``data.streaming``, a trained ``data.options.image_size``, or over
    ``data.memory_budget_gb``, saying so) or in memory."""
    from edgedistill import api
    from edgedistill.data.torch_dataset import from_dataset, stream_dataset, wants_streaming

    if isinstance(data, str):
        return api.build_splits(cfg, 0, log)[2]
    if wants_streaming(cfg, (data,), log):
        return stream_dataset(data, "test", cfg)
    stats = None if cfg.mean is None else {"mean": cfg.mean, "std": cfg.std}
    return from_dataset(data, "test", stats=stats, limit=int(cfg.memory_budget_gb * 2**30))


def evaluate(model: Any, data: Any, /, *, batch_size: int = 512,
             **settings: Any) -> dict[str, Any]:
    """Accuracy and mean cross-entropy of ``model`` (a module or a source) on ``data`` (a
    dataset name: its test split; or a ``Dataset``). A Dataset is read as the model's
    training read it when that came from ``distill``/``train`` (the module, or its run
    directory): normalized with its statistics, streamed at its size when it streamed;
    otherwise normalized with its own statistics. ``settings`` are data settings
    (``data={"streaming": True}``, ``**{"data.workers": 4}``): like ``distill``, a Dataset
    streams when asked or over ``data.memory_budget_gb``, saying so."""
    from edgedistill import api
    from edgedistill.train.trainer import evaluate as run_eval

    module = api.load_model(model)
    cfg = _read_config(model, module, data, batch_size, settings, "edgedistill.evaluate()")
    test = _eval_data(cfg, data)
    device = next(module.parameters()).device
    pipe = api.eval_pipeline(cfg, test, 0, device)
    result = run_eval(module, pipe, device, amp=False)
    return {"acc": result["acc"], "loss": result["loss"], "images": len(test)}


def export(model_or_run: Any, *, int8: bool = False, data: Any = None,
           out: str | Path | None = None, **settings: Any) -> dict[str, Any]:
    """ONNX (and with ``int8`` a statically quantized ONNX) of a run or a model. A run
    directory of a named dataset exports as ``edgedistill export`` does, into
    ``RUN/export``. A module (or a run trained on a Python ``Dataset``) needs ``data``:
    its first image fixes the input shape, and int8 calibrates on up to 256 of them,
    read as ``evaluate`` reads them (``settings``: dotted data keys, e.g.
    ``**{"data.streaming": True}``)."""
    from edgedistill import api
    from edgedistill.export.onnx import export_onnx, quantize_int8

    if data is None and not isinstance(model_or_run, nn.Module):
        from edgedistill.export.onnx import export_run

        return export_run(model_or_run, int8=int8)
    if data is None:
        raise UsageError("export(module) needs data=: a Dataset or dataset name whose images "
                         "fix the input shape (and calibrate int8)")
    module = api.load_model(model_or_run).cpu()
    cfg = _read_config(model_or_run, module, data, 256, settings, "edgedistill.export()")
    images = _eval_data(cfg, data)
    run = api.run_dir_of(model_or_run) if not isinstance(model_or_run, nn.Module) else None
    folder = Path(out) if out is not None else (run / "export" if run else
                                                 Path(tempfile.mkdtemp(prefix="edgedistill-")))
    shape = (1, *images.image_shape)
    result: dict[str, Any] = {"onnx": str(export_onnx(module, shape, folder / "model.onnx"))}
    if int8:
        calib_cfg = cfg.model_copy(update={"eval_batch_size": min(256, len(images))})
        pipe = api.eval_pipeline(calib_cfg, images, 0, torch.device("cpu"))
        calib = next(iter(pipe.epoch(0))).images.cpu().numpy()
        result["int8_onnx"] = str(quantize_int8(folder / "model.onnx", folder / "model.int8.onnx",
                                                calib))
    return result


class Distiller(nn.Module):
    """A student, its trainable adaptors and loss terms against a frozen teacher, for a
    training loop of your own: ``out, terms = distiller(images, labels)`` gives the
    student's logits and a dict of weighted loss tensors (sum them and backpropagate).

    Adaptors (hint regressors, projection heads) are shaped by one forward pass: give
    ``example`` (a batch of images) to build them here, else the first call builds them,
    so make the optimizer after it (``distiller.parameters()`` includes them)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, losses: list | None = None,
                 *, example: torch.Tensor | None = None, amp: bool = False):
        from edgedistill.config import DistillExperiment, LossConfig, validate
        from edgedistill.distill import OnlineSource
        from edgedistill.distill.distiller import Distiller as Core

        if losses is None:
            configs = DistillExperiment.model_fields["losses"].default
        else:
            configs = [validate(item, LossConfig, f"losses[{i}]")
                       for i, item in enumerate(loss_list(losses))]
        param = next(student.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        super().__init__()
        self.core = Core(student, teacher, OnlineSource(teacher, device, amp), configs)
        if example is not None:
            self._setup(example, torch.zeros(len(example), dtype=torch.long, device=device))

    @property
    def student(self) -> nn.Module:
        return self.core.student

    def _batch(self, images: torch.Tensor, labels: torch.Tensor, indices, epoch: int):
        from edgedistill.data.pipeline import Batch

        if indices is None:
            indices = torch.arange(len(labels), device=labels.device)
        return Batch(images=images, raw=images, labels=labels, indices=indices, epoch=epoch,
                     step=0, draw=0)

    def _setup(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.core.setup(None, self._batch(images, labels, None, 0))

    def forward(self, images: torch.Tensor, labels: torch.Tensor,
                indices: torch.Tensor | None = None, epoch: int = 0
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``indices`` (the samples' dataset positions) matter only to losses that keep
        a memory per sample (CRD); ``epoch`` only to losses with a warm-up."""
        if not self.core._built:
            self._setup(images, labels)
        return self.core(self._batch(images, labels, indices, epoch))
