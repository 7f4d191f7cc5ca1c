"""Export an encoder as an ONNX graph or a ``torch.export`` program, any batch and length.

``export_onnx(model, "model.onnx", from_waveform=True)`` writes one self-contained ``.onnx``
file: input ``wave`` (B, N) float32 samples at the model's rate (or ``spec`` (B, 1, T, F) model
input with ``from_waveform=False``), outputs ``frames`` (B, T', D), what
``model.forward_features`` gives for the whole clip's features, and ``scene`` (B, D), their
mean. The graph comes from the ``torch.export``-based ONNX exporter (``dynamo=True``) run on
:class:`~axlstm.deploy.graph.EncoderGraph`, so shapes are symbolic: one export serves every
batch size and length.

Opset: :data:`DEFAULT_OPSET` = 18, the opset the exporter's operator library is written in
(so no version conversion runs) and one every ONNX Runtime since 1.14 executes. Nothing here
needs a newer operator: the front end is a convolution, not the ``STFT`` operator (opset 17),
and attention is MatMul/Softmax. Later opsets are accepted (``--opset``) and converted.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.fx.experimental import _config as fx_config

from axlstm._version import __version__
from axlstm.core.errors import ConfigError, UsageError
from axlstm.core.fileio import atomic_write, check_output_file
from axlstm.deploy.frontend import front_end_graph, min_samples_for
from axlstm.deploy.graph import EncoderGraph

__all__ = [
    "DEFAULT_OPSET",
    "MAX_OPSET",
    "MIN_OPSET",
    "ExportGraph",
    "export_onnx",
    "export_program",
    "onnx_modules",
    "write_onnx",
]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
MIN_OPSET = 18
MAX_OPSET = 23
INSTALL_HINT = "pip install 'axlstm[onnx]'"
#: Largest traced graph ``optimize=None`` runs the ONNX optimiser on (traced operations:
#: AxLSTM-Tiny ~3000, SSAST-Tiny ~900, SSAMBA-Tiny ~17000).
OPTIMIZE_MAX_NODES = 4000
#: Largest batch an export declares (symbolic, nothing is allocated).
MAX_BATCH = 1 << 16
#: A time axis: any length the model accepts (the tracer derives the shortest from the graph).
DYNAMIC = getattr(torch.export.Dim, "DYNAMIC", None)


def check_torch(action: str = "export") -> None:
    """This torch has what the exports use (symbolic time axes with deferred asserts)."""
    if not (hasattr(torch.export.Dim, "DYNAMIC") and hasattr(fx_config, "backed_size_oblivious")):
        raise UsageError(
            f"{action} needs a newer torch than {torch.__version__} (torch.export's Dim.DYNAMIC "
            "and size-oblivious shapes; tested with torch 2.13)"
        )


def onnx_modules(action: str = "ONNX export") -> tuple[Any, Any]:
    """The ``onnx`` and ``onnxscript`` modules, or an error saying how to install them."""
    check_torch(action)
    try:
        import onnx
        import onnxscript
    except ImportError as err:
        raise UsageError(
            f"{action} needs the onnx and onnxscript packages ({err.name} is not installed): "
            f"{INSTALL_HINT}"
        ) from None
    return onnx, onnxscript


def check_opset(opset: Any) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ConfigError(f"opset must be an integer, got {opset!r}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(
            f"opset {opset} is not supported: use {MIN_OPSET} to {MAX_OPSET} (the exporter "
            f"writes opset {MIN_OPSET}; older runtimes than ONNX Runtime 1.14 cannot run it)"
        )
    return opset


def _frozen_copy(model: nn.Module) -> nn.Module:
    """A float32, eval-mode copy without gradients (the export must not touch the model)."""
    if not isinstance(model, nn.Module) or not hasattr(model, "forward_features"):
        raise ConfigError(f"expected an axlstm encoder, got {type(model).__name__}")
    if model.training:
        logger.info("exporting the model in eval mode")
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes - {torch.float32}:
        logger.info("exporting in float32 (the model is %s)", ", ".join(map(str, dtypes)))
    clone = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


class ExportGraph(nn.Module):
    """What an export runs: (front end) -> encoder -> (frames, scene).

    Args:
        model: the encoder (a frozen copy is taken by the exporters, not here).
        from_waveform: the input is (B, N) samples through the model's front end (the whole
            clip, as :func:`axlstm.embed` computes it), else (B, 1, T, F) model input.
        frame_layout: override the configured frame layout.
    """

    def __init__(self, model, from_waveform: bool, frame_layout: str | None = None) -> None:
        super().__init__()
        self.encoder = EncoderGraph(model, frame_layout)
        self.front_end = front_end_graph(model.front_end_config) if from_waveform else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spec = x if self.front_end is None else self.front_end(x)
        frames = self.encoder(spec)
        return frames, frames.mean(dim=1)

    def example(self, batch: int = 2, seconds: float = 2.1) -> torch.Tensor:
        """A random input of ``seconds`` of audio (or its frames) for tracing."""
        model = self.encoder.model
        fe = model.front_end_config
        if self.front_end is not None:
            n = max(int(seconds * fe.sample_rate), min_samples_for(fe, model.frame_span))
            return 0.1 * torch.randn(batch, n, generator=torch.Generator().manual_seed(0))
        frames = max(int(seconds * fe.sample_rate / fe.hop_samples), model.frame_span)
        return model.example_input(batch, frames)

    def dynamic_shapes(self) -> tuple[tuple[dict[int, Any]], list[dict[int, str]]]:
        """The dynamic axes for ``torch.export`` and their names in the graph."""
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        if self.front_end is not None:
            return ({0: batch, 1: DYNAMIC},), [{0: "batch", 1: "samples"}]
        return ({0: batch, 2: DYNAMIC},), [{0: "batch", 2: "frames"}]


@contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress output and warnings (torchvision absent, deprecations) off."""
    names = ("torch.onnx", "torch.export", "torch._export", "torch.fx", "onnxscript", "onnx_ir")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def _export_program(module: nn.Module, example: torch.Tensor, dynamic) -> Any:
    """``torch.export`` with the graph's dynamic dimensions; a failure names the model."""
    # Size-oblivious reasoning, as the ONNX exporter's own capture: a dimension that is 1 (a
    # batch of one, one chunk) takes the general path instead of a guard that excludes it.
    oblivious = fx_config.patch(backed_size_oblivious=True)
    try:
        with _quiet(), torch.no_grad(), oblivious:
            return torch.export.export(
                module,
                example,
                dynamic_shapes=dynamic,
                strict=False,
                prefer_deferred_runtime_asserts_over_guards=True,
            )
    except ConfigError:
        raise
    except Exception as err:  # a guard on the length, an untraceable op: a bug to report
        raise RuntimeError(f"torch.export of the encoder failed: {err}") from err


