"""``torch.compile`` for the encoders: one call that checks the tool chain, picks the mode for
the device and logs what it did, plus the two uses the package makes of it: the pretraining
step (:func:`compile_pretraining`) and the frame features (:func:`compile_encoder`).

What is traced, and how many graphs it makes (``dynamic=None``, PyTorch's default: the first
length compiles a static graph, the second a dynamic one that then serves every length):

- every family's encoder traces into one graph (``fullgraph=True``): no graph breaks;
- no loop's trip count depends on the input length under compile. The chunkwise mLSTM
  computes its chunk states in closed form, the Mamba scan runs as the chunked scan with a
  closed-form carry (both equal to the eager forms up to float rounding), and the masked
  spectrogram models compute positions past the training length in the graph. So one dynamic
  graph serves every length, with guards only at fixed boundaries: the training length of
  the AxLSTM-style models (stored positions up to it, computed ones past it), the SSAST
  framework's training grid (the stored table as it is, an adapted one otherwise), the
  measured crossover lengths of the mLSTM form chooser (``mlstm_backend="auto"``), a batch of
  one (PyTorch specialises sizes 0 and 1) and ``mlstm_segment_size`` (past it the ViL layers
  run segment by segment: a loop over segments, one graph per segment count).
- masks are drawn outside the graph (:func:`compile_pretraining`): SSAST's cluster masks come
  from Python's ``random`` and every mask draw uses a ``torch.Generator``.

CUDA graphs (``mode="reduce-overhead"``) are used on CUDA only: on other devices that mode
falls back to "default" with a log line. ``mode="auto"`` is "reduce-overhead" on CUDA for
fixed shapes (``dynamic=False``), else "default".
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch._dynamo
from torch import nn

from axlstm.core.errors import AxlstmError

__all__ = [
    "COMPILE_MODES",
    "DEFAULT_BACKEND",
    "CompileError",
    "CompiledPretraining",
    "check_compile_available",
    "compile_encoder",
    "compile_model",
    "compile_pretraining",
    "resolve_compile_mode",
]

logger = logging.getLogger(__name__)

#: Modes of :func:`compile_model`: torch.compile's, and "auto" (see the module doc).
COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")

#: The backend used when none is given: Inductor (generated kernels). Tests set "aot_eager".
DEFAULT_BACKEND = "inductor"

_HOW_TO_FIX = "install a C/C++ compiler (e.g. apt install g++) or drop --compile"


class CompileError(AxlstmError, RuntimeError):
    """``torch.compile`` cannot be used here (no compiler tool chain, an unsupported Python);
    the message says how to fix it or to run without compiling."""


def _device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def check_compile_available(device: torch.device | str, backend: str = "inductor") -> None:
    """Raise :class:`CompileError` when ``torch.compile`` with ``backend`` cannot run on
    ``device``: dynamo unsupported on this Python, no C++ compiler for Inductor on the CPU, or
    no Triton for Inductor on CUDA. (Other backends, e.g. "eager" and "aot_eager", only need
    dynamo.)"""
    device = torch.device(device)
    if not torch._dynamo.is_dynamo_supported():
        raise CompileError(
            f"torch.compile does not support this Python ({sys.version.split()[0]}); drop --compile"
        )
    if backend != "inductor":
        return
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise CompileError(
                "torch.compile's Inductor backend needs Triton on CUDA, which does not import "
                "here; install the triton package that matches torch, or drop --compile"
            )
        return
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        compiler = get_cpp_compiler()
    except Exception as err:
        raise CompileError(
            f"torch.compile's Inductor backend needs a C++ compiler on the CPU and found none "
            f"({type(err).__name__}: {err}); {_HOW_TO_FIX}"
        ) from err
    if shutil.which(compiler) is None and not os.path.isfile(compiler):
        raise CompileError(
            f"torch.compile's Inductor backend needs a C++ compiler on the CPU; {compiler!r} is "
            f"not on PATH ({_HOW_TO_FIX})"
        )


def resolve_compile_mode(mode: str, device: torch.device | str, dynamic: bool | None) -> str:
    """The torch.compile mode to use for ``mode`` (see :data:`COMPILE_MODES`) on ``device``:
    CUDA graphs only on CUDA, "auto" = "reduce-overhead" on CUDA for fixed shapes."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; choose one of {COMPILE_MODES}")
    cuda = torch.device(device).type == "cuda"
    if mode == "auto":
        return "reduce-overhead" if cuda and dynamic is False else "default"
    if not cuda and mode in _CUDA_GRAPH_MODES:
        fallback = "default" if mode == "reduce-overhead" else "max-autotune-no-cudagraphs"
        logger.info("compile mode %r uses CUDA graphs, which need CUDA: using %r", mode, fallback)
        return fallback
    return mode


