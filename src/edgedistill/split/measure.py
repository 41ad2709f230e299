"""Measure every part of a split run on this host and turn it into planner options.

Models run at batch 1 with one thread: the encoder and local models in ONNX Runtime
(what a device would use), the server parts in the server's backend. Image coding,
quantization and the wire format are timed on real test images. Profiles then
scale these host times to the device and the server.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from torch import nn

from edgedistill.split.client import request_bytes
from edgedistill.split.images import FORMATS, decode_image, encode_image, normalize_uint8
from edgedistill.split.model import load_split, read_meta
from edgedistill.split.planner import ComputeProfile, Option
from edgedistill.split.quantize import quantize
from edgedistill.split.wire import MEDIA_TYPE, decode, encode

RESPONSE_BYTES = 230  # status line, uvicorn's 4 headers and a one-prediction JSON body
REPEATS = 30
GAP_S = 0.01


def median_ms(fn, *args, repeats: int = REPEATS, warmup: int = 3, gap_s: float = GAP_S) -> float:
    """Median wall time of ``fn(*args)``, each call after ``gap_s`` of idleness.

    Requests arrive one at a time, so every call in a measured run follows a wait;
    on this host a call after 5+ ms idle takes ~40% longer than in a back-to-back
    loop (caches, clocks), and timing loops would flatter every option.
    """
    for _ in range(warmup):
        fn(*args)
    times = []
    for _ in range(repeats):
        time.sleep(gap_s)
        tic = time.perf_counter()
        fn(*args)
        times.append((time.perf_counter() - tic) * 1e3)
    return statistics.median(times)


def model_ms(module: nn.Module, shape, backend: str, path: Path) -> float:
    """Median batch-1 latency of ``module`` in ONNX Runtime (``onnx``) or PyTorch."""
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    if backend == "onnx":
        from edgedistill.export.onnx import export_onnx, run_session, session

        sess = session(export_onnx(module.eval(), (1, *shape), path), threads=1)
        return median_ms(run_session, sess, x)
    module = module.eval()
    xt = torch.from_numpy(x)

    def run():
        with torch.inference_mode():
            module(xt)

    return median_ms(run)


def header_bytes(path: str, content_type: str, token_chars: int = 43,
                 host: str = "http://10.0.0.2:8000") -> int:
    """Request line + headers that ``SplitClient`` sends (43 chars: token_urlsafe(32))."""
    request = httpx.Request("POST", host + path, headers={
        "Host": host.split("//")[1], "Accept": "*/*", "Accept-Encoding": "gzip, deflate",
        "Connection": "keep-alive", "User-Agent": f"python-httpx/{httpx.__version__}",
        "Authorization": "Bearer " + "x" * token_chars, "Content-Type": content_type,
        "Content-Length": "1000"})
    return request_bytes(request, 0)


def to_wire(z: np.ndarray, wire: dict) -> bytes:
    return encode(quantize(z, wire["per_channel"]), wire["compression"], wire.get("level"))


def from_wire(message: bytes) -> np.ndarray:
    return decode(message).to_float()


def split_options(run_dir: Path, test_images: np.ndarray, device: ComputeProfile,
                  server: ComputeProfile, server_backend: str = "onnx",
                  samples: int = 10) -> tuple[list[Option], dict[str, Any]]:
    """Options (a) teacher on the device, (c) input sent per format, (d) each bottleneck."""
    meta = read_meta(run_dir)
    shape = tuple(meta["input_shape"])
    images = test_images[:samples]
    x = normalize_uint8(images, meta["mean"], meta["std"])
    measured: dict[str, Any] = {}
    options = []
    norm = statistics.median(median_ms(normalize_uint8, im[None], meta["mean"], meta["std"],
                                       repeats=3) for im in images)
    measured["normalize_ms"] = norm
    first = load_split(run_dir / meta["bottlenecks"][0]["name"])
    teacher_flops = meta["bottlenecks"][0]["teacher_flops"]
    t_dev = model_ms(first.teacher, shape, "onnx", run_dir / "export" / "teacher.onnx")
    t_srv = model_ms(first.teacher, shape, server_backend, run_dir / "export" / "teacher.onnx")
    measured["teacher"] = {"onnx_ms": t_dev, f"{server_backend}_ms": t_srv}
    options.append(Option("teacher on device", meta["teacher_acc"],
                          device.model_ms(t_dev, teacher_flops) + device.work_ms(norm)))
    for fmt in FORMATS:
        blobs = [encode_image(im, fmt) for im in images]
        enc = statistics.median(median_ms(encode_image, im, fmt, repeats=3) for im in images)
        dec = statistics.median(median_ms(decode_image, b, shape[0], repeats=3) for b in blobs)
        measured[fmt] = {"encode_ms": enc, "decode_ms": dec}
        kind = "image/png" if fmt == "png" else "image/jpeg"
        info = meta["inputs"][fmt]
        options.append(Option(
            f"send {fmt}", info["acc"], device.work_ms(enc),
            server.work_ms(dec + norm) + server.model_ms(t_srv, teacher_flops),
            header_bytes("/v1/classify", kind) + info["bytes_mean"], RESPONSE_BYTES, True))
    for row in meta["bottlenecks"]:
        model = load_split(run_dir / row["name"])
        head = model_ms(model.device_part, shape, "onnx", run_dir / row["name"] / "head.onnx")
        tail = model_ms(model.server_part(), tuple(row["bottleneck_shape"]), server_backend,
                        run_dir / row["name"] / "export" / "server.onnx")
        with torch.inference_mode():
            z = model.device_part(torch.from_numpy(x)).numpy()
        messages = [to_wire(z[i:i + 1], meta["wire"]) for i in range(len(z))]
        enc = statistics.median(median_ms(to_wire, z[i:i + 1], meta["wire"], repeats=3)
                                for i in range(len(z)))
        dec = statistics.median(median_ms(from_wire, m, repeats=3) for m in messages)
        measured[row["name"]] = {"head_ms": head, "encode_ms": enc, "decode_ms": dec,
                                 "server_ms": tail}
        options.append(Option(
            f"split {row['name']}", row["acc_quantized"],
            device.model_ms(head, row["head_flops"]) + device.work_ms(norm + enc),
            server.work_ms(dec) + server.model_ms(tail, row["decoder_flops"] + row["tail_flops"]),
            header_bytes("/v1/split", MEDIA_TYPE) + row["bytes_per_sample"], RESPONSE_BYTES,
            True))
    return options, measured


def local_option(source: str, test_pipe, shape, device: ComputeProfile, run_dir: Path,
                 normalize_ms: float) -> tuple[Option, dict]:
    """Option (b): a small model (zoo:NAME, run dir, weights) entirely on the device."""
    from edgedistill import api
    from edgedistill.models import count_flops, student_name
    from edgedistill.train.trainer import evaluate

    model = api.load_model(source)
    acc = evaluate(model, test_pipe, torch.device("cpu"))["acc"]
    name = student_name(model.spec)
    ms = model_ms(model, shape, "onnx", run_dir / "export" / f"local-{name}.onnx")
    device_ms = device.model_ms(ms, count_flops(model, shape)) + device.work_ms(normalize_ms)
    return (Option(f"local {name}", acc, device_ms),
            {"onnx_ms": ms, "acc": acc, "source": source})


def health_rtt_ms(server_url: str, repeats: int = 30) -> float:
    """Median round trip of ``GET /health``: what the two HTTP stacks cost per request."""
    with httpx.Client(base_url=server_url.rstrip("/"), timeout=10) as http:
        def ping():
            http.get("/health").raise_for_status()

        return median_ms(ping, repeats=repeats, gap_s=0)


def calibrate_rpc_ms(client, image: np.ndarray, repeats: int = REPEATS) -> float:
    """HTTP cost of a real split request: median round trip minus the server's own time,
    on an unshaped connection (client built without a ``Link``)."""
    for _ in range(3):
        client.infer(image[None])
    return statistics.median(client.infer(image[None])["timing_ms"]["network"]
                             for _ in range(repeats))


def run_plan(run_dir: str | Path, device: ComputeProfile, server: ComputeProfile,
             bandwidths: list[float], local_models: list[str] = (), rtt_ms: float = 0.0,
             rpc_overhead_ms: float | None = None, server_url: str | None = None,
             server_backend: str = "onnx", out: str | Path | None = None) -> dict[str, Any]:
    """Measure, plan, and write ``plan.json``, ``plan.md`` and the plot under ``out``."""
    import json

    from edgedistill import api
    from edgedistill.config import load_config
    from edgedistill.split.config import SplitExperiment
    from edgedistill.split.planner import options_json, plan, plan_markdown, plot_plan
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
            option, info = local_option(source, test_pipe, tuple(meta["input_shape"]), device,
                                        run_dir, measured["normalize_ms"])
            options.insert(1, option)
            measured[option.name] = info
    if rpc_overhead_ms is None:
        rpc_overhead_ms = health_rtt_ms(server_url) if server_url else 2.0
    rows = plan(options, bandwidths, meta["teacher_acc"], meta["tolerance"], rtt_ms,
                rpc_overhead_ms)
    settings = {"device": device.name, "server": server.name, "rtt_ms": rtt_ms,
                "rpc_overhead_ms": round(rpc_overhead_ms, 3), "server_backend": server_backend}
    out = Path(out) if out else run_dir / "plan"
    out.mkdir(parents=True, exist_ok=True)
    result = {"settings": settings, "profiles": {"device": device.model_dump(),
                                                  "server": server.model_dump()},
              "options": options_json(options), "measured": measured, "rows": rows}
    (out / "plan.json").write_text(json.dumps(result, indent=2))
    (out / "plan.md").write_text(plan_markdown(options, rows, meta["teacher_acc"],
                                               meta["tolerance"], settings))
    result["plot"] = str(plot_plan(options, rows, out / "latency_vs_bandwidth.png"))
    result["markdown"] = str(out / "plan.md")
    return result
