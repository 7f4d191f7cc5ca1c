"""Causal AxLSTM streaming: chunk-by-chunk results equal the offline forward pass."""

from __future__ import annotations

import pytest
import torch

import axlstm
from axlstm.audio import FrontEndConfig, LogMelFrontEnd
from axlstm.audio.streaming import StreamingLogMel
from axlstm.models.streaming import StreamingEmbedder, StreamingEncoder
from tolerances import assert_close_rel

FIXED = dict(norm_mean=-5.0, norm_std=4.0)


def chunks(total: int, sizes: list[int]):
    start, i = 0, 0
    while start < total:
        n = sizes[i % len(sizes)]
        yield start, min(total, start + n)
        start += n
        i += 1


def causal_model(dtype=torch.float32, **kw):
    torch.manual_seed(0)
    model = axlstm.create_model(
        "test_axlstm", depth=3, alternation="unidirectional", mlstm_chunk_size=8,
        front_end=FIXED, **kw,
    )  # fmt: skip
    with torch.no_grad():  # move zero-initialised weights so every path carries signal
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model.to(dtype).eval()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_streaming_log_mel_equals_offline(dtype, tol):
    wave = torch.randn(2, 16000 + 333, dtype=dtype, generator=torch.Generator().manual_seed(1))
    cfg = FrontEndConfig(**FIXED)
    offline = LogMelFrontEnd(cfg).to(dtype)(wave)
    stream = StreamingLogMel(cfg, dtype=dtype)
    parts = [stream.push(wave[:, a:b]) for a, b in chunks(wave.shape[1], [1, 150, 37, 999, 160])]
    parts.append(stream.flush())
    online = torch.cat([p for p in parts if p is not None], dim=2)
    assert online.shape == offline.shape
    torch.testing.assert_close(online, offline, atol=tol, rtol=tol)


# Streaming runs the mLSTMs chunkwise with carried state, offline runs the parallel form whose
# fp32 error is ~eps (1 + max|cumulative log-forget|) of the output scale per layer (~1e-6
# measured through 3 layers, any kernel set): 2e-5 (~170 eps) of max|offline|; a state not
# carried over errs by ~the scale itself. float64: the same in units of 1e-9.
STREAM_REL = 2e-5


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, STREAM_REL)])
def test_streaming_encoder_equals_offline_forward(dtype, tol):
    model = causal_model(dtype)
    spec = torch.randn(2, 1, 203, 80, dtype=dtype, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        offline = model.forward_features(spec)  # (2, 50, 5 d)
    stream = StreamingEncoder(model)
    outs = [stream.push(spec[:, :, a:b]) for a, b in chunks(203, [3, 1, 17, 40, 8])]
    online = torch.cat(outs, dim=1)
    assert online.shape == offline.shape
    assert_close_rel(online, offline, tol, what="streamed")  # relative to max|offline|
    # a second stream after reset gives the same again
    stream.reset()
    assert_close_rel(stream.push(spec), offline, tol, what="after reset")


def test_streaming_embedder_from_raw_audio():
    model = causal_model()
    wave = 0.3 * torch.randn(2, 24000, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        offline = model.forward_features(LogMelFrontEnd(model.front_end_config)(wave))
    emb = StreamingEmbedder(model)
    outs = [emb.push(wave[:, a:b]) for a, b in chunks(24000, [100, 2048, 555])]
    outs.append(emb.flush())
    online = torch.cat(outs, dim=1)
    assert online.shape == offline.shape == (2, (1 + 24000 // 160) // 4, model.frame_dim)
    assert_close_rel(online, offline, STREAM_REL, what="streamed")  # see STREAM_REL
    ts = emb.timestamps(0, online.shape[1])
    assert ts[0] == pytest.approx(15.0) and (ts.diff() == 40.0).all()


def test_causal_model_does_not_look_ahead():
    model = causal_model()
    spec = torch.randn(1, 1, 200, 80)
    later = spec.clone()
    later[..., 120:, :] += 1.0  # change time patches 30 .. 49 only
    with torch.no_grad():
        a, b = model.forward_features(spec), model.forward_features(later)
    torch.testing.assert_close(a[:, :30], b[:, :30])
    assert not torch.allclose(a[:, 30:], b[:, 30:])


def test_streaming_refuses_what_cannot_stream():
    with pytest.raises(ValueError, match="unidirectional"):
        StreamingEncoder(axlstm.create_model("test_axlstm"))
    with pytest.raises(ValueError, match="whole clip"):
        StreamingLogMel(FrontEndConfig())
    model = axlstm.create_model("test_axlstm", alternation="unidirectional")
    with pytest.raises(ValueError, match="whole clip"):
        StreamingEmbedder(model)  # its front end normalises per clip
    with pytest.raises(ValueError, match="alternation"):
        axlstm.create_model("test_axlstm", alternation="sideways")


def test_fixed_statistics_front_end_round_trips_through_a_release(tmp_path):
    model = causal_model()
    model.save_pretrained(tmp_path / "rel")
    loaded = axlstm.load_model(tmp_path / "rel")
    assert loaded.front_end_config == FrontEndConfig(**FIXED)
    assert loaded.config.alternation == "unidirectional"


def test_embed_cli_stream_equals_offline(tmp_path):
    import numpy as np
    import soundfile as sf

    from axlstm.cli.main import main

    model = causal_model()
    model.save_pretrained(tmp_path / "causal")
    rng = np.random.default_rng(0)
    wave = (0.2 * rng.standard_normal(16000 * 3)).astype(np.float32)
    sf.write(tmp_path / "a.wav", wave, 16000, subtype="FLOAT")
    sf.write(tmp_path / "b.wav", wave[:12345], 16000, subtype="FLOAT")
    (tmp_path / "bad.wav").write_text("not audio")
    out = tmp_path / "emb.npz"
    args = ["embed", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), str(tmp_path / "bad.wav")]
    args += ["--model", str(tmp_path / "causal"), "--out", str(out), "--frames", "--stream"]
    assert main([*args, "--block-seconds", "0.37", "--no-progress", "--device", "cpu"]) == 0
    data = np.load(out)
    assert list(data["failed_files"]) == [str(tmp_path / "bad.wav")]
    for i, n in enumerate((len(wave), 12345)):
        with torch.no_grad():
            spec = LogMelFrontEnd(model.front_end_config)(torch.from_numpy(wave[:n])[None])
            offline = model.forward_features(spec)[0].numpy()
        frames = data["frames"][data["offsets"][i] : data["offsets"][i + 1]]
        assert_close_rel(frames, offline, STREAM_REL, what=f"file {i}")  # see STREAM_REL
        np.testing.assert_allclose(data["scene"][i], offline.mean(0), atol=1e-5, rtol=1e-5)


def test_embed_cli_stream_refuses_a_bidirectional_model(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from axlstm.cli.main import main

    sf.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    code = main(
        ["embed", str(tmp_path / "a.wav"), "--model", "test_axlstm", "--out",
         str(tmp_path / "e.npz"), "--stream", "--device", "cpu"]
    )  # fmt: skip
    assert code == 2 and "unidirectional" in capsys.readouterr().err
