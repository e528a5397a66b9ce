"""Tests of the classic baselines (eGeMAPS extraction with its cache, classifiers, per-speaker normalisation)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from modeling_ter.evaluation import baselines
from modeling_ter.evaluation.baselines import (
    EGEMAPS_DIM,
    cross_fitted_predictions,
    egemaps_features,
    fit_classifier,
    predict_with_confidence,
    speaker_normalize,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def _tone(path: Path, frequency: float, seconds: float = 1.0, rate: int = 16000) -> Path:
    time = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    waveform = 0.3 * np.sin(2 * np.pi * frequency * time) * (1 + 0.5 * np.sin(2 * np.pi * 3 * time))
    sf.write(path, (waveform + 0.01 * rng.standard_normal(len(time))).astype(np.float32), rate)
    return path


def test_egemaps_features_shape_cache_and_mask(tmp_path, monkeypatch):
    low, high = _tone(tmp_path / "low.wav", 150.0), _tone(tmp_path / "high.wav", 300.0)
    cache = tmp_path / "cache"
    features, mask = egemaps_features([low, None, high, tmp_path / "missing.wav"], cache_dir=cache)
    assert features.shape == (4, EGEMAPS_DIM)
    assert mask.tolist() == [True, False, True, False]
    assert np.isfinite(features).all() and not features[[1, 3]].any()
    # The first functional is the mean F0 in semitones from 27.5 Hz: an octave apart is 12 semitones.
    assert features[2, 0] - features[0, 0] == pytest.approx(12.0, abs=1.0)
    assert len(list((cache / "audio").glob("*/*.safetensors"))) == 3  # two encoded, one masked entry

    # A second call reads every entry from the cache: extraction would fail if it ran.
    monkeypatch.setattr(baselines, "load_audio", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    again, again_mask = egemaps_features([low, None, high, tmp_path / "missing.wav"], cache_dir=cache)
    np.testing.assert_allclose(again, features, rtol=1e-6)
    assert again_mask.tolist() == mask.tolist()


@pytest.mark.skipif(not (SHARED / "data" / "emodb").is_dir(), reason="set A (../shared/data/emodb) is not available")
def test_egemaps_on_real_emodb_file(tmp_path):
    path = sorted((SHARED / "data" / "emodb").rglob("*.wav"))[0]
    features, mask = egemaps_features([path], cache_dir=tmp_path)
    assert mask.tolist() == [True] and np.isfinite(features).all()
    assert 10.0 < features[0, 0] < 50.0  # mean F0 of a human voice: 50-500 Hz is 10-50 semitones from 27.5 Hz


def test_speaker_normalize_uses_each_speakers_own_statistics():
    rng = np.random.default_rng(1)
    features = np.concatenate([rng.normal(5.0, 2.0, (20, 3)), rng.normal(-3.0, 0.5, (10, 3))])
    features[:, 2] = np.r_[np.full(20, 7.0), np.full(10, 1.0)]  # constant within each speaker
    speakers = ["a"] * 20 + ["b"] * 10
    normalized = speaker_normalize(features, speakers)
    for rows in (slice(0, 20), slice(20, 30)):
        np.testing.assert_allclose(normalized[rows].mean(0), 0.0, atol=1e-12)
        np.testing.assert_allclose(normalized[rows, :2].std(0), 1.0, rtol=1e-12)
    assert not normalized[:, 2].any()  # constant dimensions are only centred
    # A speaker's result does not depend on the other speakers' items.
    np.testing.assert_allclose(speaker_normalize(features[20:], speakers[20:]), normalized[20:])
    layered = speaker_normalize(np.stack([features, 2 * features], 1), speakers)
    np.testing.assert_allclose(layered[:, 1], normalized, atol=1e-12)
    with pytest.raises(ValueError, match="speaker ids"):
        speaker_normalize(features, speakers[:-1])


@pytest.mark.parametrize("kind", ["logistic", "svm"])
def test_classifiers_predict_in_the_label_space_with_max_probability(kind):
    rng = np.random.default_rng(2)
    centres = {2: [4.0, 0.0], 5: [-4.0, 0.0], 6: [0.0, 4.0]}  # class ids with gaps: classes 0, 1, 3, 4 unseen
    labels = np.repeat(list(centres), 30)
    features = np.array([centres[y] for y in labels]) + rng.normal(0, 0.7, (len(labels), 2))
    classifier = fit_classifier(kind, features, labels)
    test_labels = np.array([2, 5, 6, 2])
    predictions, confidences = predict_with_confidence(
        classifier, np.array([centres[y] for y in test_labels]) + rng.normal(0, 0.1, (4, 2))
    )
    assert predictions.tolist() == test_labels.tolist()
    probabilities = classifier.predict_proba(np.array([[4.0, 0.0], [0.0, 0.0]]))
    _, at_points = predict_with_confidence(classifier, np.array([[4.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_allclose(at_points, probabilities.max(1))
    assert at_points[0] > 0.8 and at_points[1] < at_points[0]  # the point between the classes is less certain
    assert ((1 / 3 <= confidences) & (confidences <= 1)).all()


def test_fit_classifier_rejects_bad_input():
    with pytest.raises(ValueError, match="Unknown classifier kind 'tree'"):
        fit_classifier("tree", np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_classifier("logistic", np.zeros((4, 2)), np.zeros(4, dtype=int))


def test_svm_fits_a_class_with_a_single_example():
    # Speaker folds of small corpora leave such classes (EmoDB's disgust has one item for two of its speakers).
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(20, dtype=int), np.ones(20, dtype=int), [4]]
    features = np.r_[rng.normal(-3, 1, (20, 2)), rng.normal(3, 1, (20, 2)), [[0.0, 8.0]]]
    classifier = fit_classifier("svm", features, labels)
    assert classifier.classes_.tolist() == [0, 1, 4]
    predictions, confidences = predict_with_confidence(classifier, np.array([[-3.0, 0.0], [3.0, 0.0]]))
    assert predictions.tolist() == [0, 1] and (confidences > 0.5).all()


def test_cross_fitted_predictions_never_see_the_scored_speaker():
    """Each item is scored by the classifier's configuration refitted without its speaker (checked against a refit
    per speaker fold written out); a model that saw the speakers is right more often than those that did not."""
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold

    rng = np.random.default_rng(0)
    speakers = np.repeat([f"s{i}" for i in range(6)], 12)
    labels = rng.integers(0, 3, len(speakers))
    features = rng.normal(0, 1, (len(speakers), 5)) + labels[:, None] * 0.7 + rng.normal(0, 2, (6, 5)).repeat(12, 0)
    classifier = fit_classifier("logistic", features, labels, groups=speakers)
    predictions, confidences = cross_fitted_predictions(classifier, features, labels, speakers)
    expected_predictions, expected_confidences = np.zeros_like(predictions), np.zeros_like(confidences)
    for train, test in GroupKFold(n_splits=5).split(features, labels, speakers):
        refit = clone(classifier).fit(features[train], labels[train])
        expected_predictions[test], expected_confidences[test] = predict_with_confidence(refit, features[test])
    np.testing.assert_array_equal(predictions, expected_predictions)
    np.testing.assert_allclose(confidences, expected_confidences)
    in_sample, _ = predict_with_confidence(classifier, features)
    assert (predictions == labels).mean() < (in_sample == labels).mean()
