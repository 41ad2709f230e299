"""``edgedistill eval``: accuracy, loss and size of any trained model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from edgedistill.errors import UsageError


def dataset_of(source: str) -> str | None:
    from edgedistill import pretrained

    if source.startswith("zoo:"):
        entry = pretrained.manifest().get(source[4:])
        return entry["dataset"] if entry else None
    path = Path(source)
    cfg = (path if path.is_dir() else path.parent.parent) / "config.yaml"
    if cfg.exists():
        import yaml

        return (yaml.safe_load(cfg.read_text()).get("data") or {}).get("dataset")
    return None


def evaluate_source(source: str, dataset: str | None = None, limit_test: int | None = None
                    ) -> dict[str, Any]:
    from edgedistill import api
    from edgedistill.config import DataConfig
    from edgedistill.models import student_name, summarize
    from edgedistill.train.trainer import evaluate

    model = api.load_model(source)
    dataset = dataset or dataset_of(source)
    if dataset is None:
        raise UsageError(f"cannot tell which dataset {source!r} was trained on; pass --dataset")
    data_cfg = DataConfig(dataset=dataset, limit_test=limit_test, limit_train=1000)
    train_data, test_data = api.build_data(data_cfg, 0)
    _, test_pipe = api.build_pipelines(data_cfg, train_data, test_data, 0, torch.device("cpu"))
    result = evaluate(model, test_pipe, torch.device("cpu"))
    info = summarize(model, (1, *test_data.images.shape[1:]))
    return {"model": student_name(model.spec), "dataset": dataset,
            "test_images": len(test_data), "accuracy": round(result["acc"], 4),
            "loss": round(result["loss"], 4), "params": info["params"],
            "flops": info["flops"], "bytes_fp32": info["bytes_fp32"],
            "bytes_int8": info["bytes_int8"]}


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        raise UsageError(f"{run_dir} has no summary.json; is it a finished run?")
    return json.loads(path.read_text())
