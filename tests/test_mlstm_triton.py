"""The fused Triton chunkwise mLSTM against the pure-PyTorch chunkwise form: values, gradients
(including the carried and returned state) and the error messages.

Without CUDA the kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1, set here before the
kernels are first defined), which is slow: shapes are kept small.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from axlstm.layers import mlstm_triton
from axlstm.layers.mlstm import mlstm_chunkwise
from axlstm.layers.mlstm_triton import kernel_chunk, mlstm_chunkwise_triton
from tolerances import EPS32, assert_close_rel

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_kernels = pytest.mark.skipif(
    not mlstm_triton.available(), reason="Triton kernels need CUDA or TRITON_INTERPRET=1"
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# float64: both sides are float64 evaluations of the same sums in another order and chunking, so
# they differ by eps64 (2.2e-16) times the conditioning; the worst factor is the normaliser den_t,
# a sum of terms of either sign that may nearly cancel (h and its gradients carry the rounding
# times |terms| / |den|). 1e-10 of each tensor's scale leaves 4-5 orders of magnitude for that
# factor (measured <= 5e-15 here) and is still 1e10 below the O(1) error of a wrong formula.
REL64 = 1e-10


def random_inputs(B=1, NH=2, S=17, DH=16, gate_scale=1.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, NH, S, DH, generator=g, dtype=dtype) for _ in range(3))
    igate = gate_scale * torch.randn(B, NH, S, generator=g, dtype=dtype)
    fgate = gate_scale * torch.randn(B, NH, S, generator=g, dtype=dtype) + 2.0
    return [x.to(DEVICE) for x in (q, k, v, igate, fgate)]


def random_state(B, NH, DH, dtype=torch.float64, seed=1):
    """A carried state (C, n, m) as an earlier segment would leave it (any values will do)."""
    g = torch.Generator().manual_seed(seed)
    C = torch.randn(B, NH, DH, DH, generator=g, dtype=dtype)
    n = torch.randn(B, NH, DH, generator=g, dtype=dtype)
    m = 2.0 * torch.randn(B, NH, generator=g, dtype=dtype)
    return [x.to(DEVICE) for x in (C, n, m)]


def run_with_grads(fn, inputs, state, outputs="all", dtype=None, **kw):
    """Outputs and the gradients of a random linear loss on the chosen outputs w.r.t. every
    input (q, k, v, igate, fgate, then C, n, m of the incoming state)."""
    cast = (lambda x: x.to(dtype)) if dtype is not None else (lambda x: x)
    args = [cast(x).detach().requires_grad_() for x in inputs]
    st = [cast(x).detach().requires_grad_() for x in state] if state is not None else None
    h, (C, n, m) = fn(*args, state=st, return_state=True, **kw)
    gen = torch.Generator().manual_seed(5)

    def weigh(t):  # the same weights in every dtype: bf16 values, exact in all of them
        w = torch.randn(t.shape, generator=gen, dtype=torch.float64).to(torch.bfloat16)
        return (t * w.to(device=t.device, dtype=t.dtype)).sum()

    loss = 0.0
    if outputs in ("all", "h"):
        loss = loss + weigh(h)
    if outputs in ("all", "state"):
        loss = loss + weigh(C) + weigh(n) + weigh(m)
    leaves = args + (st or [])
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [h, C, n, m], [
        torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads, strict=True)
    ]


GRAD_NAMES = ["dq", "dk", "dv", "di", "df", "dC0", "dn0", "dm0"]


# ---------------------------------------------------------------------------- values
@needs_kernels
@pytest.mark.parametrize("gate_scale", [0.1, 1.0, 5.0, 20.0])
@pytest.mark.parametrize("S,DH", [(1, 16), (17, 24), (64, 16), (100, 24)])
def test_values_equal_reference_float64(S, DH, gate_scale):
    args = random_inputs(S=S, DH=DH, gate_scale=gate_scale)
    ref, ref_state = mlstm_chunkwise(*args, chunk_size=16, return_state=True)
    out, state = mlstm_chunkwise_triton(*args, chunk_size=16, return_state=True)
    assert out.dtype == torch.float64 and out.shape == ref.shape
    assert_close_rel(out, ref, REL64, floor=REL64, what="h")
    for name, a, b in zip("Cnm", state, ref_state, strict=True):
        assert_close_rel(a, b, REL64, floor=REL64, what=name)


@needs_kernels
@pytest.mark.parametrize("chunk", [7, 300])
def test_any_chunk_size_gives_the_reference(chunk):
    """Chunk sizes the kernels cannot use directly are rounded; the result does not change."""
    args = random_inputs(S=45, gate_scale=2.0)
    ref = mlstm_chunkwise(*args, chunk_size=chunk)
    assert_close_rel(mlstm_chunkwise_triton(*args, chunk_size=chunk), ref, REL64, floor=REL64)


def test_kernel_chunk_choice():
    assert kernel_chunk(7, 100, 16) == 16  # rounded up to a power of two, at least 16
    assert kernel_chunk(300, 1000, 16) == 64  # at most 64
    assert kernel_chunk(64, 20, 16) == 32  # no longer than the sequence needs
    assert kernel_chunk(64, 251, 96) == 32  # DH 96 -> 128: (L, DH) tiles of at most 4096
    assert mlstm_triton.padded_head_dim(96) == 128
    assert mlstm_triton.padded_head_dim(8) == 16


# ---------------------------------------------------------------------------- gradients
@needs_kernels
@pytest.mark.parametrize(
    "S,DH,gate_scale,with_state,eps,outputs",
    [
        (1, 16, 1.0, False, 1e-6, "all"),
        (17, 24, 1.0, True, 1e-6, "all"),
        (64, 16, 20.0, True, 1e-6, "all"),
        (100, 16, 5.0, False, 1e-6, "h"),  # no gradient arrives at the returned state
        (33, 16, 2.0, True, 1e-6, "state"),  # only the returned state is used
        (40, 16, 3.0, True, 0.5, "all"),  # a large eps: the stabiliser's own gradient matters
        (20, 96, 2.0, True, 0.3, "all"),  # DH 96 (padded to 128): two value tiles per chunk
    ],
)  # fmt: skip
def test_gradients_equal_reference_float64(S, DH, gate_scale, with_state, eps, outputs):
    inputs = random_inputs(S=S, DH=DH, gate_scale=gate_scale)
    state = random_state(1, 2, DH) if with_state else None
    kw = dict(eps=eps, chunk_size=16, outputs=outputs)
    ref_out, ref_grads = run_with_grads(mlstm_chunkwise, inputs, state, **kw)
    out, grads = run_with_grads(mlstm_chunkwise_triton, inputs, state, **kw)
    for name, a, b in zip(["h", "C", "n", "m"], out, ref_out, strict=True):
        assert_close_rel(a, b, REL64, floor=REL64, what=name)
    # A gradient that is mathematically zero (df at S = 1: h_0 depends on f_0 only through
    # i_0 - log f_0 + log f_0) is rounding of a cancellation among terms of the size of the other
    # gradients, so the absolute floor is REL64 of the largest gradient.
    scale = max(g.abs().max().item() for g in ref_grads)
    for name, a, b in zip(GRAD_NAMES, grads, ref_grads, strict=False):
        assert_close_rel(a, b, REL64, floor=REL64 * scale, what=name)


@needs_kernels
def test_float32_as_accurate_as_the_reference():
    """fp32 kernels against the float64 reference, values and all gradients, within the bound
    the test of the PyTorch forms uses (tests/test_mlstm.py, issue #6): the forms exponentiate
    differences of cumulative log-forget sums F, whose fp32 rounding (~eps |F|) becomes that
    relative error of each decay weight, so 8 eps (1 + max|F|) of each tensor's scale."""
    inputs = random_inputs(B=2, S=100, DH=24, gate_scale=1.0)
    state = random_state(2, 2, 24)
    ref_out, ref_grads = run_with_grads(mlstm_chunkwise, inputs, state, chunk_size=16)
    out, grads = run_with_grads(
        mlstm_chunkwise_triton, inputs, state, dtype=torch.float32, chunk_size=16
    )
    max_F = torch.nn.functional.logsigmoid(inputs[4]).cumsum(-1).abs().max().item()
    rel = 8 * EPS32 * (1 + max_F)
    assert out[0].dtype == torch.float32
    for name, a, b in zip(["h", "C", "n", "m"], out, ref_out, strict=True):
        assert_close_rel(a, b, rel, what=name)
    for name, a, b in zip(GRAD_NAMES, grads, ref_grads, strict=True):
        assert a.dtype == torch.float32
        assert_close_rel(a, b, rel, what=name)


@needs_kernels
def test_carried_state_equals_one_pass():
    """Two segments with the state carried between them: the same outputs and gradients as one
    pass over the whole sequence (gradients flow back through the carried state)."""
    inputs = random_inputs(S=50, gate_scale=2.0)
    cut = lambda x, sl: x[..., sl, :] if x.dim() == 4 else x[..., sl]  # noqa: E731
    whole = [x.detach().requires_grad_() for x in inputs]
    ref = mlstm_chunkwise(*whole, chunk_size=16)
    weight = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3), dtype=ref.dtype)
    ref_grads = torch.autograd.grad((ref * weight.to(DEVICE)).sum(), whole)

    parts = [x.detach().requires_grad_() for x in inputs]
    h1, state = mlstm_chunkwise_triton(*[cut(x, slice(0, 21)) for x in parts], return_state=True)
    h2 = mlstm_chunkwise_triton(*[cut(x, slice(21, 50)) for x in parts], state=state)
    h = torch.cat([h1, h2], dim=2)
    grads = torch.autograd.grad((h * weight.to(DEVICE)).sum(), parts)
    assert_close_rel(h, ref, REL64, what="h")
    for name, a, b in zip(GRAD_NAMES, grads, ref_grads, strict=False):
        assert_close_rel(a, b, REL64, what=name)


