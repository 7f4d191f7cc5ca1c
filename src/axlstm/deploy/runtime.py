"""Running exported graphs in ONNX Runtime (CPU): sessions, metadata, the check against PyTorch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from axlstm.core.errors import ConfigError, InputError, UsageError
from axlstm.core.fileio import check_input_file
from axlstm.deploy.export import INSTALL_HINT
from axlstm.deploy.frontend import min_samples_for

__all__ = ["check_onnx", "onnx_metadata", "onnx_session", "onnxruntime_module", "run_onnx"]


def onnxruntime_module() -> Any:
    """``onnxruntime``, or an error saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UsageError(
            f"running ONNX graphs needs the onnxruntime package: {INSTALL_HINT}"
        ) from None
    return onnxruntime


def onnx_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session of ``path``; ``threads`` intra-op threads (None: all cores).

    Raises:
        InputError: the file is missing, not a regular file or not an ONNX model.
    """
    ort = onnxruntime_module()
    path = Path(path)
    check_input_file(path, "ONNX file", InputError)
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime raises its own exception types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: not a usable ONNX model ({first})") from None


def onnx_metadata(session) -> dict[str, str]:
    """The ``axlstm.*`` metadata an export recorded (keys without the prefix)."""
    props = session.get_modelmeta().custom_metadata_map
    return {k.removeprefix("axlstm."): v for k, v in props.items() if k.startswith("axlstm.")}


def run_onnx(session, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(frames, scene) of an encoder graph for input ``x`` (its ``wave`` or ``spec``)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    name = session.get_inputs()[0].name
    frames, scene = session.run(["frames", "scene"], {name: np.ascontiguousarray(x, np.float32)})
    return frames, scene


def check_onnx(
    model, path: str | os.PathLike, *, seconds: float = 2.0, batch: int = 2, seed: int = 0
) -> float:
    """Run an exported encoder graph and the model on one random input and return the largest
    deviation relative to the output scale, ``max|onnx - torch| / max|torch|``.

    The input is noise of ``seconds`` seconds (its features for a ``spec`` graph); the
    reference is ``model.forward_features`` of the whole clip's features in float32.
    """
    session = onnx_session(path)
    meta = onnx_metadata(session)
    if meta.get("kind") != "encoder":
        raise ConfigError(f"{path} is not an axlstm encoder graph (kind {meta.get('kind')!r})")
    fe = model.front_end_config
    front_end = fe.whole_clip().build()
    n = max(int(seconds * fe.sample_rate), min_samples_for(fe, model.frame_span))
    gen = torch.Generator().manual_seed(seed)
    wave = 0.1 * torch.randn(batch, n, generator=gen)
    param = next(model.parameters())
    with torch.no_grad():
        spec = front_end(wave)
        ref = model.forward_features(
            spec.to(device=param.device, dtype=param.dtype), meta.get("frame_layout")
        )
    ref = ref.float().cpu().numpy()
    frames, _ = run_onnx(session, wave if meta.get("input") == "wave" else spec)
    if frames.shape != ref.shape:
        raise ConfigError(
            f"{path} gives frames of shape {frames.shape}, the model {ref.shape}: the graph was "
            "exported from another model"
        )
    return float(np.abs(frames - ref).max() / max(np.abs(ref).max(), 1e-30))
