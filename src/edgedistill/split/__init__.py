"""Split computing: head network distillation, the wire format, edge server, device client
and the planner that says when splitting beats running locally or sending the input.

``split_model`` cuts a teacher at a module; ``BottleneckHead`` replaces its head;
``run_split_train`` trains one head per bottleneck size; ``quantize`` / ``wire``
make the bytes sent; ``create_app`` / ``SplitClient`` serve and call the tail;
``plan`` does the latency arithmetic. The CLI is ``split_app`` (``cli.py``).

The names below load on first use, so mounting the CLI does not import torch on every
``edgedistill`` call.
"""

from importlib import import_module

_EXPORTS = {
    "BottleneckHead": "bottleneck", "SplitClient": "client", "SplitModel": "model",
    "load_split": "model", "ComputeProfile": "planner", "Option": "planner", "plan": "planner",
    "QTensor": "quantize", "dequantize": "quantize", "quantize": "quantize", "Link": "shaper",
    "TokenBucket": "shaper", "split_model": "splitter", "split_points": "splitter",
    "WireError": "wire", "decode": "wire", "encode": "wire",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"edgedistill.split.{_EXPORTS[name]}"), name)
