"""``axlstm push``: upload a release folder to the Hugging Face Hub."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """\
examples:
  axlstm push runs/my_release my-org/axlstm-tiny-audioset
  axlstm push runs/my_release my-org/axlstm-tiny-audioset --revision v2 --message "step 200k"
  axlstm push runs/finetune/classifier my-org/axlstm-esc50 --private

Then anyone loads it with axlstm.load_model("hf-hub:my-org/axlstm-tiny-audioset") (a classifier
with axlstm.load_classifier), or names it on the command line: --model hf-hub:ORG/NAME[@BRANCH].
Needs huggingface_hub (pip install 'axlstm[hub]') and a token with write access
(`hf auth login`, or HF_TOKEN).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "push",
        help="upload a release folder to the Hugging Face Hub",
        description=(
            "Check that RELEASE_DIR loads (every check of a release), refresh its model card "
            "for ORG/NAME, then upload its release files, and only those, in one commit "
            "(creating the repository and branch when missing)."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("release_dir", type=Path, help="release folder (encoder or classifier)")
    p.add_argument("repo_id", metavar="ORG/NAME", help="model repository on the Hub")
    p.add_argument(
        "--revision", metavar="BRANCH", help="branch to push to (default: the default branch)"
    )
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--message", help="commit message (default: 'Upload axlstm release')")
    p.add_argument(
        "--no-create",
        action="store_true",
        help="fail if the repository or branch does not exist yet",
    )
    p.add_argument("--no-card", action="store_true", help="upload the model card as it is")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from axlstm.finetune.publish import push_release

    url = push_release(
        args.release_dir,
        args.repo_id,
        revision=args.revision,
        private=args.private,
        commit_message=args.message,
        create=not args.no_create,
        card=not args.no_card,
    )
    print(f"pushed {args.release_dir} to {args.repo_id}: {url}")
    return 0
