# Copyright 2025 The TER authors. Licensed under the Apache License, Version 2.0.
"""Trusted metrics of TER in numpy: the one implementation.

A prediction is *trusted* when its confidence reaches the threshold τ: T(τ) = {i : c_i ≥ τ}; it is *correct* when
ŷ_i = y_i: R = {i : ŷ_i = y_i}. Then

- trusted precision TP(τ) = |T ∩ R| / |T|, trusted recall TR(τ) = |T ∩ R| / |R|,
- trusted F1(τ) = 2·TP·TR / (TP + TR) = 2·|T ∩ R| / (|T| + |R|),
- trusted accuracy TA(τ) = (|T ∩ R| + |T̄ ∩ R̄|) / N, coverage(τ) = |T| / N.

Every curve comes from one sort of the confidences plus cumulative sums, O(N log N); no Python loop over thresholds.
Alongside: AURC (Geifman & El-Yaniv 2017), AUGRC (Traub et al. 2024), ECE (equal-width bins, top label), accuracy,
macro-F1 and unweighted average recall (the last three from scikit-learn, imported when first scored).

This file imports only numpy, the standard library and (lazily) scikit-learn, so that the `evaluate` module beside it
(relative import) and TER's training code (`from trusted_f1.trusted_metrics import ...`) share it without either
needing the other.

Example:

>>> predictions, references = [0, 1, 1, 2, 0, 2], [0, 1, 2, 2, 0, 1]
>>> confidences = [0.9, 0.8, 0.3, 0.7, 0.95, 0.4]  # the two errors have the lowest confidences
>>> scores = trusted_scores(predictions, references, confidences)
>>> scores["threshold"], scores["trusted_f1"], round(scores["coverage"], 4), round(scores["accuracy"], 4)
(0.7, 1.0, 0.6667, 0.6667)
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

THRESHOLD_STRATEGIES = ("max_f1", "break_even", "target_precision")
"""Names accepted by `threshold` besides a float."""

PROBABILITY_SUM_ATOL = 1e-3
"""Each row of per-class probabilities must sum to 1 within this absolute tolerance."""

ECE_BINS = 15
"""Default number of equal-width confidence bins for the expected calibration error."""

SWEEP_KEYS = ("thresholds", "trusted_precision", "trusted_recall", "trusted_f1", "trusted_accuracy", "coverage")
"""Keys of `threshold_sweep`'s output, in order."""

SCORE_KEYS = (
    "trusted_precision",
    "trusted_recall",
    "trusted_f1",
    "trusted_accuracy",
    "threshold",
    "coverage",
    "accuracy",
    "macro_f1",
    "uar",
    "aurc",
    "augrc",
    "ece",
    "n",
)
"""Keys of `trusted_scores`'s output (plus `"curve"` when `return_curve=True`)."""


# ----------------------------------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------------------------------


def _as_1d(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional (one value per sample); got shape {array.shape}.")
    if array.size == 0:
        raise ValueError(f"`{name}` is empty; pass at least one sample.")
    return array


def _check_same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"Inputs must have one value per sample, but their lengths differ: {lengths}.")
    return next(iter(lengths.values()))


def check_class_ids(values: Any, name: str) -> np.ndarray:
    """`values` as an array (any shape); raises a ValueError unless it holds integers (class ids)."""
    array = np.asarray(values)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"`{name}` must hold integer class indices; got dtype {array.dtype} "
            f"(first value {array.flat[0].item()!r}). "
            "Pass class ids (e.g. `logits.argmax(-1)`), or cast integral floats with `.astype(int)`."
        )
    return array


def _as_labels(values: Any, name: str, num_classes: int | None = None) -> np.ndarray:
    """Class indices of shape `(N,)`, int64, in `[0, num_classes)`."""
    array = check_class_ids(_as_1d(values, name), name).astype(np.int64, copy=False)
    low, high = int(array.min()), int(array.max())
    if low < 0:
        raise ValueError(f"`{name}` must hold class indices >= 0; got {low}.")
    if num_classes is not None and high >= num_classes:
        raise ValueError(
            f"`{name}` holds class {high}, but `num_classes` is {num_classes} (classes 0..{num_classes - 1})."
        )
    return array


