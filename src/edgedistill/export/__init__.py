"""Export: ONNX (checked against PyTorch), ONNX Runtime sessions, int8, latency."""

from edgedistill.export.onnx import (
                                     export_onnx,
                                     export_run,
                                     measure_latency,
                                     quantize_int8,
                                     run_session,
                                     session,
)

__all__ = ["export_onnx", "export_run", "measure_latency", "quantize_int8", "run_session",
           "session"]
