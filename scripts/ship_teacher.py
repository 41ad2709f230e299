"""Copy a finished (or in-progress) run's weights into the package zoo and record how
they were made: ``python scripts/ship_teacher.py RUN_DIR NAME "COMMAND"``."""

from __future__ import annotations

import datetime
import json
import shutil
import sys
from pathlib import Path

import yaml

from edgedistill.models import student_name
from edgedistill.pretrained import HERE
from edgedistill.train.checkpoint import load_weights


def ship(run_dir: Path, name: str, command: str) -> dict:
    weights = run_dir / "model.safetensors"
    _, spec = load_weights(weights)
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    target = HERE / f"{name}.safetensors"
    shutil.copyfile(weights, target)
    entry = {
        "file": target.name, "model": student_name(spec), "dataset": config["data"]["dataset"],
        "test_acc": records[-1]["test_acc"], "epochs_trained": len(records),
        "epochs_planned": config["train"]["epochs"],
        "date": datetime.date.today().isoformat(), "command": command, "config": config,
    }
    manifest_path = HERE / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[name] = entry
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return entry


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    e = ship(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
    print(f"shipped {sys.argv[2]}: {e['model']} test_acc {e['test_acc']:.4f} "
          f"after {e['epochs_trained']}/{e['epochs_planned']} epochs")
