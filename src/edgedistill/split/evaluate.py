"""The numbers of the bottleneck table: accuracy float and over the wire, bytes, FLOPs.

Quantized accuracy is measured through the real wire path, one message per test
image (quantize, encode, decode, dequantize; for an entropy bottleneck: rANS-encode,
message, decode), so the accuracy and the bytes per sample are those of the requests a
device would send.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from edgedistill.split.entropy import EntropyCodec, EntropyHead
from edgedistill.split.model import SplitModel
from edgedistill.split.quantize import quantize
from edgedistill.split.wire import decode, encode, encode_entropy


def wire_roundtrip(z: np.ndarray, per_channel: bool, compression: str,
                   level: int | None = None) -> tuple[np.ndarray, list[int]]:
    """Each sample of ``z`` sent as its own message: (values received, bytes per message)."""
    received, sizes = np.empty_like(z, dtype=np.float32), []
    for i in range(z.shape[0]):
        message = encode(quantize(z[i:i + 1], per_channel), compression, level)
        sizes.append(len(message))
        received[i:i + 1] = decode(message).to_float()
    return received, sizes


def entropy_roundtrip(z: np.ndarray, codec: EntropyCodec) -> tuple[np.ndarray, list[int]]:
    """``wire_roundtrip`` for an entropy bottleneck: one coded message per sample."""
    received, sizes = np.empty_like(z, dtype=np.float32), []
    for i in range(z.shape[0]):
        message = encode_entropy(codec.encode(z[i:i + 1]), z[i:i + 1].shape)
        sizes.append(len(message))
        got = decode(message)
        received[i:i + 1] = codec.decode(got.streams, got.shape)
    return received, sizes


def roundtrip(model: SplitModel, wire):
    """The wire path of ``model``'s head: z -> (values received, bytes per message)."""
    if isinstance(model.head, EntropyHead):
        codec = EntropyCodec(model.head.entropy)
        return lambda z: entropy_roundtrip(z, codec)
    return lambda z: wire_roundtrip(z, wire.per_channel, wire.compression, wire.level)


@torch.no_grad()
def evaluate_split(model: SplitModel, pipe, wire, device: torch.device) -> dict[str, Any]:
    """Float and quantized accuracy, head MSE vs the teacher head, bytes per sample."""
    model.eval()
    server = model.server_part()
    send = roundtrip(model, wire)
    correct_f = correct_q = seen = 0
    mse_sum, sizes = 0.0, []
    for batch in pipe.epoch(0):
        x, y = batch.images.to(device), batch.labels.to(device)
        z = model.device_part(x)
        decoded = model.head.decoder(z)
        mse_sum += torch.mean((decoded - model.teacher_head(x)) ** 2).item() * len(y)
        correct_f += (model.tail(decoded).argmax(1) == y).sum().item()
        zq, batch_sizes = send(z.float().cpu().numpy())
        sizes += batch_sizes
        correct_q += (server(torch.from_numpy(zq).to(device)).argmax(1) == y).sum().item()
        seen += len(y)
    return {"acc_float": correct_f / seen, "acc_quantized": correct_q / seen,
            "head_mse": mse_sum / seen, "bytes_per_sample": float(np.mean(sizes)),
            "bytes_max": int(np.max(sizes))}


@torch.no_grad()
def accuracy_on(model: nn.Module, images: np.ndarray, labels: torch.Tensor, mean, std,
                device: torch.device, batch_size: int = 256) -> float:
    """Accuracy of ``model`` on uint8 images (e.g. JPEG-decoded ones), normalized as in training."""
    from edgedistill.data import normalize

    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        x = normalize(torch.from_numpy(images[start:start + batch_size]).to(device), mean, std)
        pred = model(x).argmax(1).cpu()
        correct += (pred == labels[start:start + batch_size]).sum().item()
    return correct / max(len(images), 1)


def compute_costs(model: SplitModel, input_shape) -> dict[str, int]:
    """Params and FLOPs of each part, per image (FLOPs counted by ``count_flops``)."""
    from edgedistill.models import count_flops, count_params

    z_shape = model.head.bottleneck_shape
    tail_in = tuple(model.head.spec["out_shape"])
    return {"head_params": count_params(model.device_part),
            "head_flops": count_flops(model.device_part, input_shape),
            "decoder_params": count_params(model.head.decoder),
            "decoder_flops": count_flops(model.head.decoder, z_shape),
            "tail_flops": count_flops(model.tail, tail_in),
            "teacher_head_flops": count_flops(model.teacher_head, input_shape),
            "teacher_flops": count_flops(model.teacher, input_shape)}
