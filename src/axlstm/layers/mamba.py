"""Mamba (selective state-space) mixers in pure PyTorch, with an optional CUDA fast path.

One directional branch on inputs x, z of shape (B, E, L) (SPEC-SSAST-SSAMBA §C1):

    u_t = SiLU(causal depthwise conv(x)_t)
    [δ_t | B_t | C_t] = W_x u_t,      Δ_t = softplus(W_dt δ_t + b_dt),      A = -exp(A_log)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t u_t) ⊗ B_t                      (per channel e, state n)
    y_t = C_t · h_t + D ⊙ u_t,        out_t = y_t ⊙ SiLU(z_t)

The recurrence is computed by :func:`selective_scan`: a step-by-step loop (the reference, and
the fastest form measured on CPU and GPU, with a memory-lean exact backward pass) or a
chunked two-level parallel scan (equal to the loop up to float rounding). When the
``mamba_ssm`` package imports and the tensors are on a GPU, its CUDA kernel can be used instead
(``impl="cuda"``, or ``"auto"``). The scan, A, Δ and the state are fp32 (fp64 for fp64
inputs), as the reference kernel keeps them.

References:
    1. Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023
       (arXiv 2312.00752).
    2. Zhu et al., "Vision Mamba: Efficient Visual Representation Learning with Bidirectional
       State Space Model", 2024 (arXiv 2401.09417): the bidirectional "v2" mixer.
    3. Shams et al., "SSAMBA: Self-Supervised Audio Representation Learning with Mamba State
       Space Model", 2024 (arXiv 2405.11831).
    4. Yadav & Tan, "Audio Mamba: Selective State Spaces for Self-Supervised Audio
       Representations", 2024 (arXiv 2406.02178).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from axlstm.layers.drop import drop_path
from axlstm.layers.scan import SCAN_IMPLS, scan_dtype, selective_scan

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the mixers
def causal_depthwise_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    """out[:, e, t] = bias[e] + Σ_k weight[e, 0, k] x[:, e, t - (K - 1) + k], x_{<0} = 0.

    Args:
        x: (B, E, L); weight: (E, 1, K) as ``nn.Conv1d(E, E, K, groups=E)`` stores it.
    """
    K = weight.shape[-1]
    return F.conv1d(x, weight, bias, padding=K - 1, groups=x.shape[1])[..., : x.shape[-1]]


def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    """The y with softplus(y) = x, for x > 0: ``x + log(1 - exp(-x))``."""
    return x + torch.log(-torch.expm1(-x))


class MambaMixer(nn.Module):
    """The (unidirectional) Mamba mixer: (B, L, d) -> (B, L, d).

    Parameter names follow ``mamba_ssm``'s ``Mamba`` so official state dicts load as they are.

    Args:
        d_model: token width d.
        d_state: state size N per channel.
        d_conv: causal conv kernel K.
        expand: inner width factor (E = expand * d).
        dt_rank: rank R of the step-size projection; "auto" is ceil(d / 16).
        dt_min, dt_max: range of the initial step sizes (log-uniform).
        dt_init: "random" (U(±s) for W_dt) or "constant" (all s), s = R^-1/2 * dt_scale.
        dt_scale: scale of that init.
        dt_init_floor: smallest initial step size.
        conv_bias: whether the conv has a bias.
        bias: whether the in/out projections have biases.
        scan_impl: see :func:`selective_scan`.
        chunk_size: chunk length of the chunked scan.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        scan_impl: str = "auto",
        chunk_size: int = 32,
    ) -> None:
        super().__init__()
        if scan_impl not in SCAN_IMPLS:
            raise ValueError(f"unknown scan impl {scan_impl!r}; choose one of {SCAN_IMPLS}")
        if dt_init not in ("random", "constant"):
            raise ValueError(f"unknown dt_init {dt_init!r}; use 'random' or 'constant'")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.dt_min, self.dt_max = dt_min, dt_max
        self.dt_init, self.dt_scale, self.dt_init_floor = dt_init, dt_scale, dt_init_floor
        self.scan_impl = scan_impl
        self.chunk_size = chunk_size
        E, N, R = self.d_inner, d_state, self.dt_rank
        self.in_proj = nn.Linear(d_model, 2 * E, bias=bias)
        self.conv1d = nn.Conv1d(E, E, d_conv, groups=E, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        self.A_log = nn.Parameter(torch.empty(E, N))
        self.D = nn.Parameter(torch.empty(E))
        self.out_proj = nn.Linear(E, d_model, bias=bias)
        self._extra_parameters()
        self.reset_parameters()

    def _extra_parameters(self) -> None:
        """Hook for subclasses that add parameters before the first reset."""

    # ----------------------------------------------------------------------------- init
    def _init_dt(self, dt_proj: nn.Linear) -> None:
        """W_dt ~ U(±s) (or s), and b_dt = softplus⁻¹(dt) with dt log-uniform in [min, max]."""
        s = self.dt_rank**-0.5 * self.dt_scale
        with torch.no_grad():
            if self.dt_init == "constant":
                dt_proj.weight.fill_(s)
            else:
                dt_proj.weight.uniform_(-s, s)
            lo, hi = math.log(self.dt_min), math.log(self.dt_max)
            dt = torch.exp(torch.rand(self.d_inner) * (hi - lo) + lo)
            dt = dt.clamp(min=self.dt_init_floor)
            dt_proj.bias.copy_(inverse_softplus(dt))

    def _init_ssm(self, A_log: nn.Parameter, D: nn.Parameter) -> None:
        """A_log = ln(1..N) for every channel (S4D-real, A = -1..-N); D = 1."""
        with torch.no_grad():
            A = torch.arange(1, self.d_state + 1, dtype=torch.float32)
            A_log.copy_(torch.log(A).expand(self.d_inner, -1))
            D.fill_(1.0)

    def reset_parameters(self) -> None:
        """Mamba's standard init: PyTorch defaults for the projections and the conv."""
        self.in_proj.reset_parameters()
        self.conv1d.reset_parameters()
        self.x_proj.reset_parameters()
        self._init_dt(self.dt_proj)
        self._init_ssm(self.A_log, self.D)
        self.out_proj.reset_parameters()

    def rescale_out_proj(self, n_layer: int) -> None:
        """GPT-2-style: out_proj re-drawn kaiming-uniform(a=√5) and divided by √n_layer."""
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))
            self.out_proj.weight.div_(math.sqrt(n_layer))

    # -------------------------------------------------------------------------- forward
    def branch_inputs(self, x, conv1d, x_proj, dt_proj):
        """Scan inputs of one direction from x (B, E, L).

        Returns:
            u (B, E, L) = SiLU(conv(x)); delta (B, E, L) = W_dt δ (bias not yet added);
            B, C (B, N, L).
        """
        R, N = self.dt_rank, self.d_state
        u = F.silu(causal_depthwise_conv1d(x, conv1d.weight, conv1d.bias))
        x_dbl = x_proj(u.transpose(1, 2))  # (B, L, R + 2N)
        dt, B, C = x_dbl.split([R, N, N], dim=-1)
        delta = (dt @ dt_proj.weight.T).transpose(1, 2)  # (B, E, L)
        return u, delta, B.transpose(1, 2), C.transpose(1, 2)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, L, d) -> (B, L, d)."""
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, E, L) each
        u, delta, B, C = self.branch_inputs(x, self.conv1d, self.x_proj, self.dt_proj)
        y = selective_scan(
            u,
            delta,
            -torch.exp(scan_dtype(self.A_log)),
            B,
            C,
            self.D,
            z,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
            impl=self.scan_impl,
            chunk_size=self.chunk_size,
        )
        return self.out_proj(y.transpose(1, 2))


class BiMambaMixer(MambaMixer):
    """Vision Mamba's bidirectional "v2" mixer: (B, L, d) -> (B, L, d).

    The in- and out-projections are shared; the backward direction has its own conv, x/dt
    projections, A and D (``*_b``) and runs on the token-reversed x and z. Both directions are
    scanned in one call (stacked on the channel axis), the backward result is flipped back and
    the two are summed, divided by 2 when ``divide_out`` (Vim's ``if_devide_out``), then projected:

        out = W_out [ SiLU(z) ⊙ (S_f(x) + F S_b F(x)) / 2 ]      (F: flip along the tokens)

    Args:
        d_model, **kwargs: as :class:`MambaMixer`.
        divide_out: average instead of sum the directions (SSAMBA: True).
        backward_dt_bias: init of ``dt_proj_b.bias``: "zero" reproduces SSAMBA (its GPT-2 init
            zeroes that bias, so Δ_b starts near ln 2; SPEC-SSAST-SSAMBA §D quirk 7), "mamba" gives
            it the standard step-size init of the forward branch.
    """

    def __init__(
        self,
        d_model: int,
        divide_out: bool = True,
        backward_dt_bias: str = "zero",
        **kwargs,
    ) -> None:
        if backward_dt_bias not in ("zero", "mamba"):
            raise ValueError(
                f"backward_dt_bias must be 'zero' or 'mamba', got {backward_dt_bias!r}"
            )
        self.divide_out = divide_out
        self.backward_dt_bias = backward_dt_bias
        super().__init__(d_model, **kwargs)

    def _extra_parameters(self) -> None:
        E, N, R, K = self.d_inner, self.d_state, self.dt_rank, self.d_conv
        conv_bias = self.conv1d.bias is not None
        self.conv1d_b = nn.Conv1d(E, E, K, groups=E, padding=K - 1, bias=conv_bias)
        self.x_proj_b = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj_b = nn.Linear(R, E, bias=True)
        self.A_b_log = nn.Parameter(torch.empty(E, N))
        self.D_b = nn.Parameter(torch.empty(E))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.conv1d_b.reset_parameters()
        self.x_proj_b.reset_parameters()
        self._init_ssm(self.A_b_log, self.D_b)
        if self.backward_dt_bias == "mamba":
            self._init_dt(self.dt_proj_b)
        else:  # PyTorch default weight, zero bias: what SSAMBA's init leaves
            self.dt_proj_b.reset_parameters()
            nn.init.zeros_(self.dt_proj_b.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, L, d) -> (B, L, d)."""
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, E, L) each
        u_f, d_f, B_f, C_f = self.branch_inputs(x, self.conv1d, self.x_proj, self.dt_proj)
        u_b, d_b, B_b, C_b = self.branch_inputs(
            x.flip(-1), self.conv1d_b, self.x_proj_b, self.dt_proj_b
        )
        # one scan over 2E channels: group 0 the forward, group 1 the (flipped) backward branch
        y = selective_scan(
            torch.cat([u_f, u_b], dim=1),
            torch.cat([d_f, d_b], dim=1),
            torch.cat([-torch.exp(scan_dtype(self.A_log)), -torch.exp(scan_dtype(self.A_b_log))]),
            torch.stack([B_f, B_b], dim=1),  # (B, 2, N, L)
            torch.stack([C_f, C_b], dim=1),
            torch.cat([self.D, self.D_b]),
            torch.cat([z, z.flip(-1)], dim=1),
            delta_bias=torch.cat([self.dt_proj.bias, self.dt_proj_b.bias]),
            delta_softplus=True,
            impl=self.scan_impl,
            chunk_size=self.chunk_size,
        )
        y_f, y_b = y.chunk(2, dim=1)
        y = y_f + y_b.flip(-1)
        if self.divide_out:
            y = y / 2
        return self.out_proj(y.transpose(1, 2))


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) * weight, computed in fp32 (fp64 for fp64 input); no bias."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = scan_dtype(x)
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * scan_dtype(self.weight)
        return y.to(x.dtype)


