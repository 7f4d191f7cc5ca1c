"""Masked spectrogram modelling loss."""

from __future__ import annotations

import torch

LOSS_SCOPES = ("all", "masked")


def msm_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    scope: str = "all",
) -> torch.Tensor:
    """Mean squared error between predicted and true patches.

    Args:
        pred, target: (B, L, P) patch predictions and raw patch values.
        mask: (B, L), 1 = masked; needed for ``scope="masked"``.
        scope: "all" averages over every patch, masked and visible (what the official AxLSTM
            recipe trained with); "masked" averages over masked patches only.
    """
    if scope not in LOSS_SCOPES:
        raise ValueError(f"unknown loss scope {scope!r}; choose one of {LOSS_SCOPES}")
    err = (pred - target).pow(2).mean(dim=-1)  # (B, L)
    if scope == "all":
        return err.mean()
    if mask is None:
        raise ValueError("loss scope 'masked' needs the mask")
    return (err * mask).sum() / mask.sum().clamp_min(1.0)
