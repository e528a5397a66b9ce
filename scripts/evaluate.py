# Copyright 2026 The TER authors. Licensed under the Apache License, Version 2.0.
"""Evaluate a TER checkpoint on any manifest-format corpus, with the trusted threshold stored in the checkpoint.

    python scripts/evaluate.py --model out --manifest ../shared/data/manifest.csv --output_json out/eval_shared.json
    python scripts/evaluate.py --model out --manifest my_corpus.csv --output_json eval.json --plots_dir plots

Writes `{"overall": M, "corpora": {"<corpus>": {"fused": M, "<modality>": M, ...}}}`, where each `M` holds n,
accuracy, macro_f1, uar, trusted_precision, trusted_recall, trusted_f1, trusted_accuracy, threshold, coverage, aurc,
augrc and ece. A `<modality>` entry is that modality's opinion alone (the model run with only that modality present,
on the items that have it): the ablation of the fusion. All metric math comes from `trusted_f1.trusted_metrics`.

Frozen-encoder features come from the feature cache (`modeling_ter.feature_cache`), keyed by the encoders' weights,
so evaluating a checkpoint on the corpus it was trained on re-encodes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from modeling_ter import TERForEmotionRecognition
from modeling_ter.corpora import read_manifest
from modeling_ter.feature_cache import CachedFeatures, compute_features
from modeling_ter.processing_ter import TERProcessor
from trusted_f1.trusted_metrics import THRESHOLD_STRATEGIES, trusted_scores


def write_json_atomic(data: dict, path: str | os.PathLike) -> Path:
    """Writes `data` as indented JSON through a temporary file in the same folder and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


