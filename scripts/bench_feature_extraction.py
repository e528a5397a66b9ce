"""Training feature extraction against the bare encoder forward, on the same clips in the same run.

    python scripts/bench_feature_extraction.py [--items 96] [--batch_size 16] [--threads 1]

On `--items` EmoDB clips of the demo corpus (~2 s each), three measurements, each the median of `--repeats`
(interleaved: one of each per round):

- `encoder`: the Whisper encoder (real-length path, float32) alone on the processor's outputs, prepared beforehand,
  in length-sorted batches: the network's own cost;
- `extraction (batched)`: `compute_features` into an empty cache, as training fills it: decoding, resampling,
  log-mel features, the encoder, pooling and the cache writes, in length-sorted batches of `--batch_size`;
- `extraction (one at a time)`: the same with batches of one (how the cache was filled before).

Prints milliseconds per clip and each extraction's ratio to the encoder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from modeling_ter.data.feature_cache import FeatureCache, compute_features, embed_processed, encoding_plan
from modeling_ter.data.manifest import read_manifest
from modeling_ter.encoders.defaults import build_default_model, build_default_processor

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "manifest.csv"


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=96)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = [row["audio"] for row in read_manifest(MANIFEST)[0] if row["corpus"] == "emodb"][: args.items]
    model = build_default_model(("audio",)).eval()
    processor = build_default_processor(("audio",))
    items = {"audio": paths}

    with tempfile.TemporaryDirectory() as empty:  # the plan of an empty cache: every item, sorted by length
        plan = encoding_plan(FeatureCache(empty), "audio", "-", paths, args.batch_size)
    prepared = [processor(audio=[paths[i] for i in batch], return_tensors="pt") for batch in plan]

    def encoder() -> None:
        with torch.no_grad():
            for batch in prepared:
                embed_processed(model, batch, "audio")

    def extraction(batch_size: int):
        def run() -> None:
            with tempfile.TemporaryDirectory() as cache_dir:
                compute_features(model, processor, items, ("audio",), cache_dir, False, batch_size)

        return run

    phases = {
        "encoder": encoder,
        "extraction (batched)": extraction(args.batch_size),
        "extraction (one at a time)": extraction(1),
    }
    # Interleaved (one of each per round), so a change in the machine's load falls on every phase alike.
    times: dict[str, list[float]] = {name: [] for name in phases}
    for _ in range(args.repeats):
        for name, function in phases.items():
            times[name].append(median_seconds(function, 1))
    seconds = {name: statistics.median(values) for name, values in times.items()}
    print(f"{len(paths)} EmoDB clips, batch {args.batch_size}, {args.threads} thread(s), median of {args.repeats}")
    for name, value in seconds.items():
        ratio = value / seconds["encoder"]
        print(f"{name:<28} {1000 * value / len(paths):7.2f} ms/clip  {ratio:5.2f}x the encoder")


if __name__ == "__main__":
    main()
