# Copyright 2026 The TER authors. Licensed under the Apache License, Version 2.0.
"""Load and encode every item of a manifest with the default pretrained encoders; print shapes and wall times.

    python scripts/check_encoders.py                                    # the embedded demo corpus
    python scripts/check_encoders.py --manifest ../shared/data/manifest.csv

Features are computed into a fresh temporary cache (so every item is really encoded), one item at a time, as the
training job does. Items whose modality cannot be used (a corrupt file, no face) are listed, not fatal.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from modeling_ter.data.feature_cache import compute_features
from modeling_ter.data.manifest import read_manifest
from modeling_ter.encoders.defaults import build_default_model, build_default_processor

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "data" / "manifest.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    args = parser.parse_args()
    torch.set_num_threads(1)  # one item at a time: small ops run faster on one thread than on two contended ones

    rows, problems = read_manifest(args.manifest)
    print(f"{len(rows)} items loaded from {args.manifest}, {len(problems)} rows skipped")
    for problem in problems:
        print(f"  skipped row {problem.row}: {problem.reason}")
    modalities = tuple(m for m in ("audio", "text", "video") if any(row[m] is not None for row in rows))
    model = build_default_model(modalities).eval()
    processor = build_default_processor(modalities)
    columns = {m: [row[m] for row in rows] for m in modalities}

    print("| modality | items | embedding shape (layers, dim) | wall s / item | masked |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as cache_dir:
        for modality in modalities:
            start = time.perf_counter()
            cached = compute_features(model, processor, {modality: columns[modality]}, [modality], cache_dir, False)
            elapsed = time.perf_counter() - start
            shape = tuple(cached.features[modality].shape[1:])
            print(
                f"| {modality} | {cached.num_encoded} | {shape} | {elapsed / max(cached.num_encoded, 1):.3f} | "
                f"{len(cached.failures)} |"
            )
            for index, _, reason in cached.failures:
                print(f"  {rows[index]['id']}: {reason}")


if __name__ == "__main__":
    main()
