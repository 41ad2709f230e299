"""One rank (or the single process) of the step-by-step comparison in ``test_ddp.py``.

``python ddp_worker.py CONFIG.json OUT [CONFIG.json OUT ...]`` trains each ``CONFIG`` (a
TrainExperiment) with the real Trainer and writes this rank's loss of every step to
``OUT/steps-rank{R}.json`` (one launch for several runs: starting ranks is the slow part).
Started plainly it is the one-process run; under torchrun each rank is one of N. The
factory model ``ddp_worker.py:nobn`` is a small convnet without BatchNorm, whose step is
the same math on any number of ranks; the config's model is built as any run's is. benchmarks/gpu_check.sh runs it on
CUDA with ``train.sync_bn`` to measure the 1-vs-N-rank difference there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from torch import nn

from edgedistill import api
from edgedistill.config import TrainExperiment
from edgedistill.train.callbacks import Callback
from edgedistill.train.device import resolve_device
from edgedistill.train.distributed import world
from edgedistill.train.tasks import Supervised
from edgedistill.train.trainer import Trainer


class StepLosses(Callback):
    def __init__(self):
        self.losses: list[float] = []

    def on_step_end(self, trainer, step_metrics) -> None:
        self.losses.append(step_metrics["loss"])


def nobn(in_channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(64, num_classes))


def main(config: str, out: str) -> None:
    cfg = TrainExperiment.model_validate(json.loads(Path(config).read_text()))
    api.configure_torch(cfg)
    train, test = api.build_data(cfg.data, cfg.seed)
    shape = (train.images.shape[1], train.num_classes)
    model = api.build_model(cfg.model, num_classes=shape[1], in_channels=shape[0])
    device = resolve_device(cfg.train.device)
    train_pipe, test_pipe = api.build_pipelines(cfg.data, train, test, cfg.seed, device)
    steps = StepLosses()
    Trainer(Supervised(model), train_pipe, test_pipe, cfg, out, [steps], device).fit()
    w = world()
    batch = train_pipe.batch(0, 0)
    Path(out, f"steps-rank{w.rank}.json").write_text(json.dumps(
        {"world_size": w.size, "losses": steps.losses, "first_indices": batch.indices.tolist()}))


if __name__ == "__main__":
    for i in range(1, len(sys.argv), 2):
        main(sys.argv[i], sys.argv[i + 1])
