# Copyright 2026 The TER authors. Licensed under the Apache License, Version 2.0.
########################################################################
# Long audio through the trusted-emotion-recognition pipeline: which rule pools the windows' opinions, and what a
# 10-minute clip costs in memory.
#
#   python scripts/train.py --output_dir out          # once: the main job's checkpoint
#   python scripts/bench_long_audio.py --model out    # ~10 min on 2 busy cores
#
# Clips are concatenated utterances of one EmoDB speaker (`--speakers`, default emodb_11, 52 utterances of 2 s).
# The main job cross-fits on every speaker of data/manifest.csv and trains its final heads on all of them, so for its
# checkpoint these are *training* utterances (the script says so, reading `--train_manifest`); for held-out numbers,
# train without the speaker (`--manifest` of train.py) and pass that manifest as `--train_manifest`.
# - one clip per emotion (all of that speaker's utterances of it, 0.3 s of silence between them): accuracy and
#   confidence of each window rule against the emotion;
# - "labelled alike": the utterances that the model, given each alone, assigns to its most frequent label, repeated
#   to 30 s and to 10 min: does the pooled clip keep that label, and is its confidence at least one window's (the
#   median window's: what one window of the clip typically says)?
# - peak RSS of the whole pipeline run (fresh process each) on the 10-minute clip against the 30 s one.
########################################################################
"""Measure window pooling rules and memory of the pipeline on long clips made of demo utterances of one speaker."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
GAP_S = 0.3


def speaker_utterances(manifest: str, speakers: set[str]) -> list[tuple[str, str]]:
    """`(audio path, label name)` of the EmoDB items of `speakers` in `manifest`."""
    from modeling_ter.data.manifest import read_manifest

    rows, _ = read_manifest(manifest)
    return [(row["audio"], row["label"]) for row in rows if row["corpus"] == "emodb" and row["speaker_id"] in speakers]


def seen_in_training(train_manifest: str, speakers: set[str]) -> set[str]:
    """The `speakers` that `train_manifest` (the corpus the checkpoint was trained on) holds."""
    from modeling_ter.data.manifest import read_manifest

    rows, _ = read_manifest(train_manifest)
    return speakers & {row["speaker_id"] for row in rows}


def concatenate(waveforms: list[np.ndarray], seconds: float | None = None) -> np.ndarray:
    """The waveforms one after another with `GAP_S` of silence between them, cycled up to `seconds` if given."""
    gap = np.zeros(int(GAP_S * RATE), dtype=np.float32)
    pieces, total, index = [], 0, 0
    while True:
        piece = np.concatenate([waveforms[index % len(waveforms)], gap])
        pieces.append(piece)
        total += len(piece)
        index += 1
        if (seconds is None and index == len(waveforms)) or (seconds is not None and total >= seconds * RATE):
            break
    clip = np.concatenate(pieces)
    return clip if seconds is None else clip[: int(seconds * RATE)]


def peak_rss_child(model: str, clip_path: str, chunk_length_s: float) -> None:
    """Child mode: run the pipeline once on a clip and print its peak RSS (MiB) as JSON."""
    import torch
    from transformers import pipeline

    import modeling_ter  # noqa: F401  (registers the task)

    torch.set_num_threads(1)  # as the parent: two intra-op threads crawl on a busy 2-core machine
    classify = pipeline("trusted-emotion-recognition", model=model)
    result = classify(np.load(clip_path), sampling_rate=RATE, chunk_length_s=chunk_length_s, return_windows=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"peak_rss_mib": peak_mib, "windows": len(result["windows"]), "label": result["label"]}))


def measure_peak_rss(model: str, clip: np.ndarray, chunk_length_s: float, folder: Path) -> dict:
    path = folder / f"clip_{len(clip) // RATE}s.npy"
    np.save(path, clip)
    command = [sys.executable, __file__, "--model", model, "--rss_child", str(path), "--chunk_length_s"]
    done = subprocess.run([*command, str(chunk_length_s)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a TER checkpoint folder (scripts/train.py --output_dir)")
    parser.add_argument(
        "--manifest", default=str(REPO_ROOT / "data" / "manifest.csv"), help="where the clips come from"
    )
    parser.add_argument("--speakers", default="emodb_11", help="comma-separated EmoDB speaker ids of the clips")
    parser.add_argument(
        "--train_manifest",
        default=str(REPO_ROOT / "data" / "manifest.csv"),
        help="the corpus the checkpoint was trained on (scripts/train.py's default: data/manifest.csv)",
    )
    parser.add_argument("--chunk_length_s", type=float, nargs="+", default=[3.0, 10.0, 30.0])
    parser.add_argument("--long_minutes", type=float, default=10.0)
    parser.add_argument("--rss_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        peak_rss_child(args.model, args.rss_child, args.chunk_length_s[0])
        return

    import tempfile

    import torch
    from transformers import pipeline

    import modeling_ter  # noqa: F401
    from modeling_ter.pipelines.trusted_emotion_recognition import WINDOW_RULES
    from modeling_ter.processing.audio import load_audio

    torch.set_num_threads(1)
    classify = pipeline("trusted-emotion-recognition", model=args.model)
    speakers = {speaker.strip() for speaker in args.speakers.split(",")}
    utterances = speaker_utterances(args.manifest, speakers)
    if not utterances:
        parser.error(f"--manifest {args.manifest} has no EmoDB utterance of --speakers {args.speakers}.")
    seen = seen_in_training(args.train_manifest, speakers)
    waveforms = {path: load_audio(path, RATE) for path, _ in utterances}
    lengths = [len(w) / RATE for w in waveforms.values()]
    print(
        f"{len(utterances)} EmoDB utterances of {sorted(speakers)} ({sum(lengths):.0f} s, {min(lengths):.1f}-"
        f"{max(lengths):.1f} s each); "
        + (f"TRAINING speakers (in {args.train_manifest}): {sorted(seen)}" if seen else "held out from training")
        + "; each alone, whole or in windows:"
    )
    for chunk in [30.0] + [c for c in args.chunk_length_s if c < 30]:
        each = {path: classify(waveforms[path], sampling_rate=RATE, chunk_length_s=chunk) for path, _ in utterances}
        print(
            f"  chunk_length_s {chunk:>4}: accuracy {np.mean([each[p]['label'] == label for p, label in utterances]):.3f}"
            f", mean confidence {np.mean([each[p]['confidence'] for p, _ in utterances]):.3f}"
        )
        if chunk == 30.0:
            alone = each  # the utterances as the model was trained on them: whole

    by_emotion = defaultdict(list)
    for path, label in utterances:
        by_emotion[label].append(waveforms[path])
    print("\nOne clip per emotion (all its utterances): accuracy / mean confidence per window rule")
    print(f"{'chunk_length_s':>14} {'clip s (mean)':>13} " + " ".join(f"{rule:>32}" for rule in WINDOW_RULES))
    for chunk in args.chunk_length_s:
        clips = {label: concatenate(pieces) for label, pieces in by_emotion.items()}
        cells = []
        for rule in WINDOW_RULES:
            results = {
                label: classify(clip, sampling_rate=RATE, chunk_length_s=chunk, window_fusion=rule)
                for label, clip in clips.items()
            }
            accuracy = np.mean([result["label"] == label for label, result in results.items()])
            confidence = np.mean([result["confidence"] for result in results.values()])
            cells.append(f"acc {accuracy:.3f} (n={len(results)}) conf {confidence:.3f}")
        mean_s = np.mean([len(c) / RATE for c in clips.values()])
        print(f"{chunk:>14} {mean_s:>13.1f} " + " ".join(f"{cell:>32}" for cell in cells))

    top_label, _ = Counter(result["label"] for result in alone.values()).most_common(1)[0]
    alike = [waveforms[p] for p, _ in utterances if alone[p]["label"] == top_label]
    print(f"\nLabelled alike: {len(alike)} utterances the model labels {top_label!r} one by one")
    for seconds, chunk in [(30.0, None)] + [(args.long_minutes * 60, c) for c in args.chunk_length_s if c < 30]:
        clip = concatenate(alike, seconds)
        for rule in WINDOW_RULES:
            options = dict(window_fusion=rule, return_windows=True, chunk_length_s=chunk)
            result = classify(clip, sampling_rate=RATE, **options)
            speech = [w["confidence"] for w in result["windows"] if w["speech"]]
            print(
                f"  {seconds:>5.0f} s, chunk {chunk or 'default'} s, {rule:<16}: label {result['label']!r} "
                f"(kept: {result['label'] == top_label}), "
                f"fused confidence {result['confidence']:.3f}; {len(result['windows'])} windows "
                f"({len(speech)} speech), window confidence min {min(speech):.3f} / median {np.median(speech):.3f} "
                f"/ mean {np.mean(speech):.3f} / max {max(speech):.3f}; fused >= "
                f"{np.mean(np.array(speech) <= result['confidence'] + 1e-6):.0%} of the windows (>= the median "
                f"window: {result['confidence'] >= np.median(speech)})"
            )

    with tempfile.TemporaryDirectory() as folder:
        chunk = modeling_ter.pipelines.trusted_emotion_recognition.DEFAULT_CHUNK_LENGTH_S
        short = measure_peak_rss(args.model, concatenate(alike, 30.0), chunk, Path(folder))
        long = measure_peak_rss(args.model, concatenate(alike, args.long_minutes * 60), chunk, Path(folder))
    print(
        f"\nPeak RSS of a pipeline run (fresh process, chunk_length_s={chunk}): 30 s clip {short['peak_rss_mib']:.0f} "
        f"MiB ({short['windows']} windows); {args.long_minutes:.0f} min clip {long['peak_rss_mib']:.0f} MiB "
        f"({long['windows']} windows): +{long['peak_rss_mib'] - short['peak_rss_mib']:.0f} MiB "
        f"(<= 300 MB: {(long['peak_rss_mib'] - short['peak_rss_mib']) * 2**20 <= 300e6})"
    )


if __name__ == "__main__":
    main()
