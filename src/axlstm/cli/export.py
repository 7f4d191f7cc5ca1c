"""``axlstm export``: a training checkpoint to a release folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="turn a training checkpoint into a release folder",
        description=(
            "Write OUT_DIR/config.json + OUT_DIR/model.safetensors from a training checkpoint "
            "(read weights-only), loadable with axlstm.load_model(OUT_DIR). Provenance (run "
            "folder, step, checkpoint SHA-256, training config) goes into config.json."
        ),
    )
    p.add_argument(
        "checkpoint", type=Path, help="RUN_DIR/checkpoints/last.pt (or a RUN_DIR itself)"
    )
    p.add_argument("out_dir", type=Path, help="release folder to write")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from axlstm.engine import export_release, load_checkpoint

    ckpt = args.checkpoint
    if ckpt.is_dir():
        ckpt = ckpt / "checkpoints" / "last.pt"
    out = export_release(ckpt, args.out_dir)
    step = load_checkpoint(ckpt).get("step")
    print(f"wrote {out} from {ckpt} (step {step})")
    return 0
