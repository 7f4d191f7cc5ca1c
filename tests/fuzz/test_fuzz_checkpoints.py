"""Group C: broken and hostile checkpoints and releases through ``axlstm.load_model``,
``axlstm.load_official`` (what ``axlstm convert`` reads) and the training-checkpoint reader."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import soundfile as sf
import torch

import axlstm
from axlstm.cli.main import main
from axlstm.engine.checkpoint import CKPT_FORMAT, export_release, load_checkpoint

from .cases import (
    NONFINITE,
    SR,
    TIMEOUT,
    CkptCase,
    assert_clear_error,
    checkpoint_cases,
    memory_guard,
    tone,
)

CASES = checkpoint_cases()
timeout = pytest.mark.timeout(TIMEOUT, method="signal")
#: Peak RSS a hostile config may add (the valid tiny model needs a few MB).
MAX_GROWTH = 300 << 20


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict:
    """The valid files each case breaks: a release of ``test_axlstm``, its state dict, an
    official ``{'model': ...}`` file and a training checkpoint (as bytes and as a dict)."""
    root = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    model = axlstm.create_model("test_axlstm")
    model.save_pretrained(root / "release")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train_state = {
        "format": CKPT_FORMAT,
        "format_version": 1,
        "step": 3,
        "samples_seen": 12,
        "model": state,
        "model_class": "masked_spec",
        "model_config": model.config.to_dict(),
        "config": {},
    }

    def saved(obj) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    return {
        "release": root / "release",
        "state": state,
        "official": saved({"model": state}),
        "train_state": train_state,
        "train": saved(train_state),
    }


def _load(case: CkptCase, path: Path, root: Path):
    if case.loader == "release":
        return axlstm.load_model(path)
    if case.loader == "official":
        return axlstm.load_official(path, "test_axlstm")
    if case.loader == "train":
        return load_checkpoint(path)
    if case.loader == "export":
        return export_release(path, root / "exported")
    raise AssertionError(case.loader)


@timeout
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused(case: CkptCase, good, tmp_path):
    root = tmp_path / "case"
    root.mkdir()
    path = case.build(root, good)
    guard: dict = {}
    loaded = None
    try:
        if case.memory:
            with memory_guard() as guard:
                loaded = _load(case, path, root)
        else:
            loaded = _load(case, path, root)
    except case.error as err:
        culprit = path / case.culprit if case.culprit else path
        assert_clear_error(err, names=(str(culprit),), words=case.words, one_line=True)
        assert "weights_only=False" not in str(err), "torch's advice to unpickle everything"
    else:
        assert case.load_or_refuse, f"{path} loaded without an error: {type(loaded).__name__}"
    if case.marker:
        assert not (root / "pwned").exists(), "the pickled payload ran"
    if case.loader == "export":
        assert not (root / "exported").exists(), "a release was written from a bad checkpoint"
    if guard:
        assert guard["growth"] < MAX_GROWTH, f"peak RSS grew by {guard['growth'] >> 20} MiB"
    if loaded is not None and case.load_or_refuse:  # an inert payload: the weights are right
        for key, value in good["state"].items():
            torch.testing.assert_close(loaded.state_dict()[key], value)


@timeout
def test_the_valid_files_load(good, tmp_path):
    """The baseline every case breaks is itself valid (so each failure above is the fault)."""
    axlstm.load_model(good["release"])
    path = tmp_path / "ckpt.pth"
    path.write_bytes(good["official"])
    axlstm.load_official(path, "test_axlstm")
    path.write_bytes(good["train"])
    assert load_checkpoint(path)["step"] == 3
    export_release(path, tmp_path / "exported")
    axlstm.load_model(tmp_path / "exported")


# ---------------------------------------------------------------------------- the CLI
def _one_error_line(err: str, command: str) -> str:
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith(f"axlstm {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


@timeout
def test_embed_with_a_nan_release_fails_by_name(good, tmp_path, capsys):
    """Non-finite weights never give NaN embeddings with exit code 0."""
    case = next(c for c in CASES if c.id == "release_weights_nan")
    root = tmp_path / "case"
    root.mkdir()
    release = case.build(root, good)
    clip = tmp_path / "clip.wav"
    sf.write(clip, tone(SR, SR, 0.3), SR)
    out = tmp_path / "emb.npz"
    argv = ["embed", str(clip), "--model", str(release), "--out", str(out), "--no-progress"]
    code = main([*argv, "--device", "cpu"])
    line = _one_error_line(capsys.readouterr().err, "embed")
    assert code == 1
    assert_clear_error(line, names=(str(release / "model.safetensors"),), words=NONFINITE)
    assert not out.exists()


@timeout
def test_convert_of_a_nan_checkpoint_fails_by_name(good, tmp_path, capsys):
    case = next(c for c in CASES if c.id == "official_nan_weights")
    root = tmp_path / "case"
    root.mkdir()
    path = case.build(root, good)
    out = tmp_path / "release"
    code = main(["convert", str(path), str(out), "--arch", "test_axlstm"])
    line = _one_error_line(capsys.readouterr().err, "convert")
    assert code == 1
    assert_clear_error(line, names=(str(path),), words=NONFINITE)
    assert not out.exists()
