"""Deployment: ONNX graphs (offline and the streaming step), torch.export, torch.compile.

Every export is traced at one length and checked at others, so a length baked into the graph
(a Python branch or loop on the length) fails here. Exports are slow (the exporter traces the
model twice, ~15-35 s per model on 2 cores), so each is made once per module and the default
run holds three of them; the other families' graphs run under ``-m slow``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import axlstm
from axlstm.cli.main import main
from axlstm.core.errors import ConfigError
from axlstm.deploy import (
    STATE_NAMES,
    EncoderGraph,
    OnnxStreamer,
    StreamingStepGraph,
    export_onnx,
    export_program,
    export_streaming_onnx,
    onnx_metadata,
    onnx_session,
    run_onnx,
)
from axlstm.models.streaming import StreamingEmbedder
from tolerances import assert_close_rel

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

FAMILIES = ("test_axlstm", "test_ssast", "test_ssast_orig", "test_ssamba", "test_ssam")
SECONDS = (1.0, 2.0, 10.0, 60.0)
FIXED = dict(norm_mean=-5.0, norm_std=4.0)  # causal front-end statistics, for streaming

# ONNX Runtime and PyTorch compute the same float32 function with other kernels and summation
# orders, and the graph forms reorder it further (the mLSTM's chunk recurrence in closed form,
# Mamba's parallel scan, the DFT as a convolution): their difference is rounding, a few eps32
# of the output scale per reduction, accumulated over the blocks (measured 2e-7 to 1e-5, and
# up to 2e-5 for the state a stream carries over 60 s). A length baked into the graph or a
# state not carried errs by the order of the scale itself. So 1e-4 (~840 eps32) of max|ref|.
REL = 1e-4


def perturbed(name: str, **overrides):
    """A test preset with its zero-initialised weights moved, so every path carries signal."""
    torch.manual_seed(0)
    model = axlstm.create_model(name, **overrides)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def audio(seconds: float, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Noise under two tones: every mel band well above float32 rounding."""
    gen = torch.Generator().manual_seed(seed)
    n = int(seconds * 16000)
    t = torch.arange(n) / 16000.0
    tones = 0.2 * torch.sin(2 * math.pi * 440 * t) + 0.1 * torch.sin(2 * math.pi * 3000 * t)
    return (0.1 * torch.randn(batch, n, generator=gen) + tones).float()