def _as_correct(values: Any) -> np.ndarray:
    """Correctness flags of shape `(N,)`, bool (accepts bools or 0/1 integers)."""
    array = _as_1d(values, "correct")
    if array.dtype == np.bool_:
        return array
    if np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all():
        return array.astype(bool)
    raise ValueError(
        "`correct` must hold booleans (or 0/1), one per sample, e.g. `predictions == references`; "
        f"got dtype {array.dtype}."
    )


def _as_confidences(values: Any) -> np.ndarray:
    """Confidences of shape `(N,)`, float64, finite, in [0, 1]."""
    array = _as_1d(values, "confidences")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"`confidences` must be real numbers in [0, 1]; got dtype {array.dtype}.")
    array = array.astype(np.float64, copy=False)
    if np.isnan(array).any():
        raise ValueError(f"`confidences` contains NaN (first at index {int(np.flatnonzero(np.isnan(array))[0])}).")
    low, high = array.min(), array.max()
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"`confidences` must lie in [0, 1]; got values in [{low}, {high}]. Pass probabilities or 1 - uncertainty, "
            "not logits or evidence."
        )
    return array


def _check_zero_division(zero_division: Any) -> float:
    if isinstance(zero_division, numbers.Real) and not isinstance(zero_division, bool):
        value = float(zero_division)
        if value in (0.0, 1.0) or math.isnan(value):
            return value
    raise ValueError(f"`zero_division` must be 0.0, 1.0 or nan (as in scikit-learn); got {zero_division!r}.")


def _check_target_precision(target_precision: Any) -> float:
    if (
        isinstance(target_precision, numbers.Real)
        and not isinstance(target_precision, bool)
        and 0.0 <= target_precision <= 1.0
    ):
        return float(target_precision)
    raise ValueError(f"`target_precision` must be a number in [0, 1]; got {target_precision!r}.")


def _check_threshold(threshold: Any) -> str | float:
    if isinstance(threshold, str):
        if threshold in THRESHOLD_STRATEGIES:
            return threshold
        raise ValueError(
            f"Unknown threshold strategy {threshold!r}; use one of {THRESHOLD_STRATEGIES} or a float in [0, 1]."
        )
    if isinstance(threshold, numbers.Real) and not isinstance(threshold, bool) and 0.0 <= threshold <= 1.0:
        return float(threshold)
    raise ValueError(f"`threshold` must be one of {THRESHOLD_STRATEGIES} or a float in [0, 1]; got {threshold!r}.")


def _check_correct_and_confidences(correct: Any, confidences: Any) -> tuple[np.ndarray, np.ndarray]:
    correct, confidences = _as_correct(correct), _as_confidences(confidences)
    _check_same_length(correct=correct, confidences=confidences)
    return correct, confidences


def confidences_from_probabilities(
    probabilities: Any, predictions: Any | None = None, atol: float = PROBABILITY_SUM_ATOL
) -> np.ndarray:
    """Top-label confidence `max_k p_k` of per-class probabilities.

    Args:
        probabilities: shape `(N, K)`, rows in [0, 1] summing to 1 within `atol` (default 1e-3).
        predictions: optional shape `(N,)`; when given, each must be an arg-max of its row (else the max
            probability is not the confidence of that prediction).

    Returns:
        `np.ndarray` of shape `(N,)`, float64.
    """
    try:
        array = np.asarray(probabilities)
    except ValueError as error:  # ragged rows
        raise ValueError(
            f"`probabilities` must have one row of K values per sample (same K for all): {error}"
        ) from None
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"`probabilities` must have shape (num_samples, num_classes) with both > 0; got {array.shape}."
        )
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"`probabilities` must be real numbers; got dtype {array.dtype}.")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
        raise ValueError("`probabilities` must be finite and in [0, 1]; apply a softmax to logits first.")
    sums = array.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if bad.size:
        raise ValueError(
            f"Each row of `probabilities` must sum to 1 (tolerance {atol}); "
            f"row {int(bad[0])} sums to {float(sums[bad[0]])!r} "
            f"({bad.size} bad rows). Apply a softmax, or pass `confidences` instead."
        )
    confidences = array.max(axis=1)
    if predictions is not None:
        predictions = _as_labels(predictions, "predictions", num_classes=array.shape[1])
        _check_same_length(predictions=predictions, probabilities=array)
        mismatch = np.flatnonzero(array[np.arange(len(array)), predictions] < confidences)
        if mismatch.size:
            raise ValueError(
                f"predictions[{int(mismatch[0])}] = {int(predictions[mismatch[0]])} "
                "is not the arg-max of its probabilities "
                f"({mismatch.size} such rows), so max probability is not its confidence; pass `confidences` instead."
            )
    return confidences


