"""Datasets that stream from disk, and the choice between streaming and memory.

``STREAM_SOURCES`` holds one loader per on-disk layout (``imagefolder``,
``webdataset``); each returns (train, test) ``StreamingData`` without decoding an
image. ``wants_streaming`` decides per config: ``data.streaming: true`` always streams,
``false`` never, and unset streams when the decoded set would exceed
``data.memory_budget_gb`` (and says so). ``streaming_data`` wraps any map-style torch
``Dataset`` for the Python API.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgedistill.data.base import AugmentSpec, check_options
from edgedistill.data.paths import find_dir, missing
from edgedistill.data.readers import DatasetReader, FolderReader, TarShardReader
from edgedistill.data.streaming import IMAGENET_MEAN, IMAGENET_STD, StreamingData
from edgedistill.errors import DataMissingError, UsageError
from edgedistill.registry import Registry

STREAM_SOURCES = Registry("streaming dataset")
WDS_HOW = ("write WebDataset shards as <folder>/train/*.tar and <folder>/val/*.tar, each "
           "sample a <key>.jpg (or .png) with a <key>.cls holding its class number")


def _check_size(image_size: int) -> None:
    if image_size < 1:
        raise UsageError(f"data.options.image_size must be >= 1, got {image_size}")


@STREAM_SOURCES.register("imagefolder")
def stream_imagefolder(root=None, seed=0, image_size: int = 64):
    """root/train/<class>/*.jpg|png and root/val (or test), read file by file."""
    from edgedistill.data.imagefolder import list_images, locate

    _check_size(image_size)
    folder, test_dir, classes = locate(root)

    def split(path: Path, name: str) -> StreamingData:
        files, labels = list_images(path, classes)
        return StreamingData(FolderReader(files), torch.tensor(labels), len(classes),
                             list(classes), f"imagefolder:{folder.name}", image_size,
                             split=name, augment=AugmentSpec(max(1, image_size // 8), True))

    return split(folder / "train", "train"), split(test_dir, "test")


@STREAM_SOURCES.register("webdataset")
def stream_webdataset(root=None, seed=0, image_size: int = 224):
    """WebDataset tar shards: root/train/*.tar and root/val (or test)/*.tar, .jpg + .cls."""
    _check_size(image_size)
    folder, searched = find_dir(root, ("",), lambda d: any((d / "train").glob("*.tar")))
    if folder is None:
        raise missing("WebDataset shards (train/*.tar)", searched, WDS_HOW)
    test_dir = next((folder / d for d in ("val", "test") if any((folder / d).glob("*.tar"))),
                    None)
    if test_dir is None:
        raise missing("test shards (val/*.tar or test/*.tar)",
                      [folder / "val", folder / "test"], WDS_HOW)
    readers = {s: TarShardReader(sorted(d.glob("*.tar")))
               for s, d in (("train", folder / "train"), ("test", test_dir))}
    num_classes = max(max(r.labels) for r in readers.values()) + 1
    names_file = folder / "classes.txt"
    classes = (names_file.read_text().split("\n")[:num_classes] if names_file.is_file()
               else [str(c) for c in range(num_classes)])
    return tuple(StreamingData(r, torch.tensor(r.labels), num_classes, classes,
                               f"webdataset:{folder.name}", image_size, split=s)
                 for s, r in readers.items())


def decoded_bytes(name: str, root, options: dict) -> int | None:
    """What the in-memory path would hold for an imagefolder (files x 3 x size^2);
    None for sets that are small by construction (their loaders know their size)."""
    if name != "imagefolder":
        return None
    from edgedistill.data.imagefolder import EXTENSIONS, locate

    folder, test_dir, _ = locate(root)
    count = sum(1 for d in (folder / "train", test_dir) for p in d.rglob("*")
                if p.suffix.lower() in EXTENSIONS)
    size = int(options.get("image_size", 64))
    return count * 3 * size * size


def wants_streaming(cfg, log=print) -> bool:
    """Whether ``cfg`` (a ``DataConfig``) streams; logs why when the budget decides."""
    if cfg.streaming is False:
        if cfg.dataset == "webdataset":
            raise UsageError("data.streaming: false, but webdataset shards are only read by "
                             "streaming; remove data.streaming")
        return False
    if cfg.streaming and cfg.dataset not in STREAM_SOURCES:
        raise UsageError(f"data.streaming: true, but dataset {cfg.dataset!r} is held in memory "
                         f"only; streaming datasets: {', '.join(STREAM_SOURCES.names())}")
    if cfg.streaming or cfg.dataset == "webdataset":
        return True
    need = decoded_bytes(cfg.dataset, cfg.root, cfg.options)
    budget = cfg.memory_budget_gb * 2**30
    if need is not None and need > budget:
        log(f"data: {cfg.dataset} would take {need / 2**30:.3g} GiB decoded in memory, over "
            f"data.memory_budget_gb={cfg.memory_budget_gb:g}: streaming it from disk with "
            f"{cfg.workers} workers instead")
        return True
    return False


def load_streaming(cfg, seed: int):
    """(train, test) ``StreamingData`` for a ``DataConfig``, mean/std as configured."""
    loader = STREAM_SOURCES.get(cfg.dataset)
    options = check_options(cfg.dataset, loader, dict(cfg.options))
    train, test = loader(root=cfg.root, seed=seed, **options)
    return tuple(_with_stats(d, cfg.mean, cfg.std) for d in (train, test))


def _with_stats(data: StreamingData, mean, std) -> StreamingData:
    from dataclasses import replace

    return replace(data, mean=tuple(mean or data.mean), std=tuple(std or data.std))


def streaming_data(dataset, image_size: int, num_classes: int | None = None,
                   labels=None, classes: list[str] | None = None, name: str = "dataset",
                   split: str = "train", mean=None, std=None, channels: int = 3,
                   augment: AugmentSpec | None = None) -> StreamingData:
    """Any map-style torch ``Dataset`` of (image, label) pairs as ``StreamingData``.

    Images may be PIL images, encoded bytes (1-D uint8 tensors), uint8 [C,H,W] / [H,W,C]
    arrays or float [C,H,W] tensors on the 0-1 scale. Labels come from ``labels``, else
    ``dataset.targets`` (torchvision's datasets have it) or a ``TensorDataset``'s second
    tensor, else one pass over the dataset. ``mean``/``std`` default to ImageNet's (for
    one channel, their averages); ``augment`` to the streaming default (pad-crop 8, flip).
    """
    try:
        len(dataset)
    except TypeError:
        raise UsageError(f"{name}: {type(dataset).__name__} has no len(); give a map-style "
                         "Dataset (an IterableDataset has no random access)") from None
    if labels is None:
        labels = getattr(dataset, "targets", None)
    if labels is None and isinstance(dataset, torch.utils.data.TensorDataset) \
            and len(dataset.tensors) == 2:
        labels = dataset.tensors[1]
    reader = DatasetReader(dataset, name)
    if labels is None:
        labels = [reader.label(i) for i in range(len(reader))]
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if len(labels) != len(reader):
        raise UsageError(f"{name}: {len(reader)} samples but {len(labels)} labels")
    if not len(labels):
        raise DataMissingError(f"{name} holds no samples")
    num_classes = num_classes or int(labels.max()) + 1
    classes = classes or getattr(dataset, "classes", None) or [str(c) for c in range(num_classes)]
    if mean is None:
        mean, std = ((IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else
                     ((sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)))
    return StreamingData(reader, labels, num_classes, list(classes), name, image_size,
                         mean=tuple(mean), std=tuple(std), split=split, channels=channels,
                         **({} if augment is None else {"augment": augment}))


def pipeline_from_dataset(dataset, *, image_size: int, batch_size: int, train: bool,
                          seed: int = 0, device: str | torch.device = "cpu",
                          transform: str = "imagenet", workers: int = 2, prefetch: int = 2,
                          on_corrupt: str = "error", num_draws: int | None = None,
                          augment: bool = True, **data_kw):
    """A ``StreamingPipeline`` over a map-style torch ``Dataset`` (the Python API's door
    for a user's own data); ``data_kw`` go to ``streaming_data`` (labels, classes, ...)."""
    from edgedistill.data.streaming import StreamingPipeline

    data = streaming_data(dataset, image_size, **data_kw)
    return StreamingPipeline(data, batch_size, train=train, seed=seed,
                             augment=data.augment if augment else None,
                             augment_enabled=augment and train, device=device,
                             num_draws=num_draws, workers=workers, prefetch=prefetch,
                             on_corrupt=on_corrupt, transform=transform)
