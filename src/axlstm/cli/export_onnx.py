"""``axlstm export-onnx``: an encoder (or the causal AxLSTM's streaming step) as an ONNX graph."""

from __future__ import annotations

import argparse
from pathlib import Path

from axlstm.cli.common import positive_int
from axlstm.core.errors import UsageError
from axlstm.core.fileio import check_output_file

EXAMPLES = """\
examples:
  axlstm export-onnx out/axlstm_tiny --out axlstm_tiny.onnx --check
  axlstm export-onnx out/ssamba_tiny --out ssamba_tiny.onnx --from-features
  axlstm export-onnx out/axlstm_causal --out step.onnx --streaming --check

The graph has a dynamic batch and time axis: input "wave" (B, N) float32 samples at the
model's sample rate (or "spec" (B, 1, T, F) with --from-features), outputs "frames" (B, T', D)
and "scene" (B, D). --streaming exports one step of a causal AxLSTM with its state as explicit
inputs and outputs; axlstm.deploy.OnnxStreamer streams audio through it. See docs/deploy.md.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export an encoder as an ONNX graph (dynamic batch and length)",
        description=(
            "Write MODEL's encoder as one ONNX file for ONNX Runtime and other runtimes: the "
            "front end included (from the waveform) or not (--from-features), any batch size "
            "and length; or, with --streaming, the causal AxLSTM's streaming step."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="release folder, preset name, or official checkpoint (--arch)")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--arch", help="preset of an official checkpoint file, e.g. axlstm_tiny")
    p.add_argument(
        "--from-features",
        action="store_true",
        help="input the model's features (B, 1, T, F) instead of the waveform (B, N)",
    )
    p.add_argument(
        "--streaming",
        action="store_true",
        help="export the streaming step of a causal AxLSTM (state in, state out)",
    )
    p.add_argument("--frame-layout", choices=("time", "official"), help="override the frame layout")
    p.add_argument("--opset", type=positive_int, default=None, help="ONNX opset (default: 18)")
    p.add_argument(
        "--check",
        action="store_true",
        help="run the graph in ONNX Runtime against PyTorch on random audio, print the deviation",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from axlstm.deploy import (
        DEFAULT_OPSET,
        check_onnx,
        check_opset,
        check_streaming_onnx,
        export_onnx,
        export_streaming_onnx,
        onnx_modules,
        onnxruntime_module,
    )
    from axlstm.embedding import resolve_model

    out: Path = args.out
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"--out must name a .onnx file, got {out}")
    if args.streaming and args.frame_layout == "official":
        raise UsageError("--frame-layout official does not apply to --streaming (time order)")
    opset = check_opset(DEFAULT_OPSET if args.opset is None else args.opset)
    onnx_modules()  # missing packages are reported before any work
    if args.check:
        onnxruntime_module()
    check_output_file(out, "--out")
    model = resolve_model(args.model, arch=args.arch)
    from_waveform = not args.from_features
    if args.streaming:
        export_streaming_onnx(model, out, from_waveform=from_waveform, opset=opset)
    else:
        export_onnx(
            model, out, from_waveform=from_waveform, opset=opset, frame_layout=args.frame_layout
        )
    what = "streaming step" if args.streaming else "encoder"
    source = "waveform" if from_waveform else "features"
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({what} from the {source}, opset {opset}, {size:.1f} MiB)")
    if args.check:
        if args.streaming:
            dev = check_streaming_onnx(model, out)
            how = "2 s of noise in 40 ms chunks vs StreamingEmbedder"
        else:
            dev = check_onnx(model, out)
            how = "2 s of noise, batch 2, vs forward_features"
        print(f"check: max |onnx - torch| / max |torch| = {dev:.2e} ({how}, ONNX Runtime CPU)")
    return 0