# ----------------------------------------------------------------------------------------------------------------------
# Counts at every candidate threshold: one sort plus cumulative sums
# ----------------------------------------------------------------------------------------------------------------------


def _divide(numerator: np.ndarray, denominator: np.ndarray, zero_division: float) -> np.ndarray:
    """`numerator / denominator` elementwise, `zero_division` where the denominator is 0 (one exact division)."""
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    out = np.full(np.broadcast_shapes(numerator.shape, denominator.shape), zero_division)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _tie_counts(correct: np.ndarray, confidences: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct confidence τ (ascending): τ, |T(τ)| and |T(τ) ∩ R|. The one sort, O(N log N).

    Returns three arrays of shape `(M,)`, M = number of distinct confidences.
    """
    order = np.argsort(confidences)
    sorted_confidences = confidences[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_confidences[1:] != sorted_confidences[:-1])))
    correct_before = np.concatenate(([0], np.cumsum(correct[order], dtype=np.int64)))[starts]
    n_trusted = len(confidences) - starts
    n_trusted_correct = int(correct.sum()) - correct_before
    return sorted_confidences[starts], n_trusted, n_trusted_correct


def _rates(
    n_trusted: np.ndarray, n_trusted_correct: np.ndarray, n_correct: int, n: int, zero_division: float
) -> dict[str, np.ndarray]:
    """Trusted precision/recall/F1/accuracy and coverage from counts (any shape)."""
    return {
        "trusted_precision": _divide(n_trusted_correct, n_trusted, zero_division),
        "trusted_recall": _divide(n_trusted_correct, n_correct, zero_division),
        # 2·TP·TR/(TP+TR) = 2|T∩R|/(|T|+|R|); undefined only when T and R are both empty (scikit-learn >= 1.3).
        "trusted_f1": _divide(2 * n_trusted_correct, n_trusted + n_correct, zero_division),
        # (|T∩R| + |T̄∩R̄|)/N with |T̄∩R̄| = (N - |T|) - (|R| - |T∩R|).
        "trusted_accuracy": _divide(2 * n_trusted_correct + n - n_trusted - n_correct, n, zero_division),
        "coverage": _divide(n_trusted, n, zero_division),
    }


def _last_argmax(values: np.ndarray) -> int:
    """Index of the maximum, the last one on ties (NaN counts as -inf)."""
    values = np.where(np.isnan(values), -np.inf, values)
    return len(values) - 1 - int(np.argmax(values[::-1]))


# ----------------------------------------------------------------------------------------------------------------------
# Threshold sweep and selection
# ----------------------------------------------------------------------------------------------------------------------


def threshold_sweep(correct: Any, confidences: Any, zero_division: float = 0.0) -> dict[str, np.ndarray]:
    """Trusted metrics at every candidate threshold (the distinct confidences, ascending).

    Args:
        correct: shape `(N,)`, bool (or 0/1): whether each prediction is right.
        confidences: shape `(N,)`, floats in [0, 1].
        zero_division: value of a ratio whose denominator is 0 (0.0, 1.0 or nan, as in scikit-learn).

    Returns:
        `dict` of `np.ndarray` of shape `(M,)`, M = number of distinct confidences, keyed by `SWEEP_KEYS`:
        thresholds, trusted_precision, trusted_recall, trusted_f1, trusted_accuracy, coverage.

    Example:

    >>> sweep = threshold_sweep([True, False, True], [0.9, 0.5, 0.5])
    >>> sweep["thresholds"].tolist(), sweep["trusted_precision"].tolist(), sweep["coverage"].round(2).tolist()
    ([0.5, 0.9], [0.6666666666666666, 1.0], [1.0, 0.33])
    """
    correct, confidences = _check_correct_and_confidences(correct, confidences)
    zero_division = _check_zero_division(zero_division)
    thresholds, n_trusted, n_trusted_correct = _tie_counts(correct, confidences)
    return {
        "thresholds": thresholds,
        **_rates(n_trusted, n_trusted_correct, int(correct.sum()), len(correct), zero_division),
    }


def threshold_from_sweep(
    sweep: Mapping[str, Sequence[float]], strategy: str | float = "max_f1", target_precision: float = 0.95
) -> float:
    """Pick τ from a `threshold_sweep` (or the `"curve"` of `trusted_scores`) without sorting again.

    Strategies (a float passes through unchanged):

    - `"max_f1"`: the τ with the largest trusted F1; ties -> the larger τ.
    - `"break_even"`: the first τ, going up, where trusted precision >= trusted recall. If there is none (e.g. more
      tied top-confidence samples than correct ones), the τ where TR - TP is smallest (ties -> the larger τ).
    - `"target_precision"`: the smallest τ whose trusted precision >= `target_precision`. If no τ reaches the target,
      the τ with the highest trusted precision (ties -> the larger τ), and a warning is logged.

    Returns:
        `float`, the threshold.
    """
    strategy = _check_threshold(strategy)
    if isinstance(strategy, float):
        return strategy
    thresholds = np.asarray(sweep["thresholds"], dtype=np.float64)
    precision = np.asarray(sweep["trusted_precision"], dtype=np.float64)
    if strategy == "max_f1":
        index = _last_argmax(np.asarray(sweep["trusted_f1"], dtype=np.float64))
    elif strategy == "break_even":
        recall = np.asarray(sweep["trusted_recall"], dtype=np.float64)
        reached = np.flatnonzero(precision >= recall)
        index = int(reached[0]) if reached.size else _last_argmax(precision - recall)
    else:
        target = _check_target_precision(target_precision)
        reached = np.flatnonzero(precision >= target)
        if reached.size:
            index = int(reached[0])
        else:
            index = _last_argmax(precision)
            logger.warning(
                "No threshold reaches trusted precision %s (best %s at τ=%s); returning that τ.",
                target,
                precision[index],
                thresholds[index],
            )
    return float(thresholds[index])


def select_threshold(
    correct: Any,
    confidences: Any,
    strategy: str | float = "max_f1",
    target_precision: float = 0.95,
    zero_division: float = 0.0,
) -> float:
    """Calibrate the trusted threshold τ, e.g. on validation data (strategies: see `threshold_from_sweep`).

    Args:
        correct: shape `(N,)`, bool (or 0/1).
        confidences: shape `(N,)`, floats in [0, 1].
        strategy: `"max_f1"`, `"break_even"`, `"target_precision"` or a float in [0, 1] (returned as is).
        target_precision: the target of `"target_precision"`.
        zero_division: as in `threshold_sweep`.

    Returns:
        `float`: one of the confidences (or `strategy` itself when it is a float).

    Example:

    >>> correct, confidences = [True, True, False, True, False], [0.9, 0.8, 0.7, 0.6, 0.2]
    >>> [select_threshold(correct, confidences, s) for s in ("max_f1", "break_even", "target_precision", 0.5)]
    [0.6, 0.7, 0.8, 0.5]
    """
    strategy = _check_threshold(strategy)
    sweep = threshold_sweep(correct, confidences, zero_division)
    return threshold_from_sweep(sweep, strategy, target_precision)


# ----------------------------------------------------------------------------------------------------------------------
# Selective prediction: risk-coverage, AURC, AUGRC
# ----------------------------------------------------------------------------------------------------------------------


def _coverage_counts(n_trusted: np.ndarray, n_trusted_correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accepted and accepted-but-wrong counts per distinct threshold, from the highest threshold down."""
    return n_trusted[::-1], (n_trusted - n_trusted_correct)[::-1]


def _aurc_from_counts(n_trusted: np.ndarray, n_trusted_correct: np.ndarray) -> float:
    accepted, errors = _coverage_counts(n_trusted, n_trusted_correct)
    n = int(accepted[-1])
    accepted_before = np.concatenate(([0], accepted[:-1]))
    errors_before = np.concatenate(([0], errors[:-1]))
    slope = (errors - errors_before) / (accepted - accepted_before)
    block = np.repeat(np.arange(len(accepted)), accepted - accepted_before)
    k = np.arange(1, n + 1)
    # Expected errors among the k most confident under a random order of tied samples: linear within a tie block.
    errors_k = errors_before[block] + (k - accepted_before[block]) * slope[block]
    return float(np.mean(errors_k / k))


def _augrc_from_counts(n_trusted: np.ndarray, n_trusted_correct: np.ndarray) -> float:
    accepted, errors = _coverage_counts(n_trusted, n_trusted_correct)
    n = accepted[-1]
    coverage = np.concatenate(([0], accepted)) / n
    generalized_risk = np.concatenate(([0], errors)) / n
    return float(np.sum(np.diff(coverage) * (generalized_risk[1:] + generalized_risk[:-1])) / 2)


def risk_coverage_curve(correct: Any, confidences: Any) -> dict[str, np.ndarray]:
    """Selective and generalized risk against coverage, one point per distinct confidence.

    Args:
        correct: shape `(N,)`, bool (or 0/1).
        confidences: shape `(N,)`, floats in [0, 1].

    Returns:
        `dict` of `np.ndarray` of shape `(M,)`, from the highest threshold (lowest coverage) down: `thresholds`,
        `coverage` (|T|/N), `selective_risk` (|T \\ R|/|T|) and `generalized_risk` (|T \\ R|/N).

    Example:

    >>> curve = risk_coverage_curve([True, False, True], [0.9, 0.5, 0.5])
    >>> curve["coverage"].round(2).tolist(), curve["selective_risk"].round(2).tolist()
    ([0.33, 1.0], [0.0, 0.33])
    """
    correct, confidences = _check_correct_and_confidences(correct, confidences)
    thresholds, n_trusted, n_trusted_correct = _tie_counts(correct, confidences)
    accepted, errors = _coverage_counts(n_trusted, n_trusted_correct)
    n = len(correct)
    return {
        "thresholds": thresholds[::-1],
        "coverage": accepted / n,
        "selective_risk": errors / accepted,
        "generalized_risk": errors / n,
    }


def aurc(correct: Any, confidences: Any) -> float:
    """Area under the selective-risk-coverage curve (Geifman & El-Yaniv 2017), lower is better.

    AURC = (1/N) Σ_{k=1..N} risk(k), risk(k) = error rate among the k most confident predictions; tied confidences
    count in expectation over their random order (so the result does not depend on how ties are sorted).

    Example:

    >>> round(aurc([True, True, False], [0.9, 0.8, 0.1]), 4)  # perfectly ranked: (0 + 0 + 1/3) / 3
    0.1111
    """
    correct, confidences = _check_correct_and_confidences(correct, confidences)
    return _aurc_from_counts(*_tie_counts(correct, confidences)[1:])


def augrc(correct: Any, confidences: Any) -> float:
    """Area under the generalized-risk-coverage curve (Traub et al. 2024), lower is better.

    Generalized risk = |T \\ R| / N (accepted and wrong, over all samples), integrated over coverage from (0, 0) to
    (1, 1 - accuracy) along straight segments between distinct thresholds. It equals
    (1 - AUROC)·Acc·(1 - Acc) + (1 - Acc)²/2, AUROC of confidence separating correct from wrong (ties count 1/2).

    Example:

    >>> round(augrc([True, True, False], [0.9, 0.8, 0.1]), 4)  # perfectly ranked: (1/3)² / 2
    0.0556
    """
    correct, confidences = _check_correct_and_confidences(correct, confidences)
    return _augrc_from_counts(*_tie_counts(correct, confidences)[1:])


# ----------------------------------------------------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------------------------------------------------


def calibration_bins(correct: Any, confidences: Any, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Equal-width confidence bins (lower edge, upper edge]; a confidence of exactly 0 goes to the first bin.

    Returns:
        `dict` with `edges` of shape `(n_bins + 1,)` and, of shape `(n_bins,)`, `count`, `accuracy` and
        `confidence` (the mean confidence; both NaN for an empty bin).
    """
    correct, confidences = _check_correct_and_confidences(correct, confidences)
    if not isinstance(n_bins, numbers.Integral) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"`n_bins` must be a positive integer; got {n_bins!r}.")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.searchsorted(edges[1:-1], confidences, side="left")
    count = np.bincount(index, minlength=n_bins)
    return {
        "edges": edges,
        "count": count,
        "accuracy": _divide(np.bincount(index, weights=correct, minlength=n_bins), count, np.nan),
        "confidence": _divide(np.bincount(index, weights=confidences, minlength=n_bins), count, np.nan),
    }


def expected_calibration_error(correct: Any, confidences: Any, n_bins: int = ECE_BINS) -> float:
    """ECE = Σ_b (n_b / N)·|accuracy_b - mean confidence_b| over `n_bins` equal-width bins (top label; Guo et al. 2017).

    Example:

    >>> round(expected_calibration_error([True, False, True, True], [0.95, 0.95, 0.55, 0.55]), 4)
    0.45
    """
    bins = calibration_bins(correct, confidences, n_bins)
    filled = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float(np.sum(bins["count"][filled] * gaps) / bins["count"].sum())


# ----------------------------------------------------------------------------------------------------------------------
# Everything at once
# ----------------------------------------------------------------------------------------------------------------------

_MAX_CLASSES = 2**24


def _classification_scores(
    predictions: np.ndarray, references: np.ndarray, num_classes: int | None, zero_division: float
) -> dict[str, float]:
    """Accuracy, macro-F1 and unweighted average recall (scikit-learn) over range(num_classes), else the classes
    that occur in the references or the predictions."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    size = num_classes if num_classes is not None else int(max(predictions.max(), references.max())) + 1
    if size > _MAX_CLASSES:
        raise ValueError(f"Class indices go up to {size - 1}; remap labels to 0..K-1 or pass `num_classes`.")
    labels = np.arange(num_classes) if num_classes is not None else None
    options = {"labels": labels, "average": "macro", "zero_division": zero_division}
    return {
        "accuracy": float(accuracy_score(references, predictions)),
        "macro_f1": float(f1_score(references, predictions, **options)),
        "uar": float(recall_score(references, predictions, **options)),
    }


def trusted_scores(
    predictions: Any,
    references: Any,
    confidences: Any,
    threshold: str | float = "max_f1",
    target_precision: float = 0.95,
    zero_division: float = 0.0,
    num_classes: int | None = None,
    return_curve: bool = False,
) -> dict[str, Any]:
    """All trusted, selective and calibration scores from one sort.

    Args:
        predictions: shape `(N,)`, int class indices ŷ.
        references: shape `(N,)`, int class indices y.
        confidences: shape `(N,)`, floats in [0, 1] (e.g. 1 - u of the fused opinion, or max probability).
        threshold: τ, or how to choose it on these data: `"max_f1"`, `"break_even"`, `"target_precision"`
            (see `threshold_from_sweep`).
        target_precision: the target of `"target_precision"`.
        zero_division: value of a ratio with denominator 0 (empty T or R, a class never seen): 0.0, 1.0 or nan.
        num_classes: K for macro-F1 and UAR (classes 0..K-1); default: the classes present in predictions or
            references.
        return_curve: also return the threshold sweep as lists under `"curve"` (keys `SWEEP_KEYS`).

    Returns:
        `dict` of Python floats keyed by `SCORE_KEYS` (`n` is an int): trusted_precision, trusted_recall,
        trusted_f1, trusted_accuracy and coverage at `threshold` (the τ used), accuracy, macro_f1, uar, aurc,
        augrc, ece (15 bins) and n.
    """
    threshold = _check_threshold(threshold)
    target_precision = _check_target_precision(target_precision)
    zero_division = _check_zero_division(zero_division)
    if num_classes is not None and (
        not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool) or num_classes < 1
    ):
        raise ValueError(f"`num_classes` must be a positive integer or None; got {num_classes!r}.")
    predictions = _as_labels(predictions, "predictions", num_classes)
    references = _as_labels(references, "references", num_classes)
    confidences = _as_confidences(confidences)
    n = _check_same_length(predictions=predictions, references=references, confidences=confidences)
    correct = predictions == references
    n_correct = int(correct.sum())

    thresholds, n_trusted, n_trusted_correct = _tie_counts(correct, confidences)
    sweep = {"thresholds": thresholds, **_rates(n_trusted, n_trusted_correct, n_correct, n, zero_division)}
    tau = threshold_from_sweep(sweep, threshold, target_precision)
    # T(τ) = T(first candidate >= τ); past the largest confidence nothing is trusted.
    index = int(np.searchsorted(thresholds, tau, side="left"))
    at_tau = _rates(np.append(n_trusted, 0)[index], np.append(n_trusted_correct, 0)[index], n_correct, n, zero_division)
    scores = {key: float(value) for key, value in at_tau.items()}
    scores.update(threshold=tau, **_classification_scores(predictions, references, num_classes, zero_division))
    scores.update(
        aurc=_aurc_from_counts(n_trusted, n_trusted_correct),
        augrc=_augrc_from_counts(n_trusted, n_trusted_correct),
        ece=expected_calibration_error(correct, confidences),
        n=n,
    )
    scores = {key: scores[key] for key in SCORE_KEYS}
    if return_curve:
        scores["curve"] = {key: sweep[key].tolist() for key in SWEEP_KEYS}
    return scores
