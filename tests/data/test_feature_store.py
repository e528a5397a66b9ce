"""The memory-mapped feature store: packed features are the in-memory path's, bit for bit, and training on them gives
the same heads; a second run opens the packed file instead of the per-item entries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import tiny_bert_config

from modeling_ter import TERConfig, TERForEmotionRecognition
from modeling_ter.data import feature_cache
from modeling_ter.data.feature_cache import compute_features, max_in_memory_bytes, packed_path

TINY_BERT = tiny_bert_config(num_hidden_layers=2).to_dict()


class _Tokenizer:
    model_max_length = 32

    def get_vocab(self) -> dict[str, int]:
        return {chr(97 + i): i for i in range(26)}

    def __len__(self) -> int:
        return 50


class _CharProcessor:
    """Text as character ids (what `compute_features` needs of a `TERProcessor`); an empty text is masked."""

    modalities = ("text",)
    tokenizer = _Tokenizer()

    def __call__(self, text, return_tensors="pt", sampling_rate=None):
        length = max(1, max(len(t) for t in text))
        ids = torch.zeros(len(text), length, dtype=torch.long)
        attention = torch.zeros(len(text), length, dtype=torch.long)
        for row, value in enumerate(text):
            ids[row, : len(value)] = torch.tensor([ord(c) % 50 for c in value], dtype=torch.long)
            attention[row, : max(1, len(value))] = 1
        present = torch.tensor([[len(t) > 0] for t in text])
        return {"text_input_ids": ids, "text_attention_mask": attention, "modality_mask": present}


@pytest.fixture
def model() -> TERForEmotionRecognition:
    torch.manual_seed(0)
    config = TERConfig(
        modality_configs={"text": {"backbone": TINY_BERT, "use_weighted_layer_sum": True}},
        head_hidden_size=4,
        id2label={0: "anger", 1: "neutral"},
        label2id={"anger": 0, "neutral": 1},
    )
    return TERForEmotionRecognition(config).eval()


ITEMS = {"text": ["hallo", "nein", "", None, "ja ja", "hallo", "guten tag", "tschuess"]}


def _train_heads(features: feature_cache.CachedFeatures, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """A few steps of heads on the cached features, as the training loop indexes them (shuffled batches)."""
    from modeling_ter.training.crossfit import heads_config

    torch.manual_seed(0)
    config = TERConfig(
        modality_configs={"text": {"embed_dim": 16, "num_feature_layers": 3, "use_weighted_layer_sum": True}},
        head_hidden_size=4,
        id2label={0: "anger", 1: "neutral"},
        label2id={"anger": 0, "neutral": 1},
    )
    heads = TERForEmotionRecognition(heads_config(config))
    optimizer = torch.optim.Adam(heads.parameters(), lr=0.01)
    usable = features.mask.any(1).nonzero().flatten()
    generator = torch.Generator().manual_seed(0)
    for step in range(6):
        index = usable[torch.randperm(len(usable), generator=generator)[:3]]
        batch = {"text_embeds": features.features["text"][index], "modality_mask": features.mask[index]}
        loss = heads(**batch, labels=labels[index], global_step=step).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {name: value.detach().clone() for name, value in heads.state_dict().items()}


def test_memory_mapped_features_equal_the_in_memory_path(model, tmp_path):
    processor = _CharProcessor()
    in_memory = compute_features(model, processor, ITEMS, ("text",), tmp_path, False, memory_map=False)
    mapped = compute_features(model, processor, ITEMS, ("text",), tmp_path, False, memory_map=True)
    assert in_memory.features["text"].shape == (8, 3, 16)
    assert torch.equal(mapped.features["text"], in_memory.features["text"])
    assert torch.equal(mapped.mask, in_memory.mask) and mapped.mask[:, 0].tolist() == [1, 1, 0, 0, 1, 1, 1, 1]
    assert mapped.failures == in_memory.failures and [i for i, _, _ in mapped.failures] == [2]
    assert "masked" in mapped.failures[0][2]
    # Behind the tensor is the packed file, not a copy in memory.
    packed = packed_path(feature_cache.FeatureCache(tmp_path), "text", _encoder(model, processor), ITEMS["text"])
    assert packed.is_file() and packed.with_suffix(".json").is_file()
    on_disk = np.load(packed, mmap_mode="r+")
    original = float(on_disk[7, 0, 0])
    on_disk[7, 0, 0] = 123.0  # a change to the file shows in the tensor: it is mapped, not copied
    on_disk.flush()
    assert mapped.features["text"][7, 0, 0] == 123.0
    on_disk[7, 0, 0] = original
    on_disk.flush()
    del on_disk

    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    trained_in_memory, trained_mapped = _train_heads(in_memory, labels), _train_heads(mapped, labels)
    assert trained_in_memory.keys() == trained_mapped.keys()
    assert all(torch.equal(trained_in_memory[k], trained_mapped[k]) for k in trained_in_memory)
    # A write to the tensor (copy-on-write) never reaches the file.
    mapped.features["text"][0] += 1.0
    again = compute_features(model, processor, ITEMS, ("text",), tmp_path, False, memory_map=True)
    assert torch.equal(again.features["text"], in_memory.features["text"])


def _encoder(model, processor) -> str:
    return feature_cache.encoder_key(model, "text", feature_cache.processor_settings(processor, "text"))


def test_second_run_opens_the_packed_file_without_reading_entries(model, tmp_path, monkeypatch):
    processor = _CharProcessor()
    first = compute_features(model, processor, ITEMS, ("text",), tmp_path, False, memory_map=True)
    reads = []
    read_entry = feature_cache._read_entry
    monkeypatch.setattr(feature_cache, "_read_entry", lambda path: reads.append(path) or read_entry(path))
    second = compute_features(model, processor, ITEMS, ("text",), tmp_path, False, memory_map=True)
    assert reads == [] and torch.equal(second.features["text"], first.features["text"])
    assert second.failures == first.failures and torch.equal(second.mask, first.mask)
    # Another item list (here: one item less) is another packed file, read from the entries.
    compute_features(model, processor, {"text": ITEMS["text"][:-1]}, ("text",), tmp_path, False, memory_map=True)
    assert len(reads) == 6  # the given, usable-or-masked items: "hallo" twice, None skipped


def test_features_larger_than_the_limit_are_memory_mapped(model, tmp_path, monkeypatch):
    processor = _CharProcessor()
    monkeypatch.setenv("TER_FEATURES_MAX_IN_MEMORY_MB", "0")
    assert max_in_memory_bytes() == 0
    compute_features(model, processor, ITEMS, ("text",), tmp_path, False)
    assert list((tmp_path / "text").rglob("packed/*.npy"))
    monkeypatch.setenv("TER_FEATURES_MAX_IN_MEMORY_MB", "1")
    other = tmp_path / "other"
    compute_features(model, processor, ITEMS, ("text",), other, False)
    assert not list(other.rglob("packed/*.npy"))  # 8 x 3 x 16 floats fit in 1 MiB
    monkeypatch.setenv("TER_FEATURES_MAX_IN_MEMORY_MB", "lots")
    with pytest.raises(ValueError, match="must be a number of MiB, got 'lots'"):
        max_in_memory_bytes()


def test_bench_scale_stores_part_runs_and_reads_back_the_rows_it_wrote():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_scale.py"
    result = subprocess.run(
        [sys.executable, str(script), "--part", "stores", "--sizes", "40"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("stores N=    40 ")]
    assert len(lines) == 3 and all("rows correct True" in line for line in lines), result.stdout
    assert "in 40 files" in lines[0] and "in 1 files" in lines[2]  # per-item entries; one packed file
