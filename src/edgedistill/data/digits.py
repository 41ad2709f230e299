"""scikit-learn's digits: 1,797 images of 8x8 pixels with 17 grey levels.

Tiny enough to train a teacher in seconds, which makes it the set for end-to-end
tests that need real data. There is no official test split, so a fixed seeded,
stratified one is made (1,437/360).
"""

from __future__ import annotations

import torch

from edgedistill.data.base import DATASETS, AugmentSpec, as_uint8, make_splits, stratified_split


@DATASETS.register("digits")
def load_digits(root=None, seed=0, num_test: int = 360, split_seed: int = 0):
    """scikit-learn digits, 10 classes, 8x8 grey scaled to 0-255, stratified 1437/360 split."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy(as_uint8(bunch.images, 16.0)[:, None])
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    train_idx, test_idx = stratified_split(labels, num_test, split_seed)
    return make_splits(
        "digits", [str(d) for d in range(10)],
        (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx]),
        AugmentSpec(crop_pad=1, hflip=False),
    )
