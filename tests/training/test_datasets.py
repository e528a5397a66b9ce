"""Noisy copies of the training audio (`--augment noise`, training/datasets.py): each copy is its utterance at one of
the augmentation's SNRs, with white or pink noise or babble of other training utterances."""

import os
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


def test_noisy_copies_are_read_from_the_cache_when_a_run_drew_them_before(monkeypatch, tmp_path):
    # A run with --augment noise encoded every copy anew, warm cache or not; the copies of the same items, seed and
    # encoder are now read back, and any change to what draws them encodes them again.
    audio = tmp_path / "audio"
    audio.mkdir()
    paths = []
    for source in sorted(EMODB.rglob("*.flac"))[:6]:
        paths.append(str(audio / source.name))
        Path(paths[-1]).write_bytes(source.read_bytes())
    encoded = []

    def fake_embed(model, processor, modality, waveform, **_):  # the copy's own numbers, to compare them after
        encoded.append(waveform)
        return torch.as_tensor(waveform[:4], dtype=torch.float32)[None]

    monkeypatch.setattr(datasets, "embed_item", fake_embed)
    monkeypatch.setattr(datasets, "encoder_key", lambda model, modality, settings: "encoder")
    monkeypatch.setattr(datasets, "processor_settings", lambda processor, modality: {})
    cache = datasets.FeatureCache(tmp_path / "cache")

    def copies(seed):
        merged = datasets.add_noisy_audio_copies(None, None, training_split(paths), ("audio",), seed, cache)
        return merged["features"], len(encoded)

    first, count = copies(3)
    assert count == 6 and (first.num_encoded, first.num_cached) == (6, 0)
    again, count = copies(3)
    assert count == 6 and (again.num_encoded, again.num_cached) == (0, 6)
    assert torch.equal(again.features["audio"], first.features["audio"])
    assert copies(4)[1] == 12  # another seed draws other copies
    os.utime(paths[2], (1e9, 1e9))  # an item's file changed (its mtime): the copies are drawn anew
    assert copies(3)[1] == 18
