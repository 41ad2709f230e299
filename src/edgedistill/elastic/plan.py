"""Which batches come next and what goes into their requests, ahead of the student.

A training pipeline's batch ``(epoch, step)`` is a pure function of the seed, so the
requests for the next batches can be built before the student asks for them, from
sample indices and the augmentation draw alone (no augmentation, no normalization
here). The plan keeps its own CPU copy of the pipeline's order and draws, so looking
ahead into the next epoch never evicts what the student's pipeline is using.

With a streaming pipeline there is no uint8 array to index: the request carries the
student's augmented uint8 images themselves, decoded and transformed here by the
pipeline's own code (so bit-identical to the student's batch, GPU decoding included)
with no draw to apply. That costs one more decode per sample in the student's process;
the replicas need no access to the dataset.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from edgedistill.elastic.protocol import InputSpec, Key, Request


class BatchPlan:
    def __init__(self, pipe):
        from edgedistill.data import BatchPipeline

        self.pipe = pipe
        self.streaming = getattr(pipe, "streaming", False)
        self.shadow = copy.copy(pipe) if self.streaming else BatchPipeline(pipe.data, pipe.batch_size, train=pipe.train, seed=pipe.seed,
                                    augment=pipe.augment, drop_last=pipe.drop_last,
                                    device="cpu", num_draws=pipe.num_draws)
        self.steps = len(pipe)
        self._orders: dict[int, torch.Tensor] = {}
        self._draws: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def inputs(self) -> InputSpec:
        data = self.pipe.data
        pad = self.pipe.augment.crop_pad if self.pipe.augment and not self.streaming else 0
        return InputSpec(tuple(data.image_shape), tuple(data.mean), tuple(data.std), pad)

    def next(self, key: Key) -> Key:
        epoch, step = key
        return (epoch, step + 1) if step + 1 < self.steps else (epoch + 1, 0)

    def keys(self, start: Key, n: int) -> list[Key]:
        out = [start]
        while len(out) < n:
            out.append(self.next(out[-1]))
        return out

    def indices(self, key: Key) -> torch.Tensor:
        epoch, step = key
        if epoch not in self._orders:
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = self.shadow.order(epoch).clone()
        start = step * self.pipe.batch_size
        return self.shadow.shard_of(self._orders[epoch][start:start + self.pipe.batch_size])

    def holds(self, key: Key, indices: torch.Tensor) -> bool:
        """Whether a batch with these sample indices is batch ``key`` (in order; a
        streaming batch may lack the corrupt files its pipeline skips)."""
        planned = self.indices(key)
        if not self.streaming or len(indices) == len(planned):
            return torch.equal(planned, indices)
        return torch.equal(planned[torch.isin(planned, indices)], indices)

    def _draw(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        draw = self.shadow.draw_for_epoch(epoch)
        if draw not in self._draws:
            params = self.shadow.draw_params(draw)
            self._draws = {d: p for d, p in self._draws.items() if d == draw - 1}
            self._draws[draw] = (params.offsets.to(torch.int16).numpy(), params.flips.numpy())
        return self._draws[draw]

    def request(self, key: Key, top_k: int | None = None, precision: str = "fp16"
                ) -> Request:
        """The request for batch ``key``: uint8 images as stored, crop offsets and flips."""
        request = self._request(key, self.indices(key), top_k)
        request.precision = precision
        return request

    def calibration(self, n: int) -> Request:
        """The first ``n`` images of epoch 0 as augmented there: real inputs for int8."""
        order = self.shadow.order(0)
        return self._request((-1, -1), order[:min(n, len(order))], None, epoch=0)

    def _request(self, key: Key, idx: torch.Tensor, top_k: int | None, epoch: int | None = None
                 ) -> Request:
        if self.streaming:
            draw = self.shadow.sample_draw(key[0] if epoch is None else epoch)
            return Request(key, self.shadow.raw(idx, draw)[0].cpu().numpy(), top_k=top_k)
        images = self.pipe.data.images.index_select(0, idx).numpy()
        if self.pipe.augment is None:
            return Request(key, images, top_k=top_k)
        offsets, flips = self._draw(key[0] if epoch is None else epoch)
        np_idx = idx.numpy()
        return Request(key, images, offsets[np_idx], flips[np_idx], top_k=top_k)


@dataclass
class Ledger:
    """Exactly-once accounting, cumulative over the source's life.

    ``served`` lists every batch id handed to the student, in order (a repeated call
    for the id just served, like the Distiller's setup probe followed by step 0, is
    answered from memory and listed again, counted in ``repeats``); ``accepted``
    counts replies taken per id and must never exceed 1; ``resent`` counts requests
    sent again after their replica died or stalled; ``abandoned`` counts requests left
    behind when the student jumped (a resume), whose answers are never read.
    """

    served: list[Key] = field(default_factory=list)
    accepted: Counter = field(default_factory=Counter)
    resent: int = 0
    abandoned: int = 0
    repeats: int = 0
