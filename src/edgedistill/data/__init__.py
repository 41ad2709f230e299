"""Datasets as uint8 tensors in memory, and the pipeline that batches and augments them.

``load_dataset(name)`` returns (train, test) ``ImageData`` (``load_splits`` also a
held-out validation split); ``BatchPipeline`` turns one
into deterministic batches. Importing this package registers every dataset below.
"""

from edgedistill.data import (  # noqa: F401  imported so that each dataset registers
    cifar,
    digits,
    fashion_mnist,
    imagefolder,
    mnist_subset,
    synthetic,
)
from edgedistill.data.base import DATASETS, AugmentSpec, ImageData, load_dataset, load_splits
from edgedistill.data.pipeline import (
    AugDraw,
    Batch,
    BatchPipeline,
    apply_augment,
    draw_augment,
    normalize,
)

__all__ = [
    "DATASETS",
    "AugDraw",
    "AugmentSpec",
    "Batch",
    "BatchPipeline",
    "ImageData",
    "apply_augment",
    "draw_augment",
    "load_dataset",
    "load_splits",
    "normalize",
]
