"""The ``edgedistill split train`` YAML: teacher and split point, bottlenecks, HND, wire.

Everything that shapes the trained heads or the bytes on the wire is here, so the
resolved ``config.yaml`` in a run directory records every design choice.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from edgedistill.config import OptimizerConfig, RunBase, Strict
from edgedistill.config.models import ModelConfig, model_mapping


class SplitTeacherConfig(Strict):
    source: str | ModelConfig = Field(
        ..., description="zoo:NAME, a run directory, a weights file, or a model "
        "({factory: pkg.mod:fn, weights: PATH} or {name: torchvision:NAME, weights: PATH})")
    split_at: str = Field(..., description="module path or alias (stage1, layer2, ...)")

    @field_validator("source", mode="before")
    @classmethod
    def _model_source(cls, value: Any) -> Any:
        return model_mapping(value) if isinstance(value, dict) else value


class BottleneckConfig(Strict):
    """One head is trained per entry of ``channels`` (x ``betas``); the other keys are shared."""

    channels: list[int] = Field([1, 2, 4, 8], min_length=1)
    width: int = Field(64, ge=1, description="channels inside encoder and decoder")
    extra_downsample: int = Field(0, ge=0, description="halvings beyond the teacher head's")
    encoder_layers: int = Field(0, ge=0, description="stride-1 conv blocks after downsampling")
    decoder_layers: int = Field(1, ge=0, description="conv blocks after upsampling")
    betas: list[float] = Field([], description=(
        "entropy-coded heads (CompressAI EntropyBottleneck), one per channels x beta, "
        "trained on task loss + beta * bits per sample; empty: 8-bit heads"))
    density_steps: int = Field(300, ge=0, description=(
        "entropy heads: Adam steps that refit only the density to the trained encoder's "
        "outputs before its tables are fixed (changes the bytes, not the values sent)"))

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[int]) -> list[int]:
        if any(c < 1 or c > 256 for c in value) or len(set(value)) != len(value):
            raise ValueError("bottleneck channels must be distinct integers in 1..256")
        return value

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: list[float]) -> list[float]:
        if any(not b >= 0 for b in value) or len(set(value)) != len(value):
            raise ValueError("bottleneck betas must be distinct numbers >= 0, e.g. [0.001, 0.01]")
        return value


class HNDConfig(Strict):
    """Head network distillation: MSE between student and teacher head outputs.

    ``tail_layers`` turns on generalized HND: the outputs of these tail modules
    (teacher module paths after the split point) are matched too, each with
    ``tail_weight``, by running the frozen tail on both head outputs.
    """

    tail_layers: list[str] = []
    tail_weight: float = Field(1.0, ge=0)


class FinetuneConfig(Strict):
    """Optional second stage: KD on the final output through the frozen tail.

    Trains each HND head further into a sibling run ``c<N>-kd``; ``epochs: 0`` skips it.
    """

    epochs: int = Field(0, ge=0)
    temperature: float = Field(4.0, gt=0)
    kd_weight: float = Field(1.0, ge=0)
    ce_weight: float = Field(0.0, ge=0)
    optimizer: OptimizerConfig = OptimizerConfig(name="adam", lr=1e-4, weight_decay=0.0)


class WireConfig(Strict):
    """How the bottleneck is sent: 8-bit affine codes, optional lossless compression."""

    per_channel: bool = False
    compression: Literal["auto", "none", "zlib", "zstd"] = Field(
        "auto", description="auto: zlib only when it makes the message smaller")
    level: int | None = Field(None, ge=1, le=22, description="zlib 1-9, zstd 1-22")


class InputConfig(Strict):
    """Resize the dataset's images before anything sees them (the upscaled setting).

    ``size`` is the side in pixels (bilinear), ``channels`` 1 or 3 (grey copied to RGB).
    The teacher must have been trained on the same resized images.
    """

    size: int | None = Field(None, ge=8)
    channels: Literal[1, 3] | None = None


class SplitExperiment(RunBase):
    """``edgedistill split train``: one teacher, one split point, one head per bottleneck."""

    teacher: SplitTeacherConfig
    bottleneck: BottleneckConfig = BottleneckConfig()
    hnd: HNDConfig = HNDConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    wire: WireConfig = WireConfig()
    input: InputConfig = InputConfig()
    tolerance: float = Field(0.01, ge=0, le=1,
                             description="accuracy the chosen bottleneck may lose vs teacher")
