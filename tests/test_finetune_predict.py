"""Classifier releases and prediction (issue 12, item 7): save/load, windows, scores, the CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

import axlstm
from axlstm.cli.main import main
from axlstm.core.errors import AudioError, CheckpointError
from axlstm.finetune.predict import Classifier, window_starts
from axlstm.finetune.release import load_classifier, save_classifier
from axlstm.models import AudioClassifier, SSASTClassifier

SR = 16000
LABELS = ["dog", "cat", "bird"]


def noise(seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(round(seconds * sr))).astype(np.float32)


@pytest.fixture(scope="module")
def axlstm_clf():
    """A tiny AxLSTM classifier (log-mel front end), multiclass, fine-tuned at 0.5 s."""
    torch.manual_seed(1)
    return AudioClassifier(axlstm.create_model("test_axlstm"), len(LABELS)).eval()


@pytest.fixture(scope="module")
def axlstm_dir(axlstm_clf, tmp_path_factory):
    out = tmp_path_factory.mktemp("releases") / "axlstm_clf"
    save_classifier(
        axlstm_clf,
        out,
        labels=LABELS,
        multilabel=False,
        clip_seconds=0.5,
        provenance={"data": "unit test"},
    )
    return out


@pytest.fixture(scope="module")
def ssast_clf():
    """The original SSAST's fine-tuning model (Kaldi fbank, fixed input of 64 frames)."""
    torch.manual_seed(2)
    enc = axlstm.create_model("test_ssast_orig")
    clf = SSASTClassifier.from_pretrained(enc, 4, fstride=10, tstride=10, input_tdim=64)
    return clf.eval()


@pytest.fixture(scope="module")
def ssast_dir(ssast_clf, tmp_path_factory):
    out = tmp_path_factory.mktemp("releases") / "ssast_clf"
    save_classifier(ssast_clf, out, labels=list("wxyz"), multilabel=True, clip_seconds=None)
    return out


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """Good files (long, short, stereo at 44.1 kHz) and bad ones."""
    root = tmp_path_factory.mktemp("audio")
    sf.write(root / "long.wav", noise(3.0, 0), SR, subtype="FLOAT")
    sf.write(root / "short.flac", np.stack([noise(0.3, 1, 44100)] * 2, axis=1), 44100)
    sf.write(root / "exact.wav", noise(0.5, 2), SR, subtype="FLOAT")
    (root / "garbage.wav").write_bytes(b"RIFF....this is not a wave file")
    (root / "empty.wav").write_bytes(b"")
    sf.write(root / "tiny.wav", np.zeros(100, np.float32), SR)
    return root


def probs(model, spec: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
    with torch.no_grad():
        logits = model(spec[None, None])[0]
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, -1)


# ------------------------------------------------------------------------------------ release
def test_layout_and_the_encoder_stays_a_release(axlstm_dir, axlstm_clf):
    names = sorted(p.name for p in axlstm_dir.iterdir())
    assert names == [
        "README.md",
        "classifier.json",
        "config.json",
        "head.safetensors",
        "labels.json",
        "model.safetensors",
    ]
    assert json.loads((axlstm_dir / "labels.json").read_text()) == {
        "labels": LABELS,
        "multilabel": False,
    }
    cfg = json.loads((axlstm_dir / "classifier.json").read_text())
    assert cfg["clip_seconds"] == 0.5 and cfg["window_frames"] == 51 and cfg["hop_frames"] == 25
    assert cfg["provenance"] == {"data": "unit test"} and cfg["aggregation"] == "mean"
    encoder = axlstm.load_model(axlstm_dir)  # an ordinary release as well
    x = torch.randn(1, 1, 51, 80)
    with torch.no_grad():
        assert torch.equal(encoder.encode(x), axlstm_clf.encoder.encode(x))


@pytest.mark.parametrize("family", ["axlstm", "ssast"])
def test_round_trip_is_bit_for_bit(family, request):
    clf = request.getfixturevalue(f"{family}_clf")
    loaded = load_classifier(request.getfixturevalue(f"{family}_dir"))
    assert isinstance(loaded, Classifier) and type(loaded.model) is type(clf)
    assert loaded.model.pool == clf.pool
    ours, theirs = clf.state_dict(), loaded.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    n_mels = clf.front_end_config.n_mels
    x = torch.randn(2, 1, 64, n_mels)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), clf(x))
    wave = torch.from_numpy(noise(2.2, 5))
    first = loaded.predict(wave, timeline=True)[0]
    second = load_classifier(request.getfixturevalue(f"{family}_dir")).predict(wave, timeline=True)[
        0
    ]
    assert np.array_equal(first.window_probabilities, second.window_probabilities)