def reference(model, wave: torch.Tensor, from_waveform: bool):
    """(graph input, frames) of the model on the whole clip, as axlstm.embed computes them."""
    with torch.no_grad():
        spec = model.front_end_config.whole_clip().build()(wave)
        return (wave if from_waveform else spec), model.forward_features(spec)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One ONNX export per (preset, input) for the whole module."""
    cache: dict = {}
    folder = tmp_path_factory.mktemp("onnx")

    def get(name: str, from_waveform: bool):
        key = (name, from_waveform)
        if key not in cache:
            model = perturbed(name)
            path = folder / f"{name}_{'wave' if from_waveform else 'spec'}.onnx"
            export_onnx(model, path, from_waveform=from_waveform, optimize=False)
            cache[key] = model, path
        return cache[key]

    return get


def slow(*values):
    return pytest.param(*values, marks=pytest.mark.slow)


# ------------------------------------------------------------------- graph forms (no export)
@pytest.mark.parametrize("name", FAMILIES)
def test_graph_forms_equal_the_eager_encoder(name):
    """The loop- and branch-free forms (run eagerly) against forward_features, every family,
    across the lengths where the eager model switches algorithm (positional table, mLSTM
    form, segments, SSAST's crop or interpolation)."""
    model = perturbed(name)
    graph = EncoderGraph(model)
    fe = model.front_end_config
    for frames in (model.frame_span, 100, 128, 203, 1000, 3000):
        spec = model.example_input(2 if frames < 3000 else 1, frames)
        with torch.no_grad():
            assert_close_rel(graph(spec), model.forward_features(spec), REL / 10, what=name)
    wave = audio(1.3, batch=2)  # the front ends' graph forms
    from axlstm.deploy import front_end_graph

    with torch.no_grad():
        ref = fe.whole_clip().build()(wave)
        assert_close_rel(front_end_graph(fe)(wave), ref, REL, what=f"{name} front end")


@pytest.mark.parametrize("cls_position", ["middle"])
def test_ssamba_middle_cls_token_graph(cls_position):
    model = perturbed("test_ssamba", cls_position=cls_position)
    for frames in (16, 100, 203):
        spec = model.example_input(2, frames)
        with torch.no_grad():
            assert_close_rel(EncoderGraph(model)(spec), model.forward_features(spec), REL / 10)


# ------------------------------------------------------------------------------- ONNX
@pytest.mark.parametrize(
    "name,from_waveform",
    [
        ("test_ssast_orig", False),
        ("test_axlstm", True),
        slow("test_axlstm", False),
        slow("test_ssast", False),
        slow("test_ssast", True),
        slow("test_ssast_orig", True),
        slow("test_ssamba", False),
        slow("test_ssamba", True),
        slow("test_ssam", False),
        slow("test_ssam", True),
    ],
)
def test_onnx_equals_torch_at_every_length(exported, name, from_waveform):
    model, path = exported(name, from_waveform)
    session = onnx_session(path, threads=1)
    meta = onnx_metadata(session)
    assert meta["kind"] == "encoder" and meta["input"] == ("wave" if from_waveform else "spec")
    assert meta["opset"] == "18" and meta["model"] == name
    inputs = session.get_inputs()
    assert [d for d in inputs[0].shape if isinstance(d, str)]  # symbolic batch and time
    for i, seconds in enumerate(SECONDS):
        batch = 3 if i == 0 else (2 if seconds < 60 else 1)  # the batch is dynamic too
        x, ref = reference(model, audio(seconds, batch, seed=i), from_waveform)
        frames, scene = run_onnx(session, x)
        assert frames.shape == tuple(ref.shape), (seconds, frames.shape, ref.shape)
        assert_close_rel(frames, ref, REL, what=f"{name} at {seconds} s")
        assert_close_rel(scene, ref.mean(dim=1), REL, what=f"{name} scene at {seconds} s")


def test_onnx_runs_the_shortest_input(exported):
    """One patch (the shortest input the model takes) and batch 1 run too."""
    model, path = exported("test_ssast_orig", False)
    spec = model.example_input(1, model.frame_span)
    with torch.no_grad():
        ref = model.forward_features(spec)
    frames, _ = run_onnx(onnx_session(path, threads=1), spec)
    assert_close_rel(frames, ref, REL)


# -------------------------------------------------------------------------- streaming
@pytest.fixture(scope="module")
def causal_step(tmp_path_factory):
    model = perturbed("test_axlstm", alternation="unidirectional", front_end=FIXED)
    path = tmp_path_factory.mktemp("stream") / "step.onnx"
    export_streaming_onnx(model, path, from_waveform=True, optimize=False)
    return model, path


def _stream(push, flush, wave, step):
    parts = [push(wave[:, i : i + step]) for i in range(0, wave.shape[-1], step)]
    parts.append(flush())
    return np.concatenate([np.asarray(p) for p in parts], axis=1)


@pytest.mark.parametrize("seconds,step", [(2.0, 640), (10.0, 640), (3.3, 1234)])
def test_streaming_onnx_equals_streaming_embedder(causal_step, seconds, step):
    """40 ms chunks (and odd ones) through ONNX Runtime equal StreamingEmbedder."""
    model, path = causal_step
    wave = audio(seconds, batch=2, seed=3)
    ref_stream = StreamingEmbedder(model)
    ref = _stream(ref_stream.push, ref_stream.flush, wave, step)
    streamer = OnnxStreamer(path, batch=2, threads=1)
    got = _stream(lambda c: streamer.push(c.numpy()), streamer.flush, wave, step)
    assert got.shape == ref.shape
    assert_close_rel(got, ref, REL, what=f"streamed {seconds} s")
    streamer.reset()  # a new stream after reset gives the same again
    again = _stream(lambda c: streamer.push(c.numpy()), streamer.flush, wave, step)
    assert_close_rel(again, ref, REL, what="after reset")


def test_streaming_memory_is_the_state(causal_step, tmp_path):
    """The state a stream carries has a fixed size, whatever the length streamed."""
    model, path = causal_step
    streamer = OnnxStreamer(path, threads=1)
    cfg = model.config
    inner, heads = cfg.expansion * cfg.embed_dim, cfg.mlstm_heads
    per_block = (cfg.conv_kernel_size - 1) * inner + inner**2 // heads + inner + heads
    assert streamer.state_bytes == 4 * cfg.depth * per_block + 8
    sizes = set()
    for seconds in (1.0, 4.0):
        streamer.reset()
        streamer.push(audio(seconds)[0].numpy())
        sizes.add(sum(v.nbytes for v in streamer.state.values()) + streamer.t.nbytes)
    assert sizes == {streamer.state_bytes}
    meta = onnx_metadata(streamer.session)
    assert meta["kind"] == "streaming" and meta["input"] == "wave"
    # a file, chunk by chunk
    import soundfile as sf

    wave = audio(1.5)[0]
    sf.write(tmp_path / "clip.wav", wave.numpy(), 16000, subtype="FLOAT")
    ref_stream = StreamingEmbedder(model)
    ref = _stream(ref_stream.push, ref_stream.flush, wave[None], 640)[0]
    assert_close_rel(streamer.stream_file(tmp_path / "clip.wav"), ref, REL)


def test_streaming_step_graph_equals_offline_features():
    """The step (run eagerly, features in) over a whole input equals the offline encoder."""
    model = perturbed("test_axlstm", alternation="unidirectional")
    step = StreamingStepGraph(model, from_waveform=False)
    spec = model.example_input(2, 203)
    state = [getattr(step, f"{n}0").expand(2, *getattr(step, f"{n}0").shape) for n in STATE_NAMES]
    start, t, outs = torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.int64), []
    with torch.no_grad():
        for a in range(0, 200, 8):
            frames, t, *state = step(spec[:, :, a : a + 8], start, t, *state)
            start = torch.zeros_like(start)
            outs.append(frames)
        ref = model.forward_features(spec[:, :, :200])
    assert_close_rel(torch.cat(outs, dim=1), ref, REL / 10)


