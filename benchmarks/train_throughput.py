"""Training images/s with edgedistill's in-memory batched pipeline against a plain
torchvision DataLoader + PIL transforms, same models, same batch, one run; plus our
pipeline with the model in channels_last, the layout the Trainer uses by default.

    .venv/bin/python benchmarks/train_throughput.py [--threads 1] [--steps 20]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import header, timed_steps
from edgedistill.data import BatchPipeline, load_dataset
from edgedistill.models import create_model


class PILDataset(Dataset):
    """The usual torchvision way: one PIL image per sample, transforms per sample."""

    def __init__(self, data):
        from torchvision import transforms

        self.images = data.images[:, 0].numpy()
        self.labels = data.labels
        self.tf = transforms.Compose([
            transforms.RandomCrop(28, padding=2), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(data.mean, data.std)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.tf(Image.fromarray(self.images[i], mode="L")), self.labels[i]


LAYOUT_ROW = "edgedistill pipeline, channels_last"


def endless(make_iter):
    while True:
        yield from make_iter()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--models", default="resnet8,resnet20,resnet56")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, _ = load_dataset("fashion_mnist")
    ours = BatchPipeline(train, args.batch, train=True, seed=0, augment=train.augment)
    ours_batches = endless(lambda: ((b.images, b.labels) for b in ours.epoch(0)))
    loaders = {f"DataLoader+PIL w={w}": endless(lambda w=w: iter(DataLoader(
        PILDataset(train), batch_size=args.batch, shuffle=True, num_workers=w,
        drop_last=True, persistent_workers=False))) for w in (0, 2)}
    sources = {"edgedistill pipeline": ours_batches, **loaders}
    rows = []
    for name, it in sources.items():
        secs = timed_steps(lambda it=it: next(it), 3, args.steps * 3)
        rows.append(("data only", name, args.batch * args.steps * 3 / secs))
    for model_name in args.models.split(","):
        model = create_model(model_name, num_classes=10, in_channels=1)
        # the Trainer's default layout (train.memory_format: auto), same initial weights
        nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
        runs = {name: (it, model) for name, it in sources.items()}
        runs[LAYOUT_ROW] = (ours_batches, nhwc)
        opts = {id(m): torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
                for m in (model, nhwc)}
        steps = max(args.steps // (3 if model_name == "resnet56" else 1), 4)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):  # interleaved, so load drift hits every source alike
            for name, (it, net) in runs.items():
                def step(it=it, model=net, opt=opts[id(net)]):
                    x, y = next(it)
                    loss = F.cross_entropy(model(x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                times[name].append(timed_steps(step, 1, steps))
        for name, secs in times.items():
            rows.append((model_name, name, args.batch * steps / statistics.median(secs)))
    print(header("python benchmarks/train_throughput.py " + " ".join(sys.argv[1:])))
    print(f"Median of {args.rounds} interleaved rounds; batch {args.batch}; full Fashion-MNIST "
          "train set in memory; random crop (pad 2) + horizontal flip.\n")
    print("| model | input pipeline | images/s | vs DataLoader w=0 |")
    print("|---|---|---|---|")
    for model_name, name, ips in rows:
        base = next(r[2] for r in rows if r[0] == model_name and r[1].endswith("w=0"))
        print(f"| {model_name} | {name} | {ips:.0f} | {ips / base:.2f}x |")


if __name__ == "__main__":
    main()
