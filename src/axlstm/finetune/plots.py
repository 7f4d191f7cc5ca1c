"""The learning-curve plot of a fine-tuning run (``plots/validation.png``)."""

from __future__ import annotations

import logging
from pathlib import Path

from axlstm.engine.metrics import read_records

__all__ = ["plot_validation"]

logger = logging.getLogger(__name__)


def plot_validation(records_path: Path, out: Path) -> Path | None:
    """Validation scores (one panel per score) against epochs; None when nothing was logged."""
    records = read_records(records_path) if Path(records_path).is_file() else []
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in records[0] if k not in ("step", "epoch") and not k.startswith("best_")]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    epochs = [r["epoch"] for r in records]
    for ax, name in zip(axes[0], names, strict=True):
        ax.plot(epochs, [r.get(name) for r in records], marker="o")
        ax.set_xlabel("epoch")
        ax.set_title(f"valid {name}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    logger.info("wrote %s", out)
    return out
