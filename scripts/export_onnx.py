"""Export a TER checkpoint to ONNX (each modality's encoder, and the evidential heads with the fusion), checked
against PyTorch on an example batch.

    python scripts/export_onnx.py --model out --output out/onnx

The folder then runs without the PyTorch weights:

    from modeling_ter.export import onnx_pipeline
    recognizer = onnx_pipeline("out/onnx")
    recognizer({"audio": "clip.flac", "text": "Don't forget a jacket"})

Needs `onnxruntime` and `onnxscript` (torch's ONNX exporter).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

from modeling_ter.export import export_onnx


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a TER checkpoint folder (or Hub ID) with its processor")
    parser.add_argument("--output", required=True, help="the folder to write the graphs, config and processor to")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest difference to PyTorch on the example batch")
    args = parser.parse_args(argv)
    if args.atol <= 0:
        parser.error(f"--atol must be positive, got {args.atol}")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("modeling_ter").setLevel(logging.INFO)  # ours, not the exporter's per-pass messages
    manifest = export_onnx(args.model, args.output, atol=args.atol)
    print(json.dumps({"output": args.output, **manifest}, indent=2))
    return manifest


if __name__ == "__main__":
    main()
