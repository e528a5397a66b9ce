"""ONNX against PyTorch on every audio + text item of the demo corpus: fused probabilities, confidence, labels and
trust decisions.

    python scripts/export_onnx.py --model out --output out/onnx
    python scripts/onnx_parity.py --model out --onnx out/onnx --corpora emodb,crema_d

PyTorch runs each item alone (the exact, unpadded reference); onnxruntime runs batches of `--batch_size`, the first
of which also holds the first item's audio cut to 0.5 s and repeated to 30 s, so clips of 0.5 to 30 s share a batch.
Exits with status 1 when a difference exceeds `--atol` or a label or trust decision differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from transformers import pipeline

import modeling_ter  # noqa: F401  (registers the trusted-emotion-recognition task)
from modeling_ter.data.manifest import read_manifest
from modeling_ter.export import onnx_pipeline
from modeling_ter.export.parity import compare_results, length_extremes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the PyTorch checkpoint folder")
    parser.add_argument("--onnx", required=True, help="its export folder (scripts/export_onnx.py)")
    parser.add_argument("--manifest", default=str(Path(__file__).resolve().parents[1] / "data" / "manifest.csv"))
    parser.add_argument("--corpora", default="emodb,crema_d", help="comma-separated corpora of the manifest")
    parser.add_argument("--batch_size", type=int, default=16, help="onnxruntime batch size")
    parser.add_argument("--max_items", type=int, default=None, help="only the first items (default: all)")
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    if args.batch_size < 3:
        parser.error(
            f"--batch_size must be at least 3 (the two length extremes and a corpus item), got {args.batch_size}"
        )
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    corpora = {name.strip() for name in args.corpora.split(",") if name.strip()}
    rows, _ = read_manifest(args.manifest)
    rows = [row for row in rows if row["corpus"] in corpora and row["audio"] and row["text"]][: args.max_items]
    if not rows:
        raise SystemExit(f"No row of {args.manifest} in {sorted(corpora)} has both audio and text.")
    items = length_extremes(rows[0]["audio"], rows[0]["text"]) + [
        {"audio": r["audio"], "text": r["text"]} for r in rows
    ]
    reference = pipeline("trusted-emotion-recognition", model=args.model)
    candidate = onnx_pipeline(args.onnx)
    start = time.perf_counter()
    expected = [reference(item) for item in items]
    torch_seconds = time.perf_counter() - start
    start = time.perf_counter()
    actual = candidate(items, batch_size=args.batch_size)
    onnx_seconds = time.perf_counter() - start
    report = compare_results(expected, actual)
    report.update(
        corpora=sorted(corpora),
        corpus_items=len(rows),
        extremes_seconds=[0.5, 30.0],
        batch_size=args.batch_size,
        trusted_items=sum(bool(result["trusted"]) for result in expected),
        pytorch_seconds_one_by_one=round(torch_seconds, 1),
        onnx_seconds_batched=round(onnx_seconds, 1),
    )
    print(json.dumps(report, indent=2))
    failed = max(report["max_abs_probability"], report["max_abs_confidence"]) > args.atol
    if failed or report["label_mismatches"] or report["trust_mismatches"]:
        print(f"ONNX and PyTorch differ beyond --atol {args.atol} or in a decision.", file=sys.stderr)
        sys.exit(1)
    return report


if __name__ == "__main__":
    main()