def export_program(
    model, *, from_waveform: bool = False, frame_layout: str | None = None
) -> torch.export.ExportedProgram:
    """The encoder as a ``torch.export`` program with a dynamic batch and time dimension.

    ``program.module()(x)`` returns ``(frames, scene)`` for ``x`` of any batch and length,
    equal to ``model.forward_features`` (from the model's front end when ``from_waveform``).

    Raises:
        ConfigError: the model has no graph form (the message names the option).
    """
    check_torch("torch.export of the encoder")
    graph = ExportGraph(_frozen_copy(model), from_waveform, frame_layout).eval()
    return _export_program(graph, (graph.example(),), graph.dynamic_shapes()[0])


def model_metadata(model, kind: str, from_waveform: bool, opset: int, **extra) -> dict[str, str]:
    """What a deployed graph records about itself (ONNX ``metadata_props``, strings)."""
    fe = model.front_end_config
    meta = {
        "axlstm.kind": kind,
        "axlstm.version": __version__,
        "axlstm.model": str(model.config.name or type(model).__name__),
        "axlstm.family": str(getattr(model.config, "family", "")),
        "axlstm.input": "wave" if from_waveform else "spec",
        "axlstm.opset": str(opset),
        "axlstm.sample_rate": str(fe.sample_rate),
        "axlstm.hop_samples": str(fe.hop_samples),
        "axlstm.frame_samples": str(fe.frame_samples),
        "axlstm.n_mels": str(fe.n_mels),
        "axlstm.frame_span": str(model.frame_span),
        "axlstm.frame_hop": str(model.frame_hop),
        "axlstm.frame_dim": str(model.frame_dim),
        "axlstm.front_end": json.dumps(fe.to_dict(), sort_keys=True),
    }
    meta.update(
        {f"axlstm.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()}
    )
    return meta


def write_onnx(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    dynamic_shapes,
    axis_names: list[dict[int, str]],
    path: str | os.PathLike,
    *,
    input_names: list[str],
    output_names: list[str],
    opset: int,
    metadata: dict[str, str],
    optimize: bool | None = None,
) -> Path:
    """Export ``module`` with the ONNX exporter and write one file (weights inside) atomically."""
    onnx, _ = onnx_modules()
    opset = check_opset(opset)
    path = check_output_file(path, "ONNX file")
    exported = _export_program(module, example, dynamic_shapes)
    if optimize is None:
        optimize = len(exported.graph.nodes) <= OPTIMIZE_MAX_NODES
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                exported,
                example,
                dynamo=True,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                optimize=optimize,
                external_data=False,
                verbose=False,
            )
    except ConfigError:
        raise
    except Exception as err:
        raise RuntimeError(f"ONNX export of the encoder failed: {err}") from err
    rename = {}
    for value, names in zip(program.model.graph.inputs, axis_names, strict=False):
        for axis, name in names.items():
            if isinstance(value.shape[axis], int):  # a static axis: the export specialised it
                raise RuntimeError(f"the export fixed the {name} axis to {value.shape[axis]}")
            rename[value.shape[axis]] = name
    program.rename_axes(rename)
    proto = program.model_proto
    for node in proto.graph.node:  # the exporter's debugging records (stack traces, FX names):
        del node.metadata_props[:]  # most of the file for deep models, of no use to a runtime
    del proto.graph.value_info[:]  # intermediate shapes; runtimes infer them
    onnx.helper.set_model_props(proto, {**metadata})
    proto.producer_name = "axlstm"
    proto.producer_version = __version__
    atomic_write(path, lambda tmp: onnx.save_model(proto, tmp))
    return path


