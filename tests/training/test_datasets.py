"""Noisy copies of the training audio (`--augment noise`, training/datasets.py): each copy is its utterance at one of
the augmentation's SNRs, with white or pink noise or babble of other training utterances."""

from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_ter.data.augmentation import measured_snr_db
from modeling_ter.data.feature_cache import CachedFeatures
from modeling_ter.processing.audio import load_audio
from modeling_ter.training import datasets

EMODB = Path(__file__).resolve().parents[2] / "data" / "emodb"


def training_split(paths: list[str]) -> dict:
    features = CachedFeatures(
        modalities=("audio",), features={"audio": torch.zeros(len(paths), 1, 4)}, mask=torch.ones(len(paths), 1).bool()
    )
    return {
        "items": {"audio": paths},
        "labels": np.arange(len(paths)) % 3,
        "corpora": ["emodb"] * len(paths),
        "speakers": ["emodb_03"] * len(paths),
        "is_copy": np.zeros(len(paths), dtype=bool),
        "features": features,
    }


def test_noisy_copies_mix_white_pink_or_babble_of_other_training_utterances(monkeypatch):
    paths = [str(p) for p in sorted(EMODB.rglob("*.flac"))[:12]]
    clean = {path: load_audio(path, datasets.SAMPLING_RATE) for path in paths}
    encoded, talkers_of = [], []
    real_babble = datasets.babble

    def spy_babble(waveforms, index, talkers, rng):
        talkers_of.append(waveforms)
        return real_babble(waveforms, index, talkers, rng)

    monkeypatch.setattr(datasets, "babble", spy_babble)

    def fake_embed(model, processor, modality, waveform, **_):  # no encoder: only what it is given counts here
        encoded.append(waveform)
        return torch.zeros(1, 4)

    monkeypatch.setattr(datasets, "embed_item", fake_embed)
    merged = datasets.add_noisy_audio_copies(None, None, training_split(paths), ("audio",), seed=3)

    assert len(encoded) == len(paths) and merged["is_copy"].tolist() == [False] * 12 + [True] * 12
    assert merged["labels"].tolist() == 2 * (np.arange(12) % 3).tolist()
    snrs = [measured_snr_db(clean[path], noisy) for path, noisy in zip(paths, encoded)]
    assert all(min(abs(snr - level) for level in datasets.AUGMENT_SNR_DB) < 1e-3 for snr in snrs)
    assert 0 < len(talkers_of) < len(paths)  # some copies are babble, some white or pink noise
    for waveforms in talkers_of:  # the copy's own utterance first, then 4 other training utterances
        own = next(path for path in paths if np.array_equal(clean[path], waveforms[0]))
        others = [next(p for p in paths if np.array_equal(clean[p], w)) for w in waveforms[1:]]
        assert len(others) == datasets.BABBLE_TALKERS and own not in others and len(set(others)) == len(others)
    with pytest.raises(ValueError, match="leave out --augment noise"):
        datasets.add_noisy_audio_copies(None, None, training_split(paths[:4]), ("audio",), seed=3)
