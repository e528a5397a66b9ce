"""The evaluation report of a TER model: per corpus, the fused opinion and each modality's opinion alone, every
metric from `trusted_f1.trusted_metrics`; and the evaluation of a saved checkpoint on a manifest-format corpus.

The report's layout: `{"overall": M, "corpora": {"<corpus>": {"fused": M, "<modality>": M, ...}}}`, where each `M`
holds n, accuracy, macro_f1, uar, trusted_precision, trusted_recall, trusted_f1, trusted_accuracy, threshold,
coverage, aurc, augrc and ece. A `<modality>` entry is that modality's opinion alone (the model run with only that
modality present, on the items that have it): the ablation of the fusion.

A clip longer than the window (`chunk_length_s`, default 3 s as in the pipeline) is scored as the
trusted-emotion-recognition pipeline scores it: in overlapping windows, silent ones masked, the windows' audio
opinions pooled by `window_fusion` (the pipeline's `plan_audio_windows` and `pool_windows`).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Sequence

import numpy as np
import soundfile
import torch

from trusted_f1.trusted_metrics import THRESHOLD_STRATEGIES, trusted_scores

from ..data.feature_cache import CachedFeatures, compute_features
from ..data.manifest import read_manifest
from ..models import TERForEmotionRecognition
from ..pipelines.trusted_emotion_recognition import (
    DEFAULT_CHUNK_LENGTH_S,
    DEFAULT_SILENCE_DB,
    DEFAULT_WINDOW_RULE,
    encoder_max_samples,
    plan_audio_windows,
)
from ..processing import TERProcessor
from ..utils.io import write_json_atomic
from ..utils.threads import single_thread_on_cpu
from .predict import fused_predictions, model_opinions, windowed_audio_opinion

logger = logging.getLogger(__name__)


def opinion_report(
    evidence: torch.Tensor,
    present: torch.Tensor,
    references: np.ndarray,
    corpora: Sequence[str],
    config,
    threshold: float,
    compare_strategies: bool = False,
    target_precision: float = 0.95,
) -> tuple[dict, dict[str, np.ndarray]]:
    """The evaluation JSON of per-item, per-modality opinions, fused and scored as `config`'s model does.

    Args:
        evidence: `(N, num_modalities, num_labels)` each modality's (gated) evidence, modalities in the order of
            `config.modalities`; from one model (`evaluation_report`) or cross-fitted heads (training).
        present: `(N, num_modalities)` bool; items with no modality present are left out.
        references: `(N,)` class ids in the model's label space.
        corpora: `(N,)` corpus names.
        config: a `TERConfig` (fusion rule, confidence measure and calibration).
        threshold: the trusted threshold τ every `M` is scored at.
        compare_strategies: add `overall["thresholds"]` with the scores at the τ each strategy of
            `THRESHOLD_STRATEGIES` selects on these data (the side-by-side comparison of a calibration run).

    Returns:
        `(report, fused)`: the JSON layout `{"overall": M, "corpora": {corpus: {"fused": M, modality: M}}}`, and the
        overall fused `correct` / `confidences` arrays (for the plots). A `<modality>` entry is that modality's
        opinion alone: the fusion with only that modality present (the model's output for such an input).
    """
    corpora = np.asarray(corpora)

    def scores(mask: torch.Tensor, **options) -> tuple[dict, np.ndarray, np.ndarray]:
        rows, predictions, confidences = fused_predictions(config, evidence, mask)
        options = options or {"threshold": threshold}
        # Macro-F1 and UAR over the classes that occur (in references or predictions), as scikit-learn does: a
        # corpus without, say, boredom is not scored down for it.
        result = trusted_scores(predictions, references[rows.numpy()], confidences, **options)
        return result, predictions == references[rows.numpy()], confidences

    overall, correct, confidences = scores(present)
    if compare_strategies:
        overall["thresholds"] = {
            strategy: scores(present, threshold=strategy, target_precision=target_precision)[0]
            for strategy in THRESHOLD_STRATEGIES
        }
    report = {"overall": overall, "corpora": {}}
    for corpus in dict.fromkeys(corpora.tolist()):
        in_corpus = torch.from_numpy(corpora == corpus)[:, None]
        entry = {"fused": scores(present & in_corpus)[0]}
        for column, modality in enumerate(config.modalities):
            alone = torch.zeros_like(present)
            alone[:, column] = present[:, column]
            if (alone & in_corpus).any():
                entry[modality] = scores(alone & in_corpus)[0]
        report["corpora"][corpus] = entry
    return report, {"correct": correct, "confidences": confidences}


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float] | None:
    """The 95 % Wilson score interval of a proportion `successes / trials`; `None` without trials."""
    if trials == 0:
        return None
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def threshold_promise(report: dict, new_speaker: dict | None = None) -> dict:
    """What the stored threshold buys, per corpus and overall, with 95 % Wilson intervals: trusted precision
    (`|T ∩ R| / |T|`) and coverage (`|T| / N`) of the fused opinion on held-out speakers; with `new_speaker`
    (`{name: new_speaker_interval(...)}`), each entry also carries what one new speaker may see."""
    promise = {}
    entries = {"overall": report["overall"], **{c: e["fused"] for c, e in report["corpora"].items()}}
    for name, metrics in entries.items():
        trusted = round(metrics["coverage"] * metrics["n"])
        correct = round(metrics["trusted_precision"] * trusted)
        promise[name] = {
            "n": metrics["n"],
            "trusted": trusted,
            "trusted_precision": metrics["trusted_precision"] if trusted else None,
            "trusted_precision_ci95": wilson_interval(correct, trusted),
            "coverage": metrics["coverage"],
            "coverage_ci95": wilson_interval(trusted, metrics["n"]),
        }
        if new_speaker and name in new_speaker:
            promise[name]["new_speaker"] = new_speaker[name]
    return promise


def _mixture_quantiles(successes, trials, draws: int, level: float = 0.95) -> tuple[float, float]:
    """The central `level` interval of `k / draws` under an equal mixture, over groups, of beta-binomials
    `BetaBinomial(draws, s_g + 1/2, t_g - s_g + 1/2)` (each group's proportion, with its Jeffreys uncertainty)."""
    from scipy.stats import betabinom

    k = np.arange(draws + 1)
    pmf = np.mean([betabinom.pmf(k, draws, s + 0.5, t - s + 0.5) for s, t in zip(successes, trials)], axis=0)
    cdf = np.cumsum(pmf)
    tail = (1.0 - level) / 2
    low, high = int(np.searchsorted(cdf, tail)), int(np.searchsorted(cdf, 1.0 - tail))
    return low / draws, min(high, draws) / draws


def new_speaker_interval(correct: np.ndarray, trusted: np.ndarray, speakers: Sequence[str]) -> dict | None:
    """95 % prediction intervals of what one *new* speaker sees at the threshold: its trusted precision (over as
    many trusted items as a held-out speaker typically has) and its coverage (over as many items as a speaker
    typically has). A Wilson interval describes the pooled proportion; a single new speaker's proportion varies
    more, by speaker and by its few items. Each held-out speaker's own counts (`correct`, `trusted`: `(N,)` bool
    of held-out items) enter as one mixture component (`_mixture_quantiles`); `None` with fewer than 2 speakers
    that have trusted items."""
    speakers = np.asarray(speakers)
    names = list(dict.fromkeys(speakers.tolist()))
    items = np.array([(speakers == s).sum() for s in names])
    kept = np.array([trusted[speakers == s].sum() for s in names])
    right = np.array([(correct & trusted)[speakers == s].sum() for s in names])
    has_trusted = kept > 0
    if has_trusted.sum() < 2:
        return None
    typical_trusted = max(1, int(np.median(kept[has_trusted])))
    typical_items = max(1, int(np.median(items)))
    return {
        "speakers": len(names),
        "trusted_per_speaker": typical_trusted,
        "trusted_precision_pi95": _mixture_quantiles(right[has_trusted], kept[has_trusted], typical_trusted),
        "items_per_speaker": typical_items,
        "coverage_pi95": _mixture_quantiles(kept, items, typical_items),
    }


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
    """The evaluation JSON of a model on cached features: its opinions (`model_opinions`) through `opinion_report`."""
    evidence, present = model_opinions(model, features, batch_size)
    return opinion_report(
        evidence, present, references, corpora, model.config, threshold, compare_strategies, target_precision
    )


def labelled_rows(rows: list[dict], label2id: dict[str, int]) -> tuple[list[dict], Counter]:
    """The rows whose label the model knows, and a count of the skipped ones by label."""
    kept = [row for row in rows if row["label"] in label2id]
    skipped = Counter(row["label"] for row in rows if row["label"] not in label2id)
    return kept, skipped


def _may_be_longer(path: str, seconds: float) -> bool:
    """False when the file's header says it is clearly shorter than `seconds` (no need to decode it to know)."""
    try:
        return soundfile.info(path).duration > seconds - 0.1
    except (RuntimeError, OSError, TypeError, ValueError):  # a video container, or unreadable: decode to know
        return True


def windowed_audio(
    model: torch.nn.Module,
    processor,
    audio: Sequence[str | None],
    chunk_length_s: float | None = None,
    stride_length_s: float | tuple[float, float] | None = None,
    silence_db: float | None = DEFAULT_SILENCE_DB,
    window_fusion: str = DEFAULT_WINDOW_RULE,
    batch_size: int = 16,
) -> dict[int, torch.Tensor | None]:
    """The pooled audio opinions of the clips longer than one window, by position in `audio` (file paths or
    `None`); the others, one window each, are left to the feature cache. Unreadable files are left out too (the
    cache masks them with the reason). Each clip is decoded, scored and dropped in turn, so memory holds one clip."""
    rate = processor.feature_extractor.sampling_rate
    max_samples = encoder_max_samples(processor)
    pooled = {}
    for index, path in enumerate(audio):
        if path is None or not _may_be_longer(path, chunk_length_s or DEFAULT_CHUNK_LENGTH_S):
            continue
        try:
            waveform = processor.load_waveform(path)
        except (RuntimeError, OSError, ValueError):
            continue
        windows = plan_audio_windows(waveform, rate, chunk_length_s, stride_length_s, silence_db, max_samples)
        if len(windows) > 1:
            pooled[index] = windowed_audio_opinion(model, processor, waveform, windows, window_fusion, batch_size)
    if pooled:
        logger.info(f"{len(pooled)} clips longer than one window were scored in windows ({window_fusion}).")
    return pooled


def evaluate_checkpoint(
    model_dir: str | os.PathLike,
    manifest: str | os.PathLike,
    output_json: str | os.PathLike,
    plots_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    chunk_length_s: float | None = None,
    stride_length_s: float | tuple[float, float] | None = None,
    window_fusion: str = DEFAULT_WINDOW_RULE,
    silence_db: float | None = DEFAULT_SILENCE_DB,
) -> dict:
    """Evaluates the checkpoint in `model_dir` on every row of `manifest` whose label it knows, at its stored trusted
    threshold; writes the report to `output_json` (and the plots to `plots_dir` when given) and returns it.

    Frozen-encoder features come from the feature cache, keyed by the encoders' weights, so evaluating a checkpoint
    on the corpus it was trained on re-encodes nothing. Audio longer than one window is scored in windows as the
    pipeline scores it (`chunk_length_s`, `stride_length_s`, `window_fusion`, `silence_db` as the pipeline's).
    """
    rows, problems = read_manifest(manifest)
    single_thread_on_cpu()  # as in training
    model = TERForEmotionRecognition.from_pretrained(model_dir).eval()
    processor = TERProcessor.from_pretrained(model_dir)
    rows, skipped = labelled_rows(rows, model.config.label2id)
    if problems or skipped:
        logger.warning(
            f"Skipped {len(problems)} unusable manifest rows and {sum(skipped.values())} rows whose label the model "
            f"does not know ({dict(skipped)}; the model knows {sorted(model.config.label2id)})."
        )
    if not rows:
        raise ValueError(f"No row of --manifest {manifest} has a label the model knows; nothing to evaluate.")
    threshold = model.config.trusted_threshold
    if threshold is None:
        raise ValueError(
            f"The checkpoint {model_dir} has no calibrated trusted_threshold in its config; train it with "
            "scripts/train.py (which calibrates it on validation data) or set config.trusted_threshold."
        )
    modalities = model.config.modalities
    items = {m: [row[m] for row in rows] for m in modalities}
    long_audio = {}
    if "audio" in modalities:
        long_audio = windowed_audio(
            model, processor, items["audio"], chunk_length_s, stride_length_s, silence_db, window_fusion
        )
        items["audio"] = [None if index in long_audio else path for index, path in enumerate(items["audio"])]
    features = compute_features(model, processor, items, modalities, cache_dir=cache_dir)
    for index, modality, reason in features.failures:
        logger.warning(f"{rows[index]['id']}: {modality} masked ({reason})")
    evidence, present = model_opinions(model, features, batch_size)
    for index, audio_evidence in long_audio.items():
        if audio_evidence is not None:
            evidence[index, modalities.index("audio")] = audio_evidence
            present[index, modalities.index("audio")] = True
    references = np.array([model.config.label2id[row["label"]] for row in rows])
    report, fused = opinion_report(
        evidence, present, references, [row["corpus"] for row in rows], model.config, threshold
    )
    write_json_atomic(report, output_json)
    if plots_dir is not None:
        from .plotting import save_plots

        save_plots(fused["correct"], fused["confidences"], threshold, plots_dir)
    return report
