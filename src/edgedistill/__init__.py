"""edgedistill: knowledge distillation that turns large networks into edge models."""

__version__ = "0.1.0"
