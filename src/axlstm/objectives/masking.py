"""Random token masks for masked spectrogram modelling."""

from __future__ import annotations

from typing import NamedTuple

import torch

MASKING_MODES = ("unstructured", "timestep")


class MaskDraw(NamedTuple):
    """One mask draw.

    Attributes:
        mask: (B, L) float, 1 = masked, 0 = kept.
        ids_restore: (B, L) int64, the inverse of the noise argsort (as the official code keeps).
        noise: (B, L) the uniform noise the mask was derived from.
    """

    mask: torch.Tensor
    ids_restore: torch.Tensor
    noise: torch.Tensor


def random_masking(
    batch: int,
    grid: tuple[int, int],
    ratio: float,
    mode: str = "unstructured",
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> MaskDraw:
    """Draw an independent random mask per sample over a time-major (n_t, n_f) token grid.

    The noise is drawn as the official AxLSTM code draws it (one ``torch.rand(B, L)`` call for
    "unstructured"), so seeding the default generator reproduces the official mask.

    Args:
        batch: B.
        grid: (n_t, n_f) token grid; L = n_t * n_f.
        ratio: fraction of tokens masked, in [0, 1).
        mode: "unstructured" (tokens independently) or "timestep" (all n_f frequency patches of
            a time step share one noise value, so whole time steps are masked together).
        device: where the noise is drawn.
        generator: optional RNG; the default generator otherwise.
    """
    if mode not in MASKING_MODES:
        raise ValueError(f"unknown masking mode {mode!r}; choose one of {MASKING_MODES}")
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    n_t, n_f = grid
    L = n_t * n_f
    if mode == "unstructured":
        noise = torch.rand(batch, L, device=device, generator=generator)
    else:
        noise = torch.rand(batch, n_t, device=device, generator=generator)
        noise = noise.repeat_interleave(n_f, dim=1)  # (B, L), time-major
    # Same integer rounding as the official code for the number of kept tokens.
    len_keep = int(L * (100 - ratio * 100) / 100)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(batch, L, device=noise.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return MaskDraw(mask, ids_restore, noise)
