"""``edgedistill split ...``: train heads, serve the tail, infer from a device, plan.

``split_app`` is a typer sub-app that the main CLI mounts; ``python -m
edgedistill.split.cli`` runs it alone with the same error handling (a
``UsageError`` is one line on stderr and exit status 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgedistill.errors import SET_HELP, UsageError, run_cli

split_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Head network distillation and split computing.")
BOTTLENECK_HELP = "Bottleneck run to use, e.g. c4 (default: the one the table chose)."


@split_app.command()
def train(config: Path, set_: list[str] = typer.Option([], "--set", help=SET_HELP),
          out: Optional[Path] = typer.Option(None, help="Run directory (default runs/NAME)."),
          resume: bool = typer.Option(False, help="Continue each head from its checkpoint."),
          device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N")):
    """Train one bottleneck head per size with HND; print the bottleneck table."""
    from edgedistill.config import load_config
    from edgedistill.config.split import SplitExperiment

    overrides = [*set_, *([f"train.device={device}"] if device else [])]
    cfg = load_config(config, SplitExperiment, overrides)  # before torch: mistakes exit fast
    from edgedistill.split.train import run_split_train

    target = out or Path("runs") / cfg.name
    summary = run_split_train(cfg, target, resume=resume)
    print(Path(summary["table"]).read_text())
    print(f"chosen bottleneck {summary['chosen']}; run dir {target}")


@split_app.command()
def serve(run_dir: Path, host: str = typer.Option("127.0.0.1", help="Address to bind."),
          port: int = typer.Option(8000, min=1, max=65535),
          token_file: Path = typer.Option(..., help="File holding the bearer token."),
          bottleneck: Optional[str] = typer.Option(None, help=BOTTLENECK_HELP),
          backend: str = typer.Option("onnx", help="onnx (ONNX Runtime) or torch."),
          threads: int = typer.Option(1, min=1, help="Compute threads."),
          max_payload: int = typer.Option(1 << 20, min=64, help="Largest body in bytes."),
          max_batch: int = typer.Option(32, min=1, help="Most samples per model call."),
          max_wait_ms: float = typer.Option(0.0, min=0, help="Wait for a fuller batch."),
          header_timeout: float = typer.Option(
              10.0, min=0.1, help="Seconds a client has to send a request's headers, from "
                                  "connecting or from the previous answer."),
          body_timeout: float = typer.Option(
              30.0, min=0.1, help="Seconds a client has to send a body after its headers "
                                  "(cover max-payload over the slowest link)."),
          max_connections: int = typer.Option(
              1024, min=1, help="Open connections at most; at the cap a new one evicts the "
                                "longest-idle or slowest."),
          log_level: str = typer.Option("warning")):
    """Run the edge server: decoder + teacher tail behind bearer-token auth."""
    from edgedistill.split.connections import ConnectionLimits
    from edgedistill.split.server import serve as run_server

    limits = ConnectionLimits(header_timeout=header_timeout, body_timeout=body_timeout,
                              keep_alive=min(5.0, header_timeout),
                              max_connections=max_connections)
    run_server(str(run_dir), host, port, str(token_file), bottleneck, backend, threads,
               max_payload, max_batch, max_wait_ms, log_level, limits)


@split_app.command()
def token(path: Path = typer.Argument(..., help="Token file to create."),
          force: bool = typer.Option(False, help="Replace an existing file (old token stops "
                                                 "working).")):
    """Create a bearer token file: 256 random bits, mode 0600, never overwritten silently."""
    from edgedistill.split.tokens import write_token

    print(f"wrote a new token to {write_token(path, force)} (mode 0600); give the same file "
          "to serve, infer and plan with --token-file")


IMAGES_HELP = ("Image files, any format Pillow reads (PNG, JPEG, BMP, GIF, TIFF, WebP, ...); "
               "each is converted to the model's channels (grey or RGB) and resized to its "
               "input HxW with bilinear filtering, aspect ratio not kept. Pillow refuses "
               "images over 179 megapixels.")


@split_app.command()
def infer(run_dir: Path, images: list[Path] = typer.Argument(..., help=IMAGES_HELP),
          server: str = typer.Option(..., help="Server URL, e.g. http://127.0.0.1:8000"),
          token_file: Path = typer.Option(..., help="File holding the bearer token."),
          bottleneck: Optional[str] = typer.Option(None, help=BOTTLENECK_HELP),
          mbit: Optional[float] = typer.Option(None, help="Emulate a link of this Mbit/s."),
          delay_ms: float = typer.Option(0.0, min=0, help="One-way delay of the emulated link."),
          device_slowdown: float = typer.Option(1.0, min=1,
                                                help="Emulate a device this many times slower."),
          as_json: bool = typer.Option(False, "--json", help="One JSON object per image.")):
    """Run the head here, send the bottleneck, print predictions and a timing breakdown."""
    from edgedistill.split.client import SplitClient, load_images
    from edgedistill.split.model import read_meta
    from edgedistill.split.shaper import Link
    from edgedistill.split.tokens import read_token

    token = read_token(token_file)
    batch = load_images(images, read_meta(run_dir)["input_shape"])
    link = Link(mbit, delay_ms) if mbit else None
    with SplitClient(run_dir, server, token, bottleneck, link=link,
                     device_slowdown=device_slowdown) as client:
        for path, image in zip(images, batch, strict=True):
            result = client.infer(image[None])
            if as_json:
                print(json.dumps({"image": str(path), **result}))
                continue
            t = result["timing_ms"]
            print(f"{path}: {result['labels'][0]} (class {result['predictions'][0]}) | "
                  + " ".join(f"{k} {v:.2f}" for k, v in t.items()) + " ms | "
                  f"{result['bytes']['payload']} B payload, {result['bytes']['request']} B "
                  "request")


@split_app.command()
def plan(run_dir: Path,
         device_profile: str = typer.Option("host", help="Built-in name or YAML file."),
         server_profile: str = typer.Option("host", help="Built-in name or YAML file."),
         bandwidth: str = typer.Option("0.5,1,2,5,10,20,50,100",
                                       help="Comma-separated Mbit/s values."),
         local_model: list[str] = typer.Option([], help="Small model for the device "
                                                       "(zoo:NAME, run dir; repeatable)."),
         rtt_ms: float = typer.Option(0.0, min=0, help="Network round-trip time."),
         rpc_overhead_ms: Optional[float] = typer.Option(
             None, help="Fixed cost per request (default: calibrated on --server with "
                        "--token-file; GET /health on --server alone; else 2)."),
         server: Optional[str] = typer.Option(None, help="Server URL to measure overhead on."),
         token_file: Optional[Path] = typer.Option(
             None, help="Token of --server: calibrate the overhead on real requests."),
         server_backend: str = typer.Option("onnx", help="onnx or torch, as the server runs."),
         out: Optional[Path] = typer.Option(None, help="Output folder (default RUN/plan).")):
    """Latency of teacher-on-device, local model, sending the input, and each split."""
    from edgedistill.split.measure import run_plan
    from edgedistill.split.planner import load_profile
    from edgedistill.split.tokens import read_token

    try:
        mbits = [float(b) for b in bandwidth.split(",") if b.strip()]
    except ValueError:
        raise UsageError(f"--bandwidth {bandwidth!r}: give numbers like 1,10,100") from None
    if server_backend not in ("torch", "onnx"):
        raise UsageError(f"--server-backend {server_backend!r}: choose torch or onnx")
    token = read_token(token_file) if token_file else None
    result = run_plan(run_dir, load_profile(device_profile), load_profile(server_profile), mbits,
                      local_model, rtt_ms, rpc_overhead_ms, server, server_backend, out, token)
    print(Path(result["markdown"]).read_text())
    print(f"plot: {result['plot']}")


def main(argv: list[str] | None = None) -> None:
    """Run ``split_app`` with the main CLI's error handling."""
    run_cli(split_app, argv)


if __name__ == "__main__":
    main()
