"""Noisy copies of the training audio (`--augment noise`, training/datasets.py): each copy is its utterance at one of
the augmentation's SNRs, with white or pink noise or babble of other training utterances, encoded and cached like
an audio file."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_ter.data import augmentation
from modeling_ter.data.augmentation import measured_snr_db
from modeling_ter.data.feature_cache import CachedFeatures, compute_features, embed_item, encode_missing
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
    split = training_split(paths)
    split["items"]["audio"][5] = None  # an item without audio gets no copy
    with monkeypatch.context() as patch:  # the draws read no audio: every process draws them before encoding
        patch.setattr(augmentation, "load_audio", lambda *_: pytest.fail("a file was read to draw the copies"))
        rows, copies = datasets.noisy_audio_copies(split, seed=3)
    assert rows == [i for i in range(12) if i != 5] and [c.path for c in copies] == [paths[i] for i in rows]
    assert datasets.noisy_audio_copies(split, seed=3)[1] == copies
    assert datasets.noisy_audio_copies(split, seed=4)[1] != copies
    assert {c.noise for c in copies} == set(datasets.AUGMENT_NOISE_COLORS)
    for copy in copies:
        clean = load_audio(copy.path)
        assert measured_snr_db(clean, copy.load()["array"]) == pytest.approx(copy.snr_db, abs=1e-3)
        assert copy.snr_db in datasets.AUGMENT_SNR_DB
        if copy.noise == "babble":  # 4 other training utterances
            assert len(set(copy.talkers)) == datasets.BABBLE_TALKERS and copy.path not in copy.talkers
            assert set(copy.talkers) <= {paths[i] for i in rows}
    split["items"]["text"] = [f"utterance {i}" for i in range(12)]
    merged = datasets.with_noisy_copies(split, rows, copies)
    assert merged["is_copy"].tolist() == [False] * 12 + [True] * 11
    assert merged["labels"].tolist() == (np.arange(12) % 3).tolist() + [i % 3 for i in rows]
    assert merged["speakers"] == ["emodb_03"] * 23
    # A copy is an item of its own: its noisy audio alone (its transcript is its item's, trained on already).
    assert merged["items"]["audio"] == split["items"]["audio"] + copies
    assert merged["items"]["text"] == split["items"]["text"] + [None] * 11
    with pytest.raises(ValueError, match="pass --augment none"):
        datasets.noisy_audio_copies(training_split(paths[:4]), seed=3)


@pytest.fixture(scope="module")
def audio_model():
    from modeling_ter.encoders.defaults import build_default_model, build_default_processor

    return build_default_model(("audio",)), build_default_processor(("audio",))


def test_noisy_copies_are_encoded_in_batches_and_cached_like_audio_files(audio_model, tmp_path):
    # The copies were encoded one by one, by every process, and cached as one file per split: now they go through
    # the feature cache (length-sorted batches, shared out between processes), each copy its own entry.
    model, processor = audio_model
    folder = tmp_path / "audio"
    folder.mkdir()
    paths = [shutil.copy(source, folder) for source in sorted(EMODB.rglob("*.flac"))[:8]]
    rows, copies = datasets.noisy_audio_copies(training_split(paths), seed=0)
    cache_dir = tmp_path / "cache"
    batches, embed = [], model.embed_modality

    def counting_embed(modality, **inputs):  # the size of each batch encoded
        batches.append(len(next(iter(inputs.values()))))
        return embed(modality, **inputs)

    model.embed_modality = counting_embed
    try:  # process 0 of 2: its share of the plan, then (alone here) the other's
        assert encode_missing(model, processor, {"audio": copies}, ("audio",), cache_dir, 3, 0, 2, False) == 8
    finally:
        del model.embed_modality
    assert sorted(batches) == [2, 3, 3]
    first = compute_features(model, processor, {"audio": copies}, ("audio",), cache_dir, False)
    assert (first.num_encoded, first.num_cached) == (0, len(copies))
    for copy, features in zip(copies, first.features["audio"]):  # the copy's own audio, not its clean utterance
        alone = embed_item(model, processor, "audio", copy.load()["array"], sampling_rate=16000)
        assert torch.allclose(features, alone, atol=1e-4)
        assert not torch.allclose(features, embed_item(model, processor, "audio", copy.path), atol=1e-2)
    babble = next(copy for copy in copies if copy.noise == "babble")
    os.utime(babble.talkers[0], (1e9, 1e9))  # a talker's file changed: every copy that reads it is encoded again
    again = compute_features(model, processor, {"audio": copies}, ("audio",), cache_dir, False)
    assert again.num_encoded == sum(babble.talkers[0] in copy.sources for copy in copies) >= 2
    assert torch.equal(again.features["audio"], first.features["audio"])  # the same bytes: the same copies


def test_items_and_their_noisy_copies_are_one_feature_store(audio_model, tmp_path):
    # The copies' features were appended to the items' in memory, which read a memory-mapped corpus into RAM: now
    # they are items of the split, and the split's features (packed and memory-mapped when large) hold both.
    model, processor = audio_model
    folder = tmp_path / "audio"
    folder.mkdir()
    paths = [shutil.copy(source, folder) for source in sorted(EMODB.rglob("*.flac"))[:6]]
    broken = folder / "broken.flac"
    broken.write_bytes(b"not audio")
    paths.insert(2, str(broken))
    cache_dir = tmp_path / "cache"
    split = training_split(paths)
    split["features"] = compute_features(model, processor, split["items"], ("audio",), cache_dir, False)
    rows, copies = datasets.noisy_audio_copies(split, seed=1)
    assert rows == [0, 1, 3, 4, 5, 6] and not any(str(broken) in copy.sources for copy in copies)
    items = datasets.with_noisy_copies(split, rows, copies)["items"]
    in_memory = compute_features(model, processor, items, ("audio",), cache_dir, False, memory_map=False)
    mapped = compute_features(model, processor, items, ("audio",), cache_dir, False, memory_map=True)
    assert len(list(cache_dir.glob("audio/*/packed/*.npy"))) == 1  # one file for the items and their copies
    assert torch.equal(mapped.features["audio"], in_memory.features["audio"])
    assert torch.equal(mapped.mask, in_memory.mask) and mapped.mask[:, 0].tolist() == [i != 2 for i in range(13)]
    assert torch.equal(mapped.features["audio"][:7], split["features"].features["audio"])
    for copy, features in zip(copies, mapped.features["audio"][7:]):
        alone = embed_item(model, processor, "audio", copy.load()["array"], sampling_rate=16000)
        assert torch.allclose(features, alone, atol=1e-4)