# ---------------------------------------------------------------------------- tensor cores
# 16-bit and TF32 products (see the module docstring of mlstm_triton). Tolerance, relative to each
# tensor's scale, for unit roundoff u of the operands (bf16 2^-8, fp16 2^-11 but its unbounded
# operands are bf16, TF32 2^-11): the scores q k̂ᵀ and so the normaliser den, a sum of either sign
# that may nearly cancel, are float32-accurate in every mode (exact 16-bit operands, tf32x3), so
# no cancellation amplifies the rounding. Every other product rounds both operands (<= u of each
# term), and an output passes through at most two such products in series (dq: dP = dnum vᵀ, then
# dS k̂; h: q Cᵀ after the write (c v)ᵀ k̂), so <= 4 rounded operands. For these random-sign
# sums the rounding error relative to the result's scale is u times the reduction's condition
# sum |a b| / max |sum a b| at the scale, O(1) here (both grow like sqrt(length)); taking <= 4
# gives 16 u, plus u for the final rounding of 16-bit outputs: 17 u (6.6e-2 bf16, 8.3e-3 TF32).
# Measured under the interpreter's emulation: <= 2.7 u (bf16) and <= 6.5 u (TF32 by truncation)
# over seeds, DH 16/24/64, chunks 16/64, gate scales 0.1-5. A wrong formula errs by O(1).
def rel_tensor_core(u: float) -> float:
    return 17 * u


