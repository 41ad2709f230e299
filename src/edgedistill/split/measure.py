"""Measure every part of a split run on this host and turn it into planner options.

Models run at batch 1 with one thread: the encoder and local models in ONNX Runtime
(what a device would use), the server parts in the server's backend. Every device
step is timed as the client runs it, on real test images: ``normalize + model`` as
one call for the teacher, a local model and a head; quantize + wire format; image
encoding. Profiles then scale these host times to the device and the server.

The per-request cost that is neither compute nor link (both HTTP stacks, the
client's own request handling, the server's event loop) is calibrated on real
requests through the real client and a link that costs nothing
(``calibrate_overhead_ms``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from torch import nn

from edgedistill.split.client import bottleneck_codec, request_bytes
from edgedistill.split.images import FORMATS, decode_image, encode_image, normalize_uint8
from edgedistill.split.model import load_split, read_meta
from edgedistill.split.planner import ComputeProfile, Option
from edgedistill.split.shaper import precise_sleep
from edgedistill.split.wire import MEDIA_TYPE

RESPONSE_BYTES = 230  # status line, uvicorn's 4 headers and a one-prediction JSON body
REPEATS = 30
GAP_S = 0.01
FREE_MBIT = 1e6  # a link this fast costs nothing measurable: what calibration sends over


def interleaved_ms(steps: dict[str, tuple[Callable, Sequence[tuple]]],
                   repeats: int = REPEATS, warmup: int = 3, gap_s: float = GAP_S
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall time and median CPU time (this thread's) of every named
    ``(fn, inputs)`` step, timed round robin: call i of each step, then call i + 1 of
    each. A burst of load on a shared host then lands on every step alike instead of
    on whichever one was being timed (timed one after another, a PNG encode moved from
    0.35 to 0.58 ms between two plans minutes apart), and each step runs with caches
    cooled by the others, as in a measured run. Every call follows ``gap_s`` of idleness:
    requests arrive one at a time, and on this host a call after 5+ ms idle takes ~40%
    longer than in a back-to-back loop (caches, clocks). The wait is the emulator's own
    (``precise_sleep``), so calibration and runs idle alike."""
    for i in range(warmup):
        for fn, inputs in steps.values():
            fn(*inputs[i % len(inputs)])
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(repeats):
        for name, (fn, inputs) in steps.items():
            precise_sleep(gap_s)
            tic, cpu_tic = time.perf_counter(), time.thread_time()
            fn(*inputs[i % len(inputs)])
            cpu[name].append((time.thread_time() - cpu_tic) * 1e3)
            wall[name].append((time.perf_counter() - tic) * 1e3)
    return ({name: statistics.median(v) for name, v in wall.items()},
            {name: statistics.median(v) for name, v in cpu.items()})


def onnx_step(module: nn.Module, shape, path: Path, mean=None, std=None) -> Callable:
    """``module`` exported to ONNX Runtime (1 thread) as one callable on a batch-1 input:
    uint8 (C, H, W) images normalized first when ``mean``/``std`` are given, as the
    client does; float arrays as they are otherwise."""
    from edgedistill.export.onnx import export_onnx, run_session, session

    sess = session(export_onnx(module.eval(), (1, *shape), path), threads=1)
    if mean is None:
        return lambda x: run_session(sess, x[None])
    return lambda image: run_session(sess, normalize_uint8(image[None], mean, std))


def server_step(module: nn.Module, shape, backend: str, path: Path) -> Callable:
    """``module`` in the server's backend, as one callable on one float (C, H, W) input."""
    if backend == "onnx":
        return onnx_step(module, shape, path)
    module = module.eval()

    def run(x: np.ndarray):
        with torch.inference_mode():
            return module(torch.from_numpy(x[None]))

    return run


def header_bytes(path: str, content_type: str, token_chars: int = 43,
                 host: str = "http://10.0.0.2:8000") -> int:
    """Request line + headers that ``SplitClient`` sends (43 chars: token_urlsafe(32))."""
    request = httpx.Request("POST", host + path, headers={
        "Host": host.split("//")[1], "Accept": "*/*", "Accept-Encoding": "gzip, deflate",
        "Connection": "keep-alive", "User-Agent": f"python-httpx/{httpx.__version__}",
        "Authorization": "Bearer " + "x" * token_chars, "Content-Type": content_type,
        "Content-Length": "1000"})
    return request_bytes(request, 0)


