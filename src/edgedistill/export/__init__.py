"""Export: ONNX (checked against PyTorch), ONNX Runtime sessions, int8, latency."""

from edgedistill.callable_package import make_callable
from edgedistill.export.onnx import (
                                     export_onnx,
                                     export_run,
                                     measure_latency,
                                     quantize_int8,
                                     run_session,
                                     session,
)

make_callable(__name__, "export")  # edgedistill.export(...) is the Python API's export

__all__ = ["export_onnx", "export_run", "measure_latency", "quantize_int8", "run_session",
           "session"]
