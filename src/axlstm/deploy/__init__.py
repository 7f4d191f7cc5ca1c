"""Running the encoders outside eager PyTorch: ONNX graphs, the ONNX streaming step and
``torch.export`` programs, every one with a dynamic batch and time axis.

    from axlstm.deploy import export_onnx, export_program, OnnxStreamer
    export_onnx(model, "model.onnx", from_waveform=True)         # ONNX Runtime, any length
    program = export_program(model)                              # torch.export
    export_streaming_onnx(causal, "step.onnx", from_waveform=True)
    frames = OnnxStreamer("step.onnx").stream_file("clip.wav")    # (T', D), numpy

``onnx``, ``onnxscript`` and ``onnxruntime`` are optional (``pip install 'axlstm[onnx]'``) and
imported when used. See docs/deploy.md.
"""

from axlstm.deploy.export import (
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    ExportGraph,
    check_opset,
    export_onnx,
    export_program,
    onnx_modules,
)
from axlstm.deploy.frontend import FbankGraph, LogMelGraph, front_end_graph
from axlstm.deploy.graph import (
    MAX_SCAN_TOKENS,
    EncoderGraph,
    export_problem,
    linear_scan_graph,
    mlstm_graph,
    selective_scan_graph,
)
from axlstm.deploy.runtime import (
    check_onnx,
    onnx_metadata,
    onnx_session,
    onnxruntime_module,
    run_onnx,
)
from axlstm.deploy.streaming import (
    STATE_NAMES,
    OnnxStreamer,
    StreamingStepGraph,
    check_streaming_onnx,
    export_streaming_onnx,
    streaming_problem,
)

__all__ = [
    "DEFAULT_OPSET",
    "MAX_OPSET",
    "MAX_SCAN_TOKENS",
    "MIN_OPSET",
    "STATE_NAMES",
    "EncoderGraph",
    "ExportGraph",
    "FbankGraph",
    "LogMelGraph",
    "OnnxStreamer",
    "StreamingStepGraph",
    "check_onnx",
    "check_opset",
    "check_streaming_onnx",
    "export_onnx",
    "export_problem",
    "export_program",
    "export_streaming_onnx",
    "front_end_graph",
    "linear_scan_graph",
    "mlstm_graph",
    "onnx_metadata",
    "onnx_modules",
    "onnx_session",
    "onnxruntime_module",
    "run_onnx",
    "selective_scan_graph",
    "streaming_problem",
]