def test_ssast_window_is_its_fixed_input(ssast_dir):
    loaded = load_classifier(ssast_dir)
    assert loaded.multilabel and loaded.labels == list("wxyz")
    assert loaded.window_frames == 64 and loaded.hop_frames == 32
    assert loaded.clip_seconds == pytest.approx(0.64)


# ---------------------------------------------------------------------------------- windows
def test_window_starts():
    assert window_starts(51, 51, 25) is None and window_starts(10, None, 1) is None
    assert window_starts(301, 51, 25) == list(range(0, 251, 25))  # the last ends on frame 300
    assert window_starts(210, 51, 25) == [0, 25, 50, 75, 100, 125, 150, 159]


def test_long_file_timeline(axlstm_dir, audio):
    clf = load_classifier(axlstm_dir)
    (pred,) = clf.predict(audio / "long.wav", timeline=True, top_k=2)
    assert pred.ok and pred.duration == pytest.approx(3.0)
    wave = torch.from_numpy(noise(3.0, 0))
    spec = clf.front_end.build()(wave[None])[0, 0]  # (301, 80)
    starts = window_starts(spec.shape[0], 51, 25)
    assert len(pred.timeline) == len(starts) == 11
    for w, s in zip(pred.timeline, starts, strict=True):
        assert w["start"] == pytest.approx(s / 100) and len(w["labels"]) == 2
        assert w["end"] == pytest.approx(min((s + 51) / 100, 3.0))
    assert pred.timeline[-1]["end"] == pytest.approx(3.0)
    windows = torch.stack([probs(clf.model, spec[s : s + 51]) for s in starts])
    assert np.allclose(pred.window_probabilities, windows.numpy(), atol=1e-6)
    assert np.allclose(pred.probabilities, windows.mean(0).numpy(), atol=1e-6)


def test_short_file_equals_one_forward_pass(axlstm_dir, ssast_dir, audio):
    clf = load_classifier(axlstm_dir)
    (pred,) = clf.predict(audio / "exact.wav", timeline=True)  # 0.5 s: exactly one window
    spec = clf.front_end.build()(torch.from_numpy(noise(0.5, 2))[None])[0, 0]
    assert spec.shape[0] == clf.window_frames
    assert np.allclose(pred.probabilities, probs(clf.model, spec).numpy(), atol=1e-6)
    assert [(w["start"], w["end"]) for w in pred.timeline] == [(0.0, pytest.approx(0.5))]
    # shorter: the whole clip once, repeated to the window as training crops are
    wave = torch.from_numpy(noise(0.3, 3))
    (pred,) = clf.predict(wave)
    spec = clf.front_end.build()(wave[None])[0, 0]
    tiled = spec.repeat(math.ceil(51 / spec.shape[0]), 1)[:51]
    assert np.allclose(pred.probabilities, probs(clf.model, tiled).numpy(), atol=1e-6)
    # SSAST: its front end pads to the fixed input, as the official evaluation does
    ssast = load_classifier(ssast_dir)
    (pred,) = ssast.predict(wave)
    spec = ssast.front_end.build()(wave[None])[0, 0]
    assert spec.shape[0] == 64
    assert np.allclose(pred.probabilities, probs(ssast.model, spec, True).numpy(), atol=1e-6)


def test_multilabel_uses_sigmoid_and_multiclass_softmax(axlstm_dir, ssast_dir):
    wave = torch.from_numpy(noise(0.6, 4))
    (multi,) = load_classifier(ssast_dir).predict(wave)
    spec = load_classifier(ssast_dir).front_end.build()(wave[None])[0, 0]
    with torch.no_grad():
        logits = load_classifier(ssast_dir).model(spec[None, None])[0]
    assert np.allclose(multi.probabilities, torch.sigmoid(logits).numpy(), atol=1e-6)
    assert not math.isclose(float(multi.probabilities.sum()), 1.0, abs_tol=1e-3)
    (single,) = load_classifier(axlstm_dir).predict(wave)
    assert float(single.probabilities.sum()) == pytest.approx(1.0, abs=1e-5)


