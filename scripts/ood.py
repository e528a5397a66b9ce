# Copyright 2026 The TER authors. Licensed under the Apache License, Version 2.0.
"""Out-of-distribution check: does a TER checkpoint give signals that are not emotional speech a vacuous opinion?

    python scripts/ood.py --model out --manifest ../shared/data/manifest.csv --corpus emodb --speakers emodb_08 \
        --train_manifest data/manifest.csv --output_dir /tmp/ood_emodb

In-distribution (ID): the manifest's items (filtered as in `scripts/robustness.py`); score speakers the checkpoint
never saw. Out-of-distribution (OOD), made here with a fixed seed, `--per_kind` clips each (1.5-3 s at 16 kHz):

- `silence` (digital zeros), `near_silence` (white noise at -60 dBFS), `tone` (a pure sine, 100 Hz-4 kHz), `sweep`
  (a log sine sweep in 100 Hz-4 kHz), `white_noise`, `pink_noise`, `brown_noise`, `clicks` (1 ms clicks on silence);
- `music`: chords (a major or minor triad with 4 harmonics) struck on every beat at 90-150 bpm, decaying;
- `espeak`: synthetic speech from espeak-ng (German and English sentences, varied rate and pitch) — speech, reported
  beside the others; skipped with a message when `espeak-ng` is not installed.

Leave-one-kind-out: no kind generated here is ever shown to the model in training (TER's domain gate is fitted on the
training speech alone, `modeling_ter.training.crossfit`), so every kind is scored as one the model has never seen.

For each kind, the AUROC with which a score separates OOD (positive) from ID: TER's fused reported confidence
(negated) and uncertainty `u`, and for comparison `1 - max softmax` of a logistic-regression baseline trained on the
same frozen encoder features (`modeling_ter.evaluation.baselines.fit_classifier`) of the manifest's other speakers
(`--train_manifest`). Two settings: `audio_only` (ID items without their transcript, OOD clips alone) and `audio_text`
(ID items with their transcript, each OOD clip paired with the transcript of a random ID item), so the number of
modalities never differs between ID and OOD. Also reported: the share of OOD clips the checkpoint *trusts* at its
stored threshold.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from modeling_ter.data.augmentation import colored_noise
from modeling_ter.data.feature_cache import compute_features, embed_processed
from modeling_ter.data.manifest import read_manifest
from modeling_ter.encoders.whisper_conversion import SAMPLING_RATE
from modeling_ter.evaluation.baselines import fit_classifier, predict_with_confidence
from modeling_ter.evaluation.predict import collect_outputs
from modeling_ter.evaluation.raw_inputs import load_checkpoint, load_samples
from modeling_ter.processing.audio import load_audio
from modeling_ter.utils.io import write_json_atomic

ESPEAK_SENTENCES = (
    ("de", "Der Zug nach Hamburg fährt heute von Gleis sieben ab."),
    ("de", "Bitte schließen Sie die Tür, wenn Sie den Raum verlassen."),
    ("de", "Die Temperatur liegt morgen bei etwa zwölf Grad."),
    ("en", "The next train to London leaves from platform four."),
    ("en", "Please read the instructions before you start the machine."),
    ("en", "Tomorrow the temperature will be around twelve degrees."),
)


def _duration(rng: np.random.Generator) -> int:
    return int(rng.uniform(1.5, 3.0) * SAMPLING_RATE)


def _fade(signal: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    ramp = np.minimum(1.0, np.minimum(np.arange(len(signal)), np.arange(len(signal))[::-1]) / (seconds * SAMPLING_RATE))
    return signal * ramp


def make_silence(rng: np.random.Generator) -> np.ndarray:
    return np.zeros(_duration(rng), dtype=np.float32)


def make_tone(rng: np.random.Generator) -> np.ndarray:
    time = np.arange(_duration(rng)) / SAMPLING_RATE
    frequency = np.exp(rng.uniform(np.log(100.0), np.log(4000.0)))
    return _fade(rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def make_noise(color: str):
    def make(rng: np.random.Generator) -> np.ndarray:
        return (rng.uniform(0.02, 0.2) * colored_noise((_duration(rng),), color, rng)).astype(np.float32)

    return make


def make_music(rng: np.random.Generator) -> np.ndarray:
    """Chords with rhythm: a triad (4 harmonics per note, 1/h amplitudes) on every beat, exponentially decaying."""
    length = _duration(rng)
    time = np.arange(length) / SAMPLING_RATE
    beat = 60.0 / rng.uniform(90, 150)
    signal = np.zeros(length)
    for onset in np.arange(0.0, length / SAMPLING_RATE, beat):
        root = rng.integers(48, 72)  # MIDI note
        chord = (root, root + (4 if rng.random() < 0.5 else 3), root + 7)
        local = time - onset
        envelope = np.where(local >= 0, np.exp(-np.clip(local, 0, None) / (0.4 * beat)), 0.0)
        for note in chord:
            frequency = 440.0 * 2 ** ((note - 69) / 12)
            for harmonic in range(1, 5):
                signal += envelope * np.sin(2 * np.pi * frequency * harmonic * local) / harmonic
    return _fade(0.3 * signal / np.abs(signal).max()).astype(np.float32)


def make_espeak_clips(count: int, rng: np.random.Generator) -> Optional[list[np.ndarray]]:
    """`count` clips of espeak-ng speech (random sentence, rate 120-180 wpm, pitch 30-70), or `None` without espeak-ng."""
    executable = shutil.which("espeak-ng")
    if executable is None:
        return None
    clips = []
    with tempfile.TemporaryDirectory() as folder:
        for index in range(count):
            language, sentence = ESPEAK_SENTENCES[rng.integers(len(ESPEAK_SENTENCES))]
            path = Path(folder) / f"{index}.wav"
            command = [
                executable,
                "-v",
                language,
                "-s",
                str(rng.integers(120, 181)),
                "-p",
                str(rng.integers(30, 71)),
                "-w",
                str(path),
                sentence,
            ]
            subprocess.run(command, check=True, capture_output=True)
            clips.append(load_audio(path, SAMPLING_RATE))
    return clips


def make_near_silence(rng: np.random.Generator) -> np.ndarray:
    """White noise at -60 dBFS RMS (a quiet room, a muted microphone)."""
    return (10 ** (-60 / 20) * colored_noise((_duration(rng),), "white", rng)).astype(np.float32)


def make_sweep(rng: np.random.Generator) -> np.ndarray:
    """A logarithmic sine sweep between two random frequencies in 100 Hz - 4 kHz."""
    length = _duration(rng)
    start, stop = np.exp(rng.uniform(np.log(100.0), np.log(4000.0), size=2))
    time = np.arange(length) / SAMPLING_RATE
    duration = length / SAMPLING_RATE
    rate = np.log(stop / start) / duration
    phase = 2 * np.pi * start * (np.exp(rate * time) - 1) / rate if abs(rate) > 1e-9 else 2 * np.pi * start * time
    return _fade(rng.uniform(0.05, 0.5) * np.sin(phase)).astype(np.float32)


def make_clicks(rng: np.random.Generator) -> np.ndarray:
    """Short clicks (1 ms, random sign) at random times, 2-20 per second, on digital silence."""
    length = _duration(rng)
    signal = np.zeros(length)
    count = max(1, int(rng.uniform(2, 20) * length / SAMPLING_RATE))
    width = SAMPLING_RATE // 1000
    for onset in rng.integers(0, length - width, size=count):
        signal[onset : onset + width] = rng.choice((-1.0, 1.0)) * rng.uniform(0.2, 0.9)
    return signal.astype(np.float32)


OOD_GENERATORS = {
    "silence": make_silence,
    "near_silence": make_near_silence,
    "tone": make_tone,
    "sweep": make_sweep,
    "white_noise": make_noise("white"),
    "pink_noise": make_noise("pink"),
    "brown_noise": make_noise("brown"),
    "clicks": make_clicks,
    "music": make_music,
}


def make_ood_sets(per_kind: int, seed: int) -> dict[str, list[np.ndarray]]:
    """`{kind: [waveform (T,), ...]}` at 16 kHz; `espeak` only when espeak-ng is installed (else a message)."""
    rng = np.random.default_rng(seed)
    sets = {kind: [make(rng) for _ in range(per_kind)] for kind, make in OOD_GENERATORS.items()}
    espeak = make_espeak_clips(per_kind, rng)
    if espeak is None:
        print("espeak: skipped (espeak-ng is not installed; `apt-get install -y espeak-ng` adds it)")
    else:
        sets["espeak"] = espeak
    return sets


@torch.no_grad()
def embed(model, processor, modality: str, values: list, batch_size: int) -> torch.Tensor:
    """Pooled encoder features `(N, num_feature_layers, dim)` of raw inputs (processor, then the model's encoder)."""
    parts = []
    for start in range(0, len(values), batch_size):
        batch = processor(**{modality: values[start : start + batch_size]}, sampling_rate=SAMPLING_RATE)
        parts.append(embed_processed(model, batch, modality).float())
    return torch.cat(parts)


@torch.no_grad()
def ter_scores(model, embeds: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """TER's fused `(uncertainty, confidence)`, each `(N,)`, from pooled features of the given modalities."""
    outputs = collect_outputs(model, [{f"{m}_embeds": value for m, value in embeds.items()}])
    return outputs["uncertainty"], outputs["confidence"]


def baseline_features(embeds: dict[str, torch.Tensor], modalities: Sequence[str]) -> np.ndarray:
    """The logistic regression's input: the last pooled layer of each modality, concatenated `(N, sum of dims)`."""
    return torch.cat([embeds[m][:, -1] for m in modalities], dim=1).numpy()


def train_baseline(model, processor, args, exclude_speakers: set[str], modalities: Sequence[str]):
    """A logistic regression on the frozen features of the `--train_manifest` rows that have `modalities`, minus the
    evaluated speakers."""
    rows, _ = read_manifest(args.train_manifest)
    rows = [
        row
        for row in rows
        if row["label"] in model.config.label2id
        and row["speaker_id"] not in exclude_speakers
        and all(row[m] is not None for m in modalities)
    ]
    cached = compute_features(
        model,
        processor,
        {m: [row[m] for row in rows] for m in modalities},
        modalities,
        cache_dir=args.cache_dir,
        show_progress=False,
    )
    usable = cached.mask.all(1).numpy()
    features = baseline_features(cached.features, modalities)[usable]
    labels = np.array([model.config.label2id[row["label"]] for row in rows])[usable]
    return fit_classifier("logistic", features, labels, seed=args.seed), int(usable.sum())


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="OOD AUROC of a TER checkpoint's fused uncertainty.")
    parser.add_argument("--model", required=True, help="checkpoint folder (written by scripts/train.py)")
    parser.add_argument("--manifest", required=True, help="manifest CSV of the in-distribution items")
    parser.add_argument("--output_dir", required=True, help="where ood.json goes")
    parser.add_argument(
        "--train_manifest",
        default=None,
        help="the baseline's training rows (default: --manifest); the evaluated speakers are left out",
    )
    parser.add_argument("--corpus", default=None, help="in-distribution items of this corpus only (e.g. emodb)")
    parser.add_argument("--speakers", default=None, help="comma-separated in-distribution speaker ids (held-out ones)")
    parser.add_argument("--max_items", type=int, default=None, help="a seeded random subset of at most N ID items")
    parser.add_argument("--per_kind", type=int, default=20, help="OOD clips per kind")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache_dir", default=None, help="feature cache for the baseline's training features")
    args = parser.parse_args(argv)
    args.train_manifest = args.train_manifest or args.manifest
    if args.per_kind < 2 or args.batch_size < 1:
        parser.error("--per_kind must be at least 2 and --batch_size positive.")
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    model, processor = load_checkpoint(args.model)
    if "audio" not in model.config.modalities:
        raise ValueError(f"The OOD check feeds audio; the checkpoint {args.model} has {list(model.config.modalities)}.")
    rows, samples = load_samples(args.manifest, model, args.corpus, args.speakers, args.max_items, args.seed)
    keep = [i for i, waveform in enumerate(samples["audio"]) if waveform is not None]
    if len(keep) < 2:
        raise ValueError("The OOD check needs at least 2 in-distribution items with audio; widen --corpus/--speakers.")
    id_audio = [samples["audio"][i] for i in keep]
    id_text = [samples["text"][i] for i in keep]
    speakers = {rows[i]["speaker_id"] for i in keep}
    settings = {"audio_only": ("audio",)}
    if "text" in model.config.modalities and all(text is not None for text in id_text):
        settings["audio_text"] = ("audio", "text")
    ood_sets = make_ood_sets(args.per_kind, args.seed)
    rng = np.random.default_rng(args.seed)
    threshold = model.config.trusted_threshold
    print(
        f"ID: {len(keep)} items (speakers {', '.join(sorted(speakers))}); OOD: {args.per_kind} clips per kind; "
        f"stored τ={threshold:.4f}"
    )

    id_embeds = {"audio": embed(model, processor, "audio", id_audio, args.batch_size)}
    if "audio_text" in settings:
        id_embeds["text"] = embed(model, processor, "text", id_text, args.batch_size)
    report = {
        "n_id": len(keep),
        "per_kind": args.per_kind,
        "threshold": threshold,
        "speakers": sorted(speakers),
        "settings": {},
    }
    for setting, modalities in settings.items():
        baseline, n_train = train_baseline(model, processor, args, speakers, modalities)
        id_u, id_conf = ter_scores(model, {m: id_embeds[m] for m in modalities})
        id_baseline = predict_with_confidence(baseline, baseline_features(id_embeds, modalities))[1]
        entry = {
            "baseline_train_items": n_train,
            "id_mean_uncertainty": float(id_u.mean()),
            "id_trusted_share": float((id_conf >= threshold).mean()),
            "kinds": {},
        }
        print(
            f"\n[{setting}] logistic-regression baseline trained on {n_train} items; ID mean u={id_u.mean():.4f}, "
            f"ID trusted {entry['id_trusted_share']:.3f}"
        )
        print(
            f"{'kind':<13} {'AUROC TER conf':>14} {'AUROC TER u':>12} {'AUROC LR 1-maxp':>16} {'OOD mean conf':>14} "
            f"{'OOD trusted':>12}"
        )
        for kind, clips in ood_sets.items():
            ood_embeds = {"audio": embed(model, processor, "audio", clips, args.batch_size)}
            if "text" in modalities:
                paired = [id_text[j] for j in rng.integers(len(id_text), size=len(clips))]
                ood_embeds["text"] = embed(model, processor, "text", paired, args.batch_size)
            ood_u, ood_conf = ter_scores(model, ood_embeds)
            ood_baseline = predict_with_confidence(baseline, baseline_features(ood_embeds, modalities))[1]
            is_ood = np.r_[np.zeros(len(id_u)), np.ones(len(ood_u))]
            result = {
                "auroc_ter_confidence": float(roc_auc_score(is_ood, -np.r_[id_conf, ood_conf])),
                "auroc_ter_uncertainty": float(roc_auc_score(is_ood, np.r_[id_u, ood_u])),
                "auroc_baseline_max_softmax": float(roc_auc_score(is_ood, -np.r_[id_baseline, ood_baseline])),
                "ood_mean_uncertainty": float(ood_u.mean()),
                "ood_mean_confidence": float(ood_conf.mean()),
                "ood_trusted_share": float((ood_conf >= threshold).mean()),
            }
            entry["kinds"][kind] = result
            print(
                f"{kind:<13} {result['auroc_ter_confidence']:>14.4f} {result['auroc_ter_uncertainty']:>12.4f} "
                f"{result['auroc_baseline_max_softmax']:>16.4f} {result['ood_mean_confidence']:>14.4f} "
                f"{result['ood_trusted_share']:>12.3f}"
            )
        report["settings"][setting] = entry
    path = write_json_atomic(report, Path(args.output_dir) / "ood.json")
    print(f"\nwrote {path}")
    return report


if __name__ == "__main__":
    main()
