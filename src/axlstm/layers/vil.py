"""Vision-LSTM (ViL) block: a pre-norm residual block around one mLSTM layer.

Attribute names follow the official AxLSTM/ViL checkpoints so their state dicts load as they
are. Shapes: B batch, S tokens, d embedding width, D = e * d inner width, NH mLSTM heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from axlstm.layers.mlstm import mlstm_parallel
from axlstm.layers.norms import MultiHeadNorm, OffsetLayerNorm


class HeadwiseLinear(nn.Module):
    """Block-diagonal linear map: D channels in independent blocks of ``block_size``, no bias.

    The weight is stored as (D // block_size, block_size, block_size) = (blocks, out, in).
    """

    def __init__(self, dim: int, block_size: int) -> None:
        super().__init__()
        if dim % block_size:
            raise ValueError(f"dim {dim} is not divisible by block size {block_size}")
        self.dim = dim
        self.block_size = block_size
        n = dim // block_size
        self.weight = nn.Parameter(torch.empty(n, block_size, block_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        xb = x.reshape(-1, self.dim // self.block_size, self.block_size)  # (N, nb, bs)
        y = torch.einsum("nbi,boi->nbo", xb, self.weight)
        return y.reshape(shape)


class CausalConv1d(nn.Module):
    """Depthwise causal conv along the token axis: output s sees inputs s-k+1 .. s."""

    def __init__(self, dim: int, kernel_size: int = 4) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size - 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))  # (B, D, S + k - 1)
        return y[..., : x.shape[1]].transpose(1, 2)  # (B, S, D)


class MLSTMCell(nn.Module):
    """Gates, the mLSTM recurrence (parallel form) and the per-head output norm."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.igate = nn.Linear(3 * dim, num_heads)
        self.fgate = nn.Linear(3 * dim, num_heads)
        self.outnorm = MultiHeadNorm(dim, num_heads, eps=1e-5)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.fgate.weight)
        with torch.no_grad():
            self.fgate.bias.copy_(torch.linspace(3.0, 6.0, self.num_heads))
        nn.init.zeros_(self.igate.weight)
        nn.init.normal_(self.igate.bias, mean=0.0, std=0.1)
        self.outnorm.reset_parameters()

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        B, S, _ = x.shape
        return x.view(B, S, self.num_heads, -1).transpose(1, 2)  # (B, NH, S, DH)

    def gates(self, q, k, v) -> tuple[torch.Tensor, torch.Tensor]:
        qkv = torch.cat([q, k, v], dim=-1)  # (B, S, 3D)
        return self.igate(qkv).transpose(1, 2), self.fgate(qkv).transpose(1, 2)  # (B, NH, S)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        igate, fgate = self.gates(q, k, v)
        h = mlstm_parallel(self.heads(q), self.heads(k), self.heads(v), igate, fgate)
        return self.outnorm(h)  # (B, S, D)


class ViLLayer(nn.Module):
    """The mLSTM layer of a ViL block (up-projection, conv, q/k/v, cell, gating, down-projection).

    Args:
        dim: embedding width d.
        expansion: inner width factor e (D = e * d).
        num_heads: mLSTM heads (ViL always uses 4).
        qkv_block_size: block size of the head-wise q/k/v projections.
        conv_kernel_size: causal depthwise conv kernel.
    """

    def __init__(
        self,
        dim: int,
        expansion: int = 2,
        num_heads: int = 4,
        qkv_block_size: int = 4,
        conv_kernel_size: int = 4,
    ) -> None:
        super().__init__()
        inner = expansion * dim
        self.dim = dim
        self.inner_dim = inner
        self.proj_up = nn.Linear(dim, 2 * inner, bias=False)
        self.q_proj = HeadwiseLinear(inner, qkv_block_size)
        self.k_proj = HeadwiseLinear(inner, qkv_block_size)
        self.v_proj = HeadwiseLinear(inner, qkv_block_size)
        self.conv1d = CausalConv1d(inner, conv_kernel_size)
        self.mlstm_cell = MLSTMCell(inner, num_heads)
        self.learnable_skip = nn.Parameter(torch.ones(inner))
        self.proj_down = nn.Linear(inner, dim, bias=False)

    def reset_parameters(self) -> None:
        # "small init" sigma = sqrt(2 / (5 d)) on the up- and q/k/v projections, "Wang init"
        # 2 / sqrt(d) with one block on the down-projection, as the official code does.
        small = math.sqrt(2.0 / (5.0 * self.dim))
        nn.init.normal_(self.proj_up.weight, std=small)
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.normal_(proj.weight, std=small)
        nn.init.normal_(self.proj_down.weight, std=2.0 / math.sqrt(self.dim))
        self.conv1d.conv.reset_parameters()
        self.mlstm_cell.reset_parameters()
        nn.init.ones_(self.learnable_skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_m, z = self.proj_up(x).chunk(2, dim=-1)  # (B, S, D) each
        c = F.silu(self.conv1d(x_m))
        q, k = self.q_proj(c), self.k_proj(c)
        v = self.v_proj(x_m)  # v comes from the pre-conv branch
        h = self.mlstm_cell(q, k, v)
        h = (h + self.learnable_skip * c) * F.silu(z)
        return self.proj_down(h)


class ViLBlock(nn.Module):
    """x + layer(norm(x)), with the token order reversed around the layer when ``reverse``."""

    def __init__(self, dim: int, reverse: bool = False, **layer_kwargs) -> None:
        super().__init__()
        self.reverse = reverse
        self.norm = OffsetLayerNorm(dim, bias=False, eps=1e-5)
        self.layer = ViLLayer(dim, **layer_kwargs)

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        self.layer.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        if self.reverse:
            return x + self.layer(h.flip(1)).flip(1)
        return x + self.layer(h)
