"""Training checkpoints: atomic writes, rotation, RNG capture, weights-only loading, export.

A training checkpoint is a ``torch.save`` file that holds only tensors and plain Python values
(dicts, lists, strings, numbers), so it loads with ``torch.load(weights_only=True)``: no code
from the file is ever run. The RNG states of numpy and Python are converted to tensors and
lists for that reason.

Writes go to a temporary file in the same folder, are flushed and fsync'ed, and then renamed
over the target (``os.replace`` is atomic on POSIX and Windows): a crash mid-write leaves the
previous checkpoint intact and at worst a stray ``.*.tmp`` file, removed on the next start.
``last.pt`` is a separate copy of the newest step file, so one damaged file never takes the
other with it; a resumed run tries the newest checkpoint first and falls back to the newest
intact one (:mod:`axlstm.engine.resume`). Loading refuses damaged files and non-finite
weights with a one-line :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from axlstm.checkpoint.files import check_finite, torch_load_weights
from axlstm.checkpoint.release import build_checked
from axlstm.core.errors import CheckpointError
from axlstm.core.fileio import atomic_write

__all__ = [
    "CKPT_FORMAT",
    "CheckpointError",
    "CheckpointManager",
    "atomic_save",
    "capture_rng",
    "export_release",
    "load_checkpoint",
    "restore_rng",
]

logger = logging.getLogger(__name__)

CKPT_FORMAT = "axlstm-train"
CKPT_VERSION = 1
LAST_NAME = "last.pt"
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")
_TMP_RE = re.compile(r"^\..+\.tmp$")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through a temp file in the same folder + fsync + rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    path = atomic_write(path, write, fsync=True)
    _fsync_dir(path.parent)
    return path


def _atomic_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` an independent copy of ``src``, atomically and flushed to disk."""
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp), fsync=True)
    _fsync_dir(dst.parent)


class CheckpointManager:
    """``step_XXXXXXXXX.pt`` files plus ``last.pt`` in one folder, keeping the newest K.

    Every file is written on its own, atomically: ``last.pt`` is a copy of the newest step
    file, not a link to it, so damage to one never reaches the other. The numbered files are
    found by parsing the step out of their names (never by sorting names as strings).
    """

    def __init__(self, directory: str | Path, keep_last: int = 5, cleanup: bool = True) -> None:
        self.directory = Path(directory)
        self.keep_last = keep_last
        if cleanup and self.directory.is_dir():
            for p in self.directory.iterdir():
                if _TMP_RE.match(p.name):  # left by a crash mid-write
                    logger.info("removing incomplete checkpoint file %s", p)
                    p.unlink(missing_ok=True)

    @property
    def last(self) -> Path:
        return self.directory / LAST_NAME

    def numbered(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            return []
        found = []
        for p in self.directory.iterdir():
            m = _STEP_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def candidates(self) -> list[Path]:
        """Every checkpoint to continue from, the one to try first first.

        The newest numbered file leads: ``last.pt`` is written after it, so a crash between
        the two leaves ``last.pt`` one checkpoint behind. ``last.pt`` (normally a copy of that
        newest file, or the only file when checkpoints were copied by hand) comes next, then
        the older numbered files, newest first.
        """
        numbered = [p for _, p in reversed(self.numbered())]
        last = [self.last] if os.path.lexists(self.last) else []
        return numbered[:1] + last + numbered[1:]

    def latest(self) -> Path | None:
        """The checkpoint tried first (see :meth:`candidates`), or None when there is none."""
        found = self.candidates()
        return found[0] if found else None

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write step ``step`` atomically, then ``last.pt`` as its own copy; prune old ones."""
        path = atomic_save(state, self.directory / f"step_{step:09d}.pt")
        _atomic_copy(path, self.last)
        for _, old in self.numbered()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path


def _check_training_state(state: Any, path: Path) -> dict[str, Any]:
    """The format fields and the model weights of a loaded training checkpoint."""
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
        raise CheckpointError(
            f"{path} is not an axlstm training checkpoint (for official checkpoints use "
            "`axlstm convert`; for release folders use axlstm.load_model)"
        )
    version = state.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: format_version {version!r} is not an integer")
    if version > CKPT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format is newer than this axlstm; upgrade")
    model = state.get("model")
    if not isinstance(model, dict) or not all(torch.is_tensor(v) for v in model.values()):
        raise CheckpointError(f"{path}: damaged training checkpoint (no model weights)")
    step = state.get("step", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path}: damaged training checkpoint (step {step!r})")
    check_finite(model, path)
    return state


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True`` and check it.

    Raises:
        FileNotFoundError: nothing is there.
        CheckpointError: naming the file and the problem: not a regular file, empty,
            truncated or corrupt, refused Python objects, not an axlstm training checkpoint,
            a newer format, or non-finite model weights.
    """
    path = Path(path)
    state = torch_load_weights(path, "training checkpoint", map_location)
    return _check_training_state(state, path)


# ---------------------------------------------------------------------------------------- RNG
def capture_rng(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every RNG state of this process as tensors and plain values."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None):
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"].cpu())
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["name"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["gauss"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
    for k, g in (generators or {}).items():
        if k in state.get("generators", {}):
            g.set_state(state["generators"][k].cpu())


# ------------------------------------------------------------------------------------- export
def export_release(
    checkpoint: str | Path, out_dir: str | Path, extra_provenance: dict | None = None
) -> Path:
    """Turn a training checkpoint into a release folder (config.json + model.safetensors).

    Provenance records the run folder, the step, the checkpoint's SHA-256 and the training
    config, so a release can always be traced back to the run that made it.
    """
    checkpoint = Path(checkpoint)
    state = load_checkpoint(checkpoint)
    if not isinstance(state.get("model_config"), dict):
        raise CheckpointError(f"{checkpoint}: no model config stored; cannot export")
    if state.get("model_class") == "classifier":
        raise CheckpointError(
            f"{checkpoint} is a fine-tuning checkpoint: `axlstm finetune` writes its classifier "
            "release itself (RUN/classifier, from the averaged or best weights); load it with "
            "axlstm.load_classifier"
        )
    weights = state["model"]
    model = build_checked(
        state.get("model_class", "masked_spec"),
        state["model_config"],
        {k: tuple(v.shape) for k, v in weights.items()},
        f"the model config stored in {checkpoint}",
        f"the weights of {checkpoint}",
    )
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:  # the shapes were checked; kept for dtype surprises
        raise CheckpointError(f"{checkpoint}: weights do not fit the stored config: {err}") from err
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    run_dir = checkpoint.resolve().parent.parent
    provenance = {
        "source": "axlstm pretrain",
        "run_dir": str(run_dir),
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": digest.hexdigest(),
        "step": int(state.get("step", 0)),
        "samples_seen": int(state.get("samples_seen", 0)),
        "train_config": state.get("config", {}),
        **(extra_provenance or {}),
    }
    return model.eval().save_pretrained(out_dir, **provenance)
