# Copyright 2026 The TER authors. Licensed under the Apache License, Version 2.0.
"""Quality of TER on set A, measured with speaker-disjoint cross-validation, against two classic baselines.

    python scripts/bench_quality.py --output_json bench_quality.json
    python scripts/bench_quality.py --manifest my_corpus.csv --levers base,weighted_layer_sum --output_json out.json

Per corpus with at least two speakers (each corpus on its own), `speaker_folds` gives the outer folds (EmoDB's 5
speakers: leave-one-speaker-out; MELD: 5 groups of characters). Inside each outer training part, the speaker-disjoint
methods see the same data: each is fitted on all the training speakers and its trusted threshold ("break_even":
trusted precision = trusted recall) is chosen on out-of-fold predictions over speaker folds of them (TER: train.py's
cross-fitting; the baselines: the same classifier refitted per speaker fold); everything is scored on the held-out
test speakers.
A corpus with one speaker (CREMA-D in set A) cannot be evaluated speaker-disjointly and is skipped (reported).

Methods, all on the same folds:
- TER: `scripts/train.py` then `scripts/evaluate.py`, run in this process per fold on per-fold manifests written here
  (frozen encoders, cached features, evidential heads, Trusted CE loss, DS fusion; the project's defaults). The
  audio / text rows are the fused model's single-modality opinions (evaluate.py's ablation).
- logreg: logistic regression on the same frozen, pooled encoder features (audio, text, both concatenated).
- egemaps_svm: openSMILE eGeMAPSv02 functionals + RBF SVM with Platt probabilities (audio only).
`--encoder_quantization dynamic_int8` gives TER features from int8 encoders (`model.quantize_encoders`) in
training, calibration and test, for the accuracy cost of that inference speed option (README, "Inference speed").
Confidence: the calibrated confidence of the fused opinion for TER, the maximum class probability for the baselines.

Levers (`--levers`; each a separate TER row): `base` (mean pooling over the real, unpadded frames of the last encoder layer, `--weighted_layer_sum none`),
`weighted_layer_sum` (train.py's default: a learned weighted sum of all audio-encoder layers), `speaker_norm`
(each speaker's features z-scored with that speaker's own unlabelled features, in training, calibration and test; the
baselines get a row with it too), `noise_aug` (every training recording also as a copy with white noise at a random
SNR of 5-20 dB). Scores are means over the outer folds (standard deviations and per-fold values in the JSON).
Every baseline row and TER's fused row also get `pooled`: AURC and ECE over every fold's test predictions
together, and the ECE a perfectly calibrated predictor would show with the same confidences (`ece_floor`, pooled;
`ece_floor_per_fold`, as a mean of per-fold ECEs). Each fold records whether its test speaker's trusted precision
lies inside the card's Wilson interval (`inside`) and inside its prediction interval for one new speaker
(`inside_new_speaker`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import shutil
import time
import zlib
from collections import defaultdict
from pathlib import Path
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = REPO.parent / "shared" / "data" / "manifest.csv"
LEVERS = ("base", "weighted_layer_sum", "speaker_norm", "noise_aug")
NOISE_SNR_DB = (5.0, 20.0)
TABLE_KEYS = ("accuracy", "uar", "trusted_precision", "trusted_recall", "trusted_f1", "coverage", "aurc", "ece")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="manifest CSV (default: set A)")
    parser.add_argument("--output_json", default=None, help="write every score here")
    parser.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated subset of {','.join(LEVERS)}")
    parser.add_argument(
        "--corpora", default=None, help="comma-separated corpora to run (default: all with >= 2 speakers)"
    )
    parser.add_argument("--folds", type=int, default=5, help="outer folds per corpus (at most its number of speakers)")
    parser.add_argument(
        "--train_args",
        default="",
        help="extra scripts/train.py arguments for every TER run, e.g. '--epochs 100 --learning_rate 1e-3'",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--work_dir", default=None, help="fold manifests, noisy copies and logs (default: $TER_CACHE/bench_quality)"
    )
    parser.add_argument("--cache_dir", default=None, help="feature cache (default: $TER_CACHE/features)")
    parser.add_argument(
        "--encoder_quantization",
        default="none",
        choices=("none", "dynamic_int8"),
        help="TER's features from encoders made by `model.quantize_encoders` (training, calibration and test alike; "
        "cached apart, under <cache_dir>/<quantization>); the baselines keep float32",
    )
    args = parser.parse_args(argv)
    args.levers = [lever.strip() for lever in args.levers.split(",") if lever.strip()]
    unknown = [lever for lever in args.levers if lever not in LEVERS]
    if unknown or not args.levers:
        parser.error(f"--levers {unknown or args.levers}: choose from {', '.join(LEVERS)}.")
    if args.folds < 2:
        parser.error(f"--folds must be at least 2, got {args.folds}.")
    return args


def read_records(csv_path: Path) -> list[dict]:
    """`read_manifest` records whose `id` (the `path` column) is made absolute, so that they can be written anywhere."""
    from modeling_ter.data.manifest import read_manifest

    folder = Path(csv_path).resolve().parent
    return [{**r, "id": os.path.normpath(folder / r["id"])} for r in read_manifest(csv_path)[0]]


def to_manifest_rows(records: list[dict]):
    """Records of `read_records` as `ManifestRow`s (for `write_manifest`)."""
    from modeling_ter.data.manifest import ManifestRow

    return [
        ManifestRow(
            corpus=r["corpus"],
            path=r["id"],
            label=r["label"],
            speaker_id=r["speaker_id"],
            modality_files=tuple(r[m] for m in ("audio", "video") if r[m]),
            transcript=r["text"],
            language=r["language"],
        )
        for r in records
    ]


def noisy_copy(path: str, folder: Path, seed: int) -> Path:
    """A 16 kHz copy of `path` with white noise at an SNR drawn from `NOISE_SNR_DB` (`augmentation.add_noise`),
    written once and then reused: its unchanged mtime keeps its cached features valid."""
    import soundfile as sf

    from modeling_ter.data.augmentation import add_noise
    from modeling_ter.processing.audio import load_audio

    target = folder / f"{Path(path).stem}_{zlib.crc32(path.encode()):08x}_noisy.wav"
    if not target.is_file():
        rng = np.random.default_rng([seed, zlib.crc32(path.encode())])
        noisy = add_noise(load_audio(path, sampling_rate=16000), rng.uniform(*NOISE_SNR_DB), "white", rng)
        folder.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".tmp.wav")
        sf.write(temporary, np.clip(noisy, -1, 1), 16000, subtype="PCM_16")
        os.replace(temporary, target)
    return target


def speaker_normalizing(compute_features, speaker_of: dict[str, str]):
    """`compute_features` whose result is z-scored per speaker (`speaker_of`: audio path -> speaker id)."""
    from modeling_ter.evaluation.baselines import speaker_normalize

    def wrapped(model, processor, items, modalities, *args, **kwargs):
        cached = compute_features(model, processor, items, modalities, *args, **kwargs)
        if "audio" not in items or any(path not in speaker_of for path in items["audio"]):
            raise ValueError("speaker_norm needs every item's audio path to know its speaker; use it on audio corpora.")
        speakers = np.array([speaker_of[path] for path in items["audio"]])
        for column, modality in enumerate(cached.modalities):
            present = cached.mask[:, column].numpy()
            values = speaker_normalize(cached.features[modality][present].numpy(), speakers[present])
            cached.features[modality][present] = cached.features[modality].new_tensor(values)
        return cached

    return wrapped


class _KeyedBy:
    """A TER model that encodes with `encoding` (its quantized copy) but is keyed, configured and switched between
    train / eval modes as `model` (the float one), for the feature cache."""

    def __init__(self, model, encoding):
        self._model, self._encoding = model, encoding

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def embed_modality(self, modality: str, **inputs):
        return self._encoding.embed_modality(modality, **inputs)


def quantized_encoding(compute_features, quantization: str):
    """`compute_features` whose encoders compute as `model.quantize_encoders(quantization)` makes them, with its own
    cache folder `<cache_dir>/<quantization>` (the keys are the float model's)."""
    from modeling_ter.data.feature_cache import default_feature_cache_dir

    def wrapped(model, processor, items, modalities, cache_dir=None, *args, **kwargs):
        folder = Path(cache_dir) if cache_dir is not None else default_feature_cache_dir()
        keyed = _KeyedBy(model, model.quantize_encoders(quantization))
        return compute_features(keyed, processor, items, modalities, folder / quantization, *args, **kwargs)

    return wrapped


def summarize(per_fold: list[dict]) -> dict:
    """Mean and standard deviation over folds of every score, plus the per-fold values."""
    keys = [k for k in per_fold[0] if isinstance(per_fold[0][k], (int, float))]
    return {
        "mean": {k: float(np.mean([f[k] for f in per_fold])) for k in keys},
        "std": {k: float(np.std([f[k] for f in per_fold])) for k in keys},
        "per_fold": per_fold,
    }


ECE_FLOOR_DRAWS = 200


def ece_floor(confidences_per_fold: list[np.ndarray], seed: int = 0) -> tuple[float, float]:
    """The ECE a perfectly calibrated predictor would show with these confidences and these test sizes (each item
    right with probability equal to its confidence), as the mean of per-fold ECEs and as the ECE of all folds pooled;
    the mean over `ECE_FLOOR_DRAWS` draws. With ~40 items per fold and 15 bins this floor is near 0.1: a per-fold ECE
    cannot go below it by calibration."""
    from trusted_f1.trusted_metrics import expected_calibration_error

    rng = np.random.default_rng(seed)
    per_fold, pooled = [], []
    for _ in range(ECE_FLOOR_DRAWS):
        draws = [rng.random(len(c)) < c for c in confidences_per_fold]
        per_fold.append(np.mean([expected_calibration_error(d, c) for d, c in zip(draws, confidences_per_fold)]))
        pooled.append(expected_calibration_error(np.concatenate(draws), np.concatenate(confidences_per_fold)))
    return float(np.mean(per_fold)), float(np.mean(pooled))


def pooled_scores(predictions: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """AURC and ECE of the folds' test predictions pooled (`[(correct, confidences)]` per fold: every item scored
    by a model that never saw its speaker), with the ECE floors of `ece_floor`."""
    from trusted_f1.trusted_metrics import aurc, expected_calibration_error

    correct = np.concatenate([c for c, _ in predictions])
    confidences = np.concatenate([conf for _, conf in predictions])
    floor_per_fold, floor_pooled = ece_floor([conf for _, conf in predictions])
    return {
        "n": len(correct),
        "accuracy": float(correct.mean()),
        "aurc": aurc(correct, confidences),
        "ece": expected_calibration_error(correct, confidences),
        "ece_floor": floor_pooled,
        "ece_floor_per_fold": floor_per_fold,
    }


class Benchmark:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.manifest = Path(args.manifest)
        self.records = read_records(self.manifest)
        self.work_dir = Path(args.work_dir) if args.work_dir else self._default_work_dir()
        self.results: dict = {"corpora": {}, "skipped": {}}

    @staticmethod
    def _default_work_dir() -> Path:
        from modeling_ter.utils.cache import default_cache_dir

        return default_cache_dir() / "bench_quality"

    # -- data ---------------------------------------------------------------------------------------------------
    def corpus_records(self) -> dict[str, list[dict]]:
        by_corpus = defaultdict(list)
        for record in self.records:
            by_corpus[record["corpus"]].append(record)
        wanted = self.args.corpora.split(",") if self.args.corpora else list(by_corpus)
        unknown = sorted(set(wanted) - set(by_corpus))
        if unknown:
            raise ValueError(f"--corpora {unknown} not in {self.manifest} (it has {sorted(by_corpus)}).")
        chosen = {}
        for corpus, records in by_corpus.items():
            speakers = sorted({r["speaker_id"] for r in records})
            if corpus not in wanted:
                continue
            if len(speakers) < 2:
                self.results["skipped"][corpus] = (
                    f"{len(records)} items of a single speaker ({speakers[0]}): no speaker-disjoint evaluation is "
                    "possible, so the corpus is left out (not trained on, not scored)."
                )
                continue
            chosen[corpus] = records
        return chosen

    def write(self, records: list[dict], path: Path) -> Path:
        from modeling_ter.data.manifest import write_manifest

        return write_manifest(to_manifest_rows(records), path)

    # -- baselines ----------------------------------------------------------------------------------------------
    def baseline_features(self, records: list[dict], modalities: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Frozen pooled encoder features of every layer TER's heads see, concatenated (the same cache entries TER's
        default model reads: all 5 Whisper layers, MiniLM's last), and eGeMAPS."""
        from modeling_ter.data.feature_cache import compute_features
        from modeling_ter.encoders.defaults import build_default_model, build_default_processor
        from modeling_ter.evaluation.baselines import egemaps_features

        encoders = tuple(m for m in modalities if m in ("audio", "text"))
        options = {"audio": {"use_weighted_layer_sum": True}} if "audio" in encoders else None
        model = build_default_model(encoders, modality_options=options)
        processor = build_default_processor(encoders)
        items = {m: [r[m] for r in records] for m in encoders}
        cached = compute_features(model, processor, items, encoders, self.args.cache_dir, show_progress=False)
        if not bool(cached.mask.all()):
            raise ValueError(f"{int((~cached.mask).sum())} encoder inputs were masked; the baselines need every one.")
        features = {m: cached.features[m].flatten(1).numpy().astype(np.float64) for m in encoders}
        if "audio" in encoders:
            features["egemaps"], mask = egemaps_features(items["audio"], cache_dir=self.args.cache_dir)
            if not mask.all():
                raise ValueError(f"eGeMAPS failed for {int((~mask).sum())} files (see the log).")
        if len(encoders) > 1:
            features["+".join(encoders)] = np.concatenate([features[m] for m in encoders], 1)
        return features

    def run_baselines(self, features, labels, speakers, train, test, num_classes) -> dict:
        """Every baseline row of one fold: fit on the training speakers, τ on their out-of-fold predictions, score
        on test."""
        from modeling_ter.evaluation.baselines import (
            cross_fitted_predictions,
            fit_classifier,
            predict_with_confidence,
            speaker_normalize,
        )
        from trusted_f1.trusted_metrics import select_threshold, trusted_scores

        rows = {}
        variants = [False, True] if "speaker_norm" in self.args.levers else [False]
        groups = np.asarray(speakers)[train]
        for name, values in features.items():
            method = "egemaps_svm" if name == "egemaps" else "logreg"
            modality = "audio" if name == "egemaps" else name.replace("audio+text", "fused")
            for normalize in variants:
                x = speaker_normalize(values, speakers) if normalize else values
                kind = "svm" if method == "egemaps_svm" else "logistic"
                # C (and gamma) by speaker-grouped inner CV
                classifier = fit_classifier(kind, x[train], labels[train], seed=self.args.seed, groups=groups)
                held_pred, held_conf = cross_fitted_predictions(classifier, x[train], labels[train], groups)
                tau = select_threshold(held_pred == labels[train], held_conf, "break_even")
                pred, conf = predict_with_confidence(classifier, x[test])
                scores = trusted_scores(pred, labels[test], conf, threshold=tau, num_classes=num_classes)
                scores["predictions"] = (pred == labels[test], conf)
                rows[(method, "speaker_norm" if normalize else "base", modality)] = scores
        return rows

    # -- TER ----------------------------------------------------------------------------------------------------
    def run_ter(self, lever, corpus, modalities, train_csv, test_csv, fold_dir, speaker_of) -> tuple[dict, dict]:
        """train.py + evaluate.py on one fold; returns {modality or "fused": scores} for `corpus`, and the promise
        the fold's checkpoint states for `corpus` (its card's trusted precision and coverage with 95 % intervals)."""
        out, log = fold_dir / f"ter_{lever}", fold_dir / f"ter_{lever}.log"
        argv = [
            "--output_dir",
            str(out),
            "--overwrite_output_dir",
            "--manifest",
            str(train_csv),
            "--modalities",
            ",".join(modalities),
            "--seed",
            str(self.args.seed),
        ]
        argv += shlex.split(self.args.train_args)
        if self.args.cache_dir is not None:
            argv += ["--cache_dir", self.args.cache_dir]
        if lever == "base":
            argv += ["--weighted_layer_sum", "none"]
        from transformers import HfArgumentParser

        from modeling_ter.evaluation import report as evaluation
        from modeling_ter.training import loop
        from modeling_ter.training.arguments import TERTrainingArguments

        (train_args,) = HfArgumentParser(TERTrainingArguments).parse_args_into_dataclasses(argv)
        patches = contextlib.ExitStack()
        # A fold's checkpoint is deleted once scored: its plots would only cost time (training draws them).
        patches.enter_context(mock.patch.object(loop, "save_plots", lambda *args, **kwargs: []))
        for module in (loop, evaluation):
            wrapped = module.compute_features
            if self.args.encoder_quantization != "none":
                wrapped = quantized_encoding(wrapped, self.args.encoder_quantization)
            if lever == "speaker_norm":
                wrapped = speaker_normalizing(wrapped, speaker_of)
            patches.enter_context(mock.patch.object(module, "compute_features", wrapped))
        eval_json = fold_dir / f"ter_{lever}_eval.json"
        fused, opinion_report = {}, evaluation.opinion_report

        def capturing_report(*args, **kwargs):
            report, predictions = opinion_report(*args, **kwargs)
            fused.update(predictions)
            return report, predictions

        patches.enter_context(mock.patch.object(evaluation, "opinion_report", capturing_report))
        buffer = io.StringIO()
        try:
            with patches, contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                loop.train(train_args)
                report = evaluation.evaluate_checkpoint(out, test_csv, eval_json, cache_dir=self.args.cache_dir)
        finally:
            log.write_text(buffer.getvalue())
        promise = json.loads((out / "eval_results.json").read_text())["promise"][corpus]
        shutil.rmtree(out, ignore_errors=True)  # ~125 MB per checkpoint; the scores are in eval_json
        scores = report["corpora"][corpus]
        scores["fused"]["predictions"] = (fused["correct"], fused["confidences"])  # the test csv holds one corpus
        return scores, promise

    # -- main loop ----------------------------------------------------------------------------------------------
    def run_corpus(self, corpus: str, records: list[dict]) -> None:
        from modeling_ter.data.manifest import load_manifest_dataset, speaker_folds
        from modeling_ter.models.configuration_ter import EMOTION_LABELS

        modalities = tuple(m for m in ("audio", "text") if any(r[m] for r in records))
        corpus_dir = self.work_dir / corpus
        corpus_csv = self.write(records, corpus_dir / "manifest.csv")
        # Re-read what train.py will read, so that row positions agree everywhere.
        records = read_records(corpus_csv)
        dataset = load_manifest_dataset(corpus_csv, validation_fraction=0.0)["train"]
        num_speakers = len(set(dataset["speaker_id"]))
        folds = speaker_folds(dataset, min(self.args.folds, num_speakers), seed=self.args.seed)
        present = sorted({r["label"] for r in records}, key=EMOTION_LABELS.index)
        labels = np.array([present.index(r["label"]) for r in records])
        speakers = np.array([r["speaker_id"] for r in records])
        features = self.baseline_features(records, modalities)
        ter_levers = [lever for lever in self.args.levers if lever != "speaker_norm" or "audio" in modalities]
        if "audio" not in modalities:
            ter_levers = [lever for lever in ter_levers if lever != "noise_aug"]
        noisy = {}
        if "noise_aug" in ter_levers:
            noisy = {
                r["audio"]: str(noisy_copy(r["audio"], self.work_dir / "noisy" / corpus, self.args.seed))
                for r in records
            }
        speaker_of = {r["audio"]: r["speaker_id"] for r in records if r["audio"]}
        speaker_of.update({noisy[path]: speaker for path, speaker in speaker_of.items() if path in noisy})

        per_row: dict[tuple, list[dict]] = defaultdict(list)
        predictions: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        fold_info = []
        for k, (train_idx, test_idx) in enumerate(folds):
            start = time.perf_counter()
            fold_dir = corpus_dir / f"fold_{k}"
            train_records = [records[i] for i in train_idx]
            train_csv = self.write(train_records, fold_dir / "train.csv")
            test_csv = self.write([records[i] for i in test_idx], fold_dir / "test.csv")
            fold_info.append(
                {
                    "test_speakers": sorted(set(speakers[test_idx])),
                    "n_train": len(train_idx),
                    "n_test": len(test_idx),
                }
            )
            rows = self.run_baselines(features, labels, speakers, train_idx, test_idx, len(present))
            for lever in ter_levers:
                train_csv_lever = train_csv
                if lever == "noise_aug":
                    augmented = [{**r, "id": noisy[r["audio"]], "audio": noisy[r["audio"]]} for r in train_records]
                    train_csv_lever = self.write(train_records + augmented, fold_dir / "train_noise_aug.csv")
                entry, promise = self.run_ter(
                    lever, corpus, modalities, train_csv_lever, test_csv, fold_dir, speaker_of
                )
                test = entry["fused"]
                # Either interval is None where the card trusted nothing (or has no new-speaker interval).
                new_speaker = (promise.get("new_speaker") or {}).get("trusted_precision_pi95")
                fold_info[-1].setdefault("ter_promise", {})[lever] = {
                    **promise,
                    "test_trusted_precision": test["trusted_precision"],
                    "test_coverage": test["coverage"],
                    "inside": within(promise["trusted_precision_ci95"], test["trusted_precision"]),
                    "inside_new_speaker": within(new_speaker, test["trusted_precision"]),
                }
                for modality, scores in entry.items():
                    rows[("TER", lever, modality)] = scores
            for key, scores in rows.items():
                per_row[key].append({k: scores[k] for k in (*TABLE_KEYS, "threshold", "n")})
                if "predictions" in scores:
                    predictions[key].append(scores["predictions"])
            print(
                f"{corpus} fold {k + 1}/{len(folds)} (test speakers {', '.join(fold_info[-1]['test_speakers'][:6])}"
                f"{'...' if len(fold_info[-1]['test_speakers']) > 6 else ''}): {time.perf_counter() - start:.0f} s",
                flush=True,
            )
        self.results["corpora"][corpus] = {
            "modalities": list(modalities),
            "labels": present,
            "n": len(records),
            "num_speakers": num_speakers,
            "folds": fold_info,
            "rows": [
                {
                    **dict(zip(("method", "lever", "modality"), key)),
                    **summarize(values),
                    **({"pooled": pooled_scores(predictions[key])} if predictions.get(key) else {}),
                }
                for key, values in sorted(per_row.items(), key=lambda kv: row_order(kv[0]))
            ],
        }

    def run(self) -> dict:
        start = time.perf_counter()
        for corpus, records in self.corpus_records().items():
            self.run_corpus(corpus, records)
        self.results.update(
            manifest=str(self.manifest),
            levers=self.args.levers,
            encoder_quantization=self.args.encoder_quantization,
            seed=self.args.seed,
            train_args=self.args.train_args,
            threshold_strategy="break_even",
            wall_time_s=time.perf_counter() - start,
        )
        return self.results


def within(interval: tuple[float, float] | None, value: float) -> bool:
    """Whether `value` lies in the closed `interval` (`False` without one)."""
    return interval is not None and interval[0] <= value <= interval[1]


def row_order(key: tuple[str, str, str]) -> tuple:
    method, lever, modality = key
    return (
        ("egemaps_svm", "logreg", "TER").index(method),
        LEVERS.index(lever),
        ("fused", "audio", "text").index(modality) if modality in ("fused", "audio", "text") else 3,
    )


def markdown_table(results: dict) -> str:
    header = "| corpus | method | lever | modality | " + " | ".join(TABLE_KEYS) + " |"
    lines = [header, "|" + "---|" * (4 + len(TABLE_KEYS))]
    for corpus, entry in results["corpora"].items():
        for row in entry["rows"]:
            values = " | ".join(f"{row['mean'][k]:.3f}" for k in TABLE_KEYS)
            lines.append(f"| {corpus} | {row['method']} | {row['lever']} | {row['modality']} | {values} |")
    return "\n".join(lines)


def verdicts(results: dict) -> list[str]:
    """TER (fused) against the most accurate baseline row per corpus (with speaker_norm, the baselines may use it
    too): accuracy, AURC and ECE; and whether each fold's stored threshold kept its card's promise on the test
    speakers (trusted precision inside the stated 95 % interval; coverage)."""
    lines = []
    for corpus, entry in results["corpora"].items():
        rows = entry["rows"]
        for ter in (r for r in rows if r["method"] == "TER" and r["modality"] == "fused"):
            levers = ("base", ter["lever"])
            baselines = [r for r in rows if r["method"] != "TER" and r["lever"] in levers]
            best = max(baselines, key=lambda r: r["mean"]["accuracy"])
            acc, aurc = ter["mean"]["accuracy"], ter["mean"]["aurc"]
            lines.append(
                f"{corpus}: TER {ter['lever']} accuracy {acc:.3f} vs best baseline "
                f"{best['method']}/{best['lever']}/{best['modality']} "
                f"{best['mean']['accuracy']:.3f} ({'matches' if acc >= best['mean']['accuracy'] else 'BELOW'}); "
                f"AURC {aurc:.3f} vs {best['mean']['aurc']:.3f} ({'better' if aurc < best['mean']['aurc'] else 'NOT better'}); "
                f"ECE {ter['mean']['ece']:.3f} vs {best['mean']['ece']:.3f} "
                f"({'better' if ter['mean']['ece'] < best['mean']['ece'] else 'NOT better'})"
            )
            if "pooled" in ter and "pooled" in best:
                mine, theirs = ter["pooled"], best["pooled"]
                lines.append(
                    f"{corpus}: pooled over folds ({mine['n']} test items): TER AURC {mine['aurc']:.3f} vs "
                    f"{theirs['aurc']:.3f}, ECE {mine['ece']:.3f} vs {theirs['ece']:.3f}; a perfectly calibrated "
                    f"predictor with TER's confidences would show ECE {mine['ece_floor']:.3f} pooled, "
                    f"{mine['ece_floor_per_fold']:.3f} as a mean of per-fold ECEs"
                )
            kept = [f["ter_promise"][ter["lever"]] for f in entry["folds"] if ter["lever"] in f.get("ter_promise", {})]
            if kept:
                inside = sum(p["inside"] for p in kept)
                new_speaker = sum(bool(p.get("inside_new_speaker")) for p in kept)
                coverage = float(np.mean([p["test_coverage"] for p in kept]))
                lines.append(
                    f"{corpus}: TER {ter['lever']} at each fold's stored threshold on its test speakers: trusted "
                    f"precision inside the card's 95 % interval of the pooled precision in {inside}/{len(kept)} folds, "
                    f"inside its 95 % prediction interval for one new speaker in {new_speaker}/{len(kept)}; mean coverage "
                    f"{coverage:.3f} (card: {np.mean([p['coverage'] for p in kept]):.3f})"
                )
    return lines


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if not Path(args.manifest).is_file():
        print(
            f"Skipping the quality benchmark: no manifest at {args.manifest} (set A lives in ../shared/data; pass "
            "--manifest to use another corpus)."
        )
        return None
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    # One thread, as train.py uses for frozen-encoder work by default (`modeling_ter.utils.threads`).
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = Benchmark(args).run()
    results["wall_time_s"] = time.perf_counter() - start
    print(markdown_table(results))
    for corpus, reason in results["skipped"].items():
        print(f"skipped {corpus}: {reason}")
    for line in verdicts(results):
        print(line)
    print(f"wall time {results['wall_time_s']:.0f} s (levers: {', '.join(args.levers)})")
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
