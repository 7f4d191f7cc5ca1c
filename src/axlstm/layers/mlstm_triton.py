"""Fused chunkwise mLSTM in Triton, forward and backward, equal to :func:`mlstm_chunkwise`.

Notation as in :mod:`axlstm.layers.mlstm`: per head q_t, k_t, v_t of width DH, k̂ = k / sqrt(DH),
input-gate preactivation i_t, forget-gate preactivation f_t. The sequence is cut into chunks of L
tokens (chunkwise formulation of the xLSTM paper, arXiv 2405.04517, appendix). In chunk j, with
g_t the chunk-local cumulative log sigmoid(f), G_j its value at the chunk end and a_s = i_s - g_s:

    W[t, s]  = exp(a_s - M_t) for s <= t in the chunk, else 0
    w_in_t   = exp(m_j - M_t)
    num_t    = sum_s (q_t . k̂_s) W[t, s] v_s + w_in_t C_j q_t
    den_t    = sum_s (q_t . k̂_s) W[t, s]     + w_in_t n_j . q_t
    h_t      = num_t / (max(|den_t|, exp(-(g_t + M_t))) + eps)
    C_{j+1}  = exp(m_j + G_j - m_{j+1}) C_j + sum_s exp(a_s + G_j - m_{j+1}) v_s k̂_sᵀ   (n alike)

with (C_j, n_j, m_j) the state entering chunk j (C and n scaled by exp(-m_j)) and M_t the token
stabiliser (g_t + M_t is the row maximum of the log decay matrix, as in the reference).

Split of the work: the stabilisers m_j and M_t are O(S) scans (logsigmoid, cumsum, cummax; the
chunk states' in closed form, :mod:`axlstm.layers.mlstm_stabiliser`) computed here in plain
differentiable PyTorch as :func:`mlstm_chunkwise` computes them; they enter a
``torch.autograd.Function`` as explicit inputs, whose forward and backward are Triton kernels:

    forward   _fwd_states  recurrence over chunks, one program per (batch*head, value tile)
              _fwd_out     outputs per chunk: (L, L) intra-chunk part plus the carried state
    backward  _bwd_prep    per-token scalars of the normaliser's derivative
              _bwd_states  reverse recurrence for the state adjoints dC_j, dn_j
              _bwd_chunk   per-chunk gradients of q, k̂, v and a

The explicit derivatives with respect to the stabilisers follow from scale invariance. h does not
depend on the internal m_j (0 < j < K) at all (they only rescale C_j and, inversely, w_in). All of
num_t, den_t and the floor scale as exp(-M_t), so M_t enters only through eps:
dh_t/dM_t = -h_t eps / (B_t + eps) with B_t = max(|den_t|, floor_t). The incoming state appears as
C_0 exp(m_0), so dm_0 = <dC_0, C_0> + <dn_0, n_0>; the outgoing one scales as exp(G_{K-1} - m_K),
so dm_K = -(<dC_K, C_K> + <dn_K, n_K>) and the same with a plus sign goes to G_{K-1}. PyTorch
autograd then carries these through the scans exactly as it does for the reference.

Shapes the kernels need: a power-of-two head width of at least 16 and a power-of-two chunk of at
least 16. Other DH are zero-padded to the next power of two (exact: the padded components of q, k
and v contribute nothing and the padded outputs are dropped); other chunk sizes are rounded up to
a power of two (the result does not depend on the chunking).

Precision (:func:`_dot_precision` picks the matrix-product mode once per call):

* float64 inputs: everything in float64 ("ieee" products).
* float32 inputs: exponentials, stabilisers, normalisers, sums and the states in float32; the
  matrix products are exact-fp32 ("ieee"), or TF32 tensor-core products ("tf32": operands rounded
  to a 10-bit mantissa, unit roundoff 2^-11, fp32 accumulation) when the tensors are on CUDA and
  ``torch.backends.cuda.matmul.allow_tf32`` is True at call time, like PyTorch's own matmuls.
* bfloat16 inputs ("bf16"): the inputs are laid out in float32 and everything but the matrix
  products stays float32 as above; every product takes both operands rounded to bf16 just
  before the dot (unit roundoff 2^-8) and accumulates in float32 on the tensor cores. That
  includes the derived operands: the weighted score matrix P = (q k̂ᵀ) * W and the state C in
  q Cᵀ (forward), and the gradient operands dnum, dS, dC (backward). C (and dC) are carried
  across chunks in float32 in memory and only rounded as a product operand, so the rounding
  does not accumulate from chunk to chunk; rounding them at all is the usual trade-off of
  tensor-core kernels (a float32 C would mean fp32 products for half of the work).
* float16 inputs ("fp16"): float16 operands only where both are inputs times weights in [0, 1]
  (q k̂ᵀ and the state write (c v)ᵀ k̂); products with an operand whose size the inputs do not
  bound (P, C and the gradients: a loss-scaled gradient divided by a small normaliser easily
  passes 65504) take bf16 operands, which have float32's exponent range.

In every mode the scores q k̂ᵀ are float32-accurate: the normaliser den sums them with either
sign and may nearly cancel, which would amplify their rounding (~100 u of the gradients' scale,
measured). 16-bit q and k enter that product exactly (the kernels take k unscaled and multiply
float32 results by 1/sqrt(DH)); in the TF32 mode it is a 3-pass "tf32x3" product (2 of the 13
products per training step, at 3x cost). Other products are not amplified: ~u of the scale.

h is cast back to the input dtype, while the returned state stays float32 so that a carried state
loses no precision. Under Triton's interpreter (CPU) float32 products are always "ieee", and the
16-bit modes run as "bf16-rounded"/"fp16-rounded": the operands are rounded to the 16-bit type
(round to nearest even, as on the GPU) and multiplied in float32, the same arithmetic as the tensor
cores up to the order of the float32 accumulation (the interpreter's own bf16 dot multiplies the
raw bf16 bit patterns, and its float32 -> bf16 cast truncates).

Triton is optional (the ``axlstm[triton]`` extra): it is imported on first use, and the kernels are
defined then too, so ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, used by the tests) may be set
any time before the first call.

References:
    1. Beck et al., "xLSTM: Extended Long Short-Term Memory", 2024 (arXiv 2405.04517).
    2. Triton language documentation, https://triton-lang.org.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os

import torch
import torch.nn.functional as F

from axlstm.layers.mlstm_stabiliser import chunk_gates, state_stabilisers

log = logging.getLogger(__name__)

# The carried state of :data:`axlstm.layers.mlstm.MLSTMState` (C, n, m); restated, not
# imported, because mlstm.py dispatches to this module.
MLSTMState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

MIN_CHUNK = 16  # tl.dot needs every block dimension >= 16
MAX_CHUNK = 64  # (L, L) tiles held per program
MAX_TILE = 4096  # at most this many elements in an (L, DH) tile: L <= 4096 / DH
MAX_VALUE_TILE = 64  # value-dimension tile of C processed per step


def _import_triton():
    """Triton, or None when it is not installed."""
    try:
        import triton
    except ImportError:
        return None
    return triton


def _interpret_mode() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    triton = _import_triton()
    if triton is not None:
        try:
            return bool(triton.knobs.runtime.interpret)
        except AttributeError:  # older Triton without knobs
            pass
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def available() -> bool:
    """True when the Triton kernels can run: Triton importable, and CUDA or interpreter mode."""
    if _import_triton() is None:
        return False
    return torch.cuda.is_available() or _interpret_mode()


def _check_runnable(device: torch.device) -> bool:
    """Raise a clear RuntimeError when the kernels cannot run on ``device``; else the mode."""
    if _import_triton() is None:
        raise RuntimeError(
            "mlstm_chunkwise_triton needs Triton, which is not installed: "
            "pip install 'axlstm[triton]' (or use mlstm_chunkwise, the pure-PyTorch form)"
        )
    interpret = _interpret_mode()
    if device.type != "cuda" and not interpret:
        raise RuntimeError(
            f"mlstm_chunkwise_triton runs on CUDA tensors (got a tensor on {device}); for CPU "
            "tensors set TRITON_INTERPRET=1 in the environment before the first call (Triton's "
            "slow CPU interpreter, meant for tests), or use mlstm_chunkwise"
        )
    return interpret


DOT_MODES = ("ieee", "tf32", "bf16", "fp16", "tf32-rounded", "bf16-rounded", "fp16-rounded")


def _dot_precision(dtype: torch.dtype, device: torch.device | str, interpret: bool = False) -> str:
    """The matrix-product mode of the kernels for inputs of ``dtype`` on ``device``.

    One of :data:`DOT_MODES` (see the module docstring): "ieee" for float64, and for float32
    unless the tensors are on CUDA, Triton is not interpreting and
    ``torch.backends.cuda.matmul.allow_tf32`` is True (then "tf32"); "bf16"/"fp16" for 16-bit
    inputs, "bf16-rounded"/"fp16-rounded" for them under the interpreter.
    """
    if dtype in (torch.bfloat16, torch.float16):
        mode = "bf16" if dtype == torch.bfloat16 else "fp16"
        return mode + "-rounded" if interpret else mode
    if dtype == torch.float32 and torch.device(device).type == "cuda" and not interpret:
        return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
    return "ieee"


def _next_pow2(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def padded_head_dim(DH: int) -> int:
    """The head width the kernels use: DH rounded up to a power of two, at least 16."""
    return max(MIN_CHUNK, _next_pow2(DH))


def kernel_chunk(chunk_size: int, S: int, DH: int) -> int:
    """The chunk the kernels use: ``chunk_size`` rounded up to a power of two, no longer than S
    needs, at most 64 and at most 4096 / (padded DH) tokens (to bound the per-program tiles),
    and at least 16. Any chunking gives the same result."""
    L = min(_next_pow2(max(1, chunk_size)), _next_pow2(max(1, S)))
    L = min(L, MAX_CHUNK, MAX_TILE // padded_head_dim(DH))
    return max(MIN_CHUNK, L)


# Bound by _kernels() on first use: the kernels are defined in this function (so that Triton is
# imported lazily) but must resolve these names as module globals, because Triton's interpreter
# re-executes a kernel's source in its module's namespace and so does not see closure variables.
triton = None
tl = None
_sum_combine = None
_mm = None
_round_bf16 = None
_round_tf32 = None
_mm_scores = None
_chunk_scores = None


@functools.lru_cache(maxsize=2)
def _kernels(interpret: bool):
    """Define (jit) the kernels; cached per mode, because ``triton.jit`` decides between
    compiled and interpreted kernels when it decorates them."""
    global triton, tl, _sum_combine, _mm, _round_bf16, _round_tf32, _mm_scores, _chunk_scores
    import triton
    import triton.language as tl

    log.debug("defining mLSTM Triton kernels (interpreter=%s)", interpret)
    # Sums use tl.reduce with the combine function of tl.sum rather than tl.sum itself: tl.sum is a
    # jit function of Triton's standard library, which the interpreter can run only when
    # TRITON_INTERPRET was set before Triton was imported, while the interpreter recognises its
    # combine function and sums with numpy whenever it was imported.
    _sum_combine = getattr(tl.standard, "_sum_combine", None)
    if _sum_combine is None:  # pragma: no cover - other Triton versions

        @triton.jit
        def _add(x, y):
            return x + y

        _sum_combine = _add

    @triton.jit
    def _round_bf16(x):
        """float32 x rounded to the nearest bf16 (ties to even), kept in float32. Finite x only."""
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True)

    @triton.jit
    def _round_tf32(x):
        """float32 x with its mantissa cut to TF32's 10 bits (truncation: the tensor cores'
        worst case), kept in float32. Finite x only."""
        bits = x.to(tl.uint32, bitcast=True) & 0xFFFFE000
        return bits.to(tl.float32, bitcast=True)

    @triton.jit
    def _mm(a, b, DOT: tl.constexpr, WIDE: tl.constexpr):
        """a @ b accumulated in a's float type (float32 for the 16-bit modes), with the operand
        precision of DOT (see the module docstring). WIDE marks a product with an operand the
        inputs do not bound: bf16 rather than fp16 operands in the fp16 modes."""
        if DOT == "tf32":
            out = tl.dot(a, b, input_precision="tf32")
        elif DOT == "bf16":
            out = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), out_dtype=tl.float32)
        elif DOT == "fp16":
            if WIDE:
                out = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), out_dtype=tl.float32)
            else:
                out = tl.dot(a.to(tl.float16), b.to(tl.float16), out_dtype=tl.float32)
        elif DOT == "tf32-rounded":
            out = tl.dot(_round_tf32(a), _round_tf32(b), input_precision="ieee")
        elif DOT == "bf16-rounded":
            out = tl.dot(_round_bf16(a), _round_bf16(b), input_precision="ieee")
        elif DOT == "fp16-rounded":
            if WIDE:
                out = tl.dot(_round_bf16(a), _round_bf16(b), input_precision="ieee")
            else:
                a16 = a.to(tl.float16).to(tl.float32)
                out = tl.dot(a16, b.to(tl.float16).to(tl.float32), input_precision="ieee")
        else:
            out = tl.dot(a, b, input_precision="ieee")
        return out

    @triton.jit
    def _mm_scores(q, kT, DOT: tl.constexpr):
        """The scores q kᵀ to float32 accuracy in every mode: the normaliser den sums them with
        either sign and may nearly cancel, which would amplify operand rounding (measured up to
        ~160 x 2^-11 of the gradients' scale with TF32 operands). 16-bit inputs are exact 16-bit
        operands (k is unscaled); float32 ones take 3-pass TF32 (tf32x3) in the TF32 mode."""
        if DOT == "tf32":
            out = tl.dot(q, kT, input_precision="tf32x3")
        elif DOT == "tf32-rounded":
            out = tl.dot(q, kT, input_precision="ieee")
        else:
            out = _mm(q, kT, DOT, False)
        return out

    @triton.jit
    def _chunk_scores(q, k, a, Mt, ks, L: tl.constexpr, DOT: tl.constexpr):
        """The chunk's causal decay weights W (L, L) and weighted scores P = (q k̂ᵀ) * W, as the
        forward computes them and the backward recomputes them."""
        rl = tl.arange(0, L)
        causal = rl[:, None] >= rl[None, :]
        W = tl.where(causal, tl.exp(tl.minimum(a[None, :] - Mt[:, None], 0.0)), 0.0)
        return W, _mm_scores(q, tl.trans(k), DOT) * (W * ks)

    @triton.jit
    def _fwd_states(
        k_ptr, ks_ptr, v_ptr, a_ptr, g_ptr, m_ptr, c0_ptr, n0_ptr, cs_ptr, ns_ptr,
        K, L: tl.constexpr, DP: tl.constexpr, BV: tl.constexpr, DOT: tl.constexpr,
    ):  # fmt: skip
        """States entering every chunk, C_0..C_K, for one (batch*head, value tile)."""
        bh = tl.program_id(0).to(tl.int64)
        pv = tl.program_id(1)
        rl = tl.arange(0, L)
        rd = tl.arange(0, DP)
        rv = pv * BV + tl.arange(0, BV)
        Sp = K * L
        tile = rv[:, None] * DP + rd[None, :]  # (BV, DP) block of a (DP, DP) matrix
        first = rd + pv * DP < DP  # n is written by the first value tile only
        C = tl.load(c0_ptr + bh * DP * DP + tile)
        n = tl.load(n0_ptr + bh * DP + rd)
        m_prev = tl.load(m_ptr + bh * (K + 1))
        ks = tl.load(ks_ptr)  # k̂ = ks k
        for j in range(K):
            st = bh * (K + 1) + j
            tl.store(cs_ptr + st * DP * DP + tile, C)
            tl.store(ns_ptr + st * DP + rd, n, mask=first)
            m_next = tl.load(m_ptr + st + 1)
            tok = bh * Sp + j * L + rl
            G = tl.load(g_ptr + bh * Sp + j * L + L - 1)
            c = tl.exp(tl.load(a_ptr + tok) + G - m_next)  # weight of each token's write
            decay = tl.exp(m_prev + G - m_next)  # 0 for the empty state (m = -inf)
            kk = tl.load(k_ptr + tok[:, None] * DP + rd[None, :])  # (L, DP), unscaled k
            vv = tl.load(v_ptr + tok[:, None] * DP + rv[None, :])  # (L, BV)
            write = _mm(tl.trans(vv * c[:, None]), kk, DOT, False) * ks
            C = decay * C + write
            n = decay * n + tl.reduce(kk * (c * ks)[:, None], 0, _sum_combine)
            m_prev = m_next
        st = bh * (K + 1) + K
        tl.store(cs_ptr + st * DP * DP + tile, C)
        tl.store(ns_ptr + st * DP + rd, n, mask=first)

    @triton.jit
    def _fwd_out(
        q_ptr, k_ptr, ks_ptr, v_ptr, a_ptr, g_ptr, mt_ptr, m_ptr, cs_ptr, ns_ptr, h_ptr, den_ptr,
        eps, K, L: tl.constexpr, DP: tl.constexpr, BV: tl.constexpr, DOT: tl.constexpr,
    ):  # fmt: skip
        """h for one (batch*head, chunk); also stores den_t for the backward pass."""
        bh = tl.program_id(0).to(tl.int64)
        j = tl.program_id(1)
        rl = tl.arange(0, L)
        rd = tl.arange(0, DP)
        Sp = K * L
        tok = bh * Sp + j * L + rl
        st = bh * (K + 1) + j
        q = tl.load(q_ptr + tok[:, None] * DP + rd[None, :])
        k = tl.load(k_ptr + tok[:, None] * DP + rd[None, :])
        a = tl.load(a_ptr + tok)
        g = tl.load(g_ptr + tok)
        Mt = tl.load(mt_ptr + tok)
        m_in = tl.load(m_ptr + st)
        _, P = _chunk_scores(q, k, a, Mt, tl.load(ks_ptr), L, DOT)  # (L, L)
        w_in = tl.exp(m_in - Mt)  # (L,)
        n_in = tl.load(ns_ptr + st * DP + rd)
        den = tl.reduce(P, 1, _sum_combine) + w_in * tl.reduce(q * n_in[None, :], 1, _sum_combine)
        floor = tl.exp(-(g + Mt))
        scale = 1.0 / (tl.maximum(tl.abs(den), floor) + eps)
        tl.store(den_ptr + tok, den)
        for vt in tl.static_range(DP // BV):
            rv = vt * BV + tl.arange(0, BV)
            vv = tl.load(v_ptr + tok[:, None] * DP + rv[None, :])  # (L, BV)
            Ct = tl.load(cs_ptr + st * DP * DP + rv[:, None] * DP + rd[None, :])  # (BV, DP)
            num = _mm(P, vv, DOT, True)
            num += w_in[:, None] * _mm(q, tl.trans(Ct), DOT, True)
            tl.store(h_ptr + tok[:, None] * DP + rv[None, :], num * scale[:, None])

    @triton.jit
    def _bwd_prep(
        dh_ptr, h_ptr, g_ptr, mt_ptr, den_ptr, inv_ptr, dden_ptr, dmt_ptr, dg_ptr,
        eps, K, L: tl.constexpr, DP: tl.constexpr,
    ):  # fmt: skip
        """Per token: 1/(B+eps), d den, and the explicit d M_t and d g_t (the floor's share)."""
        bh = tl.program_id(0).to(tl.int64)
        j = tl.program_id(1)
        rl = tl.arange(0, L)
        rd = tl.arange(0, DP)
        tok = bh * K * L + j * L + rl
        dh = tl.load(dh_ptr + tok[:, None] * DP + rd[None, :])
        h = tl.load(h_ptr + tok[:, None] * DP + rd[None, :])
        den = tl.load(den_ptr + tok)
        floor = tl.exp(-(tl.load(g_ptr + tok) + tl.load(mt_ptr + tok)))
        B = tl.maximum(tl.abs(den), floor)
        inv = 1.0 / (B + eps)
        dB = -tl.reduce(dh * h, 1, _sum_combine) * inv  # dL/dB with h = num / (B + eps)
        # torch.maximum splits the gradient evenly at a tie; abs has derivative sign (0 at 0)
        share = tl.where(tl.abs(den) > floor, 1.0, tl.where(tl.abs(den) == floor, 0.5, 0.0))
        sign = tl.where(den > 0, 1.0, tl.where(den < 0, -1.0, 0.0))
        tl.store(inv_ptr + tok, inv)
        tl.store(dden_ptr + tok, dB * share * sign)
        tl.store(dmt_ptr + tok, eps * dB)  # = -eps <dh, h> / (B + eps)
        tl.store(dg_ptr + tok, -floor * dB * (1.0 - share))

    @triton.jit
    def _bwd_states(
        q_ptr, dh_ptr, mt_ptr, g_ptr, m_ptr, inv_ptr, dden_ptr, dck_ptr, dnk_ptr, dcs_ptr, dns_ptr,
        K, L: tl.constexpr, DP: tl.constexpr, BV: tl.constexpr, DOT: tl.constexpr,
    ):  # fmt: skip
        """Adjoints dC_j, dn_j of the states entering each chunk (reverse recurrence)."""
        bh = tl.program_id(0).to(tl.int64)
        pv = tl.program_id(1)
        rl = tl.arange(0, L)
        rd = tl.arange(0, DP)
        rv = pv * BV + tl.arange(0, BV)
        Sp = K * L
        tile = rv[:, None] * DP + rd[None, :]
        first = rd + pv * DP < DP
        dC = tl.load(dck_ptr + bh * DP * DP + tile)
        dn = tl.load(dnk_ptr + bh * DP + rd)
        st = bh * (K + 1) + K
        tl.store(dcs_ptr + st * DP * DP + tile, dC)
        tl.store(dns_ptr + st * DP + rd, dn, mask=first)
        for jj in range(K):
            j = K - 1 - jj
            st = bh * (K + 1) + j
            m_in = tl.load(m_ptr + st)
            m_next = tl.load(m_ptr + st + 1)
            G = tl.load(g_ptr + bh * Sp + j * L + L - 1)
            decay = tl.exp(m_in + G - m_next)
            tok = bh * Sp + j * L + rl
            w_in = tl.exp(m_in - tl.load(mt_ptr + tok))
            q = tl.load(q_ptr + tok[:, None] * DP + rd[None, :])  # (L, DP)
            dh = tl.load(dh_ptr + tok[:, None] * DP + rv[None, :])  # (L, BV)
            dnum = dh * (tl.load(inv_ptr + tok) * w_in)[:, None]
            dC = decay * dC + _mm(tl.trans(dnum), q, DOT, True)
            dn = decay * dn + tl.reduce(
                q * (tl.load(dden_ptr + tok) * w_in)[:, None], 0, _sum_combine
            )
            tl.store(dcs_ptr + st * DP * DP + tile, dC)
            tl.store(dns_ptr + st * DP + rd, dn, mask=first)

    @triton.jit
    def _bwd_chunk(
        q_ptr, k_ptr, ks_ptr, v_ptr, dh_ptr, a_ptr, g_ptr, mt_ptr, m_ptr, cs_ptr, ns_ptr, dcs_ptr,
        dns_ptr, inv_ptr, dden_ptr, dq_ptr, dk_ptr, dv_ptr, da_ptr,
        K, L: tl.constexpr, DP: tl.constexpr, BV: tl.constexpr, DOT: tl.constexpr,
    ):  # fmt: skip
        """Gradients of q, k (unscaled: ks times that of k̂), v and a for one (batch*head, chunk)."""
        bh = tl.program_id(0).to(tl.int64)
        j = tl.program_id(1)
        rl = tl.arange(0, L)
        rd = tl.arange(0, DP)
        Sp = K * L
        tok = bh * Sp + j * L + rl
        st = bh * (K + 1) + j
        q = tl.load(q_ptr + tok[:, None] * DP + rd[None, :])
        k = tl.load(k_ptr + tok[:, None] * DP + rd[None, :])
        a = tl.load(a_ptr + tok)
        Mt = tl.load(mt_ptr + tok)
        m_in = tl.load(m_ptr + st)
        m_next = tl.load(m_ptr + st + 1)
        G = tl.load(g_ptr + bh * Sp + j * L + L - 1)
        inv = tl.load(inv_ptr + tok)
        dden = tl.load(dden_ptr + tok)
        ks = tl.load(ks_ptr)
        W, P = _chunk_scores(q, k, a, Mt, ks, L, DOT)
        w_in = tl.exp(m_in - Mt)
        c = tl.exp(a + G - m_next)  # weight of token s in C_{j+1}
        n_in = tl.load(ns_ptr + st * DP + rd)
        dn = tl.load(dns_ptr + (st + 1) * DP + rd)  # adjoint of n_{j+1}
        dP = tl.full((L, L), 0.0, q.dtype)
        dq_state = tl.full((L, DP), 0.0, q.dtype)  # sum_v dnum C_j
        dk_state = tl.full((L, DP), 0.0, q.dtype)  # sum_v v dC_{j+1}
        da_state = tl.full((L,), 0.0, q.dtype)  # v_sᵀ dC_{j+1} k̂_s
        for vt in tl.static_range(DP // BV):
            rv = vt * BV + tl.arange(0, BV)
            vv = tl.load(v_ptr + tok[:, None] * DP + rv[None, :])  # (L, BV)
            dnum = tl.load(dh_ptr + tok[:, None] * DP + rv[None, :]) * inv[:, None]
            Ct = tl.load(cs_ptr + st * DP * DP + rv[:, None] * DP + rd[None, :])  # (BV, DP)
            dCt = tl.load(dcs_ptr + (st + 1) * DP * DP + rv[:, None] * DP + rd[None, :])
            dP += _mm(dnum, tl.trans(vv), DOT, True)
            dq_state += _mm(dnum, Ct, DOT, True)
            dk_state += _mm(vv, dCt, DOT, True)
            kdC = _mm(k, tl.trans(dCt), DOT, True) * ks  # (L, BV): k̂ dC
            da_state += tl.reduce(vv * kdC, 1, _sum_combine)
            dv = _mm(tl.trans(P), dnum, DOT, True) + c[:, None] * kdC
            tl.store(dv_ptr + tok[:, None] * DP + rv[None, :], dv)
        causal = rl[:, None] >= rl[None, :]
        dP = tl.where(causal, dP + dden[:, None], 0.0)  # d/dP[t, s] of num_t and den_t
        da = tl.reduce(dP * P, 0, _sum_combine) + c * (
            da_state + ks * tl.reduce(k * dn[None, :], 1, _sum_combine)
        )
        dS = dP * W  # d/d(q_t . k̂_s)
        dq = _mm(dS, k, DOT, True) * ks
        dq += w_in[:, None] * (dq_state + dden[:, None] * n_in[None, :])
        dk = _mm(tl.trans(dS), q, DOT, True)
        dk += c[:, None] * (dk_state + dn[None, :])
        tl.store(dq_ptr + tok[:, None] * DP + rd[None, :], dq)
        tl.store(dk_ptr + tok[:, None] * DP + rd[None, :], dk * ks)  # d/dk = ks d/dk̂
        tl.store(da_ptr + tok, da)

    return _fwd_states, _fwd_out, _bwd_prep, _bwd_states, _bwd_chunk


def _on_device(x: torch.Tensor):
    """Launch on x's GPU (Triton launches on the current CUDA device)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _value_tile(DP: int) -> int:
    return min(DP, MAX_VALUE_TILE)


def _warps(L: int, DP: int) -> int:
    """Warps per program: more for the largest (L, DH) tiles (a guess, not yet tuned on a GPU)."""
    return 8 if L * DP >= MAX_TILE else 4


class _ChunkwiseFn(torch.autograd.Function):
    """h, C_K, n_K from (q, k, v, a, g, M, m, C_0, n_0, ks) laid out for the kernels.

    Shapes (BH = batch * heads, Sp = K * L tokens, DP head width): q, k, v (BH, Sp, DP);
    a, g, M (BH, Sp); m (BH, K + 1) the state stabilisers m_0..m_K; C_0 (BH, DP, DP); n_0 (BH, DP);
    ks (1,) the key scale 1/sqrt(DH) (k̂ = ks k; a tensor so that it is float64 for float64).
    ``dot`` is the matrix-product mode (:func:`_dot_precision`), fixed for forward and backward.
    """

    @staticmethod
    def forward(ctx, q, k, v, a, g, Mt, m, C0, n0, ks, eps, L, interpret, dot):
        BH, Sp, DP = q.shape
        K = Sp // L
        BV = _value_tile(DP)
        nw = _warps(L, DP)
        fwd_states, fwd_out, *_ = _kernels(interpret)
        Cs = q.new_empty(BH, K + 1, DP, DP)
        ns = q.new_empty(BH, K + 1, DP)
        h = torch.empty_like(q)
        den = torch.empty_like(a)
        with _on_device(q):
            fwd_states[(BH, DP // BV)](
                k, ks, v, a, g, m, C0, n0, Cs, ns, K, L=L, DP=DP, BV=BV, DOT=dot, num_warps=nw
            )
            fwd_out[(BH, K)](
                q, k, ks, v, a, g, Mt, m, Cs, ns, h, den, eps, K,
                L=L, DP=DP, BV=BV, DOT=dot, num_warps=nw,
            )  # fmt: skip
        ctx.save_for_backward(q, k, v, a, g, Mt, m, Cs, ns, h, den, ks)
        ctx.consts = (eps, L, interpret, dot)
        return h, Cs[:, K].clone(), ns[:, K].clone()

    @staticmethod
    def backward(ctx, dh, dCK, dnK):
        q, k, v, a, g, Mt, m, Cs, ns, h, den, ks = ctx.saved_tensors
        eps, L, interpret, dot = ctx.consts
        BH, Sp, DP = q.shape
        K = Sp // L
        BV = _value_tile(DP)
        nw = _warps(L, DP)
        _, _, bwd_prep, bwd_states, bwd_chunk = _kernels(interpret)
        dh = q.new_zeros(q.shape) if dh is None else dh.contiguous()
        dCK = q.new_zeros(BH, DP, DP) if dCK is None else dCK.contiguous()
        dnK = q.new_zeros(BH, DP) if dnK is None else dnK.contiguous()

        inv, dden, dMt, dg = (torch.empty_like(a) for _ in range(4))
        dCs = torch.empty_like(Cs)
        dns = torch.empty_like(ns)
        dq, dk, dv = (torch.empty_like(q) for _ in range(3))
        da = torch.empty_like(a)
        with _on_device(q):
            bwd_prep[(BH, K)](
                dh, h, g, Mt, den, inv, dden, dMt, dg, eps, K, L=L, DP=DP, num_warps=nw
            )
            bwd_states[(BH, DP // BV)](
                q,
                dh,
                Mt,
                g,
                m,
                inv,
                dden,
                dCK,
                dnK,
                dCs,
                dns,
                K,
                L=L,
                DP=DP,
                BV=BV,
                DOT=dot,
                num_warps=nw,
            )
            bwd_chunk[(BH, K)](
                q, k, ks, v, dh, a, g, Mt, m, Cs, ns, dCs, dns, inv, dden, dq, dk, dv, da,
                K, L=L, DP=DP, BV=BV, DOT=dot, num_warps=nw,
            )  # fmt: skip

        # C_{j+1} and n_{j+1} are proportional to exp(G_j): dG_j = <dC_{j+1}, C_{j+1}> + (n).
        dG = (dCs[:, 1:] * Cs[:, 1:]).sum((-2, -1)) + (dns[:, 1:] * ns[:, 1:]).sum(-1)
        dg.view(BH, K, L)[:, :, -1] += dG
        # Only m_0 and m_K matter (see the module docstring); m_0 = -inf (no state) gives
        # dC_0 = 0 and so no contribution.
        dm = torch.zeros_like(m)
        dC0, dn0 = dCs[:, 0], dns[:, 0]
        if ctx.needs_input_grad[6]:
            dm[:, 0] = (dC0 * Cs[:, 0]).sum((-2, -1)) + (dn0 * ns[:, 0]).sum(-1)
            dm[:, K] -= dG[:, K - 1]
        return dq, dk, dv, da, dg, dMt, dm, dC0, dn0, None, None, None, None, None


def mlstm_chunkwise_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    eps: float = 1e-6,
    chunk_size: int = 64,
    state: MLSTMState | None = None,
    return_state: bool = False,
):
    """Chunkwise mLSTM with fused Triton kernels; same API and result as :func:`mlstm_chunkwise`.

    Args:
        q, k, v: (B, NH, S, DH), on a CUDA device (or any device with TRITON_INTERPRET=1).
        igate, fgate: gate preactivations (B, NH, S).
        eps: added to the normaliser.
        chunk_size: tokens per chunk; the kernels use it rounded up to a power of two in
            [16, 64] (see :func:`kernel_chunk`), which does not change the result.
        state: optional carried state (C (B, NH, DH, DH), n (B, NH, DH), m (B, NH)), C and n
            scaled by exp(-m).
        return_state: also return the state after the last token.

    Precision follows the inputs' dtype: float64/float32 exact, float32 with TF32 products
    when on CUDA with ``torch.backends.cuda.matmul.allow_tf32``, bf16/fp16 with 16-bit
    tensor-core products and float32 everything else (module docstring, :func:`_dot_precision`).

    Returns:
        h (B, NH, S, DH) in the dtype of q, and the final state when ``return_state`` (float32,
        or float64 for float64 inputs).

    Raises:
        RuntimeError: Triton is not installed, or the tensors are not on CUDA and Triton's
            interpreter mode is off.
        ValueError: inconsistent shapes or an empty sequence.
    """
    interpret = _check_runnable(q.device)
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(
            f"q, k, v must share one (B, NH, S, DH) shape, got {q.shape, k.shape, v.shape}"
        )
    B, NH, S, DH = q.shape
    if igate.shape != (B, NH, S) or fgate.shape != (B, NH, S):
        raise ValueError(f"gates must be (B, NH, S) = {(B, NH, S)}, got {igate.shape, fgate.shape}")
    if S == 0:
        raise ValueError("mlstm_chunkwise_triton needs at least one token (S = 0)")
    cd = torch.float64 if q.dtype == torch.float64 else torch.float32
    dot = _dot_precision(q.dtype, q.device, interpret)
    L = kernel_chunk(chunk_size, S, DH)
    K = -(-S // L)
    pad = K * L - S
    DP = padded_head_dim(DH)
    BH = B * NH

    # Stabilisers: mlstm_chunkwise's quantities, in plain (differentiable) PyTorch, the chunk
    # states' in closed form (the form mlstm_chunkwise takes under torch.compile).
    g, a, G, mu = chunk_gates(igate.to(cd), fgate.to(cd), K, L)
    if state is None:
        C0 = q.new_zeros(B, NH, DH, DH, dtype=cd)
        n0 = q.new_zeros(B, NH, DH, dtype=cd)
        m = q.new_full((B, NH), float("-inf"), dtype=cd)
    else:
        C0, n0, m = (x.to(cd) for x in state)
    P, _, E = state_stabilisers(G, mu, m)  # closed form: no launches per chunk
    m_all = P + E  # (B, NH, K + 1): the state's stabiliser entering each chunk, then after
    Mt = torch.maximum(m_all[..., :K, None], torch.cummax(a, dim=-1).values)  # (B, NH, K, L)

    # Kernel layout: (BH, Sp, DP), zero-padded tokens and head width (k unscaled, see ks).
    def lay(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x.to(cd), (0, DP - DH, 0, pad)).reshape(BH, K * L, DP).contiguous()

    qk = lay(q), lay(k), lay(v)
    # k̂ = k / sqrt(DH) is formed inside the kernels (the scale multiplies fp32 results), so that
    # 16-bit inputs enter the products unrounded: a rounded k̂ would perturb every score by 2^-8
    # relative, which the normaliser's cancellation amplifies (measured ~100x in gradients).
    ks = q.new_full((1,), 1.0 / math.sqrt(DH), dtype=cd)
    C0 = F.pad(C0, (0, DP - DH, 0, DP - DH)).reshape(BH, DP, DP).contiguous()
    n0 = F.pad(n0, (0, DP - DH)).reshape(BH, DP).contiguous()
    flat = [x.reshape(BH, K * L).contiguous() for x in (a, g, Mt)]
    h, CK, nK = _ChunkwiseFn.apply(
        *qk, *flat, m_all.reshape(BH, K + 1).contiguous(), C0, n0, ks, float(eps), L, interpret, dot
    )
    h = h.view(B, NH, K * L, DP)[:, :, :S, :DH].to(q.dtype)
    if return_state:
        CK = CK.view(B, NH, DP, DP)[..., :DH, :DH]
        nK = nK.view(B, NH, DP)[..., :DH]
        return h, (CK, nK, m_all[..., K])
    return h
