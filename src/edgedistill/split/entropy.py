"""Learned entropy-coded bottlenecks: CompressAI's ``EntropyBottleneck`` after the encoder.

Supervised compression (Matsubara et al., sc2bench): the encoder's output ``z`` is
rounded to integers (around learned per-channel medians) and coded with a learned,
factorized per-channel probability model by CompressAI's rANS coder. Training sees
additive uniform noise instead of rounding and minimizes ``task + beta * bits``, with
``bits`` = -log2 of the model's likelihood of the noisy ``z`` per sample: ``beta``
trades bytes for accuracy. On the wire go the real bitstreams (``wire`` codec
``entropy``), and bytes per sample are the lengths of those messages, not the
entropy estimate. Both sides need the same integer CDF tables: they are fixed once at
the end of training (``EntropyBottleneck.update``) and stored with the weights and in
``entropy.safetensors`` (the device's copy next to ``head.onnx``), never recomputed
from floats on the other machine.

CompressAI is an optional extra: its metadata pins numpy<2, which the rest of this
project's dependencies refuse, so it is installed without its dependency resolution
(``INSTALL``); it runs with numpy 2.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgedistill.errors import UsageError
from edgedistill.split.bottleneck import BottleneckHead

INSTALL = ("pip install --no-deps compressai==1.2.8 einops pytorch-msssim tqdm "
           "torch-geometric xxhash psutil")
TABLES = ("_offset", "_quantized_cdf", "_cdf_length")  # sized by update(), empty before
TABLES_FILE = "entropy.safetensors"
# Initial width of each channel's density. CompressAI's default, 10, suits image codecs'
# latents; the head's bottleneck is BN + ReLU, values of order 1, and from 10 the
# density took ~1,000 Adam steps at lr 1e-3 to fit them (2.5 bits/value after 300 steps
# against 1.9 from 2; /tmp experiment in the 2026-12-03 RESULTS section).
INIT_SCALE = 2.0


def entropy_bottleneck(channels: int) -> nn.Module:
    """A fresh ``compressai.entropy_models.EntropyBottleneck`` of ``channels`` channels."""
    try:
        with warnings.catch_warnings():  # its import chain warns about torch.jit.script
            warnings.simplefilter("ignore")
            from compressai.entropy_models import EntropyBottleneck
    except ImportError as err:
        raise UsageError(f"the entropy bottleneck needs CompressAI ({err.name} is missing): "
                         f"{INSTALL}") from None
    return EntropyBottleneck(channels, init_scale=INIT_SCALE)


def fit_tables(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str = "") -> None:
    """Resize the CDF-table buffers of every entropy bottleneck in ``module`` to the
    saved ones, so ``load_state_dict`` accepts tables fixed after training."""
    for name, buf in module.named_buffers():
        key = prefix + name
        if name.rsplit(".", 1)[-1] in TABLES and key in tensors:
            buf.resize_(tensors[key].shape)


class EntropyHead(BottleneckHead):
    """A ``BottleneckHead`` whose bottleneck is entropy coded; ``beta`` is recorded in
    ``spec`` (it shaped the training, the model does not use it)."""

    def __init__(self, in_shape, out_shape, channels: int, width: int = 64,
                 extra_downsample: int = 0, encoder_layers: int = 0, decoder_layers: int = 1,
                 beta: float = 1e-3):
        super().__init__(in_shape, out_shape, channels, width, extra_downsample,
                         encoder_layers, decoder_layers)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise UsageError(f"bottleneck beta must be a number >= 0, got {beta!r}")
        self.entropy = entropy_bottleneck(channels)
        self.spec.update(kind="entropy", beta=float(beta))

    def rate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z as the decoder receives it, bits per sample under the model). The bits
        are taken on noised values (a differentiable rate), but the decoder always gets
        the rounded ones the coder sends, in training through a straight-through
        gradient: trained on noise alone, the decoder lost up to 50 points of accuracy
        on rounded values (0.74 -> 0.25 at beta 0.002, 2026-12-03 study)."""
        z = self.encoder(x)
        noised, likelihoods = self.entropy(z)
        bits = -torch.log2(likelihoods).sum() / x.shape[0]
        if not self.training:
            return noised, bits  # eval mode: already the coder's round(z - median) + median
        medians = self.entropy._get_medians().detach().reshape(1, -1, 1, 1)
        return z + (torch.round(z - medians) + medians - z).detach(), bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.rate(x)[0])

    def aux_loss(self) -> torch.Tensor:
        """CompressAI's auxiliary loss: fits the quantiles (the coder's value range) alone."""
        return self.entropy.loss()

    def refit_density(self, batches, steps: int, lr: float = 0.01) -> None:
        """Fit only the density (and the coder's range) to the trained encoder's outputs
        on ``batches`` (image tensors), ``steps`` Adam steps, the medians kept: it changes
        no value that is sent, only how well it is coded, and is cheap (one encoder pass
        per step). Short trainings leave the density far wider than the values
        (``INIT_SCALE``). A moved median would shift every value the decoder gets (all
        ReLU zeros by the same offset): that cost 30-60 points in the first study run."""
        if steps <= 0:
            return
        was_training = self.training
        self.eval()
        with torch.no_grad():
            zs = [self.encoder(x) for x in batches]
        medians = self.entropy.quantiles.detach()[:, :, 1].clone()
        self.entropy.train()
        opt = torch.optim.Adam(self.entropy.parameters(), lr=lr)
        for i in range(steps):
            _, likelihoods = self.entropy(zs[i % len(zs)])
            loss = -torch.log2(likelihoods).mean() + self.aux_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():  # the values sent are round(z - median) + median: keep them
            self.entropy.quantiles[:, :, 1] = medians
        self.train(was_training)

    @torch.no_grad()
    def fix_tables(self) -> None:
        """Build the integer CDF tables from the trained density: once, after training."""
        self.entropy.update(force=True)


