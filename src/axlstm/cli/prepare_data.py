"""``axlstm prepare-data``: manifests for public datasets from their extracted archives."""

from __future__ import annotations

import argparse
from pathlib import Path

#: The datasets ``axlstm.finetune.prepare`` knows (kept equal to its ``DATASETS``; checked by
#: the tests), listed here so that ``--help`` needs no import of the fine-tuning layer.
DATASETS = ("esc50", "speechcommands_v2", "audioset_20k")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "prepare-data",
        help="write a labelled manifest for ESC-50, Speech Commands v2 or AudioSet-20K",
        description=(
            "Turn a public dataset's official extracted archive into a manifest "
            "(MANIFEST_DIR/DATASET.csv: path,label,split; absolute paths) for axlstm finetune "
            "--set data.source=... Nothing is downloaded. Layouts: esc50: ROOT/meta/esc50.csv, "
            "ROOT/audio/*.wav (5 folds). speechcommands_v2: ROOT/<word>/*.wav, "
            "ROOT/validation_list.txt, ROOT/testing_list.txt (train/valid/test). audioset_20k: "
            "ROOT/class_labels_indices.csv, ROOT/balanced_train_segments.csv, "
            "ROOT/eval_segments.csv, audio in ROOT/audio/balanced_train/ and ROOT/audio/eval/ "
            "named by YTID (train/valid; absent clips are counted and reported)."
        ),
    )
    p.add_argument("dataset", choices=DATASETS, metavar="DATASET", help=", ".join(DATASETS))
    p.add_argument("root", type=Path, metavar="ROOT", help="the extracted archive")
    p.add_argument(
        "--out", type=Path, required=True, metavar="MANIFEST_DIR", help="folder of the manifest"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from axlstm.finetune.prepare import prepare_data

    result = prepare_data(args.dataset, args.root, args.out)
    for line in result.summary_lines():
        print(line)
    print(f"wrote {result.manifest}")
    return 0
