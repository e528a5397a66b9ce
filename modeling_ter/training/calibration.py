"""Calibration of TER's reported confidence and of its trusted threshold, fitted on held-out predictions.

The opinion itself is untouched (`u = K / S`, design notes §1); what changes is the number reported as `confidence`:
an estimate of P(prediction correct), so that it reads as a probability (ECE) and a threshold on it means what it
says. The map is Platt scaling (Platt 1999) on the log-odds of the raw confidence,
`confidence = sigmoid(slope * logit(c_raw) + intercept)` (`models.evidential.calibrated_confidence`): strictly
increasing, so it keeps the ranking (AURC), and the vacuous opinion keeps confidence 0. With the slope fixed to 1 it is
a temperature on the evidence, the choice measured best on small calibration sets.
"""

from __future__ import annotations

import numpy as np
import torch

from trusted_f1.trusted_metrics import select_threshold

from ..evaluation.predict import fused_predictions

# log-odds are clipped to +-LOGIT_CLIP when fitting, so that a raw confidence of exactly 0 or 1 stays finite there
LOGIT_CLIP = 30.0


def _logit_np(confidence: np.ndarray) -> np.ndarray:
    c = np.asarray(confidence, dtype=np.float64)
    with np.errstate(divide="ignore"):
        z = np.log(c) - np.log1p(-c)
    return np.clip(z, -LOGIT_CLIP, LOGIT_CLIP)


def fit_platt(
    confidence: np.ndarray, correct: np.ndarray, fit_slope: bool = True, l2: float = 1e-3, max_iter: int = 100
) -> tuple[float, float]:
    """Fits `P(correct | c) = sigmoid(slope * logit(c) + intercept)` by maximum likelihood (Newton's method).

    With `fit_slope=False` the slope stays 1 and only the intercept is fitted: for `c = 1 - u` that is a temperature
    on the total evidence, `E' = E / T` with `T = exp(-intercept)` (one parameter; the more stable choice on small
    calibration sets, see recipe.md).

    Args:
        confidence: `(N,)` raw confidences in [0, 1] (e.g. `1 - u` of the fused opinion) of held-out predictions:
            cross-fitted over the *training* speakers (each prediction by heads that never saw its speaker).
        correct: `(N,)` bool, whether each of those predictions was right.
        fit_slope: fit the slope too (Platt) or keep it at 1 (temperature on the evidence).
        l2: a small ridge on `(slope - 1, intercept)`: pulls towards the identity map when the data are few or
            separable (it never changes the sign of a clear trend).
        max_iter: Newton steps (damped: each step at most halves until the likelihood does not decrease).

    Returns:
        `(slope, intercept)` as Python floats, for `TERConfig.confidence_calibration`. The slope is floored at
        1e-3, so the map stays strictly increasing (it never inverts the ranking).

    Raises:
        ValueError: empty or mismatched inputs, or confidences outside [0, 1].
    """
    z = _logit_np(confidence).reshape(-1)
    t = np.asarray(correct, dtype=np.float64).reshape(-1)
    if len(z) == 0 or len(z) != len(t):
        raise ValueError(f"fit_platt needs N >= 1 confidences and N outcomes, got {len(z)} and {len(t)}.")
    c = np.asarray(confidence, dtype=np.float64)
    if np.any(~np.isfinite(c)) or np.any(c < 0) or np.any(c > 1):
        raise ValueError("fit_platt needs confidences in [0, 1] (no NaN).")
    features = np.stack([z, np.ones_like(z)], 1)  # (N, 2)
    prior = np.array([1.0, 0.0])
    free = np.array([1.0 if fit_slope else 0.0, 1.0])  # which parameters move
    penalty = l2 * len(t)

    def objective(w: np.ndarray) -> float:
        margin = features @ w
        # binary cross-entropy, stable: log(1 + e^m) - t m
        return float(np.sum(np.logaddexp(0.0, margin) - t * margin) + 0.5 * penalty * np.sum((w - prior) ** 2))

    w = prior.copy()
    loss = objective(w)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * (features @ w)))  # sigmoid without overflow
        grad = (features.T @ (p - t) + penalty * (w - prior)) * free
        hess = (features * (p * (1 - p))[:, None]).T @ features + penalty * np.eye(2)
        hess = hess * np.outer(free, free) + np.diag(1.0 - free)  # frozen slope: identity row/column
        step = np.linalg.solve(hess, grad)
        # damped Newton: halve the step until the objective does not increase (never diverges)
        scale = 1.0
        while scale > 1e-6 and objective(w - scale * step) > loss + 1e-12:
            scale *= 0.5
        w = w - scale * step
        new_loss = objective(w)
        converged = abs(loss - new_loss) < 1e-10 * max(1.0, abs(loss))
        loss = new_loss
        if converged or scale <= 1e-6:
            break
    return float(max(w[0], 1e-3)), float(w[1])


def select_held_out_threshold(
    config, evidence: torch.Tensor, present: torch.Tensor, references: torch.Tensor, args
) -> float:
    """Selects the trusted threshold with `args.threshold_strategy` on held-out opinions `(N, M, K)` (fused and
    calibrated as the model will report them) and stores it, with the strategy's name, in `config`."""
    rows, predictions, confidences = fused_predictions(config, evidence, present)
    correct = predictions == references[rows].numpy()
    threshold = select_threshold(correct, confidences, args.threshold_strategy, args.target_precision)
    config.trusted_threshold = threshold
    config.trusted_threshold_strategy = args.threshold_strategy
    return threshold
