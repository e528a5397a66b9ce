# Copyright 2026 The TER authors. Licensed under the Apache License, Version 2.0.
"""Inference speed and memory of TER against its own encoders, measured in one run on the same inputs.

    python scripts/bench_inference.py --model /tmp/ter_run --manifest data/manifest.csv --corpus emodb \
        --max_items 64 --batch_size 16 --repeats 3

Phases (each repeated `--repeats` times, interleaved; the median and the minimum are reported, the minimum being the
least disturbed by other processes on a shared machine):

- `preprocess`: the processor alone (decode, resample, log-mel, tokenise) on file paths and transcripts;
- `encoders`: the bare encoders' forward (`model.embed_modality` of every modality) on the prepared batches;
- `model`: the full model forward (encoders + evidential heads + fusion) on the same prepared batches;
- `pipeline`: the `trusted-emotion-recognition` pipeline end to end (preprocessing, forward, postprocessing);
- `latency`: the pipeline on one utterance at a time (median and 90th percentile).

Printed ratios: `model / encoders` (what the heads and the fusion add; the target is under 5 %) and
`pipeline / (preprocess + model)`. Memory is the peak resident set size reached during a phase above the RSS at its
start (Linux `/proc/self/status` VmHWM, reset through `/proc/self/clear_refs` before each phase), i.e. what the phase
itself allocates on top of the loaded model. Timings depend on the machine's load: the script prints the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from transformers import pipeline

import modeling_ter  # noqa: F401  (registers TER with the Auto classes)
import modeling_ter.pipelines.trusted_emotion_recognition  # noqa: F401  (registers the trusted-emotion-recognition task)
from modeling_ter.data.feature_cache import embed_processed
from modeling_ter.data.manifest import read_manifest


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field} (Linux only).")


def measure(function: Callable[[], object]) -> tuple[float, float]:
    """`(seconds, peak RSS increase in MiB)` of one call of `function`."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")  # resets VmHWM (the peak RSS) to the current RSS
    start_rss = _status_kb("VmRSS")
    start = time.perf_counter()
    function()
    seconds = time.perf_counter() - start
    return seconds, (_status_kb("VmHWM") - start_rss) / 1024


def load_inputs(args: argparse.Namespace, modalities: Sequence[str]) -> list[dict]:
    """Pipeline inputs `{"audio": path, "text": transcript}` of the manifest's rows (filtered, at most `--max_items`)."""
    rows, _ = read_manifest(args.manifest)
    rows = [row for row in rows if (args.corpus is None or row["corpus"] == args.corpus)]
    rows = [row for row in rows if all(row[m] is not None for m in modalities)][: args.max_items]
    if not rows:
        raise ValueError(f"No row of --manifest {args.manifest} has every modality of {list(modalities)}.")
    return [{m: row[m] for m in modalities} for row in rows]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="TER inference benchmark (pipeline vs bare encoders).")
    parser.add_argument("--model", required=True, help="checkpoint folder (written by scripts/train.py)")
    parser.add_argument("--manifest", default=str(Path(__file__).resolve().parents[1] / "data" / "manifest.csv"))
    parser.add_argument("--corpus", default="emodb")
    parser.add_argument("--modalities", default="audio,text", help="the inputs given to every utterance")
    parser.add_argument("--max_items", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency_items", type=int, default=16)
    args = parser.parse_args(argv)
    if min(args.max_items, args.batch_size, args.repeats, args.latency_items) < 1:
        parser.error("--max_items, --batch_size, --repeats and --latency_items must be positive.")
    return args


@torch.no_grad()
def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    recognizer = pipeline("trusted-emotion-recognition", model=args.model)
    model, processor = recognizer.model.eval(), recognizer.processor
    unknown = sorted(set(modalities) - set(model.config.modalities))
    if unknown:
        raise ValueError(
            f"--modalities {unknown} are not modalities of {args.model} ({list(model.config.modalities)})."
        )
    inputs = load_inputs(args, modalities)
    chunks = [inputs[i : i + args.batch_size] for i in range(0, len(inputs), args.batch_size)]

    def preprocess() -> list:
        return [processor(**{m: [item[m] for item in chunk] for m in modalities}) for chunk in chunks]

    batches = preprocess()

    def encoders() -> None:
        for batch in batches:
            for modality in modalities:
                embed_processed(model, batch, modality)

    def forward() -> None:
        for batch in batches:
            model(**batch)

    def end_to_end() -> None:
        recognizer(inputs, batch_size=args.batch_size)

    phases = {"preprocess": preprocess, "encoders": encoders, "model": forward, "pipeline": end_to_end}
    for function in phases.values():  # warm-up: first-call allocations and lazy initialisation
        function()
    times: dict[str, list[float]] = {name: [] for name in phases}
    memory: dict[str, float] = {name: 0.0 for name in phases}
    for _ in range(args.repeats):
        for name, function in phases.items():
            seconds, peak = measure(function)
            times[name].append(seconds)
            memory[name] = max(memory[name], peak)
    latencies = [measure(lambda item=item: recognizer(item))[0] for item in inputs[: args.latency_items]]

    n = len(inputs)
    median = {name: statistics.median(values) for name, values in times.items()}
    fastest = {name: min(values) for name, values in times.items()}
    print(
        f"{n} utterances ({args.corpus}; {'+'.join(modalities)}), batch {args.batch_size}, {args.repeats} repeats, "
        f"torch threads {torch.get_num_threads()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"{'phase':<12} {'median s':>9} {'min s':>8} {'utt/s (min)':>12} {'peak RSS +MiB':>14}")
    for name in phases:
        print(f"{name:<12} {median[name]:>9.3f} {fastest[name]:>8.3f} {n / fastest[name]:>12.1f} {memory[name]:>14.1f}")
    for label, values in (("median", median), ("min", fastest)):
        ratio = values["model"] / values["encoders"]
        print(
            f"fusion + heads overhead ({label}): model / encoders = {ratio:.4f} ({ratio - 1:+.2%}); "
            f"pipeline / (preprocess + model) = {values['pipeline'] / (values['preprocess'] + values['model']):.4f}"
        )
    overhead = fastest["model"] / fastest["encoders"] - 1.0
    print(
        f"single-utterance latency over {len(latencies)} items: median {statistics.median(latencies) * 1000:.1f} ms, "
        f"p90 {np.percentile(latencies, 90) * 1000:.1f} ms"
    )
    return {
        "n": n,
        "median_s": median,
        "min_s": fastest,
        "peak_rss_mib": memory,
        "latency_s": latencies,
        "overhead": overhead,
    }


if __name__ == "__main__":
    main()