BF16_U = 2.0**-8
TF32_U = 2.0**-11


@pytest.fixture
def allow_tf32():
    """Setter of torch.backends.cuda.matmul.allow_tf32, restored afterwards (monkeypatch cannot:
    the flag is a computed attribute, which its undo would try to delete)."""
    matmul = torch.backends.cuda.matmul
    old = matmul.allow_tf32

    def set_flag(value: bool) -> None:
        matmul.allow_tf32 = value

    yield set_flag
    matmul.allow_tf32 = old


def test_dot_precision_selection(allow_tf32):
    """The product mode for every dtype, device, interpreter flag and allow_tf32 setting."""
    select = mlstm_triton._dot_precision
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    for allow in (False, True):
        allow_tf32(allow)
        for device in (cuda, cpu, "cuda:0", "cpu"):
            for interpret in (False, True):
                on_gpu = torch.device(device).type == "cuda" and not interpret
                tf32 = "tf32" if allow and on_gpu else "ieee"
                suffix = "-rounded" if interpret else ""
                expected = {
                    torch.float64: "ieee",
                    torch.float32: tf32,
                    torch.bfloat16: "bf16" + suffix,
                    torch.float16: "fp16" + suffix,
                }
                for dtype, mode in expected.items():
                    got = select(dtype, device, interpret)
                    assert got == mode, (dtype, device, interpret, allow, got)
                    assert got in mlstm_triton.DOT_MODES
    allow_tf32(True)
    assert select(torch.float32, cuda) == "tf32"  # interpret defaults to False
    assert select(torch.float32, cpu) == "ieee"


