"""Upscaled split benchmark: Fashion-MNIST as 96x96 RGB, torchvision ResNet-18 teacher.

``edgedistill train`` cannot resize a dataset, so this script trains the teacher on
the split config's resized images itself (the generic Trainer, plain cross-entropy),
then runs ``benchmarks/split_bench.py`` on the config with that teacher. Extra
arguments go to split_bench.py.

    .venv/bin/python benchmarks/split_upscaled.py --teacher-epochs 3 -- --requests 31
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

from edgedistill import api
from edgedistill.config import ModelConfig, OptimizerConfig, TrainExperiment, load_config
from edgedistill.config.split import SplitExperiment
from edgedistill.models import create_model
from edgedistill.split.train import load_split_data
from edgedistill.train.callbacks import PrintProgress
from edgedistill.train.tasks import Supervised
from edgedistill.train.trainer import Trainer


def train_teacher(cfg: SplitExperiment, out: Path, epochs: int, model: str, lr: float = 0.05,
                  threads: int = 1) -> Path:
    """A teacher trained on the config's (resized) data, resumable; returns its run dir.

    SGD (nesterov, momentum 0.9, weight decay 5e-4) at ``lr`` with the config's schedule,
    plain cross-entropy; ``cfg.data`` decides how many training images it sees."""
    if (out / "summary.json").exists():
        return out
    torch.set_num_threads(threads)
    train_data, test_data = load_split_data(cfg)
    teacher_cfg = TrainExperiment(
        name=f"teacher_{model}_{cfg.input.size}", seed=cfg.seed, data=cfg.data,
        model=ModelConfig(name=model),
        train=cfg.train.model_copy(update={
            "epochs": epochs, "threads": threads,
            "optimizer": OptimizerConfig(name="sgd", lr=lr)}))
    net = create_model(model, num_classes=train_data.num_classes,
                       in_channels=train_data.images.shape[1])
    pipes = api.build_pipelines(cfg.data, train_data, test_data, cfg.seed, torch.device("cpu"))
    Trainer(Supervised(net), *pipes, teacher_cfg, out, [PrintProgress()]).fit(
        resume=(out / "checkpoints" / "last.pt").exists())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/split/fashion_mnist96_resnet18.yaml")
    p.add_argument("--out", default="runs/split_upscaled")
    p.add_argument("--teacher-model", default="resnet18")
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--teacher-lr", type=float, default=0.05)
    p.add_argument("--teacher-threads", type=int, default=1)
    p.add_argument("--teacher-set", action="append", default=[],
                   help="config override for the teacher's training only, e.g. "
                        "data.limit_train=20000 (repeatable)")
    p.add_argument("--teacher-only", action="store_true", help="train the teacher and stop")
    args, rest = p.parse_known_args()
    rest = [a for a in rest if a != "--"]
    cfg = load_config(args.config, SplitExperiment, args.teacher_set)
    teacher = train_teacher(cfg, Path(args.out) / "teacher", args.teacher_epochs,
                            args.teacher_model, args.teacher_lr, args.teacher_threads)
    if args.teacher_only:
        return
    bench = Path(__file__).with_name("split_bench.py")
    subprocess.run([sys.executable, str(bench), "--config", args.config, "--teacher",
                    str(teacher), "--out", str(Path(args.out) / "split"), *rest], check=True)


if __name__ == "__main__":
    main()
