"""torchdistill's KD on the same teacher, student, data and batch size as
kd_throughput.py. Runs inside torchdistill's own venv (`make bench-venv`) with our
``src`` on PYTHONPATH only for the model definitions and the raw Fashion-MNIST arrays;
everything on the training path is torchdistill's: its DistillationBox, its KDLoss via
WeightedSumLoss, a torchvision Dataset with PIL transforms and a DataLoader, as in its
sample configs. Prints one JSON line with images/s.

    PYTHONPATH=src .venv-torchdistill/bin/python benchmarks/torchdistill_kd.py \
        --teacher T.safetensors --steps 20 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch.utils.data import Dataset, RandomSampler
from torchdistill.core.distillation import get_distillation_box

from edgedistill.data import load_dataset
from edgedistill.models import create_model


class FashionPIL(Dataset):
    def __init__(self, data):
        from torchvision import transforms

        self.images = data.images[:, 0].numpy()
        self.labels = data.labels.tolist()
        self.tf = transforms.Compose([
            transforms.RandomCrop(28, padding=2), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(data.mean, data.std)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.tf(Image.fromarray(self.images[i], mode="L")), self.labels[i]


def train_config(batch: int, workers: int, temperature: float, alpha: float) -> dict:
    return {
        "num_epochs": 1,
        "train_data_loader": {
            "dataset_id": "fashion_mnist/train",
            "sampler": {"class_or_func": RandomSampler, "kwargs": {}},
            "kwargs": {"batch_size": batch, "num_workers": workers, "drop_last": True},
        },
        "teacher": {"sequential": [], "forward_proc": "forward_batch_only",
                    "requires_grad": False},
        "student": {"sequential": [], "forward_proc": "forward_batch_only",
                    "requires_grad": True},
        "optimizer": {"key": "SGD", "kwargs": {"lr": 0.05, "momentum": 0.9,
                                               "weight_decay": 5e-4}},
        "criterion": {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"kd": {
            "criterion": {"key": "KDLoss", "kwargs": {
                "student_module_path": ".", "student_module_io": "output",
                "teacher_module_path": ".", "teacher_module_io": "output",
                "temperature": temperature, "alpha": alpha, "reduction": "batchmean"}},
            "weight": 1.0}}}},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", default="resnet8")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, _ = load_dataset("fashion_mnist")
    weights = load_file(args.teacher)
    with safe_open(args.teacher, "pt") as fh:  # the model spec sits in the header
        spec = json.loads(fh.metadata()["spec"])
    teacher = create_model(**{**spec, "num_classes": 10, "in_channels": 1})
    teacher.load_state_dict(weights)
    student = create_model(args.student, num_classes=10, in_channels=1)
    box = get_distillation_box(teacher, student, {"fashion_mnist/train": FashionPIL(train)},
                               train_config(args.batch, args.workers, 4.0, 0.5),
                               torch.device("cpu"), None, False, 1.0)
    box.pre_epoch_process(epoch=0)
    seen, tic = 0, None
    for i, (sample_batch, targets, supp_dict) in enumerate(box.train_data_loader):
        if i == args.warmup:
            tic = time.perf_counter()
        loss = box.forward_process(sample_batch, targets, supp_dict)
        box.post_forward_process(loss=loss)
        if tic is not None:
            seen += targets.numel()
        if i + 1 == args.warmup + args.steps:
            break
    print(json.dumps({"images_per_s": seen / (time.perf_counter() - tic),
                      "loss": float(loss)}))


if __name__ == "__main__":
    main()
