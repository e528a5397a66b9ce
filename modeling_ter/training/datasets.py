"""What the training loop iterates over: cached frozen features or raw items (for fine-tuning), with their collate
function, and noisy copies of the training audio (`--augment noise`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from ..data.augmentation import add_noise, babble, mix_at_snr
from ..data.feature_cache import CachedFeatures, FeatureCache, embed_item, encoder_key, item_key, processor_settings
from ..encoders.whisper_conversion import SAMPLING_RATE
from ..processing.audio import load_audio
from ..utils.io import atomic_path

logger = logging.getLogger(__name__)

AUGMENT_SNR_DB = (20.0, 10.0, 5.0, 0.0)  # the noise augmentation draws one of these and a colour per copy
# Babble: `BABBLE_TALKERS` other training utterances mixed in (`data.augmentation.babble`), read per copy.
AUGMENT_NOISE_COLORS = ("white", "pink", "babble")
BABBLE_TALKERS = 4
# Bumped when the noisy copies' draws change, so that cached copies of earlier draws are not read.
NOISY_COPIES_VERSION = 1


class CachedFeatureDataset(Dataset):
    """Items as model inputs: `<modality>_embeds` `(L, D)`, `modality_mask` `(M,)` and `labels`."""

    def __init__(self, features: CachedFeatures, labels: np.ndarray):
        self.features, self.labels = features, torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {f"{m}_embeds": self.features.features[m][index] for m in self.features.modalities}
        return {**item, "modality_mask": self.features.mask[index], "labels": self.labels[index]}


class RawItemDataset(Dataset):
    """Items as raw inputs (file paths, text) for fine-tuning; the processor collates them into a batch."""

    def __init__(self, items: dict[str, list], labels: np.ndarray):
        self.items, self.labels = items, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {**{m: values[index] for m, values in self.items.items()}, "labels": int(self.labels[index])}


def raw_collator(processor, modalities: Sequence[str]):
    """Batches raw items with the processor: `<modality>_*` inputs, `modality_mask` and `labels`.

    Each modality of each item is prepared on its own, so a corrupt file masks that modality only (logged); an item
    left with no usable modality is dropped from the batch.
    """

    def prepare(item: dict) -> dict | None:
        parts = []
        for modality in modalities:
            if item[modality] is None:
                continue
            try:
                parts.append(processor(**{modality: [item[modality]]}, return_tensors="np"))
            except (ValueError, OSError) as error:
                logger.warning(f"{modality} of {item[modality]!r} masked: {error}")
        if not parts:
            return None
        prepared = {name: value for part in parts for name, value in part.items() if name != "modality_mask"}
        prepared["modality_mask"] = np.logical_or.reduce([part["modality_mask"] for part in parts])
        return prepared

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        prepared = [(prepare(item), item["labels"]) for item in items]
        prepared = [(features, label) for features, label in prepared if features is not None]
        batch = processor.pad([features for features, _ in prepared], return_tensors="pt")
        return {**batch, "labels": torch.tensor([label for _, label in prepared])}

    return collate


def get_dataloaders(args, splits, processor, modalities) -> tuple[DataLoader, DataLoader | None]:
    """The train loader and, when a validation split is given, its loader: cached features (`--finetune none`) or
    raw items through the processor."""
    if args.finetune == "none":
        datasets = [CachedFeatureDataset(split["features"], split["labels"]) for split in splits]
        collate = None
    else:
        datasets = [RawItemDataset(split["items"], split["labels"]) for split in splits]
        collate = raw_collator(processor, modalities)
    train_dataloader = DataLoader(datasets[0], batch_size=args.batch_size, shuffle=True, collate_fn=collate)
    if len(datasets) == 1:
        return train_dataloader, None
    eval_dataloader = DataLoader(datasets[1], batch_size=args.batch_size, shuffle=False, collate_fn=collate)
    return train_dataloader, eval_dataloader


def noisy_copies_path(cache: FeatureCache, model, processor, paths: Sequence[str], seed: int) -> Path:
    """Where the encoded noisy copies of the audio files `paths` (in this order) drawn with `seed` are cached, as one
    file: each copy's draws depend on the copies before it, so the key holds them all (audio encoder, every item's
    path, size and mtime, the seed, the augmentation's settings)."""
    settings = [NOISY_COPIES_VERSION, seed, AUGMENT_SNR_DB, AUGMENT_NOISE_COLORS, BABBLE_TALKERS]
    encoder = encoder_key(model, "audio", processor_settings(processor, "audio"))
    identity = [settings, [item_key("audio", p) for p in paths]]
    return cache.keyed_path("audio", encoder, "noisy", identity, ".safetensors")


