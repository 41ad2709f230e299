"""Split computing: head network distillation, the wire format, edge server, device client
and the planner that says when splitting beats running locally or sending the input.

``split_model`` cuts a teacher at a module; ``BottleneckHead`` replaces its head;
``run_split_train`` trains one head per bottleneck size; ``quantize`` / ``wire``
make the bytes sent; ``create_app`` / ``SplitClient`` serve and call the tail;
``plan`` does the latency arithmetic. The CLI is ``split_app`` (``cli.py``).
"""

from edgedistill.split.bottleneck import BottleneckHead
from edgedistill.split.client import SplitClient
from edgedistill.split.model import SplitModel, load_split
from edgedistill.split.planner import ComputeProfile, Option, plan
from edgedistill.split.quantize import QTensor, dequantize, quantize
from edgedistill.split.shaper import Link, TokenBucket
from edgedistill.split.splitter import split_model, split_points
from edgedistill.split.wire import WireError, decode, encode

__all__ = [
    "BottleneckHead",
    "ComputeProfile",
    "Link",
    "Option",
    "QTensor",
    "SplitClient",
    "SplitModel",
    "TokenBucket",
    "WireError",
    "decode",
    "dequantize",
    "encode",
    "load_split",
    "plan",
    "quantize",
    "split_model",
    "split_points",
]
