"""Classic speech-emotion baselines, scored with the same trusted metrics as TER (`scripts/bench_quality.py`).

- openSMILE eGeMAPSv02 functionals (88 hand-crafted acoustic parameters per utterance, Eyben et al. 2016), cached
  per file in the feature cache, for the classic "eGeMAPS + SVM" baseline;
- scikit-learn classifiers (standardised features, then logistic regression or an RBF SVM with Platt probabilities)
  whose confidence is the maximum class probability;
- per-speaker feature normalisation: each speaker's features z-scored with that speaker's own mean and standard
  deviation. It uses no labels, so it is legitimate at test time (the test speaker's unlabelled features suffice).

Example:

```python
>>> from modeling_ter.evaluation.baselines import egemaps_features, fit_classifier, predict_with_confidence  # doctest: +SKIP
>>> features, mask = egemaps_features(["a.wav", "b.wav"])  # doctest: +SKIP
>>> classifier = fit_classifier("svm", features[train], labels[train])  # doctest: +SKIP
>>> predictions, confidences = predict_with_confidence(classifier, features[test])  # doctest: +SKIP
```
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ..data.feature_cache import FeatureCache
from ..processing.audio import load_audio

logger = logging.getLogger(__name__)

EGEMAPS_DIM = 88  # eGeMAPSv02 functionals per utterance
EGEMAPS_SAMPLING_RATE = 16000  # what `load_audio` gives TER's audio encoder too
CLASSIFIERS = ("logistic", "svm")


def egemaps_key(sampling_rate: int = EGEMAPS_SAMPLING_RATE) -> str:
    """The feature-cache key of the eGeMAPSv02 extractor: feature set, level, openSMILE version and input rate."""
    import opensmile

    identity = {
        "extractor": "opensmile",
        "version": opensmile.__version__,
        "feature_set": "eGeMAPSv02",
        "feature_level": "Functionals",
        "sampling_rate": sampling_rate,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def egemaps_features(
    paths: Sequence[str | os.PathLike | None],
    cache_dir: str | os.PathLike | None = None,
    sampling_rate: int = EGEMAPS_SAMPLING_RATE,
) -> tuple[np.ndarray, np.ndarray]:
    """eGeMAPSv02 functionals of audio files, computed once per file and kept in the feature cache.

    Each file is decoded with `modeling_ter.processing.audio.load_audio` (mono, resampled to `sampling_rate`), so the baseline
    hears exactly the waveform TER's audio encoder hears.

    Args:
        paths: `N` audio files; `None` where an item has no audio.
        cache_dir: the feature cache folder (default: `$TER_CACHE/features`); entries go to `audio/<egemaps_key>/`.
        sampling_rate: the rate the audio is resampled to before extraction.

    Returns:
        `(features, mask)`: `(N, 88)` float64 (zeros where masked) and `(N,)` bool, `False` for a missing or
        unreadable file (the reason is logged and cached).
    """
    import opensmile

    smile = None
    cache = FeatureCache(cache_dir)
    key = egemaps_key(sampling_rate)
    features = np.zeros((len(paths), EGEMAPS_DIM))
    mask = np.zeros(len(paths), dtype=bool)

    def compute(path: str) -> torch.Tensor:
        nonlocal smile
        if smile is None:  # built on the first cache miss only
            smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
            )
        waveform = load_audio(path, sampling_rate=sampling_rate)
        values = smile.process_signal(waveform, sampling_rate).to_numpy(dtype=np.float32)
        return torch.tensor(values.reshape(1, EGEMAPS_DIM))

    for index, path in enumerate(paths):
        if path is None:
            continue
        value = os.fspath(path)
        item, reason, _ = cache.get_or_compute("audio", key, value, lambda v=value: compute(v))
        if item is None:
            logger.warning("eGeMAPS of %s masked (%s).", value, reason)
            continue
        features[index], mask[index] = item.reshape(-1).double().numpy(), True
    return features, mask


def speaker_normalize(features: np.ndarray, speakers: Sequence[str], eps: float = 1e-8) -> np.ndarray:
    """Z-scores each speaker's features with that speaker's own statistics (no labels used).

    Args:
        features: `(N, D)` (or `(N, L, D)`: every layer normalised on its own).
        speakers: `(N,)` speaker ids.
        eps: a dimension whose standard deviation within a speaker is below `eps` is only centred.

    Returns:
        `(N, D)` (or `(N, L, D)`) float array; every speaker's rows have mean 0 and, per non-constant dimension,
        standard deviation 1.
    """
    features = np.asarray(features, dtype=np.float64)
    speakers = np.asarray(speakers)
    if features.ndim < 2 or len(features) != len(speakers):
        raise ValueError(
            f"speaker_normalize needs features of shape (N, D) or (N, L, D) and N speaker ids; got features "
            f"{features.shape} and {len(speakers)} speaker ids."
        )
    normalized = np.empty_like(features)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        mean, std = features[rows].mean(0), features[rows].std(0)
        normalized[rows] = (features[rows] - mean) / np.where(std < eps, 1.0, std)
    return normalized


def fit_classifier(
    kind: str, features: np.ndarray, labels: np.ndarray, seed: int = 0, groups: Sequence[str] | None = None
) -> Pipeline:
    """A standardise-then-classify pipeline fitted on `(N, D)` features and `(N,)` int labels.

    `kind`: `"logistic"` (multinomial logistic regression) or `"svm"` (RBF SVC, `probability=True`: Platt scaling
    fitted by libsvm's internal 5-fold cross-validation). Both use balanced class weights, since the emotion classes
    are imbalanced and UAR is a headline score. With `groups` (each item's speaker) of at least 2 speakers, the
    regularisation (the logistic regression's C; the SVM's C and gamma) is chosen by speaker-grouped inner
    cross-validation (`GroupKFold`, balanced accuracy), then refitted on everything; without, C = 1 (and gamma
    "scale").

    scikit-learn 1.9 deprecates `probability=True` (removal planned for 1.11) in favour of `CalibratedClassifierCV`,
    which refuses classes with fewer than `cv` examples; speaker folds of small corpora have such classes (EmoDB's
    disgust: 1 item for two of its speakers), which libsvm handles. The deprecation warning is silenced here.
    """
    if kind not in CLASSIFIERS:
        raise ValueError(f"Unknown classifier kind {kind!r}; choose one of {CLASSIFIERS}.")
    features, labels = np.asarray(features), np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels) or len(np.unique(labels)) < 2:
        raise ValueError(
            f"fit_classifier needs (N, D) features and N labels of at least 2 classes; got features "
            f"{features.shape}, {len(labels)} labels, classes {np.unique(labels).tolist()}."
        )
    if kind == "logistic":
        estimator = LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced")
        grid = {"logisticregression__C": [0.001, 0.01, 0.1, 1.0, 10.0]}
    else:
        estimator = SVC(kernel="rbf", C=1.0, probability=True, class_weight="balanced", random_state=seed)
        scale = 1.0 / features.shape[1]  # "scale" for standardised features
        grid = {"svc__C": [0.1, 1.0, 10.0], "svc__gamma": [scale / 4, scale, scale * 4]}
    pipeline = make_pipeline(StandardScaler(), estimator)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The `probability` parameter was deprecated", category=FutureWarning)
        num_groups = len(set(groups)) if groups is not None else 0
        if num_groups < 2:
            return pipeline.fit(features, labels)
        inner = GroupKFold(n_splits=min(5, num_groups))
        search = GridSearchCV(pipeline, grid, scoring="balanced_accuracy", cv=inner, error_score=np.nan)
        return search.fit(features, labels, groups=np.asarray(groups)).best_estimator_


def predict_with_confidence(classifier: Pipeline, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(predictions, confidences)`, each `(N,)`: the most probable class id (in the labels' own id space, even
    when the training data lacked some classes) and its probability (the maximum probability)."""
    probabilities = classifier.predict_proba(np.asarray(features))
    best = probabilities.argmax(1)
    return classifier.classes_[best].astype(np.int64), probabilities[np.arange(len(best)), best]


def cross_fitted_predictions(
    classifier: Pipeline, features: np.ndarray, labels: np.ndarray, groups: Sequence[str], n_splits: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold `(predictions, confidences)` `(N,)` of `classifier`'s configuration (its chosen C / gamma),
    refitted on speaker folds (`GroupKFold` over `groups`, at most `n_splits`): every item scored by a model that
    never saw its speaker, as TER's cross-fitting scores its training speakers."""
    groups = np.asarray(groups)
    folds = GroupKFold(n_splits=min(n_splits, len(set(groups.tolist()))))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The `probability` parameter was deprecated", category=FutureWarning)
        probabilities = cross_val_predict(
            clone(classifier), features, labels, groups=groups, cv=folds, method="predict_proba"
        )
    best = probabilities.argmax(1)
    return np.unique(labels)[best].astype(np.int64), probabilities[np.arange(len(best)), best]


__all__ = [
    "CLASSIFIERS",
    "cross_fitted_predictions",
    "EGEMAPS_DIM",
    "egemaps_features",
    "egemaps_key",
    "fit_classifier",
    "predict_with_confidence",
    "speaker_normalize",
]
