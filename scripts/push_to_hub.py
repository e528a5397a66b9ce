"""Push a TER checkpoint folder (and the `trusted_f1` metric as a Space) to the Hugging Face Hub.

Log in first (`hf auth login`) or set `HF_TOKEN` to a token with write access. Any endpoint works through
`HF_ENDPOINT` / `--endpoint` (the test suite uses a Hub on loopback; set `HF_HUB_DISABLE_XET=1` there).

    # a checkpoint: weights, config.json with auto_map, the remote-code .py files, processor files, README, plots
    python scripts/push_to_hub.py out/ter-emodb my-org/ter-emodb [--revision main] [--private] \
        [--commit_message "Add fold 3"]
    # the metric as a Space, so that `evaluate.load("my-org/trusted_f1")` works
    python scripts/push_to_hub.py --metric_space my-org/trusted_f1 [--metric_dir metrics/trusted_f1]
    # both in one call
    python scripts/push_to_hub.py out/ter-emodb my-org/ter-emodb --metric_space my-org/trusted_f1
    # the Gradio demo as a Space that loads the pushed model by its ID
    python scripts/push_to_hub.py --demo_space my-org/ter-demo --model my-org/ter-emodb

Only an allow-list of files is pushed (weights, config, processor and tokenizer files, remote code, card, plots,
eval_results.json); re-pushing an unchanged folder uploads nothing (see `modeling_ter.hub.push`).
Exit codes: 0 pushed or already up to date, 1 the Hub refused or could not be reached, 2 bad arguments or folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from huggingface_hub import HfApi

from modeling_ter.hub.push import PushError, checkpoint_spec, demo_space_spec, metric_spec, push_folder

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Authentication: run `hf auth login` once, or set HF_TOKEN (a token with write access).",
    )
    parser.add_argument("checkpoint_dir", nargs="?", help="folder written by save_pretrained (and the card builder)")
    parser.add_argument("repo_id", nargs="?", help="model repo, e.g. my-org/ter-emodb")
    parser.add_argument("--revision", default="main", help="model branch to push to (must exist unless it is main)")
    parser.add_argument("--private", action="store_true", help="create the repo private (only when it is created)")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--no_create", action="store_true", help="fail if the repo does not exist")
    parser.add_argument("--metric_space", default=None, help="push the metric as this Space, e.g. my-org/trusted_f1")
    parser.add_argument("--metric_dir", default=str(REPO_ROOT / "metrics" / "trusted_f1"))
    parser.add_argument("--demo_space", default=None, help="push the Gradio demo as this Space, e.g. my-org/ter-demo")
    parser.add_argument("--model", default=None, help="with --demo_space: the model repo the demo loads")
    parser.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")
    args = parser.parse_args(argv)
    if (args.checkpoint_dir is None) != (args.repo_id is None):
        parser.error("give both CHECKPOINT_DIR and REPO_ID, or neither (with --metric_space)")
    if args.checkpoint_dir is None and args.metric_space is None and args.demo_space is None:
        parser.error("nothing to push: give CHECKPOINT_DIR REPO_ID, --metric_space and/or --demo_space NAMESPACE/NAME")
    if args.demo_space is not None and (args.model or args.repo_id) is None:
        parser.error("--demo_space needs --model NAMESPACE/NAME (the model repo the demo loads)")
    for repo_id in filter(None, (args.repo_id, args.metric_space, args.demo_space, args.model)):
        if repo_id.count("/") != 1:
            parser.error(f"repo ids are NAMESPACE/NAME, got {repo_id!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    try:
        specs = []
        if args.checkpoint_dir is not None:
            specs.append(checkpoint_spec(args.checkpoint_dir, args.repo_id))
        if args.metric_space is not None:
            specs.append(metric_spec(args.metric_dir, args.metric_space))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    api = HfApi(endpoint=args.endpoint)
    demo_folder = None
    if args.demo_space is not None:
        from modeling_ter.demo import write_demo_space

        demo_folder = tempfile.TemporaryDirectory(prefix="ter-demo-space-")
        write_demo_space(demo_folder.name, args.model or args.repo_id)
        specs.append(demo_space_spec(demo_folder.name, args.demo_space))
    try:
        for spec in specs:
            revision = args.revision if spec.repo_type == "model" else "main"  # a Space serves its main branch
            push_folder(api, spec, revision, args.private, args.commit_message, create=not args.no_create)
    except PushError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if demo_folder is not None:
            demo_folder.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