def _load_lazy_tables() -> None:
    """Read now what the layers read at their first call (the measured mLSTM form table that
    ``mlstm_backend="auto"`` consults): a file read cannot be traced, a loaded table can."""
    from axlstm.layers import mlstm_forms

    mlstm_forms.table_rows()


def _compile(
    fn: Callable,
    what: str,
    device: torch.device,
    mode: str,
    dynamic: bool | None,
    fullgraph: bool,
    backend: str | None,
) -> Callable:
    backend = backend or DEFAULT_BACKEND
    check_compile_available(device, backend)
    _load_lazy_tables()
    resolved = resolve_compile_mode(mode, device, dynamic)
    options: dict[str, Any] = {"dynamic": dynamic, "fullgraph": fullgraph, "backend": backend}
    if backend == "inductor":
        options["mode"] = resolved
    logger.info(
        "torch.compile %s on %s: backend %s%s, dynamic=%s, fullgraph=%s (graphs are built at "
        "the first call of each new shape)",
        what,
        device,
        backend,
        f", mode {resolved}" if backend == "inductor" else "",
        dynamic,
        fullgraph,
    )
    return torch.compile(fn, **options)


def compile_model(
    module: nn.Module,
    mode: str = "default",
    dynamic: bool | None = None,
    fullgraph: bool = True,
    backend: str | None = None,
) -> nn.Module:
    """``torch.compile(module)`` after the checks of :func:`check_compile_available`, with the
    mode resolved for the module's device (:func:`resolve_compile_mode`) and a log line.

    The result shares the module's parameters; its ``state_dict`` keys carry torch's
    ``_orig_mod.`` prefix, so save the original module, not the result.

    Args:
        module: the module whose ``forward`` is compiled.
        mode: one of :data:`COMPILE_MODES`.
        dynamic: torch.compile's: None (static first, dynamic from the second shape), True
            (dynamic at once) or False (a graph per shape).
        fullgraph: fail on a graph break instead of running the rest eagerly.
        backend: "inductor" (generated kernels), or "aot_eager" / "eager" (traced only, for
            tests and debugging); None: :data:`DEFAULT_BACKEND`.

    Raises:
        CompileError: torch.compile cannot run here.
    """
    return _compile(
        module, type(module).__name__, _device_of(module), mode, dynamic, fullgraph, backend
    )


def compile_encoder(
    model: nn.Module,
    mode: str = "default",
    dynamic: bool | None = None,
    fullgraph: bool = True,
    backend: str | None = None,
) -> nn.Module:
    """Compile an encoder's ``forward_features`` in place (the model stays the same object,
    with the same ``state_dict``): what ``axlstm embed --compile`` does. The arguments are
    those of :func:`compile_model`. Undo with ``del model.forward_features``.

    Raises:
        CompileError: torch.compile cannot run here.
    """
    model.forward_features = _compile(
        type(model).forward_features.__get__(model),
        f"{type(model).__name__}.forward_features",
        _device_of(model),
        mode,
        dynamic,
        fullgraph,
        backend,
    )
    return model


class CompiledPretraining(nn.Module):
    """The pretraining step ``model(spec, generator=g)`` with the mask drawn eagerly (by
    ``model.draw_pretrain_mask``, the same draw the eager step makes) and everything else
    (encoder, heads, loss, metrics) in the compiled ``net``.

    Args:
        model: the encoder (its ``draw_pretrain_mask`` draws the masks).
        net: the compiled callable taking ``(spec, mask)``: ``compile_model(model)``, or of
            ``DistributedDataParallel(model)``.
    """

    def __init__(self, model: nn.Module, net: Callable) -> None:
        super().__init__()
        self.model = model
        self.net = net

    def forward(self, spec: torch.Tensor, generator: torch.Generator | None = None):
        mask = self.model.draw_pretrain_mask(spec, generator)
        return self.net(spec, mask)


def compile_pretraining(
    model: nn.Module, train_model: nn.Module | None = None, **options: Any
) -> CompiledPretraining:
    """The pretraining step of ``model`` compiled (see :class:`CompiledPretraining`), as
    ``axlstm pretrain --compile`` runs it; ``train_model`` is what the trainer calls
    (``DistributedDataParallel(model)``; ``model`` when None). ``options`` are those of
    :func:`compile_model`.

    Raises:
        CompileError: torch.compile cannot run here.
        ValueError: the model cannot draw its pretraining masks apart from the step.
    """
    if not callable(getattr(model, "draw_pretrain_mask", None)):
        raise ValueError(
            f"{type(model).__name__} has no draw_pretrain_mask: its pretraining step cannot be "
            "compiled (the mask draw must stay outside the graph)"
        )
    net = compile_model(train_model if train_model is not None else model, **options)
    return CompiledPretraining(model, net)