@torch.no_grad()
def predict(
    model: torch.nn.Module, features: CachedFeatures, modality_mask: torch.Tensor, batch_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs the heads and the fusion on cached features with the given modality mask.

    Args:
        features: pooled features of `N` items, modalities in the order of `model.config.modalities`.
        modality_mask: `(N, num_modalities)` bool; items with no modality present are left out.

    Returns:
        `(rows, predictions, confidences)`, each of shape `(n,)`: the kept item indices, the fused class ids and the
        fused confidences.
    """
    model.eval()
    device = next(model.parameters()).device
    rows = modality_mask.any(1).nonzero().flatten()
    predictions, confidences = [], []
    for start in range(0, len(rows), batch_size):
        index = rows[start : start + batch_size]
        embeds = {f"{m}_embeds": features.features[m][index].to(device) for m in features.modalities}
        outputs = model(**embeds, modality_mask=modality_mask[index].to(device))
        predictions.append(outputs.probs.argmax(-1).cpu())
        confidences.append(outputs.confidence.float().cpu())
    if not predictions:
        return rows.numpy(), np.zeros(0, dtype=np.int64), np.zeros(0)
    return rows.numpy(), torch.cat(predictions).numpy(), torch.cat(confidences).double().numpy()


def evaluation_report(
    model: torch.nn.Module,
    features: CachedFeatures,
    references: np.ndarray,
    corpora: Sequence[str],
    threshold: float,
    batch_size: int = 64,
    compare_strategies: bool = False,
    target_precision: float = 0.95,
) -> tuple[dict, dict[str, np.ndarray]]:
    """The evaluation JSON of a model on cached features.

    Args:
        references: `(N,)` class ids in the model's label space.
        corpora: `(N,)` corpus names.
        threshold: the trusted threshold τ every `M` is scored at.
        compare_strategies: add `overall["thresholds"]` with the scores at the τ each strategy of
            `THRESHOLD_STRATEGIES` selects on these data (the side-by-side comparison of a calibration run).

    Returns:
        `(report, fused)`: the JSON layout `{"overall": M, "corpora": {corpus: {"fused": M, modality: M}}}`, and the
        overall fused `correct` / `confidences` arrays (for the plots).
    """
    corpora = np.asarray(corpora)

    def scores(modality_mask: torch.Tensor, **options) -> tuple[dict, np.ndarray, np.ndarray]:
        rows, predictions, confidences = predict(model, features, modality_mask, batch_size)
        options = options or {"threshold": threshold}
        # Macro-F1 and UAR over the classes that occur (in references or predictions), as scikit-learn does: a
        # corpus without, say, boredom is not scored down for it.
        result = trusted_scores(predictions, references[rows], confidences, **options)
        return result, predictions == references[rows], confidences

    overall, correct, confidences = scores(features.mask)
    if compare_strategies:
        overall["thresholds"] = {
            strategy: scores(features.mask, threshold=strategy, target_precision=target_precision)[0]
            for strategy in THRESHOLD_STRATEGIES
        }
    report = {"overall": overall, "corpora": {}}
    for corpus in dict.fromkeys(corpora.tolist()):
        in_corpus = torch.from_numpy(corpora == corpus)[:, None]
        entry = {"fused": scores(features.mask & in_corpus)[0]}
        for column, modality in enumerate(features.modalities):
            alone = torch.zeros_like(features.mask)
            alone[:, column] = features.mask[:, column]
            if (alone & in_corpus).any():
                entry[modality] = scores(alone & in_corpus)[0]
        report["corpora"][corpus] = entry
    return report, {"correct": correct, "confidences": confidences}


def save_plots(correct: np.ndarray, confidences: np.ndarray, threshold: float, plots_dir: str | os.PathLike) -> list[Path]:
    """Trusted P/R/F1 against the threshold, risk-coverage and reliability diagram of the fused opinion, as PNGs."""
    # Imported here: matplotlib is only needed when plots are asked for.
    from modeling_ter.plotting import plot_reliability_diagram, plot_risk_coverage, plot_threshold_curves

    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        plots_dir / "trusted_metrics_vs_threshold.png",
        plots_dir / "risk_coverage.png",
        plots_dir / "reliability_diagram.png",
    ]
    plot_threshold_curves(correct, confidences, threshold=threshold, path=paths[0])
    plot_risk_coverage(correct, confidences, path=paths[1])
    plot_reliability_diagram(correct, confidences, path=paths[2])
    return paths


def labelled_rows(rows: list[dict], label2id: dict[str, int]) -> tuple[list[dict], Counter]:
    """The rows whose label the model knows, and a count of the skipped ones by label."""
    kept = [row for row in rows if row["label"] in label2id]
    skipped = Counter(row["label"] for row in rows if row["label"] not in label2id)
    return kept, skipped


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate a TER checkpoint on a manifest-format corpus.")
    parser.add_argument("--model", required=True, help="checkpoint folder (written by scripts/train.py)")
    parser.add_argument("--manifest", required=True, help="manifest CSV (corpus,path,label,speaker_id,...)")
    parser.add_argument("--output_json", required=True, help="where to write the evaluation JSON")
    parser.add_argument("--plots_dir", default=None, help="also write the reliability plots here")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--cache_dir", default=None, help="feature cache (default: $TER_CACHE/features)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size must be positive, got {args.batch_size}.")
    if not (Path(args.model) / "config.json").is_file():
        raise FileNotFoundError(f"--model {args.model} holds no config.json; pass a checkpoint folder from train.py.")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rows, problems = read_manifest(args.manifest)
    # One intra-op thread: items are encoded one at a time (see set_single_thread_on_cpu in train.py).
    torch.set_num_threads(1)
    model = TERForEmotionRecognition.from_pretrained(args.model)
    processor = TERProcessor.from_pretrained(args.model)
    rows, skipped = labelled_rows(rows, model.config.label2id)
    if problems or skipped:
        print(
            f"Skipped {len(problems)} unusable manifest rows and {sum(skipped.values())} rows whose label the model "
            f"does not know ({dict(skipped)}; the model knows {sorted(model.config.label2id)})."
        )
    if not rows:
        raise ValueError(f"No row of --manifest {args.manifest} has a label the model knows; nothing to evaluate.")
    modalities = model.config.modalities
    items = {m: [row[m] for row in rows] for m in modalities}
    features = compute_features(model, processor, items, modalities, cache_dir=args.cache_dir)
    for index, modality, reason in features.failures:
        print(f"{rows[index]['id']}: {modality} masked ({reason})")
    threshold = model.config.trusted_threshold
    if threshold is None:
        raise ValueError(
            f"The checkpoint {args.model} has no calibrated trusted_threshold in its config; train it with "
            "scripts/train.py (which calibrates it on validation data) or set config.trusted_threshold."
        )
    references = np.array([model.config.label2id[row["label"]] for row in rows])
    report, fused = evaluation_report(
        model, features, references, [row["corpus"] for row in rows], threshold, args.batch_size
    )
    write_json_atomic(report, args.output_json)
    if args.plots_dir is not None:
        save_plots(fused["correct"], fused["confidences"], threshold, args.plots_dir)
    overall = report["overall"]
    print(
        f"n={overall['n']} accuracy={overall['accuracy']:.4f} uar={overall['uar']:.4f} "
        f"trusted_f1={overall['trusted_f1']:.4f} coverage={overall['coverage']:.4f} (τ={threshold:.4f}) "
        f"aurc={overall['aurc']:.4f} ece={overall['ece']:.4f} -> {args.output_json}"
    )
    return report


if __name__ == "__main__":
    main()