def split_options(run_dir: Path, test_images: np.ndarray, device: ComputeProfile,
                  server: ComputeProfile, server_backend: str = "onnx",
                  samples: int = 10) -> tuple[list[Option], dict[str, Any]]:
    """Options (a) teacher on the device, (c) input sent per format, (d) each bottleneck.

    A model step on the device is ``normalize + model``, timed as one call; a profile
    with ``gflops`` replaces its model part (step minus normalize) by FLOPs/throughput.
    All steps are timed together by ``interleaved_ms``. Device steps count in CPU
    time, the work a device k times slower does k times over (as ``SplitClient``
    emulates it); server steps in wall time, as the server on this host runs them.
    """
    meta = read_meta(run_dir)
    shape = tuple(meta["input_shape"])
    mean, std = meta["mean"], meta["std"]
    images = [(im,) for im in test_images[:samples]]
    x = normalize_uint8(test_images[:samples], mean, std)
    first = load_split(run_dir / meta["bottlenecks"][0]["name"])
    teacher_onnx = run_dir / "export" / "teacher.onnx"
    steps = {
        "normalize": (normalize_uint8, [(im[None], mean, std) for (im,) in images]),
        "teacher device": (onnx_step(first.teacher, shape, teacher_onnx, mean, std), images),
        "teacher server": (server_step(first.teacher, shape, server_backend, teacher_onnx),
                           [(xi,) for xi in x])}
    for fmt in FORMATS:
        steps[f"{fmt} encode"] = (encode_image, [(im, fmt) for (im,) in images])
        steps[f"{fmt} decode"] = (decode_image, [(encode_image(im, fmt), shape[0])
                                                 for (im,) in images])
    for row in meta["bottlenecks"]:
        bdir = run_dir / row["name"]
        model = load_split(bdir)
        with torch.inference_mode():
            z = model.device_part(torch.from_numpy(x)).numpy()
        to_wire, from_wire = bottleneck_codec(run_dir, row["name"], meta["wire"])
        zs = [(z[i:i + 1],) for i in range(len(z))]
        steps[f"{row['name']} head"] = (
            onnx_step(model.device_part, shape, bdir / "head.onnx", mean, std), images)
        steps[f"{row['name']} tail"] = (
            server_step(model.server_part(), tuple(row["bottleneck_shape"]), server_backend,
                        bdir / "export" / "server.onnx"), [(zi,) for zi in z])
        steps[f"{row['name']} encode"] = (to_wire, zs)
        steps[f"{row['name']} decode"] = (from_wire, [(to_wire(*zi),) for zi in zs])
    wall, cpu = interleaved_ms(steps)
    device_steps = {"normalize", "teacher device", *(f"{fmt} encode" for fmt in FORMATS),
                    *(f"{row['name']} {part}" for row in meta["bottlenecks"]
                      for part in ("head", "encode"))}
    ms = {name: cpu[name] if name in device_steps else wall[name] for name in steps}
    norm = ms["normalize"]
    teacher_flops = meta["bottlenecks"][0]["teacher_flops"]
    measured: dict[str, Any] = {"wall_ms": wall, "cpu_ms": cpu, "normalize_ms": norm,
                                "teacher": {"device_step_ms": ms["teacher device"],
                                            f"{server_backend}_ms": ms["teacher server"]}}
    options = [Option("teacher on device", meta["teacher_acc"],
                      device.model_ms(ms["teacher device"] - norm, teacher_flops)
                      + device.work_ms(norm), kind="teacher")]
    for fmt in FORMATS:
        enc, dec = ms[f"{fmt} encode"], ms[f"{fmt} decode"]
        measured[fmt] = {"encode_ms": enc, "decode_ms": dec}
        kind = "image/png" if fmt == "png" else "image/jpeg"
        info = meta["inputs"][fmt]
        options.append(Option(
            f"send {fmt}", info["acc"], device.work_ms(enc),
            server.work_ms(dec + wall["normalize"])
            + server.model_ms(ms["teacher server"], teacher_flops),
            header_bytes("/v1/classify", kind) + info["bytes_mean"], RESPONSE_BYTES, True,
            "input"))
    for row in meta["bottlenecks"]:
        name = row["name"]
        head, tail = ms[f"{name} head"], ms[f"{name} tail"]
        enc, dec = ms[f"{name} encode"], ms[f"{name} decode"]
        measured[name] = {"head_step_ms": head, "encode_ms": enc, "decode_ms": dec,
                          "server_ms": tail}
        options.append(Option(
            f"split {name}", row["acc_quantized"],
            device.model_ms(head - norm, row["head_flops"]) + device.work_ms(norm + enc),
            server.work_ms(dec) + server.model_ms(tail, row["decoder_flops"] + row["tail_flops"]),
            header_bytes("/v1/split", MEDIA_TYPE) + row["bytes_per_sample"], RESPONSE_BYTES,
            True))
    return options, measured


