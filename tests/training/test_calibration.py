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


def test_per_modality_temperatures_fix_each_modalitys_own_overconfidence():
    """Two modalities on disjoint items, both right 60 % of the time: belief 0.6 needs evidence 6 on the predicted
    class (6 / (6 + 4 classes)); audio claims 40 (over-confident), text 2 (under-confident). The fitted log-factors
    are near log(6/40) and log(6/2), and the model applies them."""
    import torch

    from modeling_ter import TERConfig, TERForEmotionRecognition
    from modeling_ter.training.crossfit import apply_evidence_calibration, calibrate_modalities

    rng = np.random.default_rng(0)
    num, classes = 400, 4
    labels = torch.as_tensor(rng.integers(0, classes, num))
    evidence = torch.zeros(num, 2, classes)
    present = torch.zeros(num, 2, dtype=torch.bool)
    for i in range(num):
        modality = i % 2
        right = rng.uniform() < 0.6  # both are right 60 % of the time
        predicted = int(labels[i]) if right else int((labels[i] + 1) % classes)
        strength = 40.0 if modality == 0 else 2.0
        evidence[i, modality, predicted] = strength
        present[i, modality] = True
    config = TERConfig(modality_configs={"audio": {"embed_dim": 3}, "text": {"embed_dim": 3}}, num_labels=classes)
    factors = calibrate_modalities(config, evidence, present, labels)
    assert factors["audio"] == pytest.approx(math.log(6 / 40), abs=0.3)
    assert factors["text"] == pytest.approx(math.log(6 / 2), abs=0.3)
    assert config.evidence_calibration == factors
    scaled = apply_evidence_calibration(config, evidence)
    torch.testing.assert_close(scaled[0, 0], evidence[0, 0] * math.exp(factors["audio"]))
    model = TERForEmotionRecognition(config).eval()
    embeds = {"audio_embeds": torch.randn(2, 3), "text_embeds": torch.randn(2, 3)}
    with torch.no_grad():
        calibrated = model(**embeds).modality_alpha - 1
        config.evidence_calibration = None
        plain = model(**embeds).modality_alpha - 1
    torch.testing.assert_close(calibrated[:, 0], plain[:, 0] * math.exp(factors["audio"]))
    torch.testing.assert_close(calibrated[:, 1], plain[:, 1] * math.exp(factors["text"]))


def test_a_modality_seen_in_few_held_out_items_keeps_its_evidence():
    """Video in 6 items, all wrong and confident: fitted alone, its temperature would run off; below
    MIN_CALIBRATION_ITEMS it keeps factor 1 while audio (60 items) is calibrated."""
    import torch

    from modeling_ter import TERConfig
    from modeling_ter.training.crossfit import MIN_CALIBRATION_ITEMS, calibrate_modalities

    num, classes = 66, 3
    labels = torch.zeros(num, dtype=torch.long)
    evidence = torch.zeros(num, 2, classes)
    present = torch.zeros(num, 2, dtype=torch.bool)
    evidence[:60, 0, 0], evidence[:60:3, 0, 1] = 30.0, 60.0  # audio: right 2/3 of the time
    present[:60, 0] = True
    evidence[60:, 1, 1], present[60:, 1] = 50.0, True  # video: 6 items, all wrong
    config = TERConfig(modality_configs={"audio": {"embed_dim": 3}, "video": {"embed_dim": 3}}, num_labels=classes)
    assert present[:, 1].sum() < MIN_CALIBRATION_ITEMS <= present[:, 0].sum()
    factors = calibrate_modalities(config, evidence, present, labels)
    assert set(factors) == {"audio"} and factors["audio"] != 0.0
    assert config.evidence_calibration == factors
