# Copyright 2026 The TER authors. Licensed under the Apache License, Version 2.0.
"""Evaluate a TER checkpoint on any manifest-format corpus, with the trusted threshold stored in the checkpoint.

    python scripts/evaluate.py --model out --manifest my_corpus.csv --output_json eval.json [--plots_dir plots]
    python scripts/evaluate.py --model out --manifest long_clips.csv --output_json eval.json --chunk_length_s 10

Clips longer than one window (`--chunk_length_s`, default 3 s) are scored in windows overlapping by
`--stride_length_s` on each side and pooled by `--window_fusion`, exactly as the trusted-emotion-recognition pipeline
does with the same options (silent windows masked, `--silence_db`).

Score data the checkpoint has not seen: the demo checkpoint is trained on data/manifest.csv, and set A
(../shared/data) holds the same items. Writes `{"overall": M, "corpora": {"<corpus>": {"fused": M, "<modality>": M}}}`
(see `modeling_ter.evaluation.report`); plots are written only where `--plots_dir` says, never into the checkpoint.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from modeling_ter.evaluation.report import evaluate_checkpoint
from modeling_ter.pipelines.trusted_emotion_recognition import (
    DEFAULT_CHUNK_LENGTH_S,
    DEFAULT_SILENCE_DB,
    DEFAULT_WINDOW_RULE,
    WINDOW_RULES,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate a TER checkpoint on a manifest-format corpus.")
    parser.add_argument("--model", required=True, help="checkpoint folder (written by scripts/train.py)")
    parser.add_argument("--manifest", required=True, help="manifest CSV (corpus,path,label,speaker_id,...)")
    parser.add_argument("--output_json", required=True, help="where to write the evaluation JSON")
    parser.add_argument("--plots_dir", default=None, help="also write the reliability plots here")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--cache_dir", default=None, help="feature cache (default: $TER_CACHE/features)")
    # Long audio: the pipeline's options of the same names.
    parser.add_argument(
        "--chunk_length_s", type=float, default=None, help="window length for longer clips (default: 3 s)"
    )
    parser.add_argument(
        "--stride_length_s", type=float, default=None, help="window overlap on each side (default: chunk / 6)"
    )
    parser.add_argument("--window_fusion", choices=WINDOW_RULES, default=DEFAULT_WINDOW_RULE)
    parser.add_argument(
        "--silence_db",
        type=lambda value: None if value.lower() == "none" else float(value),
        default=DEFAULT_SILENCE_DB,
        help="mask windows this many dB below the clip's speech level ('none': mask none)",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size must be positive, got {args.batch_size}.")
    if args.chunk_length_s is not None and args.chunk_length_s <= 0:
        parser.error(f"--chunk_length_s must be positive, got {args.chunk_length_s}.")
    chunk_length_s = args.chunk_length_s or DEFAULT_CHUNK_LENGTH_S
    if args.stride_length_s is not None and not 0 <= 2 * args.stride_length_s < chunk_length_s:
        parser.error(f"--stride_length_s must be in [0, chunk_length_s / 2), got {args.stride_length_s}.")
    if not (Path(args.model) / "config.json").is_file():
        parser.error(f"--model {args.model} holds no config.json; pass a checkpoint folder from train.py.")
    if args.plots_dir is not None and Path(args.plots_dir).resolve().is_relative_to(Path(args.model).resolve()):
        parser.error(f"--plots_dir {args.plots_dir} lies inside the checkpoint: its plots belong to its own card.")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = evaluate_checkpoint(
        args.model,
        args.manifest,
        args.output_json,
        args.plots_dir,
        args.batch_size,
        args.cache_dir,
        chunk_length_s=args.chunk_length_s,
        stride_length_s=args.stride_length_s,
        window_fusion=args.window_fusion,
        silence_db=args.silence_db,
    )
    overall = report["overall"]
    print(
        f"n={overall['n']} accuracy={overall['accuracy']:.4f} uar={overall['uar']:.4f} "
        f"trusted_f1={overall['trusted_f1']:.4f} coverage={overall['coverage']:.4f} (τ={overall['threshold']:.4f}) "
        f"aurc={overall['aurc']:.4f} ece={overall['ece']:.4f} -> {args.output_json}"
    )
    return report


if __name__ == "__main__":
    main()