def test_top_k_is_ordered(axlstm_dir):
    clf = load_classifier(axlstm_dir)
    wave = torch.from_numpy(noise(1.3, 6))
    (full,) = clf.predict(wave, top_k=10)  # more than the classes: all of them
    order = np.argsort(-full.probabilities, kind="stable")
    assert full.labels == [LABELS[i] for i in order]
    assert full.scores == sorted(full.scores, reverse=True)
    assert full.scores == [pytest.approx(float(full.probabilities[i])) for i in order]
    (two,) = clf.predict(wave, top_k=2)
    assert two.labels == full.labels[:2] and two.scores == full.scores[:2]
    with pytest.raises(ValueError, match="top_k"):
        clf.predict(wave, top_k=0)


def test_python_api_reports_bad_files_and_refuses_bad_waves(axlstm_dir, audio):
    clf = load_classifier(axlstm_dir)
    names = [audio / n for n in ("long.wav", "garbage.wav", "short.flac", "tiny.wav")]
    preds = clf.predict(names, batch_size=3)
    assert [p.ok for p in preds] == [True, False, True, False]
    assert "not a recognised audio format" in preds[1].error
    assert "too short" in preds[3].error
    assert preds[2].duration == pytest.approx(0.3, abs=1e-3)
    with pytest.raises(AudioError, match="clip 0"):
        clf.predict(torch.full((4000,), float("nan")))


def test_non_finite_scores_fail_the_file(axlstm_dir, audio):
    clf = load_classifier(axlstm_dir)
    with torch.no_grad():
        clf.model.mlp_head[1].bias.fill_(float("inf"))
    (pred,) = clf.predict(audio / "long.wav")
    assert not pred.ok and "non-finite" in pred.error


# -------------------------------------------------------------------------------- refusals
def test_an_encoder_release_is_not_a_classifier(tmp_path):
    axlstm.create_model("test_axlstm").save_pretrained(tmp_path / "enc")
    with pytest.raises(CheckpointError, match=r"not a classifier: no labels\.json; fine-tune"):
        load_classifier(tmp_path / "enc")