def local_option(source: str, test_pipe, test_images: np.ndarray, meta: dict,
                 device: ComputeProfile, run_dir: Path, normalize_ms: float,
                 samples: int = 10) -> tuple[Option, dict]:
    """Option (b): a small model (zoo:NAME, run dir, weights) entirely on the device."""
    from edgedistill import api
    from edgedistill.models import count_flops, student_name
    from edgedistill.train.trainer import evaluate

    model = api.load_model(source)
    acc = evaluate(model, test_pipe, torch.device("cpu"))["acc"]
    name = student_name(model.spec)
    shape = tuple(meta["input_shape"])
    step = onnx_step(model, shape, run_dir / "export" / f"local-{name}.onnx", meta["mean"],
                     meta["std"])
    _, cpu = interleaved_ms({"local": (step, [(im,) for im in test_images[:samples]])})
    ms = cpu["local"]
    device_ms = (device.model_ms(ms - normalize_ms, count_flops(model, shape))
                 + device.work_ms(normalize_ms))
    return (Option(f"local {name}", acc, device_ms, kind="local"),
            {"device_step_ms": ms, "acc": acc, "source": source})


def health_rtt_ms(server_url: str, repeats: int = 30) -> float:
    """Median round trip of ``GET /health``: what the two HTTP stacks cost per request."""
    with httpx.Client(base_url=server_url.rstrip("/"), timeout=10) as http:
        def ping():
            http.get("/health").raise_for_status()

        return interleaved_ms({"ping": (ping, [()])}, repeats=repeats, gap_s=0)[0]["ping"]


def request_overhead_ms(timing: dict[str, float]) -> float:
    """What one request cost beyond device and server compute: ``total`` minus the
    device steps (``head``, ``encode``) and the server's decode + model (``tail``).
    Over a link that costs nothing this is both HTTP stacks, the client's request
    handling and the server's event loop (``queue`` included)."""
    return timing["total"] - timing["head"] - timing["encode"] - timing["tail"]


def calibrate_overhead_ms(client, images: np.ndarray, repeats: int = REPEATS,
                          gap_s: float = GAP_S, warmup: int = 20) -> dict[str, float]:
    """Median ``request_overhead_ms`` of real requests, alternating ``/v1/split`` and
    ``/v1/classify`` (PNG), each after ``gap_s`` idle as in a run.

    ``client`` is a ``SplitClient`` with no device slowdown and a ``Link`` of
    ``FREE_MBIT`` and no delay: the requests take the shaped code path (body released
    by the link, response held) and the link itself adds nothing.
    """
    calls = {"split": lambda im: client.infer(im[None])["timing_ms"],
             "classify": lambda im: client.classify(im, "png")["timing_ms"]}
    for i in range(warmup):  # a server just started answers its first requests slowly
        for call in calls.values():
            call(images[i % len(images)])
    costs: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(repeats):
        for name, call in calls.items():
            precise_sleep(gap_s)
            costs[name].append(request_overhead_ms(call(images[i % len(images)])))
    return {"overhead_ms": statistics.median(costs["split"] + costs["classify"]),
            "split_ms": statistics.median(costs["split"]),
            "classify_ms": statistics.median(costs["classify"]),
            "requests": 2 * repeats}


