"""Serve the Gradio demo of a TER checkpoint (a folder from scripts/train.py, or a Hub ID), offline on CPU.

    python scripts/demo.py --model out
    python scripts/demo.py --model my-org/ter-emodb --revision <commit> --port 7861
    python scripts/demo.py --model out --write_space space/ --space_model_id my-org/ter-emodb  # a Space folder

The page opens at http://127.0.0.1:7860 (or --port); `--share yes` asks Gradio for a public link (needs the network).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from modeling_ter.demo import build_demo, write_demo_space
from modeling_ter.demo.app import DEFAULT_CONFLICT_LIMIT

logger = logging.getLogger("ter.demo")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a TER checkpoint folder or Hub ID")
    parser.add_argument("--revision", default=None, help="Hub revision of --model (a commit hash pins it)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--share", choices=("yes", "no"), default="no", help="ask Gradio for a public share link")
    parser.add_argument(
        "--conflict_limit", type=float, default=DEFAULT_CONFLICT_LIMIT, help="pairwise conflict called strong"
    )
    parser.add_argument("--no_examples", action="store_true", help="leave out the examples from data/")
    parser.add_argument("--write_space", default=None, help="write a Gradio Space folder here instead of serving")
    parser.add_argument("--space_model_id", default=None, help="the Hub ID the Space loads (default --model)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.conflict_limit <= 1.0:
        parser.error(f"--conflict_limit must lie in [0, 1], got {args.conflict_limit}")
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.write_space is not None:
        folder = write_demo_space(
            args.write_space,
            args.space_model_id or args.model,
            revision=args.revision,
            conflict_limit=args.conflict_limit,
        )
        logger.info("Wrote the Space folder %s", folder)
        return
    options = {"examples_dir": None} if args.no_examples else {}
    demo = build_demo(args.model, revision=args.revision, conflict_limit=args.conflict_limit, **options)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share == "yes")


if __name__ == "__main__":
    main()