def grads_vs_float64(dtype, B, NH, S, DH, gate_scale, with_state, chunk):
    """(outputs, grads) of the kernels on ``dtype`` inputs and of the float64 reference on the
    same (exactly representable) values, and max |F| for the float32 bound."""
    inputs = [x.to(dtype).double() for x in random_inputs(B, NH, S, DH, gate_scale)]
    state = [x.to(dtype).double() for x in random_state(B, NH, DH)] if with_state else None
    ref = run_with_grads(mlstm_chunkwise, inputs, state, chunk_size=chunk)
    got = run_with_grads(mlstm_chunkwise_triton, inputs, state, dtype=dtype, chunk_size=chunk)
    max_F = torch.nn.functional.logsigmoid(inputs[4]).cumsum(-1).abs().max().item()
    return got, ref, max_F


def assert_all_close(got, ref, rel, dtype):
    (out, grads), (ref_out, ref_grads) = got, ref
    assert out[0].dtype == dtype and out[1].dtype == torch.float32  # the state stays fp32
    for name, a, b in zip(["h", "C", "n", "m"], out, ref_out, strict=True):
        assert_close_rel(a, b, rel, what=name)
    for name, a, b in zip(GRAD_NAMES, grads, ref_grads, strict=False):  # no state: 5 grads
        assert a.dtype == dtype
        assert_close_rel(a, b, rel, what=name)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "S,DH,gate_scale,with_state", [(100, 24, 1.0, True), (64, 16, 5.0, False), (40, 96, 2.0, True)]
)
def test_16bit_inputs_against_float64(dtype, S, DH, gate_scale, with_state):
    """bf16/fp16 inputs with 16-bit products (emulated exactly under the interpreter: operands
    rounded to nearest even, float32 accumulation) against the float64 reference."""
    got, ref, _ = grads_vs_float64(dtype, 2, 2, S, DH, gate_scale, with_state, chunk=16)
    assert_all_close(got, ref, rel_tensor_core(BF16_U), dtype)


@needs_kernels
def test_tf32_products_against_float64(monkeypatch, allow_tf32):
    """float32 with TF32 products: on CUDA with allow_tf32, else the interpreter's emulation
    (operands truncated to TF32's 10-bit mantissa, float32 accumulation)."""
    if torch.cuda.is_available():
        allow_tf32(True)
        assert mlstm_triton._dot_precision(torch.float32, DEVICE) == "tf32"
    else:
        monkeypatch.setattr(mlstm_triton, "_dot_precision", lambda *a, **k: "tf32-rounded")
    got, ref, max_F = grads_vs_float64(torch.float32, 2, 2, 100, 24, 5.0, True, chunk=16)
    rel = rel_tensor_core(TF32_U) + 8 * EPS32 * (1 + max_F)  # + the float32 test's bound
    assert_all_close(got, ref, rel, torch.float32)