def add_noisy_audio_copies(model, processor, split: dict, modalities, seed: int, cache: FeatureCache | None = None):
    """The training split plus one copy of every item with audio, its audio at a random SNR and noise colour
    (`AUGMENT_NOISE_COLORS`; babble from `BABBLE_TALKERS` other training utterances); the copies' features are read
    from `cache` when a run drew the same copies before (`noisy_copies_path`), else encoded and stored there."""
    rng = np.random.default_rng(seed)
    features, column = split["features"], list(modalities).index("audio")
    paths = split["items"]["audio"]
    rows = [i for i, path in enumerate(paths) if path is not None and features.mask[i, column]]
    if len(rows) <= BABBLE_TALKERS:
        raise ValueError(
            f"--augment noise mixes {BABBLE_TALKERS} other training utterances into babble copies, but the training "
            f"split has {len(rows)} items with audio; train on more, or leave out --augment noise."
        )
    stored = None if cache is None else noisy_copies_path(cache, model, processor, [paths[i] for i in rows], seed)
    copies = features.select(rows)
    encoded = 0
    if stored is not None and stored.is_file():
        copies.features["audio"] = load_file(stored)["features"]
    else:
        copies.features["audio"] = torch.stack(_noisy_copy_features(model, processor, paths, rows, rng))
        encoded = len(rows)
        if stored is not None:
            with atomic_path(stored) as temporary:
                save_file({"features": copies.features["audio"].contiguous()}, temporary)
    merged = CachedFeatures(
        features.modalities,
        {m: torch.cat([features.features[m], copies.features[m]]) for m in features.modalities},
        torch.cat([features.mask, copies.mask]),
        features.failures,
        features.num_encoded + encoded,
        features.num_cached + len(rows) - encoded,
    )
    return {
        "items": {m: list(values) + [values[i] for i in rows] for m, values in split["items"].items()},
        "labels": np.concatenate([split["labels"], split["labels"][rows]]),
        "corpora": list(split["corpora"]) + [split["corpora"][i] for i in rows],
        "speakers": list(split["speakers"]) + [split["speakers"][i] for i in rows],
        "is_copy": np.concatenate([split["is_copy"], np.ones(len(rows), dtype=bool)]),
        "features": merged,
    }


@torch.no_grad()
def _noisy_copy_features(model, processor, paths: Sequence[str], rows: Sequence[int], rng) -> list[torch.Tensor]:
    """The encoded noisy copy of each of `rows` (positions in `paths`), drawn in order from `rng`."""
    noisy = []
    for position, i in enumerate(rows):
        waveform = load_audio(paths[i], SAMPLING_RATE)
        snr_db, color = rng.choice(AUGMENT_SNR_DB), rng.choice(AUGMENT_NOISE_COLORS)
        if color == "babble":
            # Positions among the other rows, skipping this one's: O(talkers) per copy, not a list of every row.
            others = rng.choice(len(rows) - 1, size=BABBLE_TALKERS, replace=False)
            talkers = [waveform] + [load_audio(paths[rows[k + (k >= position)]], SAMPLING_RATE) for k in others]
            waveform = mix_at_snr(waveform, babble(talkers, 0, BABBLE_TALKERS, rng), snr_db)
        else:
            waveform = add_noise(waveform, snr_db, color, rng)
        noisy.append(embed_item(model, processor, "audio", waveform, sampling_rate=SAMPLING_RATE))
    return noisy
