"""Group A: malformed, hostile and odd audio files through ``load_audio`` and ``axlstm embed``."""

from __future__ import annotations

import inspect
import json
import logging
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import axlstm
from axlstm.audio import load_audio
from axlstm.cli.main import main
from axlstm.core.errors import AudioError

from .cases import (
    SR,
    TIMEOUT,
    WAV,
    WAV_FIELDS,
    AudioCase,
    Fails,
    Loads,
    assert_clear_error,
    audio_bytes,
    audio_cases,
    patched,
    tone,
    wav_with,
)

CASES = audio_cases()
timeout = pytest.mark.timeout(TIMEOUT, method="signal")


def check_loads(wave, expect: Loads, path: Path) -> None:
    assert wave.dtype.is_floating_point and str(wave.dtype) == "torch.float32", wave.dtype
    assert wave.dim() == 1, f"{path}: expected (N,), got {tuple(wave.shape)}"
    assert abs(wave.shape[0] - expect.samples) <= expect.tol, (
        f"{path}: {wave.shape[0]} samples, expected {expect.samples} (+-{expect.tol})"
    )
    y = wave.numpy()
    assert np.isfinite(y).all(), f"{path}: non-finite samples loaded"
    if expect.reference is not None:
        n = min(len(y), len(expect.reference))
        e = expect.edge
        np.testing.assert_allclose(
            y[e : n - e], expect.reference[e : n - e], atol=expect.atol + 1e-7, rtol=0
        )


@timeout
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_load_audio(case: AudioCase, tmp_path):
    if case.skip:
        pytest.skip(case.skip)
    path = case.build(tmp_path)
    if isinstance(case.expect, Loads):
        check_loads(load_audio(path, SR), case.expect, path)
        return
    expect: Fails = case.expect
    with pytest.raises(expect.error) as info:
        load_audio(path, SR)
    assert_clear_error(info.value, names=(str(path),), words=expect.words)


# ---------------------------------------------------------------------- truncation option
def _truncation_option() -> str | None:
    params = inspect.signature(load_audio).parameters
    return next((name for name in params if "truncat" in name), None)


