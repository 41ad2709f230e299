"""Reports: markdown tables, matplotlib plots, evaluation of trained models."""

from edgedistill.report.markdown import markdown_table
from edgedistill.report.plots import plot_accuracy_comparison, plot_training_curves

__all__ = ["markdown_table", "plot_accuracy_comparison", "plot_training_curves"]