class MambaBlock(nn.Module):
    """SSAM's block, ``x + Mixer(LayerNorm(x))``, as a drop-in encoder block (B, S, d) -> (B, S, d).

    Mamba writes it as Add -> LayerNorm -> Mixer with the residual carried separately; summed
    over the stack that is exactly this pre-norm residual form. The residual stream is kept in
    fp32 when ``residual_in_fp32`` (it matters only under autocast).

    Args:
        dim: token width d.
        n_layer: depth of the stack, for the GPT-2 rescaling of ``out_proj`` (1/√n_layer).
        residual_in_fp32: keep the residual sum in fp32.
        norm_eps: LayerNorm epsilon.
        drop_path: stochastic-depth rate of the mixer branch (training only).
        **mixer_kwargs: :class:`MambaMixer` options (d_state, d_conv, expand, dt_rank, ...).
    """

    def __init__(
        self,
        dim: int,
        n_layer: int = 1,
        residual_in_fp32: bool = True,
        norm_eps: float = 1e-5,
        drop_path: float = 0.0,
        **mixer_kwargs,
    ) -> None:
        super().__init__()
        self.drop_path = drop_path
        self.n_layer = n_layer
        self.residual_in_fp32 = residual_in_fp32
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.mixer = MambaMixer(dim, **mixer_kwargs)

    def reset_parameters(self) -> None:
        """Mamba init, then GPT-2 style: LayerNorm 1/0, ``out_proj`` rescaled by 1/√n_layer.

        The mixer has no Linear bias apart from the step-size bias, which is exempt.
        """
        nn.init.ones_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)
        self.mixer.reset_parameters()
        self.mixer.rescale_out_proj(self.n_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = drop_path(self.mixer(self.norm(x)), self.drop_path, self.training)
        if self.residual_in_fp32:
            return scan_dtype(x) + scan_dtype(h)
        return x + h
