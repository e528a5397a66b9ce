# Copyright 2026 The TER authors. Licensed under the Apache License, Version 2.0.
"""Inference speed and memory of TER against its own encoders, measured in one run on the same inputs.

    python scripts/bench_inference.py --model /tmp/ter_run --manifest data/manifest.csv --corpus emodb \
        --max_items 64 --batch_size 16 --repeats 3
    python scripts/export_onnx.py --model /tmp/ter_run --output /tmp/ter_run/onnx
    python scripts/bench_inference.py --model /tmp/ter_run --onnx /tmp/ter_run/onnx --threads 1,2  # + onnxruntime

Phases (each repeated `--repeats` times, interleaved; the median and the minimum are reported, the minimum being the
least disturbed by other processes on a shared machine):

- `preprocess`: the processor alone (decode, resample, log-mel, tokenise) on file paths and transcripts;
- `encoders`: the bare encoders' forward (`model.embed_modality` of every modality) on the prepared batches;
- `heads`: the model on the encoders' pooled features (`<modality>_embeds`): what it adds to its encoders (domain
  gates, evidential heads, evidence temperatures, calibrated confidence, fusion), measured apart from the encoders'
  run-to-run noise;
- `model`: the full model forward (encoders + evidential heads + fusion) on the same prepared batches;
- `pipeline`: the `trusted-emotion-recognition` pipeline end to end (preprocessing, forward, postprocessing);
- `latency`: the pipeline on one utterance at a time (median and 90th percentile);
- with `--onnx`: `onnx_model` (the exported graphs on the same prepared batches), `onnx_pipeline` and the latency of
  the same pipeline with onnxruntime in place of PyTorch (`modeling_ter.export.onnx_pipeline`), and the speed-ups.

`--threads 1,2` runs everything once per thread count (torch's intra-op threads and onnxruntime's, alike).

Printed ratios: `heads / encoders` and `model / encoders` (what the heads, gates and fusion add; the target is under
5 %), `pipeline / encoders` (the pipeline end to end against the bare float32 encoders, per utterance; the target is
under 1.5x) and `pipeline / (preprocess + model)`. `--quantization none,dynamic_int8` adds the encoders, model and
pipeline with `encoder_quantization="dynamic_int8"`. Memory is the peak resident set size reached during a phase above the RSS at its
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
from modeling_ter.export import onnx_pipeline


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
    parser = argparse.ArgumentParser(
        description="TER inference benchmark (pipeline vs bare encoders, PyTorch vs onnxruntime)."
    )
    parser.add_argument("--model", required=True, help="checkpoint folder (written by scripts/train.py)")
    parser.add_argument("--manifest", default=str(Path(__file__).resolve().parents[1] / "data" / "manifest.csv"))
    parser.add_argument("--corpus", default="emodb")
    parser.add_argument("--modalities", default="audio,text", help="the inputs given to every utterance")
    parser.add_argument("--max_items", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency_items", type=int, default=16)
    parser.add_argument(
        "--onnx", default=None, help="an export folder of --model (scripts/export_onnx.py): adds onnxruntime"
    )
    parser.add_argument(
        "--quantization",
        default="none",
        help="comma-separated encoder_quantization values of the pipeline; each besides 'none' adds its phases",
    )
    parser.add_argument(
        "--threads", default=None, help="comma-separated thread counts, each a run (default: torch's current)"
    )
    args = parser.parse_args(argv)
    if min(args.max_items, args.batch_size, args.repeats, args.latency_items) < 1:
        parser.error("--max_items, --batch_size, --repeats and --latency_items must be positive.")
    args.quantization = [q.strip() for q in args.quantization.split(",") if q.strip()]
    if args.threads is not None:
        try:
            args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
        except ValueError:
            parser.error(f"--threads takes comma-separated integers, got {args.threads!r}")
        if not args.threads or min(args.threads) < 1:
            parser.error(f"--threads must list positive thread counts, got {args.threads}")
    return args


def benchmark(
    args: argparse.Namespace,
    recognizer,
    onnx_recognizer,
    inputs: list[dict],
    modalities: Sequence[str],
    quantized: Optional[dict] = None,
) -> dict:
    """Every phase on the same inputs with the current thread settings; prints the table and returns the timings.

    `quantized`: `{quantization: pipeline}` built with `encoder_quantization=quantization`; each adds its
    `encoders`, `model` and `pipeline` phases (named `<phase>[<quantization>]`).
    """
    model, processor = recognizer.model.eval(), recognizer.processor
    chunks = [inputs[i : i + args.batch_size] for i in range(0, len(inputs), args.batch_size)]

    def preprocess() -> list:
        return [processor(**{m: [item[m] for item in chunk] for m in modalities}) for chunk in chunks]

    batches = preprocess()

    def encoders(candidate=model) -> None:
        for batch in batches:
            for modality in modalities:
                embed_processed(candidate, batch, modality)

    def forward(candidate=model) -> None:
        for batch in batches:
            candidate(**batch)

    with torch.no_grad():  # the encoders' pooled features of every batch, for the `heads` phase
        pooled = [{f"{m}_embeds": embed_processed(model, batch, m) for m in modalities} for batch in batches]

    def heads() -> None:  # everything the model adds to its encoders, on their pooled features
        for batch, embeds in zip(batches, pooled):
            model(**embeds, modality_mask=batch["modality_mask"])

    def end_to_end(candidate=recognizer) -> None:
        candidate(inputs, batch_size=args.batch_size)

    phases = {
        "preprocess": preprocess,
        "encoders": encoders,
        "heads": heads,
        "model": forward,
        "pipeline": end_to_end,
    }
    for quantization, variant in (quantized or {}).items():
        phases[f"encoders[{quantization}]"] = lambda m=variant.model: encoders(m)
        phases[f"model[{quantization}]"] = lambda m=variant.model: forward(m)
        phases[f"pipeline[{quantization}]"] = lambda r=variant: end_to_end(r)
    recognizers = {"pytorch": recognizer}
    if onnx_recognizer is not None:
        phases["onnx_model"] = lambda: forward(onnx_recognizer.model)
        phases["onnx_pipeline"] = lambda: end_to_end(onnx_recognizer)
        recognizers["onnxruntime"] = onnx_recognizer
    for function in phases.values():  # warm-up: first-call allocations and lazy initialisation
        function()
    times: dict[str, list[float]] = {name: [] for name in phases}
    memory: dict[str, float] = {name: 0.0 for name in phases}
    for _ in range(args.repeats):
        for name, function in phases.items():
            seconds, peak = measure(function)
            times[name].append(seconds)
            memory[name] = max(memory[name], peak)
    latencies = {
        backend: [measure(lambda item=item: candidate(item))[0] for item in inputs[: args.latency_items]]
        for backend, candidate in recognizers.items()
    }

    n = len(inputs)
    median = {name: statistics.median(values) for name, values in times.items()}
    fastest = {name: min(values) for name, values in times.items()}
    print(
        f"{n} utterances ({args.corpus}; {'+'.join(modalities)}), batch {args.batch_size}, {args.repeats} repeats, "
        f"torch threads {torch.get_num_threads()}, onnxruntime threads "
        f"{onnx_recognizer.model.num_threads if onnx_recognizer else '-'}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"{'phase':<24} {'median s':>9} {'min s':>8} {'ms/utt (median)':>16} {'/ encoders (median)':>20} "
        f"{'peak RSS +MiB':>14}"
    )
    for name in phases:
        print(
            f"{name:<24} {median[name]:>9.3f} {fastest[name]:>8.3f} {1000 * median[name] / n:>16.2f} "
            f"{median[name] / median['encoders']:>19.3f}x {memory[name]:>14.1f}"
        )
    for label, values in (("median", median), ("min", fastest)):
        ratio = values["model"] / values["encoders"]
        print(
            f"domain gates + heads + calibration + fusion ({label}): model / encoders = {ratio:.4f} "
            f"({ratio - 1:+.2%}); pipeline / encoders = {values['pipeline'] / values['encoders']:.3f}; "
            f"pipeline / (preprocess + model) = {values['pipeline'] / (values['preprocess'] + values['model']):.4f}"
        )
        for quantization in quantized or {}:
            print(
                f"  {quantization} ({label}): pipeline / float32 encoders = "
                f"{values[f'pipeline[{quantization}]'] / values['encoders']:.3f}; encoders x"
                f"{values['encoders'] / values[f'encoders[{quantization}]']:.2f} faster; model / its encoders = "
                f"{values[f'model[{quantization}]'] / values[f'encoders[{quantization}]']:.4f}"
            )
    print(
        f"the heads, domain gates, evidence temperatures, calibrated confidence and fusion on the encoders' pooled "
        f"features: heads / encoders = {median['heads'] / median['encoders']:.2%} (median), "
        f"{fastest['heads'] / fastest['encoders']:.2%} (min)"
    )
    overhead = fastest["model"] / fastest["encoders"] - 1.0
    for backend, values in latencies.items():
        print(
            f"single-utterance latency ({backend}) over {len(values)} items: median "
            f"{statistics.median(values) * 1000:.1f} ms, p90 {np.percentile(values, 90) * 1000:.1f} ms"
        )
    if onnx_recognizer is not None:
        speedup = {name: fastest[name] / fastest[f"onnx_{name}"] for name in ("model", "pipeline")}
        latency_ratio = statistics.median(latencies["pytorch"]) / statistics.median(latencies["onnxruntime"])
        print(
            f"onnxruntime speed-up over PyTorch (min times): model x{speedup['model']:.2f}, pipeline "
            f"x{speedup['pipeline']:.2f}; median single-utterance latency x{latency_ratio:.2f}; onnx pipeline / "
            f"float32 encoders (median) = {median['onnx_pipeline'] / median['encoders']:.3f}"
        )
    return {
        "n": n,
        "median_s": median,
        "min_s": fastest,
        "peak_rss_mib": memory,
        "latency_s": latencies,
        "overhead": overhead,
    }


@torch.no_grad()
def main(argv: Optional[Sequence[str]] = None) -> dict[int, dict]:
    """Runs the benchmark once per `--threads` entry; returns its timings by thread count."""
    args = parse_args(argv)
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    recognizer = pipeline("trusted-emotion-recognition", model=args.model)
    config = recognizer.model.config
    unknown = sorted(set(modalities) - set(config.modalities))
    if unknown:
        raise ValueError(f"--modalities {unknown} are not modalities of {args.model} ({list(config.modalities)}).")
    inputs = load_inputs(args, modalities)
    quantized = {
        quantization: pipeline("trusted-emotion-recognition", model=args.model, encoder_quantization=quantization)
        for quantization in args.quantization
        if quantization != "none"
    }
    results = {}
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        onnx_recognizer = onnx_pipeline(args.onnx, num_threads=threads) if args.onnx else None
        results[threads] = benchmark(args, recognizer, onnx_recognizer, inputs, modalities, quantized)
    return results


if __name__ == "__main__":
    main()
