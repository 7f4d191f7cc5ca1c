"""torch.compile: every family's encoder and pretraining step trace into one graph
(``fullgraph=True``), one dynamic graph serves every input length of a bucket, the compiled
results equal the eager ones to rounding, and ``axlstm pretrain --compile`` / ``axlstm embed
--compile`` run end to end.

Tolerances (see tests/tolerances.py): the traced graphs run the same float32 operations as
eager except two exact rewrites used under compile, the closed-form chunk states of the
chunkwise mLSTM and the chunked Mamba scan with a closed-form carry. Both replace a sequential
product of decays by the exponential of a sum, so an output differs by a few ulps per block of
its scale, times the size of the summed exponents (tens at these lengths); 128 eps32 of the
tensor's scale (1.5e-5 relative) holds that with room and is still far below the error of a
wrong formula (of the order of the scale). Gradients go through the same computations twice
(forward and backward), 256 eps32; per parameter relative to its own scale, but at least 1 %
of the largest gradient of the model (a bias whose gradient cancels to ~0, e.g. the MPC
head's under InfoNCE, holds only rounding noise).

Most tests use the "eager" or "aot_eager" backends (tracing and AOTAutograd without code
generation: seconds); one test runs Inductor.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import axlstm
from axlstm.cli.main import main
from axlstm.engine import load_checkpoint
from axlstm.engine.metrics import read_records
from axlstm.models import compile as axc
from axlstm.models.compile import (
    CompileError,
    check_compile_available,
    compile_encoder,
    compile_pretraining,
    resolve_compile_mode,
)
from tolerances import EPS32, assert_close_rel

# (preset, overrides, lengths past the training length (one bucket), the training length)
FAMILIES = {
    "axlstm_chunkwise": ("test_axlstm", {"mlstm_backend": "chunkwise"}, (230, 260, 300), 200),
    "axlstm_parallel": ("test_axlstm", {"mlstm_backend": "parallel"}, (230, 260, 300), 200),
    "ssast": ("test_ssast", {}, (230, 260, 300), 200),
    "ssam": ("test_ssam", {}, (230, 260, 300), 200),
    "ssast_orig": ("test_ssast_orig", {}, (160, 192, 230), 128),
    "ssamba": ("test_ssamba", {"drop_path_rate": 0.0}, (160, 192, 230), 128),
}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class CountingBackend:
    """A torch.compile backend that runs the traced graph as it is and counts the graphs
    compiled (first compiles and recompiles alike)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def make(name: str, seed: int = 0):
    preset, overrides, _, _ = FAMILIES[name]
    torch.manual_seed(seed)
    return axlstm.create_model(preset, **overrides)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_forward_features_one_graph_per_bucket_equal_to_eager(name):
    """fullgraph=True (no graph break), one dynamic graph for every length past the training
    length, one more for the training length itself (the stored positions, SSAST's own grid),
    frames as eager."""
    model = make(name).eval()
    _, _, lengths, train_len = FAMILIES[name]
    counter = CountingBackend()
    fn = torch.compile(model.forward_features, backend=counter, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for i, frames in enumerate(lengths):
            x = model.example_input(2, frames)
            ref = model.forward_features(x)
            out = fn(x)
            assert_close_rel(out, ref, 128 * EPS32, what=f"{name} frames {frames}")
            assert counter.graphs == 1, f"{name}: {frames} frames compiled graph {i + 1}"
        if name not in ("ssast", "ssast_orig"):
            return  # the second bucket costs a second trace: checked on the fast families
        x = model.example_input(2, train_len)
        assert_close_rel(fn(x), model.forward_features(x), 128 * EPS32, what=f"{name} train")
    assert counter.graphs == 2


@pytest.mark.parametrize("name", list(FAMILIES))
def test_pretraining_step_compiled_equals_eager(name):
    """The compiled pretraining step (mask drawn eagerly, the rest one AOTAutograd graph)
    draws the same mask from the same generator and gives the eager loss and gradients."""
    model = make(name).train()
    _, _, _, train_len = FAMILIES[name]
    x = model.example_input(2, train_len)
    out = model(x, generator=torch.Generator().manual_seed(5))
    out.loss.backward()
    ref = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    step = compile_pretraining(model, backend="aot_eager")
    got = step(x, generator=torch.Generator().manual_seed(5))
    got.loss.backward()
    assert_close_rel(got.loss, out.loss, 128 * EPS32, what="loss")
    for key, value in out.metrics().items():
        assert_close_rel(got.metrics()[key], value, 128 * EPS32, what=key)
    assert torch.equal(got.mask.cpu(), out.mask.cpu())
    top = max(g.abs().max().item() for g in ref.values())
    for k, p in model.named_parameters():
        if k in ref:
            scale = max(ref[k].abs().max().item(), 1e-2 * top)
            assert_close_rel(p.grad, ref[k], 0, floor=256 * EPS32 * scale, what=k)


def test_inductor_forward_features():
    """The one Inductor test: generated C++ kernels, one dynamic graph, frames as eager."""
    model = make("ssast").eval()
    eager = type(model).forward_features  # the class's method: the instance's is compiled
    compile_encoder(model, backend="inductor", dynamic=True)
    with torch.no_grad():
        for frames in (230, 260):
            x = model.example_input(2, frames)
            ref = eager(model, x)
            assert_close_rel(model.forward_features(x), ref, 128 * EPS32, what=str(frames))


def test_compile_helpers(monkeypatch):
    assert resolve_compile_mode("reduce-overhead", "cpu", None) == "default"
    assert resolve_compile_mode("auto", "cpu", False) == "default"
    assert resolve_compile_mode("auto", "cuda", False) == "reduce-overhead"
    assert resolve_compile_mode("auto", "cuda", True) == "default"
    assert resolve_compile_mode("max-autotune", "cpu", None) == "max-autotune-no-cudagraphs"
    with pytest.raises(ValueError, match="unknown compile mode"):
        resolve_compile_mode("fast", "cpu", None)
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", ("no-such-compiler-xyz++",))
    with pytest.raises(CompileError, match="drop --compile"):
        check_compile_available("cpu", "inductor")
    check_compile_available("cpu", "aot_eager")  # needs no compiler
    model = make("ssast")
    with pytest.raises(CompileError):
        compile_encoder(model)  # checked when asked, not at the first call
    with pytest.raises(ValueError, match="draw_pretrain_mask"):
        compile_pretraining(torch.nn.Linear(2, 2), backend="eager")


# ------------------------------------------------------------------------------ the commands
FAST = [
    "logging.tensorboard=false",
    "logging.plots=false",
    "engine.num_threads=1",
    "data.procedural_size=16",
    "data.procedural_seconds=[1.0, 2.5]",
    "optim.global_batch=2",
    "model.name=test_ssast",
    "engine.ckpt_every=3",
]


def run_pretrain(out, *extra):
    return main(["pretrain", "--config", "debug", "--out", str(out), "--max-steps", "3",
                 *extra, "--set", *FAST])  # fmt: skip


def test_pretrain_compile_cli(tmp_path, monkeypatch, capsys):
    """``--compile`` trains the compiled step; the checkpoint holds the plain model's keys
    (no ``_orig_mod.``) and the run follows the eager run's losses."""
    monkeypatch.setattr(axc, "DEFAULT_BACKEND", "aot_eager")
    assert run_pretrain(tmp_path / "eager") == 0
    assert run_pretrain(tmp_path / "compiled", "--compile") == 0
    capsys.readouterr()
    config = (tmp_path / "compiled" / "config.yaml").read_text()
    assert "compile: true" in config
    eager = load_checkpoint(tmp_path / "eager" / "checkpoints" / "last.pt")["model"]
    compiled = load_checkpoint(tmp_path / "compiled" / "checkpoints" / "last.pt")["model"]
    assert compiled.keys() == eager.keys()
    assert not any("_orig_mod" in k for k in compiled)
    model = axlstm.create_model("test_ssast")
    model.load_state_dict(compiled)  # loads as it is
    for k in eager:  # three AdamW steps of the same batches and masks
        assert_close_rel(compiled[k], eager[k], 1e-4, floor=1e-6, what=k)
    losses = [[r["loss"] for r in read_records(tmp_path / run / "log.jsonl")] for run in
              ("eager", "compiled")]  # fmt: skip
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


def test_embed_compile_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(axc, "DEFAULT_BACKEND", "eager")
    t = np.arange(int(2.5 * 16000)) / 16000
    wav = tmp_path / "a.wav"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    release = axlstm.create_model("test_axlstm").save_pretrained(tmp_path / "release")
    outs = {}
    for tag, extra in (("eager", []), ("compiled", ["--compile"])):
        out = tmp_path / f"{tag}.npz"
        args = ["embed", str(wav), "--out", str(out), "--model", str(release), "--frames"]
        assert main([*args, "--no-progress", "--device", "cpu", *extra]) == 0
        outs[tag] = np.load(out)
    capsys.readouterr()
    for key in ("scene", "frames"):
        assert_close_rel(outs["compiled"][key], outs["eager"][key], 128 * EPS32, what=key)
    assert json.loads(str(outs["compiled"]["settings"]))["model"] == str(release)
    code = main(["embed", str(wav), "--out", str(tmp_path / "s.npz"), "--model", "test_axlstm",
                 "--compile", "--stream", "--no-progress", "--device", "cpu"])  # fmt: skip
    assert code == 2
    assert "--stream" in capsys.readouterr().err
