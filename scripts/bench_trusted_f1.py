# Copyright 2025 The TER authors. Licensed under the Apache License, Version 2.0.
"""Benchmark of the trusted metrics (not a test): the numpy core and the `evaluate` module against baselines.

1. `trusted_scores` on N samples with K classes (target: < 1 s for N = 10^6, K = 8), and its speed-up over a
   brute-force Python loop over every candidate threshold. The loop is O(N·M) (M distinct confidences ~ N), so both
   run on the same smaller `--brute-force-n` samples; the loop's time at N is also printed, extrapolated
   quadratically and labelled as such.
2. `evaluate.load(metrics/trusted_f1)` against evaluate's own floor: a metric module written to a temp folder that
   only counts its inputs, with the same features and format, timed on the same inputs in the same run
   (target: ratio <= 1.3). Optionally (`--probabilities`) the same for the "probabilities" config.

Run: `HF_HUB_OFFLINE=1 python3 scripts/bench_trusted_f1.py [--probabilities]` (about 2 minutes on 2 cores; 5 with
`--probabilities`).
"""

import argparse
import importlib.metadata
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# scripts/evaluate.py (TER's evaluation script) would shadow the `evaluate` library: drop this folder from the path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import evaluate  # noqa: E402
import numpy as np  # noqa: E402

from trusted_f1.trusted_metrics import trusted_scores  # noqa: E402

METRIC_DIR = Path(__file__).resolve().parents[1] / "metrics" / "trusted_f1"

FLOOR_MODULE = """
import datasets
import evaluate


class CountInputs(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Counts its inputs: evaluate's own cost of taking them.",
            citation="",
            inputs_description="",
            features=datasets.Features({features}),
            format={format!r},
        )

    def _compute(self, predictions, references, {third}):
        return {{"n": len(predictions)}}
"""


def make_inputs(n, num_classes, seed=0):
    """Predictions right with probability = confidence-ish, so the sweep is not trivial."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, num_classes)) * 2
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    predictions = probabilities.argmax(1)
    confidences = probabilities.max(1)
    references = np.where(rng.random(n) < confidences, predictions, rng.integers(0, num_classes, n))
    return predictions, references, confidences, probabilities


def brute_force_max_f1(correct, confidences):
    """Max trusted F1 by a loop over every distinct confidence (ties -> larger τ)."""
    n_correct = correct.sum()
    best_f1, best_tau = -1.0, None
    for tau in np.unique(confidences):
        trusted = confidences >= tau
        both = np.count_nonzero(trusted & correct)
        f1 = 2 * both / (np.count_nonzero(trusted) + n_correct)
        if f1 >= best_f1:
            best_f1, best_tau = f1, tau
    return best_tau, best_f1


def timed(function, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def write_floor(folder, config):
    if config == "default":
        features = (
            '{"predictions": datasets.Value("int64"), "references": datasets.Value("int64"), '
            '"confidences": datasets.Value("float64")}'
        )
        source = FLOOR_MODULE.format(features=features, format="arrow", third="confidences")
    else:
        features = (
            '{"predictions": datasets.Value("int64"), "references": datasets.Value("int64"), '
            '"probabilities": datasets.Sequence(datasets.Value("float64"))}'
        )
        source = FLOOR_MODULE.format(features=features, format=None, third="probabilities")
    module_dir = Path(folder) / f"count_inputs_{config}"
    module_dir.mkdir()
    (module_dir / f"count_inputs_{config}.py").write_text(textwrap.dedent(source))
    return str(module_dir)


def bench_evaluate(config, inputs, repeats):
    """Seconds per compute of our module and of the floor on the same inputs: one warm-up each, then `repeats`
    rounds alternating which runs first (this machine is shared and noisy)."""
    with tempfile.TemporaryDirectory() as folder:
        modules = {"ours": evaluate.load(str(METRIC_DIR), config), "floor": evaluate.load(write_floor(folder, config))}
        results = {name: module.compute(**inputs) for name, module in modules.items()}
        times = {"ours": [], "floor": []}
        for round_ in range(repeats):
            for name in ("ours", "floor") if round_ % 2 == 0 else ("floor", "ours"):
                seconds, results[name] = timed(lambda module=modules[name]: module.compute(**inputs), 1)
                times[name].append(seconds)
    assert results["floor"]["n"] == results["ours"]["n"] == len(inputs["predictions"])
    return times


def report_evaluate(label, times):
    ours, floor = statistics.median(times["ours"]), statistics.median(times["floor"])
    print(
        f"   {label}: trusted_f1 median {ours:.2f} s (min {min(times['ours']):.2f}), floor median {floor:.2f} s "
        f"(min {min(times['floor']):.2f}) -> ratio of medians {ours / floor:.2f}, of minima "
        f"{min(times['ours']) / min(times['floor']):.2f} ({'OK' if ours / floor <= 1.3 else 'OVER'} the 1.3 target)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--brute-force-n", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--probabilities", action="store_true", help="also time the 'probabilities' config")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, evaluate {importlib.metadata.version('evaluate')}, "
        f"{os.cpu_count()} CPUs"
    )

    predictions, references, confidences, probabilities = make_inputs(args.n, args.classes)
    print(f"\n1. numpy core: N = {args.n:,}, K = {args.classes}, {len(np.unique(confidences)):,} distinct confidences")
    core_time, scores = timed(lambda: trusted_scores(predictions, references, confidences), args.repeats)
    print(
        f"   trusted_scores (max_f1, all scores): {core_time:.3f} s (median of {args.repeats}) "
        f"-> {'OK' if core_time < 1 else 'OVER'} the 1 s target; trusted F1 {scores['trusted_f1']:.4f}"
    )

    m = args.brute_force_n
    small = (predictions[:m], references[:m], confidences[:m])
    correct = small[0] == small[1]
    small_core_time, small_scores = timed(lambda: trusted_scores(*small), args.repeats)
    loop_time, (loop_tau, loop_f1) = timed(lambda: brute_force_max_f1(correct, small[2]), 1)
    assert loop_tau == small_scores["threshold"] and np.isclose(loop_f1, small_scores["trusted_f1"])
    print(
        f"   same N = {m:,} for both: core {small_core_time * 1e3:.2f} ms, brute-force loop over "
        f"{len(np.unique(small[2])):,} thresholds {loop_time * 1e3:.1f} ms "
        f"-> core is {loop_time / small_core_time:.0f}x "
        "faster (same threshold and F1)"
    )
    extrapolated = loop_time * (args.n / m) ** 2
    print(
        f"   brute force at N = {args.n:,}, extrapolated as O(N·M) ~ N²: ~{extrapolated:,.0f} s "
        f"(~{extrapolated / core_time:,.0f}x the core; not measured)"
    )

    inputs = dict(predictions=predictions, references=references, confidences=confidences)
    print(
        f"\n2. evaluate.load(...).compute on the same {args.n:,} inputs (numpy arrays), {args.repeats} rounds; "
        "floor = a module that counts its inputs, same features and format:"
    )
    report_evaluate("confidences", bench_evaluate("default", inputs, args.repeats))
    if args.probabilities:
        inputs = dict(predictions=predictions, references=references, probabilities=probabilities)
        report_evaluate(f"probabilities (N x {args.classes})", bench_evaluate("probabilities", inputs, args.repeats))


if __name__ == "__main__":
    main()
