"""Streaming pipeline vs plain torchvision ImageFolder + transforms + DataLoader.

Makes its own data: a folder of 256x256 JPEGs of random-but-compressible content
(smooth colour fields with noise, about 10-20 kB each, 10 classes), then measures in
one run, with the same worker count and the same ImageNet recipe (RandomResizedCrop
224 + flip, normalized): images/s of batches alone, images/s of resnet18 training steps
on those batches, and the peak memory of the process tree (main process + workers,
sampled every 0.2 s). Each measurement runs in its own process so one does not inflate the
next's memory.

    python benchmarks/stream_throughput.py --sizes 5000 20000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIDE = 256
CLASSES = 10


def make_folder(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` training JPEGs (and 20 for val/) at 256 px; reused when already there."""
    from PIL import Image

    done = root / f".complete-{n}"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", 20)):
        for i in range(count):
            folder = root / split / f"class{i % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            field = np.asarray(Image.fromarray(coarse).resize((SIDE, SIDE),
                                                              Image.Resampling.BICUBIC))
            noise = rng.integers(-12, 13, (SIDE, SIDE, 3))
            pixels = np.clip(field.astype(np.int64) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=85)
    done.touch()
    return root


class PeakRSS:
    """Peak memory of this process plus its workers, sampled in a thread: the sum of
    their PSS (proportional set size: pages shared between processes, such as the
    torch libraries every worker maps, are split among them rather than counted in
    each), and the main process's own RSS."""

    def __init__(self, every_s: float = 0.2):
        import psutil

        self.proc = psutil.Process()
        self.peak = self.main_peak = 0
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    total += p.memory_full_info().pss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self.main_peak = max(self.main_peak, self.proc.memory_info().rss)
            time.sleep(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def ours(root: Path, batch: int, workers: int):
    from edgedistill import api
    from edgedistill.config import DataConfig

    cfg = DataConfig(dataset="imagefolder", root=str(root), options={"image_size": 224},
                     streaming=True, workers=workers, batch_size=batch,
                     transform="imagenet")
    train, _, test = api.build_splits(cfg, 0, log=lambda m: None)
    pipe, _ = api.build_pipelines(cfg, train, test, 0, "cpu")
    return ((b.images, b.labels) for b in pipe.epoch(0)), len(pipe)


def plain(root: Path, batch: int, workers: int):
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.RandomResizedCrop(224),
                             transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406),
                                                  (0.229, 0.224, 0.225))])
    data = datasets.ImageFolder(str(root / "train"), transform=tf)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    return iter(loader), len(loader)


def measure(kind: str, root: Path, batch: int, workers: int, steps: int | None) -> dict:
    """images/s over one epoch (or ``steps`` training steps) and the peak RSS."""
    import torch
    import torchvision.datasets  # noqa: F401  imported before the clock starts, as is ours

    import edgedistill.api  # noqa: F401

    torch.set_num_threads(1)
    model = optimizer = None
    if steps:
        from torchvision.models import resnet18

        model = resnet18(num_classes=CLASSES)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with PeakRSS() as rss:
        tic = time.perf_counter()
        batches, total = (ours if kind == "ours" else plain)(root, batch, workers)
        images = 0
        for k, (x, y) in enumerate(batches):
            if model is not None:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            images += len(y)
            if steps and k + 1 >= steps:
                break
        seconds = time.perf_counter() - tic
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds,
            "peak_pss_mb": rss.peak / 2**20, "main_rss_mb": rss.main_peak / 2**20,
            "batches_in_epoch": total}


def child(args) -> dict:
    cmd = [sys.executable, __file__, "--measure", args[0], "--root", str(args[1]),
           "--batch", str(args[2]), "--workers", str(args[3]), "--steps", str(args[4] or 0)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--data", type=Path, default=Path("/tmp/edgedistill-stream-bench"))
    parser.add_argument("--measure", choices=["ours", "plain"])
    parser.add_argument("--root", type=Path)
    parser.add_argument("--steps", type=int, default=0)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.root, args.batch, args.workers,
                                 args.steps or None)))
        return
    rows = []
    for n in args.sizes:
        tic = time.perf_counter()
        root = make_folder(args.data / str(n), n)
        print(f"folder of {n} JPEGs ready in {time.perf_counter() - tic:.0f}s", flush=True)
        jobs = [("batches", kind, args.batch, None) for kind in ("ours", "plain")]
        if n == min(args.sizes):
            jobs += [("resnet18 steps", kind, args.train_batch, args.train_steps)
                     for kind in ("ours", "plain")]
        for what, kind, batch, steps in jobs:
            result = child((kind, root, batch, args.workers, steps))
            rows.append((n, what, kind, result))
            print(json.dumps({"images": n, "what": what, "pipeline": kind, **result}),
                  flush=True)
    print("\n| images | measured | pipeline | images/s | vs plain | peak PSS, all processes (MB) | peak RSS, main (MB) |\n"
          "|---|---|---|---|---|---|---|")
    for n, what, kind, result in rows:
        base = next(r for m, w, k, r in rows if m == n and w == what and k == "plain")
        name = "edgedistill streaming" if kind == "ours" else "ImageFolder+transforms+DataLoader"
        print(f"| {n} | {what} | {name} | {result['images_per_s']:.0f} | "
              f"{result['images_per_s'] / base['images_per_s']:.2f}x | "
              f"{result['peak_pss_mb']:.0f} | {result['main_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