def calibrate_on_server(run_dir: Path, server_url: str, token: str, images: np.ndarray
                        ) -> dict[str, float]:
    """``calibrate_overhead_ms`` with a fresh client of ``run_dir`` on ``server_url``."""
    from edgedistill.split.client import SplitClient
    from edgedistill.split.shaper import Link

    with SplitClient(run_dir, server_url, token, link=Link(FREE_MBIT)) as client:
        return calibrate_overhead_ms(client, images)


def run_plan(run_dir: str | Path, device: ComputeProfile, server: ComputeProfile,
             bandwidths: list[float], local_models: list[str] = (), rtt_ms: float = 0.0,
             rpc_overhead_ms: float | None = None, server_url: str | None = None,
             server_backend: str = "onnx", out: str | Path | None = None,
             token: str | None = None) -> dict[str, Any]:
    """Measure, plan, and write ``plan.json``, ``plan.md`` and the plot under ``out``.

    The per-request overhead is ``rpc_overhead_ms`` when given; else calibrated on
    real requests to ``server_url`` when a ``token`` is given too
    (``calibrate_overhead_ms``); else the ``GET /health`` round trip of
    ``server_url`` (HTTP alone: a lower bound); else 2 ms.
    """
    import json

    from edgedistill import api
    from edgedistill.config import load_config
    from edgedistill.config.split import SplitExperiment
    from edgedistill.split.planner import (
        options_json,
        plan,
        plan_markdown,
        plot_plan,
        split_vs_local,
    )
    from edgedistill.split.train import load_split_data

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    torch.set_num_threads(1)
    cfg = load_config(run_dir / "config.yaml", SplitExperiment)
    train_data, test_data = load_split_data(cfg)
    options, measured = split_options(run_dir, test_data.images.numpy(), device, server,
                                      server_backend)
    if local_models:
        _, test_pipe = api.build_pipelines(cfg.data, train_data, test_data, cfg.seed,
                                           torch.device("cpu"))
        for source in local_models:
            option, info = local_option(source, test_pipe, test_data.images.numpy(), meta,
                                        device, run_dir, measured["normalize_ms"])
            options.insert(1, option)
            measured[option.name] = info
    if rpc_overhead_ms is not None:
        calibration = {"method": "given", "overhead_ms": rpc_overhead_ms}
    elif server_url and token:
        calibration = {"method": "requests", **calibrate_on_server(
            run_dir, server_url, token, test_data.images.numpy()[:10])}
    elif server_url:
        calibration = {"method": "health", "overhead_ms": health_rtt_ms(server_url)}
    else:
        calibration = {"method": "default", "overhead_ms": 2.0}
    rpc_overhead_ms = calibration["overhead_ms"]
    measured["request_overhead"] = calibration
    rows = plan(options, bandwidths, meta["teacher_acc"], meta["tolerance"], rtt_ms,
                rpc_overhead_ms)
    settings = {"device": device.name, "server": server.name, "rtt_ms": rtt_ms,
                "rpc_overhead_ms": round(rpc_overhead_ms, 3), "server_backend": server_backend}
    out = Path(out) if out else run_dir / "plan"
    out.mkdir(parents=True, exist_ok=True)
    result = {"settings": settings, "profiles": {"device": device.model_dump(),
                                                  "server": server.model_dump()},
              "options": options_json(options, rtt_ms, rpc_overhead_ms), "measured": measured,
              "rows": rows, "split_vs_local": split_vs_local(options, rows)}
    (out / "plan.json").write_text(json.dumps(result, indent=2))
    (out / "plan.md").write_text(plan_markdown(options, rows, meta["teacher_acc"],
                                               meta["tolerance"], settings, rtt_ms,
                                               rpc_overhead_ms))
    result["plot"] = str(plot_plan(options, rows, out / "latency_vs_bandwidth.png"))
    result["markdown"] = str(out / "plan.md")
    return result