# ---------------------------------------------------------------------------- CUDA only
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16bit_on_cuda(dtype):
    """bf16/fp16 tensor-core products at a training-like shape (chunk 64, DH 64)."""
    got, ref, _ = grads_vs_float64(dtype, 2, 4, 130, 64, 1.0, True, chunk=64)
    assert_all_close(got, ref, rel_tensor_core(BF16_U), dtype)


@needs_cuda
@pytest.mark.parametrize("tf32", [False, True])
def test_realistic_shape_on_cuda(tf32, allow_tf32):
    """ViL-tiny-like shape (DH 96, padded to 128) with a carried state, fp32 against the float64
    reference with the bound of the float32 test, plus the TF32 bound with TF32 products."""
    allow_tf32(tf32)
    assert mlstm_triton._dot_precision(torch.float32, DEVICE) == ("tf32" if tf32 else "ieee")
    got, ref, max_F = grads_vs_float64(torch.float32, 8, 4, 251, 96, 1.0, True, chunk=64)
    rel = 8 * EPS32 * (1 + max_F) + (rel_tensor_core(TF32_U) if tf32 else 0.0)
    assert_all_close(got, ref, rel, torch.float32)


# ---------------------------------------------------------------------------- availability
def test_clear_error_without_triton(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # makes `import triton` fail
    assert not mlstm_triton.available()
    with pytest.raises(RuntimeError, match=r"axlstm\[triton\]"):
        mlstm_chunkwise_triton(*random_inputs(S=3))


def test_clear_error_on_cpu_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    args = [x.cpu() for x in random_inputs(S=3)]
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        mlstm_chunkwise_triton(*args)


def test_module_imports_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import axlstm.layers.mlstm_triton as m\n"
        "assert not m.available()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@needs_kernels
def test_shape_errors():
    q, k, v, i, f = random_inputs(S=5)
    with pytest.raises(ValueError, match="share one"):
        mlstm_chunkwise_triton(q, k[..., :3, :], v, i, f)
    with pytest.raises(ValueError, match="gates"):
        mlstm_chunkwise_triton(q, k, v, i[..., :3], f)


@needs_kernels
@pytest.mark.parametrize("segment", [0, 24])
def test_vil_layer_with_the_triton_backend_equals_chunkwise(segment):
    """The ViL layer runs the kernel both whole-sequence (mlstm) and segment by segment with
    carried state (mlstm_carried); values and gradients equal the chunkwise layer in float64."""
    from axlstm.layers import ViLLayer

    torch.manual_seed(0)
    ref = ViLLayer(32, num_heads=2, backend="chunkwise", chunk_size=16, segment_size=segment)
    fused = ViLLayer(32, num_heads=2, backend="triton", chunk_size=16, segment_size=segment)
    fused.load_state_dict(ref.state_dict())
    ref, fused = ref.double().to(DEVICE), fused.double().to(DEVICE)
    x = torch.randn(2, 50, 32, dtype=torch.float64, device=DEVICE)
    outs, grads = [], []
    for layer in (ref, fused):
        xi = x.clone().requires_grad_()
        y = layer(xi)
        (
            y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype, device=DEVICE).view_as(y)
        ).sum().backward()
        outs.append(y)
        grads.append([xi.grad, *(p.grad for p in layer.parameters())])
    assert_close_rel(outs[1], outs[0], REL64, what="layer output")
    for n, (a, b) in enumerate(zip(grads[1], grads[0], strict=True)):
        assert_close_rel(a, b, REL64, floor=1e-12, what=f"gradient {n}")
