"""Device profiles: what a target device can store, how fast it computes, how long an
inference may take.

A ``DeviceProfile`` is a YAML file (or a built-in name). Budgets accept human units
(``storage_bytes: 2MB``, ``max_time_ms: 15ms``, ``flops_per_s: 5GFLOPS``). Latency is
predicted by the profile's ``latency_model`` when it has one (written by
``edgedistill profile-device`` on the device itself), else as FLOPs / ``flops_per_s`` +
``overhead_ms``. Built-in profiles are device *classes* with budgets a user would
typically start from; their ``source`` says which numbers are published and which are
our assumptions, so they can be replaced by a measured profile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BeforeValidator, Field, model_validator

from edgedistill.config import Strict, validate
from edgedistill.design.latency import LatencyModel
from edgedistill.design.trace import Op
from edgedistill.design.units import fmt_bytes, fmt_flops, parse_bytes, parse_flops, parse_ms
from edgedistill.errors import UsageError


def _unit(parse):
    return BeforeValidator(lambda v: v if v is None else parse(v, ""))


Bytes = Annotated[int, _unit(parse_bytes), Field(gt=0)]
Millis = Annotated[float, _unit(parse_ms), Field(gt=0)]
FlopsPerS = Annotated[float, _unit(parse_flops), Field(gt=0)]


class DeviceProfile(Strict):
    name: str = "device"
    source: str = Field("", description="where the numbers come from")
    storage_bytes: Bytes | None = Field(None, description="storage free for the weights")
    max_time_ms: Millis | None = Field(None, description="longest time one inference may take")
    flops_per_s: FlopsPerS | None = Field(None, description="sustained compute speed")
    overhead_ms: float = Field(0.0, ge=0, description="fixed cost per inference (FLOPs model)")
    activation_bytes: Bytes | None = Field(None, description="memory for activations")
    batch: int = Field(1, gt=0)
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    threads: int = Field(1, gt=0)
    latency_model: LatencyModel | None = None

    @model_validator(mode="after")
    def _can_predict_time(self) -> DeviceProfile:
        if self.max_time_ms is not None and not self.can_predict_latency:
            raise ValueError("max_time_ms needs flops_per_s or a latency_model (from "
                             "`edgedistill profile-device`) to predict latency")
        return self

    @property
    def can_predict_latency(self) -> bool:
        return self.flops_per_s is not None or self.latency_model is not None

    def predict_ms(self, ops: list[Op]) -> float | None:
        """Latency of one inference of ``batch`` inputs whose traced ops are ``ops``."""
        if self.latency_model is not None:
            return self.latency_model.predict_ms(ops)
        if self.flops_per_s is not None:
            return sum(op.flops for op in ops) / self.flops_per_s * 1e3 + self.overhead_ms
        return None

    def latency_method(self) -> str:
        if self.latency_model is not None:
            m = self.latency_model
            return (f"per-op latency model ({m.benchmarks} ONNX Runtime micro-benchmarks on "
                    f"{m.measured_on}, {m.threads} thread(s), {m.date})")
        if self.flops_per_s is not None:
            return f"FLOPs / {fmt_flops(self.flops_per_s, per_s=True)} + {self.overhead_ms} ms"
        return "none (no speed given)"

    def budgets(self) -> list[str]:
        out = []
        if self.storage_bytes:
            out.append(f"storage {fmt_bytes(self.storage_bytes)} ({self.precision} weights)")
        if self.max_time_ms:
            out.append(f"max time {self.max_time_ms:g} ms (batch {self.batch})")
        if self.activation_bytes:
            out.append(f"activations {fmt_bytes(self.activation_bytes)}")
        return out


BUILTIN: dict[str, DeviceProfile] = {
    "rpi4": DeviceProfile(
        name="rpi4", storage_bytes=8_000_000, max_time_ms=30, flops_per_s=4e9, threads=4,
        source=("Raspberry-Pi-4-class CPU (4x Cortex-A72, 1.5 GHz). Published: HPL Linpack "
                "~8 GFLOPS fp64 on 4 cores (B. Feiereisen, 'Benchmarking the Raspberry Pi 4 "
                "with Raspberry Pi OS64', 2022). Assumed: 4 GFLOP/s sustained for batch-1 "
                "CNN inference; 8 MB for the model; 30 ms per frame (~30 fps).")),
    "jetson-nano": DeviceProfile(
        name="jetson-nano", storage_bytes=64_000_000, max_time_ms=10, flops_per_s=100e9,
        overhead_ms=1.0, precision="fp16",
        source=("Jetson-Nano-class GPU (128 Maxwell CUDA cores, 921 MHz). Published: 472 "
                "GFLOPS fp16 peak (NVIDIA Jetson Nano datasheet). Assumed: ~20% of peak "
                "(100 GFLOP/s) sustained on small batch-1 CNNs plus 1 ms launch and copy "
                "overhead; 64 MB for the model; 10 ms per inference.")),
    "mcu": DeviceProfile(
        name="mcu", storage_bytes=800_000, activation_bytes=256_000, max_time_ms=200,
        flops_per_s=0.25e9, precision="int8",
        source=("Microcontroller-class budget (STM32F746: Cortex-M7 216 MHz, 1 MB flash, "
                "320 KB SRAM; the board of MCUNet, Lin et al., NeurIPS 2020). Published: "
                "those memory sizes. Assumed: int8 CMSIS-NN kernels sustaining ~30% of the "
                "2-MAC/cycle SIMD peak (0.86 GOP/s) = 0.25 GOP/s; 800 KB of flash and 256 KB "
                "of SRAM left for the model after firmware; 200 ms per inference.")),
}


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A built-in profile name or a YAML file with ``DeviceProfile`` keys."""
    key = str(name_or_path)
    if key in BUILTIN:
        return BUILTIN[key]
    path = Path(key)
    if not path.is_file():
        raise UsageError(f"device profile {key!r} is neither built in ({', '.join(BUILTIN)}) "
                         "nor a YAML file; `edgedistill profile-device` writes one")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: a device profile is a mapping of keys")
    return validate({"name": path.stem, **raw}, DeviceProfile, str(path))


def save_profile(profile: DeviceProfile, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "".join(f"# {line}\n" for line in [f"device profile {profile.name!r}",
                                                *profile.budgets(),
                                                f"latency: {profile.latency_method()}"])
    body = yaml.safe_dump(profile.model_dump(mode="json", exclude_none=True), sort_keys=False)
    path.write_text(header + body)
    return path


def with_overrides(profile: DeviceProfile, **updates) -> DeviceProfile:
    """The profile with CLI values (human units allowed) replacing its own; None keeps one."""
    raw = {**profile.model_dump(), **{k: v for k, v in updates.items() if v is not None}}
    return validate(raw, DeviceProfile, f"device profile {profile.name!r}")
