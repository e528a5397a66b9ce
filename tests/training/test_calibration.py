"""Fitting the confidence calibration (training/calibration.py): a temperature recovered from synthetic outcomes,
separable data that does not diverge."""

import math

import numpy as np
import pytest

from modeling_ter.training.calibration import fit_platt


def test_fit_platt_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    log_odds = rng.normal(0.0, 2.0, 20000)
    true_intercept = -0.7
    correct = rng.uniform(size=log_odds.size) < 1 / (1 + np.exp(-(log_odds + true_intercept)))
    raw = 1 / (1 + np.exp(-log_odds))
    slope, intercept = fit_platt(raw, correct, fit_slope=False)
    assert slope == 1.0 and intercept == pytest.approx(true_intercept, abs=0.05)
    slope2, intercept2 = fit_platt(raw, correct)
    assert slope2 == pytest.approx(1.0, abs=0.05) and intercept2 == pytest.approx(true_intercept, abs=0.05)


def test_fit_platt_separable_data_does_not_diverge():
    raw = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    slope, intercept = fit_platt(raw, raw > 0.5)
    assert math.isfinite(slope) and math.isfinite(intercept) and slope > 0