def _copy(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


@pytest.mark.parametrize(
    ("labels_text", "match"),
    [
        ('{"labels": ["dog", "cat"], "multilabel": false}', "lists 2 labels .* 3 classes"),
        ('{"labels": ["dog", "cat", "dog"], "multilabel": false}', "'dog' appears twice"),
        ('{"labels": ["dog", "cat", ""], "multilabel": false}', "label 2 must be a non-empty"),
        ('{"labels": "dog", "multilabel": false}', "'labels' must be a non-empty list"),
        ('{"labels": ["a", "b", "c"], "multilabel": "no"}', "'multilabel' must be true"),
        ('{"labels": ["a", "b", "c"], "labels": ["a"], "multilabel": false}', "duplicate key"),
        ('["dog", "cat", "bird"]', "not an object"),
        ('{"labels": ["dog", "cat"', "invalid JSON"),
        ("", "empty"),
    ],
)
def test_corrupt_labels_are_refused(axlstm_dir, tmp_path, labels_text, match):
    bad = _copy(axlstm_dir, tmp_path / "bad")
    (bad / "labels.json").write_text(labels_text)
    with pytest.raises(CheckpointError, match=match) as err:
        load_classifier(bad)
    assert "labels.json" in str(err.value)


def test_bad_head_and_config_are_refused(axlstm_dir, tmp_path):
    bad = _copy(axlstm_dir, tmp_path / "nan")
    state = load_file(bad / "head.safetensors")
    state["mlp_head.1.weight"][0, 0] = float("nan")
    save_file(state, bad / "head.safetensors")
    with pytest.raises(CheckpointError, match=r"head.safetensors: non-finite.*mlp_head\.1"):
        load_classifier(bad)
    bad = _copy(axlstm_dir, tmp_path / "shape")
    state["mlp_head.1.weight"] = torch.zeros(3, 7)
    save_file(state, bad / "head.safetensors")
    with pytest.raises(CheckpointError, match=r"does not fit .*shape mismatch"):
        load_classifier(bad)
    bad = _copy(axlstm_dir, tmp_path / "cfg")
    cfg = json.loads((bad / "classifier.json").read_text())
    (bad / "classifier.json").write_text(json.dumps({**cfg, "pool": "max"}))
    with pytest.raises(CheckpointError, match=r"classifier\.json: 'pool' must be one of"):
        load_classifier(bad)
    (bad / "classifier.json").unlink()
    with pytest.raises(CheckpointError, match="not a complete classifier release: no classifier"):
        load_classifier(bad)


def test_save_refuses_bad_labels(axlstm_clf, tmp_path):
    with pytest.raises(ValueError, match="2 labels for a head of 3"):
        save_classifier(axlstm_clf, tmp_path, labels=["a", "b"], multilabel=False, clip_seconds=1)
    with pytest.raises(ValueError, match="clip_seconds"):
        save_classifier(axlstm_clf, tmp_path, labels=LABELS, multilabel=False, clip_seconds=-1)


# ------------------------------------------------------------------------------------- CLI
def run_predict(*args: str) -> int:
    return main(["predict", *args, "--no-progress", "--device", "cpu"])


def test_cli_csv(axlstm_dir, audio, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    files = [str(audio / n) for n in ("long.wav", "garbage.wav", "short.flac")]
    assert run_predict(*files, "--model", str(axlstm_dir), "--out", str(out), "--top-k", "2") == 0
    assert "labelled 2 of 3 files" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == [
        "file",
        "duration",
        "label_1",
        "score_1",
        "label_2",
        "score_2",
        "error",
    ]
    assert [r["file"] for r in rows] == files
    assert rows[1]["error"] and not rows[1]["label_1"]
    (expected,) = load_classifier(axlstm_dir).predict(files[0], top_k=2)
    assert [rows[0]["label_1"], rows[0]["label_2"]] == expected.labels
    assert float(rows[0]["score_1"]) == pytest.approx(expected.scores[0], rel=1e-5)
    assert not (tmp_path / "preds.csv.partial").exists()
    # the timeline goes to a second CSV
    assert run_predict(files[0], "--model", str(axlstm_dir), "--out", str(out), "--timeline") == 0
    windows = list(csv.DictReader((tmp_path / "preds.timeline.csv").open()))
    assert len(windows) == 11 and float(windows[-1]["end"]) == pytest.approx(3.0)


def test_sigterm_between_the_renames_is_held_until_both_are_done(
    axlstm_dir, audio, tmp_path, monkeypatch, caplog
):
    """--timeline writes two files; a signal after the first rename must not leave the
    second one partial."""
    import os
    import signal

    import axlstm.cli.predict as cli_predict

    real = os.replace
    calls = []

    def replace_then_signal(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(cli_predict.os, "replace", replace_then_signal)
    out = tmp_path / "preds.csv"
    args = [str(audio / "long.wav"), "--model", str(axlstm_dir), "--out", str(out), "--timeline"]
    assert main(["predict", *args, "--no-progress", "--device", "cpu"]) == 0
    assert len(calls) == 2 and out.is_file() and (tmp_path / "preds.timeline.csv").is_file()
    assert not list(tmp_path.glob("*.partial"))
    assert "SIGTERM arrived while renaming the finished output" in caplog.text


def test_cli_jsonl_with_timeline(ssast_dir, audio, tmp_path):
    out = tmp_path / "preds.jsonl"
    args = [str(audio), "--model", str(ssast_dir), "--out", str(out), "--timeline"]
    assert run_predict(*args) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {line["file"].rsplit("/", 1)[-1]: line for line in lines}
    assert set(by_name) == {"long.wav", "short.flac", "exact.wav", "garbage.wav", "empty.wav",
                            "tiny.wav"}  # fmt: skip
    assert "empty" in by_name["empty.wav"]["error"]
    long = by_name["long.wav"]
    assert len(long["labels"]) == 4 and len(long["timeline"]) == 9  # 298 fbank frames
    assert long["timeline"][1]["start"] == pytest.approx(0.32)


def test_cli_failures_and_usage(axlstm_dir, audio, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    bad = [str(audio / "garbage.wav"), str(audio / "empty.wav")]
    assert run_predict(*bad, "--model", str(axlstm_dir), "--out", str(out)) == 1
    assert "labelled 0 of 2 files" in capsys.readouterr().out
    assert all("error" in json.loads(x) for x in out.read_text().splitlines())
    assert run_predict(bad[0], "--model", str(axlstm_dir), "--out", str(tmp_path / "p.txt")) == 2
    assert "--out must end in .csv or .jsonl" in capsys.readouterr().err
    enc = tmp_path / "enc"
    axlstm.create_model("test_axlstm").save_pretrained(enc)
    assert run_predict(bad[0], "--model", str(enc), "--out", str(out)) == 1
    assert "not a classifier" in capsys.readouterr().err
