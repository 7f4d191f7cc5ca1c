"""End-of-run figures: the loss curve and input / masked / reconstructed spectrograms.

matplotlib is imported lazily with the non-interactive Agg backend, so nothing here needs a
display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["plot_loss", "plot_reconstructions", "unpatchify"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def unpatchify(
    patches: torch.Tensor, grid: tuple[int, int], patch_size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`axlstm.layers.patchify`.

    ``(B, n_t * n_f, pt * pf)`` patches (time-major, time offset outer) to ``(B, 1, T, F)``.
    """
    B = patches.shape[0]
    n_t, n_f = grid
    pt, pf = patch_size
    x = patches.reshape(B, n_t, n_f, pt, pf)  # time offset outer inside a patch
    x = x.permute(0, 1, 3, 2, 4)  # (B, n_t, pt, n_f, pf)
    return x.reshape(B, 1, n_t * pt, n_f * pf)


def plot_loss(records: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    """Loss (log scale when positive) and learning rate against step; None without records."""
    points = [
        (r["step"], r["loss"])
        for r in records
        if isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"])
    ]
    if not points:
        return None
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    steps, losses = zip(*points, strict=True)
    ax.plot(steps, losses, color="tab:blue", lw=1.2, label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if min(losses) > 0:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    lrs = [(r["step"], r["lr"]) for r in records if isinstance(r.get("lr"), (int, float))]
    if lrs:
        ax2 = ax.twinx()
        s, lr = zip(*lrs, strict=True)
        ax2.plot(s, lr, color="tab:orange", lw=1.0, alpha=0.7, label="lr")
        ax2.set_ylabel("learning rate", color="tab:orange")
    ax.set_title("pretraining loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reconstructions(
    spec: torch.Tensor,
    mask: torch.Tensor,
    pred: torch.Tensor,
    patch_size: tuple[int, int],
    path: str | Path,
) -> Path:
    """One row per clip: input, masked input (masked patches blanked) and reconstruction.

    Args:
        spec: (B, 1, T, F) input crops.
        mask: (B, L) 1 = masked.
        pred: (B, L, P) predicted patches.
    """
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec, mask, pred = spec.detach().float().cpu(), mask.detach().float().cpu(), pred.detach()
    B, _, T, F = spec.shape
    pt, pf = patch_size
    grid = (T // pt, F // pf)
    recon = unpatchify(pred.float().cpu(), grid, patch_size)
    pix_mask = unpatchify(mask[..., None].expand(-1, -1, pt * pf), grid, patch_size)
    masked = spec[:, :, : grid[0] * pt, : grid[1] * pf].clone()
    masked[pix_mask.bool()] = float("nan")
    fig, axes = plt.subplots(B, 3, figsize=(11, 2.2 * B), squeeze=False)
    vmin, vmax = float(spec.min()), float(spec.max())
    cmap = plt.get_cmap("magma").with_extremes(bad="#d8d8d8")
    for i in range(B):
        for j, (img, title) in enumerate(
            ((spec[i, 0], "input"), (masked[i, 0], "masked input"), (recon[i, 0], "reconstruction"))
        ):
            ax = axes[i, j]
            ax.imshow(img.T.numpy(), origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title)
        axes[i, 0].set_ylabel(f"clip {i}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
