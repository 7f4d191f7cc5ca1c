"""``axlstm convert``: an official AxLSTM/SSAST checkpoint to a release folder."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from axlstm.checkpoint import load_official


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an official checkpoint into a release folder",
        description=(
            "Read an official AxLSTM/SSAST checkpoint ({'model': ...} or a full training "
            "checkpoint) without executing pickled code, check it against a preset and write "
            "OUT_DIR/config.json + OUT_DIR/model.safetensors."
        ),
    )
    p.add_argument("checkpoint", type=Path, help="official .pth file")
    p.add_argument("out_dir", type=Path, help="release folder to write")
    p.add_argument("--arch", required=True, help="preset, e.g. axlstm_tiny or ssast_base")
    p.add_argument("--embed-dim", type=int, help="override the preset width")
    p.add_argument("--depth", type=int, help="override the preset depth")
    p.add_argument("--num-heads", type=int, help="attention heads (ssast presets)")
    p.add_argument(
        "--frame-layout",
        choices=("time", "official"),
        help="frame order stored as the release default (default: time, the corrected order)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = load_official(
        args.checkpoint,
        args.arch,
        embed_dim=args.embed_dim,
        depth=args.depth,
        num_heads=args.num_heads,
        frame_layout=args.frame_layout,
    )
    digest = hashlib.sha256(args.checkpoint.read_bytes()).hexdigest()
    model.save_pretrained(
        args.out_dir,
        official_checkpoint=args.checkpoint.name,
        official_checkpoint_sha256=digest,
        converted_from_arch=args.arch,
    )
    n = model.num_parameters("encoder")
    print(f"wrote {args.out_dir} ({args.arch}, {n:,} encoder parameters)", file=sys.stdout)
    return 0
