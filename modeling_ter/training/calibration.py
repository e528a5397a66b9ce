"""Calibration of the trusted threshold: the threshold `tau` a strategy of `trusted_f1.trusted_metrics` selects on
held-out (speaker-disjoint) predictions, stored in the model's config."""

from __future__ import annotations

import numpy as np
import torch

from trusted_f1.trusted_metrics import select_threshold

from ..data.feature_cache import CachedFeatures
from ..evaluation.predict import predict


def calibrate_threshold(
    model: torch.nn.Module,
    features: CachedFeatures,
    references: np.ndarray,
    strategy: str,
    target_precision: float = 0.95,
    batch_size: int = 64,
) -> float:
    """Selects the trusted threshold with `strategy` on the model's fused predictions of cached held-out features,
    and stores it (with the strategy's name) in `model.config`.

    Args:
        features: pooled features of `N` held-out items.
        references: `(N,)` class ids in the model's label space.
        strategy: `"max_f1"`, `"break_even"` or `"target_precision"` (see `select_threshold`).

    Returns:
        The threshold `tau`.
    """
    rows, predictions, confidences = predict(model, features, features.mask, batch_size)
    threshold = select_threshold(predictions == references[rows], confidences, strategy, target_precision)
    model.config.trusted_threshold = threshold
    model.config.trusted_threshold_strategy = strategy
    return threshold
