"""Patch tokens and fixed 2-D sin-cos positions for (time, frequency) spectrograms.

Tokens are time-major everywhere in axlstm: token n of a (n_t, n_f) grid is (t, f) = (n // n_f,
n % n_f), so the n_f frequency patches of one time step sit next to each other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: How :func:`adapt_pos_grid` resizes a positional grid.
POS_ADAPTS = ("official", "general")


class PatchEmbed(nn.Module):
    """Non-overlapping (pt, pf) patches of a (B, C, T, F) spectrogram, linearly embedded.

    Args:
        patch_size: (time, frequency) patch size.
        in_chans: input channels.
        embed_dim: token width d.
    """

    def __init__(self, patch_size: tuple[int, int], in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def reset_parameters(self) -> None:
        # Xavier-uniform on the 4-D kernel as the official wrapper does (fan_out includes the
        # kernel area), bias zero.
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def grid(self, n_frames: int, n_bins: int) -> tuple[int, int]:
        return n_frames // self.patch_size[0], n_bins // self.patch_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, d, n_t, n_f)
        return x.flatten(2).transpose(1, 2)  # (B, n_t * n_f, d), time-major


def _sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """(len(pos), dim) table [sin(pos * w), cos(pos * w)], w_j = 10000^(-j / (dim / 2))."""
    omega = torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0)
    omega = 1.0 / 10000.0**omega
    angles = pos.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_pos_embed_2d(
    n_t: int,
    n_f: int,
    dim: int,
    cls_token: bool = True,
    t_offset: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Fixed 2-D sin-cos positions, MAE convention, for a time-major (n_t, n_f) token grid.

    The first half of the channels encodes the frequency-patch index, the second half the
    time index. A zero row is prepended for the cls token when ``cls_token``.

    Returns:
        float32 tensor (n_t * n_f [+ 1], dim), on ``device`` (the CPU when None).
    """
    if dim % 4:
        raise ValueError(f"sin-cos positions need an embedding dim divisible by 4, got {dim}")
    t = torch.arange(t_offset, t_offset + n_t, device=device).repeat_interleave(n_f)
    f = torch.arange(n_f, device=device).repeat(n_t)  # (n_t * n_f,) each
    table = torch.cat([_sincos_1d(dim // 2, f), _sincos_1d(dim // 2, t)], dim=1)
    if cls_token:
        table = torch.cat([table.new_zeros(1, dim), table], dim=0)
    return table.float()


def patchify(spec: torch.Tensor, patch_size: tuple[int, int]) -> torch.Tensor:
    """Cut a (B, 1, T, F) spectrogram into time-major patches.

    Returns:
        (B, n_t * n_f, pt * pf); inside a patch the time offset is the outer index.
    """
    B, C, T, F = spec.shape
    pt, pf = patch_size
    n_t, n_f = T // pt, F // pf
    x = spec[:, :, : n_t * pt, : n_f * pf]
    x = x.reshape(B, C, n_t, pt, n_f, pf)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, n_t, n_f, pt, pf, C)
    return x.reshape(B, n_t * n_f, pt * pf * C)


def num_patches(img_size: tuple[int, int], patch_size: tuple[int, int]) -> int:
    return math.prod(s // p for s, p in zip(img_size, patch_size, strict=True))


# ------------------------------------------------------------ SSAST's patches and positions
class SpecPatchEmbed(nn.Module):
    """``Conv2d(1, D, (f, t), stride)`` on the (B, 1, F, T) image; the official weight layout."""

    def __init__(self, embed_dim: int, patch_ft: tuple[int, int], stride_ft: tuple[int, int]):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_ft, stride=stride_ft)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, F' T', D), frequency-major


def adapt_pos_grid(
    pos: torch.Tensor, size: tuple[int, int], mode: str = "official"
) -> torch.Tensor:
    """Resize a patch positional grid (1, D, F0, T0) to (1, D, F1, T1) as SSAST's fine-tuning does.

    Time first: a centre crop when shorter, else bilinear interpolation to (8, T1) ("official",
    the hard-coded 8 rows; a lossless detour for the 1-row frame models) or (F0, T1)
    ("general"). Then frequency: a centre crop when fewer rows, else bilinear to (F1, T1).
    The official frequency crop ends its slice at ``start + T1`` (a bug that is unreachable for
    128 mel bins); "official" reproduces it and fails where the official code would.
    """
    if mode not in POS_ADAPTS:
        raise ValueError(f"unknown pos_adapt {mode!r}; choose one of {POS_ADAPTS}")
    f0, t0 = pos.shape[-2:]
    f1, t1 = size
    if (f0, t0) == (f1, t1):
        return pos
    if t1 < t0:
        start = t0 // 2 - t1 // 2
        pos = pos[..., start : start + t1]
    else:
        rows = 8 if mode == "official" else f0
        pos = F.interpolate(pos, size=(rows, t1), mode="bilinear")
    if f1 < f0:  # the official code compares with (and centres on) the pretraining rows
        start = f0 // 2 - f1 // 2
        pos = pos[..., start : start + (t1 if mode == "official" else f1), :]
        if pos.shape[-2] != f1:
            raise ValueError(
                "the official positional-embedding crop keeps t_dim frequency rows here and "
                "fails; use pos_adapt='general'"
            )
    else:
        pos = F.interpolate(pos, size=(f1, t1), mode="bilinear")
    return pos
