"""Where to run the model, for a given bandwidth: the latency arithmetic of the plan.

Every option is compute on the device, optionally a request to the server, and
compute there. For a link of ``mbit`` Mbit/s and round-trip time ``rtt_ms``::

    local   latency = device_ms
    remote  latency = device_ms + rtt_ms + rpc_overhead_ms
                      + 8 * (up_bytes + down_bytes) / (1000 * mbit) + server_ms

``up_bytes`` is the whole request (request line, headers, body), ``down_bytes`` the
whole response, ``rpc_overhead_ms`` the fixed per-request cost that is neither compute
nor link: both HTTP stacks, the client's request handling and the server's event
loop, calibrated on real requests (``measure.calibrate_overhead_ms``). The
fastest option whose accuracy is within ``tolerance`` of the reference (the
teacher's) is marked at each bandwidth. Compute times come from a
``ComputeProfile``: latencies measured on this host times ``slowdown``, or FLOPs
over ``gflops`` when the profile gives a throughput instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from pydantic import Field

from edgedistill.config import Strict, validate
from edgedistill.errors import UsageError


class ComputeProfile(Strict):
    """How fast a machine runs models, relative to measurements taken on this host."""

    name: str = "host"
    slowdown: float = Field(1.0, gt=0, description="x latency measured here (1 thread)")
    gflops: float | None = Field(None, gt=0, description="if set: FLOPs / gflops instead")
    overhead_ms: float = Field(0.0, ge=0, description="fixed cost per model call")

    def model_ms(self, measured_ms: float, flops: float | None = None) -> float:
        """One model call: FLOPs over ``gflops`` if both are known, else scaled host time."""
        if self.gflops is not None and flops is not None:
            return flops / (self.gflops * 1e6) + self.overhead_ms
        return measured_ms * self.slowdown + self.overhead_ms

    def work_ms(self, measured_ms: float) -> float:
        """Other work (image coding, quantization, wire format): scaled host time."""
        return measured_ms * self.slowdown


BUILTIN = {"host": ComputeProfile()}


def yaml_where(err: yaml.YAMLError) -> str:
    """Where and what a YAML error is, on one line (PyYAML's own text spans several)."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None)
    return where + (f": {problem}" if problem else "")


def load_profile(name_or_path: str) -> ComputeProfile:
    """A built-in profile name (``host``) or a YAML file with ``ComputeProfile`` keys."""
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise UsageError(f"profile {name_or_path!r} is neither built in "
                         f"({', '.join(BUILTIN)}) nor a YAML file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"profile {path}: not valid YAML{yaml_where(err)}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"profile {path}: cannot read it as text ({err})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: a profile is a mapping of keys")
    return validate({"name": path.stem, **raw}, ComputeProfile, str(path))


KINDS = ("teacher", "local", "input", "split")  # teacher on device, small model, send input


@dataclass(frozen=True)
class Option:
    """One way to get a prediction; ``remote`` options cross the network once. ``kind``
    says which alternative it is: ``local`` is a small model entirely on the device."""

    name: str
    accuracy: float
    device_ms: float
    server_ms: float = 0.0
    up_bytes: float = 0.0
    down_bytes: float = 0.0
    remote: bool = False
    kind: str = "split"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise UsageError(f"option {self.name!r}: kind {self.kind!r} is not one of "
                             f"{', '.join(KINDS)}")

    def latency_ms(self, mbit: float, rtt_ms: float = 0.0, rpc_overhead_ms: float = 0.0) -> float:
        if not self.remote:
            return self.device_ms
        transfer = 8 * (self.up_bytes + self.down_bytes) / (1000 * mbit)
        return self.device_ms + rtt_ms + rpc_overhead_ms + transfer + self.server_ms


def plan(options: list[Option], bandwidths: list[float], reference_acc: float,
         tolerance: float, rtt_ms: float = 0.0, rpc_overhead_ms: float = 0.0) -> list[dict]:
    """One row per bandwidth: every option's latency and the fastest eligible option."""
    if not options:
        raise UsageError("nothing to plan: no options")
    if not bandwidths or any(b <= 0 for b in bandwidths):
        raise UsageError(f"bandwidths must be positive Mbit/s values, got {bandwidths}")
    eligible = [o for o in options if o.accuracy >= reference_acc - tolerance - 1e-12]
    rows = []
    for mbit in sorted(bandwidths):
        latency = {o.name: o.latency_ms(mbit, rtt_ms, rpc_overhead_ms) for o in options}
        best = min(eligible, key=lambda o: latency[o.name]).name if eligible else None
        rows.append({"mbit": mbit, "latency_ms": latency, "best": best})
    return rows


def split_vs_local(options: list[Option], rows: list[dict]) -> list[dict]:
    """For each local model, the bandwidths where a split option at equal or higher
    accuracy is faster: per row, the fastest such split and its latency (or None)."""
    splits = [o for o in options if o.kind == "split"]
    out = []
    for local in (o for o in options if o.kind == "local"):
        rivals = [o for o in splits if o.accuracy >= local.accuracy - 1e-12]
        points = []
        for row in rows:
            lat = row["latency_ms"]
            best = min(rivals, key=lambda o: lat[o.name], default=None)
            wins = best is not None and lat[best.name] < lat[local.name]
            points.append({"mbit": row["mbit"], "split": best.name if best else None,
                           "split_ms": lat[best.name] if best else None,
                           "local_ms": lat[local.name], "split_wins": wins})
        out.append({"local": local.name, "accuracy": local.accuracy,
                    "wins_at_mbit": [p["mbit"] for p in points if p["split_wins"]],
                    "points": points})
    return out


def breakdown(option: Option, rtt_ms: float = 0.0, rpc_overhead_ms: float = 0.0) -> dict:
    """The terms of ``option.latency_ms``: ``transfer_ms_at_1mbit`` is divided by the
    bandwidth in Mbit/s, the other terms are fixed."""
    remote = option.remote
    return {"device_ms": option.device_ms, "rtt_ms": rtt_ms if remote else 0.0,
            "overhead_ms": rpc_overhead_ms if remote else 0.0,
            "transfer_ms_at_1mbit": 8 * (option.up_bytes + option.down_bytes) / 1000
            if remote else 0.0,
            "server_ms": option.server_ms}


def plan_markdown(options: list[Option], rows: list[dict], reference_acc: float,
                  tolerance: float, settings: dict, rtt_ms: float = 0.0,
                  rpc_overhead_ms: float = 0.0) -> str:
    """The options (accuracy, bytes, each latency term) and the latency per bandwidth,
    best in bold."""
    lines = [f"# split plan ({', '.join(f'{k} {v}' for k, v in settings.items())})", "",
             f"Eligible: accuracy >= {reference_acc:.4f} - {tolerance} (teacher - tolerance).",
             "", "Latency = device + rtt + request overhead + transfer at 1 Mbit/s / Mbit/s "
             "+ server (remote options; local ones: device only).",
             "", "| option | accuracy | up bytes | down bytes | device ms | rtt ms | "
             "request overhead ms | transfer ms at 1 Mbit/s | server ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for o in options:
        b = breakdown(o, rtt_ms, rpc_overhead_ms)
        lines.append(f"| {o.name} | {o.accuracy:.4f} | {o.up_bytes:.0f} | {o.down_bytes:.0f} | "
                     f"{b['device_ms']:.3f} | {b['rtt_ms']:.3f} | {b['overhead_ms']:.3f} | "
                     f"{b['transfer_ms_at_1mbit']:.3f} | {b['server_ms']:.3f} |")
    lines += ["", "| Mbit/s | " + " | ".join(o.name for o in options) + " | best |",
              "|---|" + "---|" * (len(options) + 1)]
    for row in rows:
        cells = [f"**{row['latency_ms'][o.name]:.2f}**" if o.name == row["best"]
                 else f"{row['latency_ms'][o.name]:.2f}" for o in options]
        lines.append(f"| {row['mbit']:g} | " + " | ".join(cells) + f" | {row['best']} |")
    for cmp in split_vs_local(options, rows):
        wins = ", ".join(f"{m:g}" for m in cmp["wins_at_mbit"]) or "none"
        lines += ["", f"Split at accuracy >= {cmp['local']} ({cmp['accuracy']:.4f}) is faster "
                      f"than it at Mbit/s: {wins}."]
    return "\n".join(lines) + "\n"


def plot_plan(options: list[Option], rows: list[dict], path: Path) -> Path:
    """Latency against bandwidth (log x), one line per option (dashed: local models,
    dotted: the teacher on the device, dash-dot: input sent), the best marked per point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mbits = [r["mbit"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"teacher": ":", "local": "--", "input": "-.", "split": "-"}
    for o in options:
        ax.plot(mbits, [r["latency_ms"][o.name] for r in rows], styles[o.kind], marker="o",
                ms=3, label=f"{o.name} (acc {o.accuracy:.3f})")
    best = [(r["mbit"], r["latency_ms"][r["best"]]) for r in rows if r["best"]]
    if best:
        ax.scatter(*zip(*best, strict=True), s=90, facecolors="none", edgecolors="k",
                   label="fastest within tolerance", zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("bandwidth (Mbit/s)")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def options_json(options: list[Option], rtt_ms: float = 0.0,
                 rpc_overhead_ms: float = 0.0) -> list[dict]:
    """Each option's fields and its latency terms (``breakdown``)."""
    return [{**asdict(o), "breakdown": breakdown(o, rtt_ms, rpc_overhead_ms)} for o in options]