# ------------------------------------------------------------------------ torch.export
@pytest.mark.parametrize(
    "name", ["test_ssast_orig", *[slow(n) for n in FAMILIES if n != "test_ssast_orig"]]
)
def test_export_program_equals_eager(name):
    model = perturbed(name).train()  # exported in eval mode, from a copy
    before = copy.deepcopy(model.state_dict())
    program = export_program(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    module = program.module()
    for batch, frames in ((1, model.frame_span), (2, 203), (1, 1000)):
        spec = model.example_input(batch, frames)
        with torch.no_grad():
            got, scene = module(spec)
            ref = model.forward_features(spec)
        assert_close_rel(got, ref, REL / 10, what=f"{name} {batch}x{frames}")
        assert_close_rel(scene, ref.mean(dim=1), REL / 10)


@pytest.mark.parametrize(
    "name",
    ["test_axlstm", "test_ssast", "test_ssast_orig", slow("test_ssamba"), slow("test_ssam")],
)
def test_compile_fullgraph_has_no_graph_break(name):
    """``torch.compile(fullgraph=True)`` of forward_features captures one graph (it raises on a
    graph break); the eager backend keeps the check to the capture."""
    torch._dynamo.reset()
    model = perturbed(name)
    compiled = torch.compile(model.forward_features, fullgraph=True, backend="eager")
    spec = model.example_input(1, 64 if model.frame_span < 16 else 128)
    with torch.no_grad():
        assert_close_rel(compiled(spec), model.forward_features(spec), REL / 10)


# ------------------------------------------------------------------------ bad options
def test_unexportable_options_are_named(tmp_path):
    with pytest.raises(ConfigError, match="alternation='bidirectional'"):
        export_streaming_onnx(perturbed("test_axlstm"), tmp_path / "a.onnx", from_waveform=True)
    with pytest.raises(ConfigError, match="family='ssast'"):
        export_streaming_onnx(perturbed("test_ssast"), tmp_path / "b.onnx", from_waveform=False)
    with pytest.raises(ConfigError, match="SSAMBA"):
        export_streaming_onnx(perturbed("test_ssamba"), tmp_path / "c.onnx", from_waveform=False)
    causal = perturbed("test_axlstm", alternation="unidirectional")  # per-clip normalisation
    with pytest.raises(ConfigError, match="norm_mean"):
        export_streaming_onnx(causal, tmp_path / "d.onnx", from_waveform=True)
    with pytest.raises(ConfigError, match="opset 12"):
        export_onnx(causal, tmp_path / "e.onnx", from_waveform=True, opset=12)
    with pytest.raises(ConfigError, match="frame_layout"):
        export_onnx(causal, tmp_path / "f.onnx", from_waveform=True, frame_layout="columns")
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_reports_unexportable_options_in_one_line(tmp_path, capsys):
    out = tmp_path / "x.onnx"
    assert main(["export-onnx", "test_axlstm", "--out", str(out), "--streaming"]) == 2
    err = capsys.readouterr().err  # (after the preset's random-weights warning)
    last = err.strip().splitlines()[-1]
    assert last.startswith("axlstm export-onnx: error:") and "alternation" in last
    assert "Traceback" not in err
    assert main(["export-onnx", "test_axlstm", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--out must name a .onnx file" in capsys.readouterr().err
    assert main(["export-onnx", "test_axlstm", "--out", str(out), "--opset", "9"]) == 2
    assert "opset 9" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_cli_exports_and_checks(tmp_path, capsys):
    release = perturbed("test_ssast_orig").save_pretrained(tmp_path / "release")
    out = tmp_path / "model.onnx"
    args = ["export-onnx", str(release), "--out", str(out), "--from-features", "--check"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "opset 18" in text
    deviation = float(text.split("max |torch| = ")[1].split()[0])
    assert deviation < REL