def export_onnx(
    model,
    path: str | os.PathLike,
    *,
    from_waveform: bool,
    opset: int = DEFAULT_OPSET,
    frame_layout: str | None = None,
    optimize: bool | None = None,
) -> Path:
    """Write the encoder as an ONNX graph with a dynamic batch and time axis.

    Args:
        model: any axlstm encoder (a frozen float32 copy is exported; the model is untouched).
        path: the ``.onnx`` file to write (weights inside).
        from_waveform: input ``wave`` (B, N) samples at ``model.front_end_config.sample_rate``,
            the front end in the graph (whole clips, as :func:`axlstm.embed` uses it); else
            input ``spec`` (B, 1, T, F), the model input.
        opset: ONNX opset, :data:`MIN_OPSET` to :data:`MAX_OPSET`.
        frame_layout: override the configured frame layout.
        optimize: run the exporter's graph optimiser (constant folding, fusions: a smaller
            file; ONNX Runtime does the same when it loads the graph, so no faster there).
            None: only for graphs of at most :data:`OPTIMIZE_MAX_NODES` operations, as its
            cost grows with the square of the graph's size (tens of minutes for SSAMBA-Tiny).

    Returns:
        the path written. Outputs: ``frames`` (B, T', D) and ``scene`` (B, D).

    Raises:
        ConfigError: the model or an option has no graph form (named), or a bad opset.
        UsageError: onnx / onnxscript are not installed.
        OutputError: the file cannot be written.
    """
    check_opset(opset)
    onnx_modules()
    frozen = _frozen_copy(model)
    graph = ExportGraph(frozen, from_waveform, frame_layout).eval()
    meta = model_metadata(
        frozen, "encoder", from_waveform, opset, frame_layout=graph.encoder.frame_layout
    )
    return write_onnx(
        graph,
        (graph.example(),),
        *graph.dynamic_shapes(),
        path,
        input_names=["wave" if from_waveform else "spec"],
        output_names=["frames", "scene"],
        opset=opset,
        metadata=meta,
        optimize=optimize,
    )
