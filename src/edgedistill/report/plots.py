"""Matplotlib plots written as PNG (Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(records: list[dict], out_dir: str | Path) -> Path:
    """Loss terms and train/test accuracy against epoch."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    epochs = [r["epoch"] + 1 for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in records], label="train (total)")
    ax_loss.plot(epochs, [r["test_loss"] for r in records], label="test CE")
    for key in sorted(k for k in records[0] if k.startswith("loss/")):
        ax_loss.plot(epochs, [r.get(key, float("nan")) for r in records], "--", label=key[5:])
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=8)
    ax_acc.plot(epochs, [r["train_acc"] for r in records], label="train")
    ax_acc.plot(epochs, [r["test_acc"] for r in records], label="test")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_accuracy_comparison(curves: dict[str, list[float]], path: str | Path,
                             title: str = "") -> Path:
    """Test accuracy per epoch, one line per run."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, accs in curves.items():
        ax.plot(range(1, len(accs) + 1), accs, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
