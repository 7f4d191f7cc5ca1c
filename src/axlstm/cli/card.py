"""``axlstm card``: (re)write the model card ``README.md`` of a release folder."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """\
examples:
  axlstm card runs/my_release
  axlstm card runs/my_release --results runs/eval/results.json --license apache-2.0
  axlstm card runs/my_release --results runs/eval/results.json --results-model ours \\
      --repo my-org/axlstm-tiny-audioset --dataset agkphysics/AudioSet

The card is written from the release alone (config.json and its provenance, the model's sizes
and front end) plus what is given here; licence, datasets, results and repository given once
are kept when the card is rewritten (by this command or by axlstm push). A README.md that
axlstm did not write is kept unless --force.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "card",
        help="write the model card (README.md) of a release folder",
        description=(
            "Write RELEASE_DIR/README.md: the Hugging Face Hub metadata header (library, "
            "licence, tags, pipeline tag, datasets) and a card a person reads (architecture, "
            "parameters, front end, training provenance, evaluation results, usage, limits). "
            "Encoder and classifier releases."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("release_dir", type=Path, help="release folder (encoder or classifier)")
    p.add_argument(
        "--results", type=Path, help="results.json of axlstm evaluate: adds the evaluation table"
    )
    p.add_argument(
        "--results-model",
        metavar="LABEL",
        help="the model's label in results.json (default: the folder's name, or the only model)",
    )
    p.add_argument("--license", help="licence id for the metadata, e.g. apache-2.0, mit")
    p.add_argument(
        "--dataset",
        dest="datasets",
        action="append",
        metavar="ORG/NAME",
        help="a Hub dataset the model was trained on (repeatable)",
    )
    p.add_argument("--repo", metavar="ORG/NAME", help="repository the usage section loads from")
    p.add_argument("--revision", metavar="BRANCH", help="branch of --repo, if not the default")
    p.add_argument(
        "--force", action="store_true", help="replace a README.md that axlstm did not write"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from axlstm.core.errors import UsageError
    from axlstm.finetune.publish import write_model_card

    if args.revision and not args.repo:
        raise UsageError("--revision needs --repo")
    path = write_model_card(
        args.release_dir,
        args.results,
        results_model=args.results_model,
        license=args.license,
        datasets=args.datasets,
        repo_id=args.repo,
        revision=args.revision,
        force=args.force,
    )
    print(f"wrote {path}")
    return 0