@timeout
def test_truncated_wav_with_the_option_gives_the_readable_part_with_a_warning(tmp_path, caplog):
    """By default a truncated file is an error (above); the option turns it into a warning and
    returns the samples that are there."""
    option = _truncation_option()
    assert option is not None, "load_audio has no option to accept truncated files"
    path = tmp_path / "half.wav"
    keep = (len(WAV) - 44) // 2  # bytes of data kept: keep // 2 samples
    path.write_bytes(WAV[: 44 + keep])
    with caplog.at_level(logging.WARNING):
        wave = load_audio(path, SR, **{option: True})
    assert wave.shape[0] == keep // 2
    np.testing.assert_allclose(wave.numpy(), tone(keep // 2, SR), atol=1 / 32768 + 1e-7)
    assert str(path) in caplog.text and "truncat" in caplog.text.lower()


# ------------------------------------------------------------------------------ hypothesis
#: the longest output a ~8 KB file may give (60 s): anything longer is an absurd resampling
MAX_SAMPLES = 60 * SR


@timeout
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    mutations=st.lists(
        st.tuples(
            st.sampled_from(sorted(WAV_FIELDS)),
            st.one_of(
                st.sampled_from([0, 1, 2, 3, 7, 8, 255, 256, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]),
                st.integers(0, 0xFFFFFFFF),
            ),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_wav_header_mutations_load_sanely_or_fail_clearly(mutations, tmp_path):
    """Any value in any header field: a finite waveform of sane length, or an AudioError
    naming the file; never another exception, a hang or an absurd allocation."""
    blob = WAV
    for name, value in mutations:
        offset, fmt = WAV_FIELDS[name]
        blob = patched(blob, offset, fmt, value % (1 << (8 * struct.calcsize(fmt))))
    path = tmp_path / "mutant.wav"
    path.write_bytes(blob)
    try:
        wave = load_audio(path, SR)
    except AudioError as err:
        assert_clear_error(err, names=(str(path),))
        return
    assert wave.dim() == 1 and 0 < wave.shape[0] <= MAX_SAMPLES, tuple(wave.shape)
    assert bool(np.isfinite(wave.numpy()).all())


@timeout
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    fmt=st.sampled_from(["PCM_16", "PCM_24", "FLOAT"]),
    missing=st.integers(1, 10_000),
)
@example(fmt="PCM_16", missing=1)  # the last byte: half a sample
@example(fmt="PCM_24", missing=3)  # the last sample
@example(fmt="FLOAT", missing=4)
def test_every_proper_prefix_of_a_wav_is_refused(fmt, missing, tmp_path):
    """A WAV cut anywhere (in the header or the data) is an AudioError naming the file."""
    blob = audio_bytes(tone(SR // 8, SR), SR, fmt)
    path = tmp_path / "prefix.wav"
    path.write_bytes(blob[: len(blob) - min(missing, len(blob))])
    with pytest.raises(AudioError) as info:
        load_audio(path, SR)
    assert_clear_error(info.value, names=(str(path),))


@timeout
def test_wav_with_sentinel_data_size_is_not_an_absurd_load(tmp_path):
    """0xFFFFFFFF in the data size (streamed WAVs): the samples there, or a clear error."""
    path = tmp_path / "stream.wav"
    path.write_bytes(wav_with(data_size=0xFFFFFFFF))
    try:
        wave = load_audio(path, SR)
    except AudioError as err:
        assert_clear_error(err, names=(str(path),))
        return
    assert wave.shape[0] == len(WAV[44:]) // 2


# --------------------------------------------------------------------------- axlstm embed
GOOD = {  # name: seconds, rate, channels
    "tone.wav": (1.0, SR, 1),
    "stereo44k.flac": (1.2, 44100, 2),
    "silent.wav": (1.0, SR, 1),
    "dc.wav": (1.0, SR, 1),
}


def _make_good(folder: Path) -> None:
    folder.mkdir()
    for name, (seconds, rate, channels) in GOOD.items():
        n = round(seconds * rate)
        if name == "silent.wav":
            data = np.zeros(n)
        elif name == "dc.wav":
            data = np.full(n, 0.25)
        else:
            data = tone(n, rate, 0.3, channels=channels)
        sf.write(folder / name, data, rate, subtype="FLOAT" if name == "dc.wav" else "PCM_16")


BAD_FOR_CLI = [
    "empty_wav",
    "text_named_wav",
    "random_4KiB_flac",
    "truncated_half",
    "declares_more_data",
    "truncated_aiff",
    "nan_float32",
    "rate_2hz",
    "symlink_loop",
    "dev_null_as_wav",
    "broken_symlink",
    "missing_file",
    "zero_channels",
]


def _embed(*args: str, model: str = "test_axlstm") -> int:
    return main(["embed", *args, "--model", model, "--no-progress", "--device", "cpu"])


def _report(out: Path) -> dict:
    return json.loads(out.with_suffix(".json").read_text())


@pytest.mark.timeout(3 * TIMEOUT, method="signal")
def test_embed_reports_each_bad_file_and_embeds_the_good_ones(tmp_path, capsys):
    good = tmp_path / "good"
    _make_good(good)
    bad_root = tmp_path / "bad"
    bad_root.mkdir()
    by_id = {c.id: c for c in CASES}
    bad = [str(by_id[i].build(bad_root)) for i in BAD_FOR_CLI]
    out = tmp_path / "emb.npz"
    code = _embed(str(good), *bad, "--out", str(out))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert code == 0, captured.err
    report = _report(out)
    assert sorted(Path(f).name for f in report["files"]) == sorted(GOOD)
    failed = {f["file"]: f["reason"] for f in report["failed"]}
    assert sorted(failed) == sorted(bad), "each bad file is listed once as failed"
    for path, reason in failed.items():
        assert reason and Path(path).name in reason, f"{path}: reason {reason!r}"
    data = np.load(out)
    assert data["scene"].shape[0] == len(GOOD)
    assert np.isfinite(data["scene"]).all(), "non-finite embeddings written as a success"


@pytest.mark.timeout(2 * TIMEOUT, method="signal")
def test_embed_with_a_named_pipe_never_hangs(tmp_path, capsys):
    """A FIFO among the inputs: reported by name (or the command refuses it up front); the
    good file is never lost to a hang."""
    good = tmp_path / "good.wav"
    sf.write(good, tone(SR, SR, 0.3), SR)
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    out = tmp_path / "emb.npz"
    code = _embed(str(good), str(fifo), "--out", str(out))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 0:
        report = _report(out)
        assert [Path(f).name for f in report["files"]] == ["good.wav"]
        (failed,) = report["failed"]
        assert failed["file"] == str(fifo)
        assert_clear_error(failed["reason"], names=(str(fifo),), words=("pipe", "fifo"))
    else:
        assert code == 1, err
        lines = [x for x in err.splitlines() if x.startswith("axlstm embed: error: ")]
        assert len(lines) == 1, err
        assert_clear_error(lines[0], names=(str(fifo),), words=("pipe", "fifo"))


@pytest.mark.timeout(2 * TIMEOUT, method="signal")
def test_silent_and_constant_clips_embed_the_same_alone_and_in_a_batch(tmp_path, capsys):
    """Valid near-constant clips: finite embeddings that do not depend on the batch."""
    good = tmp_path / "good"
    _make_good(good)
    release = tmp_path / "release"  # fixed weights (a preset name would draw new ones)
    axlstm.create_model("test_axlstm").save_pretrained(release)
    alone = {}
    for name in ("silent.wav", "dc.wav"):
        out = tmp_path / f"alone_{name}.npz"
        code = _embed(str(good / name), "--out", str(out), model=str(release))
        assert code == 0, capsys.readouterr().err
        alone[name] = np.load(out)["scene"][0]
    out = tmp_path / "all.npz"
    assert _embed(str(good), "--out", str(out), "--batch-size", "16", model=str(release)) == 0
    data = np.load(out)
    together = {Path(f).name: s for f, s in zip(data["files"], data["scene"], strict=True)}
    for name, scene in alone.items():
        assert np.isfinite(scene).all(), f"{name}: non-finite embedding"
        np.testing.assert_allclose(together[name], scene, atol=1e-4, rtol=1e-4, err_msg=name)
