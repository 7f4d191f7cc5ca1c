"""``axlstm convert``: an official AxLSTM/SSAST/SSAMBA checkpoint to a release folder."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import torch

from axlstm.checkpoint import check_weights_file, load_official
from axlstm.cli.common import positive_int
from axlstm.core.fileio import new_output_dir
from axlstm.models import create_model

EXAMPLES = """\
examples:
  axlstm convert axlstm_tiny.pth out/axlstm_tiny --arch axlstm_tiny
  axlstm convert SSAST-Tiny-Patch-400.pth out/ssast_tiny --arch ssast_orig_tiny_patch
  axlstm convert esc50_finetuned.pth out/ssast_esc50 --arch ssast_orig_base_patch \\
      --set patch_stride=10,10 img_size=512,128
  axlstm convert ssamba_tiny_300.pth out/ssamba_tiny --arch ssamba_tiny --set mask_patch=300

--set takes any field of the preset's config (``axlstm models`` lists the presets); values are
read as YAML and converted to the field's type (tuples as ``10,10`` or ``[10, 10]``).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an official checkpoint into a release folder",
        description=(
            "Read an official AxLSTM/SSAST/SSAMBA checkpoint ({'model': ...}, a full training "
            "checkpoint or a raw DataParallel state dict) without executing pickled code, "
            "check it against a preset and write OUT_DIR/config.json + OUT_DIR/model.safetensors."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="official .pth file")
    p.add_argument("out_dir", type=Path, help="release folder to write")
    p.add_argument(
        "--arch", required=True, help="preset, e.g. axlstm_tiny, ssast_orig_base_patch, ssamba_tiny"
    )
    p.add_argument("--embed-dim", type=positive_int, help="override the preset width")
    p.add_argument("--depth", type=positive_int, help="override the preset depth")
    p.add_argument("--num-heads", type=positive_int, help="attention heads (ssast presets)")
    p.add_argument(
        "--frame-layout",
        choices=("time", "official"),
        help="frame order stored as the release default (default: time, the corrected order)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "config fields of the preset, e.g. patch_stride=10,10 img_size=512,128 "
            "mask_patch=250 (fine-tuned SSAST/SSAMBA checkpoints need their patch_stride and "
            "img_size); wins over the flags above"
        ),
    )
    p.set_defaults(run=run)


def parse_overrides(items: list[str], arch: str) -> dict[str, Any]:
    """``key=value`` strings as typed config values of preset ``arch``.

    Raises:
        ConfigError: malformed item, unknown key (with the closest known one), or a value that
            does not fit the field's type.
    """
    if not items:
        return {}
    with torch.device("meta"):  # the preset's config class, no weights allocated
        cls = type(create_model(arch).config)
    return cls.parse_set(items, "--set")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def run(args: argparse.Namespace) -> int:
    overrides = {
        "embed_dim": args.embed_dim,
        "depth": args.depth,
        "num_heads": args.num_heads,
        "frame_layout": args.frame_layout,
        **parse_overrides(list(args.overrides), args.arch),
    }
    check_weights_file(args.checkpoint, "checkpoint")
    with new_output_dir(args.out_dir, "release folder"):
        model = load_official(args.checkpoint, args.arch, **overrides)
        model.save_pretrained(
            args.out_dir,
            official_checkpoint=args.checkpoint.name,
            official_checkpoint_sha256=sha256_of(args.checkpoint),
            converted_from_arch=args.arch,
            overrides={k: v for k, v in overrides.items() if v is not None},
        )
    n = model.num_parameters("encoder")
    print(f"wrote {args.out_dir} ({args.arch}, {n:,} encoder parameters)", file=sys.stdout)
    return 0
