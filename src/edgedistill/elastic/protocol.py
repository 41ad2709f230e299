"""What travels between the student and a teacher replica, and how each side reads it.

A request carries the batch's *un-augmented* uint8 images plus its augmentation draw
(crop offsets and flips per sample), never float tensors: 4x fewer bytes than fp32,
and the replica rebuilds the student's exact input with the pipeline's own
``apply_augment`` and ``normalize`` (pure indexing then the same float ops, so the
teacher sees bit-identical images). Sending the draw rather than augmented images
also lets the student plan batches far ahead from indices alone, without augmenting
anything twice. The request id is the batch's position
``(epoch, step)``: asking twice gives the same answer, so a request can be re-sent to
another replica without harm. A reply carries fp16 logits, or only the top-k
(fp16 values, int16 classes), and fp16 features of the requested layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from edgedistill.distill.cache import dense_from_topk
from edgedistill.distill.sources import TeacherOutputs

Key = tuple[int, int]


@dataclass(frozen=True)
class InputSpec:
    """How a replica turns uint8 images into the student's input: the dataset's image
    shape and normalization, and the pipeline's crop padding."""

    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pad: int = 0


@dataclass
class Request:
    key: Key
    images: np.ndarray
    offsets: np.ndarray | None = None
    flips: np.ndarray | None = None
    top_k: int | None = None
    precision: str = "fp16"  # of the logits and features in the reply: fp16 or fp32
    layers: list[str] | None = None  # features to return; None: all the replica hooks

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class Reply:
    key: Key
    num_classes: int
    logits: np.ndarray | None = None
    top_values: np.ndarray | None = None
    top_classes: np.ndarray | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)
    compute_s: float = 0.0
    replica: int = -1


def prepare_images(request: Request, inputs: InputSpec) -> torch.Tensor:
    """The student's float32 input for ``request``, rebuilt from uint8 and the draw."""
    from edgedistill.data import apply_augment, normalize

    images = torch.tensor(request.images)
    if request.offsets is not None:
        images = apply_augment(images, torch.tensor(request.offsets),
                               torch.tensor(request.flips), inputs.crop_pad)
    return normalize(images, inputs.mean, inputs.std)


WIRE_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


def encode(key: Key, logits: torch.Tensor, features: dict[str, torch.Tensor],
           top_k: int | None, precision: str = "fp16") -> Reply:
    """fp16 answer (fp32 on request: the online teacher's exact values, twice the
    bytes); with ``top_k`` only the k largest logits and their classes."""
    dtype = WIRE_DTYPES[precision]
    logits = logits.detach().float().cpu()
    reply = Reply(key, num_classes=logits.shape[1],
                  features={p: f.detach().cpu().to(dtype).contiguous().numpy()
                            for p, f in features.items()})
    if top_k and top_k < logits.shape[1]:
        values, classes = logits.topk(top_k, dim=1)
        reply.top_values, reply.top_classes = values.to(dtype).numpy(), \
            classes.to(torch.int16).numpy()
    else:
        reply.logits = logits.to(dtype).numpy()
    return reply


def decode(reply: Reply, device: torch.device) -> TeacherOutputs:
    """float32 tensors on ``device``; top-k answers become dense logits whose other
    classes sit 10 below the k-th (negligible softmax mass, finite losses). Arrays that
    Ray hands over are read-only views of its object store, hence the copies."""
    if reply.logits is not None:
        logits = torch.tensor(reply.logits).float()
    else:
        logits = dense_from_topk(torch.tensor(reply.top_values).float(),
                                 torch.tensor(reply.top_classes).long(), reply.num_classes)
    feats = {p: torch.tensor(f).float().to(device, non_blocking=True)
             for p, f in reply.features.items()}
    return TeacherOutputs(logits.to(device, non_blocking=True), feats)