class EntropyCodec:
    """The coder of one trained entropy bottleneck, numpy in and out (device and server)."""

    def __init__(self, bottleneck: nn.Module):
        if not bottleneck._quantized_cdf.numel():
            raise UsageError("the entropy bottleneck has no CDF tables (train it first)")
        self.bottleneck = bottleneck.eval()

    @classmethod
    def from_dir(cls, bottleneck_dir: str | Path) -> EntropyCodec:
        """The codec stored by training in ``BOTTLENECK/entropy.safetensors``."""
        from safetensors.torch import load_file

        path = Path(bottleneck_dir) / TABLES_FILE
        if not path.is_file():
            raise UsageError(f"{bottleneck_dir} has no {TABLES_FILE}: it is not an entropy "
                             "bottleneck, or its training did not finish")
        tensors = load_file(str(path))
        model = entropy_bottleneck(int(tensors["quantiles"].shape[0]))
        fit_tables(model, tensors)
        model.load_state_dict(tensors)
        return cls(model)

    def save(self, bottleneck_dir: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(bottleneck_dir) / TABLES_FILE
        save_file({k: v.contiguous() for k, v in self.bottleneck.state_dict().items()},
                  str(path))
        return path

    def encode(self, z: np.ndarray) -> list[bytes]:
        """One rANS bitstream per sample of ``z`` (N, C, H, W)."""
        with torch.inference_mode():
            return self.bottleneck.compress(torch.from_numpy(np.ascontiguousarray(z,
                                                                                  np.float32)))

    def decode(self, streams: list[bytes], shape) -> np.ndarray:
        """The values (medians + integer symbols) of ``streams`` for a tensor of ``shape``."""
        if len(shape) != 4 or shape[0] != len(streams) or shape[1] != self.channels:
            raise UsageError(f"{len(streams)} streams do not fit shape {tuple(shape)} for "
                             f"{self.channels} channels")
        with torch.inference_mode():
            out = self.bottleneck.decompress(list(streams), tuple(shape[2:])).numpy()
        return np.ascontiguousarray(out, np.float32)

    @property
    def channels(self) -> int:
        return int(self.bottleneck.quantiles.shape[0])
