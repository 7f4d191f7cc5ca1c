"""GPU checks: CUDA results equal CPU ones, autocast trains, fixtures hold on the GPU.

Every test here skips without a CUDA device; CI has none, the device machine runs them.
"""

from __future__ import annotations

import pytest
import torch

import axlstm
from axlstm.layers.mlstm import mlstm
from axlstm.models.streaming import StreamingEncoder
from conftest import fixture_dir, load_fixture

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _exact_fp32_matmul():
    """Compare in true fp32: TF32 would change results at the 1e-3 level."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


MSM_MODELS = [
    n
    for n in axlstm.list_models()
    if axlstm.create_model(n, depth=2).release_class == "masked_spec"
]


@pytest.mark.parametrize("name", MSM_MODELS)
def test_cuda_forward_backward_match_cpu(name):
    torch.manual_seed(0)
    cpu = axlstm.create_model(name, depth=2)
    gpu = axlstm.create_model(name, depth=2).to(CUDA)
    gpu.load_state_dict(cpu.state_dict())
    spec = torch.randn(2, 1, 200, 80)
    mask = (torch.rand(2, 250) < 0.5).float()
    out_c = cpu(spec, mask=mask)
    out_g = gpu(spec.to(CUDA), mask=mask.to(CUDA))
    out_c.loss.backward()
    out_g.loss.backward()
    torch.testing.assert_close(out_g.pred.cpu(), out_c.pred, atol=1e-4, rtol=1e-4)
    for (k, p_c), p_g in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        if p_c.grad is not None:
            torch.testing.assert_close(p_g.grad.cpu(), p_c.grad, atol=1e-4, rtol=1e-3, msg=k)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["axlstm_tiny", "ssast_tiny"])
def test_autocast_training_step_is_finite(name, dtype):
    model = axlstm.create_model(name).to(CUDA)
    spec = torch.randn(4, 1, 200, 80, device=CUDA)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for _ in range(3):
        with torch.autocast("cuda", dtype=dtype):
            loss = model(spec).loss
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        assert torch.isfinite(loss)
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
        assert torch.isfinite(model.forward_features(spec)).all()


@pytest.mark.parametrize("S", [100, 251, 2000])
def test_mlstm_forms_agree_on_cuda(S):
    g = torch.Generator(device=CUDA).manual_seed(0)
    q, k, v = (torch.randn(2, 4, S, 32, device=CUDA, generator=g) for _ in range(3))
    i = torch.randn(2, 4, S, device=CUDA, generator=g)
    f = torch.randn(2, 4, S, device=CUDA, generator=g) + 3
    ref = mlstm(*(t.double() for t in (q, k, v, i, f)), backend="chunkwise")
    scale = ref.abs().max().clamp_min(1)
    # fp32 against a float64 reference: the chunkwise form stays within 1e-5 at any length;
    # the parallel form's global cumulative sums lose precision as S grows (5.9e-5 at S=2000)
    chk = mlstm(q, k, v, i, f, backend="chunkwise")
    par = mlstm(q, k, v, i, f, backend="parallel")
    assert ((chk - ref).abs().max() / scale).item() < 1e-5
    assert ((par - ref).abs().max() / scale).item() < (1e-5 if S <= 251 else 1e-4)


@pytest.mark.parametrize("name", ["axlstm_a", "axlstm_b", "ssast_c"])
def test_official_fixtures_on_cuda(name):
    arch, kw = {
        "axlstm_a": ("axlstm_tiny", dict(embed_dim=64, depth=2)),
        "axlstm_b": ("axlstm_tiny", dict(embed_dim=64, depth=4)),
        "ssast_c": ("ssast_tiny", dict(embed_dim=64, depth=2, num_heads=4)),
    }[name]
    path = fixture_dir("official") / name / "state_dict.pth"
    model = axlstm.load_official(path, arch, frame_layout="official", **kw).to(CUDA)
    with torch.no_grad():
        feats = model.forward_features(load_fixture("official", f"{name}/input_lms.pt").to(CUDA))
    ref = load_fixture("official", f"{name}/features.pt")
    torch.testing.assert_close(feats.cpu(), ref, atol=1e-4, rtol=1e-4)


def test_log_mel_on_cuda_matches_cpu():
    wave = torch.randn(3, 48000)
    torch.testing.assert_close(
        axlstm.audio.log_mel(wave.to(CUDA)).cpu(), axlstm.audio.log_mel(wave), atol=1e-4, rtol=1e-4
    )


def test_streaming_on_cuda_matches_offline():
    model = axlstm.create_model("test_axlstm", alternation="unidirectional").to(CUDA).eval()
    spec = torch.randn(2, 1, 120, 80, device=CUDA)
    with torch.no_grad():
        offline = model.forward_features(spec)
    stream = StreamingEncoder(model)
    online = torch.cat([stream.push(spec[:, :, a : a + 20]) for a in range(0, 120, 20)], dim=1)
    torch.testing.assert_close(online, offline, atol=1e-5, rtol=1e-5)


def test_probe_on_cuda_matches_cpu():
    """The same initial weights, batches and dropout masks (drawn on the CPU): a GPU probe
    follows the CPU one up to rounding, so the chosen epoch and the scores agree."""
    from axlstm.evaluation import ProbeConfig, train_probe

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 16, generator=g)
    y = torch.nn.functional.one_hot((x[:, 0] > 0).long() + (x[:, 1] > 0).long(), 3).float()
    config = ProbeConfig(hidden_dim=32, max_epochs=30, check_every=3, patience=3)
    kw = dict(prediction_type="multiclass", scores=["top1_acc"], config=config, seed=1)
    _, cpu = train_probe(x[:200], y[:200], x[200:250], y[200:250], x_test=x[250:],
                         y_test=y[250:], **kw)  # fmt: skip
    _, gpu = train_probe(x[:200], y[:200], x[200:250], y[200:250], x_test=x[250:],
                         y_test=y[250:], device=CUDA, **kw)  # fmt: skip
    assert gpu.best_epoch == cpu.best_epoch
    assert gpu.test_scores == pytest.approx(cpu.test_scores, abs=0.02)
