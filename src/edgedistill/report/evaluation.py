"""``edgedistill eval``: accuracy, loss and size of any trained model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from edgedistill.errors import UsageError


def evaluate_source(source: str, dataset: str | None = None, limit_test: int | None = None
                    ) -> dict[str, Any]:
    from edgedistill import api
    from edgedistill.models import student_name, summarize
    from edgedistill.train.trainer import evaluate

    model = api.load_model(source)
    data_cfg = api.source_data_config(source, dataset)
    data_cfg = data_cfg.model_copy(update={"limit_test": limit_test or data_cfg.limit_test})
    _, _, test_data = api.build_splits(data_cfg, 0)
    test_pipe = api.eval_pipeline(data_cfg, test_data, 0, torch.device("cpu"))
    result = evaluate(model, test_pipe, torch.device("cpu"))
    info = summarize(model, (1, *test_data.images.shape[1:]))
    return {"model": student_name(model.spec), "dataset": data_cfg.dataset,
            "test_images": len(test_data), "accuracy": round(result["acc"], 4),
            "loss": round(result["loss"], 4), "params": info["params"],
            "flops": info["flops"], "bytes_fp32": info["bytes_fp32"],
            "bytes_int8": info["bytes_int8"]}


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        raise UsageError(f"{run_dir} has no summary.json; is it a finished run?")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path} is damaged ({err}); run it again with --resume") from None
