"""``axlstm export``: a training checkpoint to a release folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from axlstm.core.fileio import new_output_dir


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="turn a training checkpoint into a release folder",
        description=(
            "Write OUT_DIR/config.json + OUT_DIR/model.safetensors from a training checkpoint "
            "(read weights-only; damaged files and non-finite weights are refused), loadable "
            "with axlstm.load_model(OUT_DIR). Provenance (run folder, step, checkpoint "
            "SHA-256, training config) goes into config.json."
        ),
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        help="RUN_DIR/checkpoints/last.pt or step_N.pt (a RUN_DIR itself means its last.pt)",
    )
    p.add_argument("out_dir", type=Path, help="release folder to write")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from axlstm.checkpoint import check_weights_file
    from axlstm.checkpoint.release import read_release_config
    from axlstm.engine import export_release

    ckpt = args.checkpoint
    if ckpt.is_dir():
        ckpt = ckpt / "checkpoints" / "last.pt"
    check_weights_file(ckpt, "training checkpoint")
    with new_output_dir(args.out_dir, "release folder"):
        out = export_release(ckpt, args.out_dir)
    step = read_release_config(out)["provenance"].get("step")
    print(f"wrote {out} from {ckpt} (step {step})")
    return 0
