"""What the training loop iterates over: cached frozen features or raw items (for fine-tuning), with their collate
function, and noisy copies of the training audio (`--augment noise`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.augmentation import BABBLE, NoisyAudio
from ..data.feature_cache import CachedFeatures
from ..encoders.whisper_conversion import SAMPLING_RATE

logger = logging.getLogger(__name__)

AUGMENT_SNR_DB = (20.0, 10.0, 5.0, 0.0)  # the noise augmentation draws one of these and a colour per copy
# Babble: `BABBLE_TALKERS` other training utterances mixed in (`data.augmentation.babble`).
AUGMENT_NOISE_COLORS = ("white", "pink", BABBLE)
BABBLE_TALKERS = 4


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


def noisy_audio_copies(split: dict, seed: int) -> tuple[list[int], list[NoisyAudio]]:
    """`(rows, copies)`: the training split's items with usable audio (by its features' mask) and a noisy copy of
    each, its SNR drawn from `AUGMENT_SNR_DB` and its noise from `AUGMENT_NOISE_COLORS` (babble: `BABBLE_TALKERS`
    other training utterances). Drawn from `seed` without reading any audio, so that every process draws the same
    copies; each copy is encoded and cached like an audio file (`data.feature_cache.SynthesizedItem`)."""
    rng = np.random.default_rng(seed)
    features, paths = split["features"], split["items"]["audio"]
    column = features.modalities.index("audio")
    rows = [i for i, path in enumerate(paths) if path is not None and features.mask[i, column]]
    if len(rows) <= BABBLE_TALKERS:
        raise ValueError(
            f"--augment noise mixes {BABBLE_TALKERS} other training utterances into babble copies, but the training "
            f"split has {len(rows)} items with audio; train on more, or pass --augment none."
        )
    copies = []
    for position, i in enumerate(rows):
        snr_db, noise = float(rng.choice(AUGMENT_SNR_DB)), str(rng.choice(AUGMENT_NOISE_COLORS))
        talkers = ()
        if noise == BABBLE:
            # Positions among the other rows, skipping this one's: O(talkers) per copy, not a list of every row.
            others = rng.choice(len(rows) - 1, size=BABBLE_TALKERS, replace=False)
            talkers = tuple(paths[rows[k + (k >= position)]] for k in others)
        seed_of_noise = int(rng.integers(2**63))
        copies.append(NoisyAudio(paths[i], snr_db, noise, seed_of_noise, talkers, SAMPLING_RATE))
    return rows, copies


def with_noisy_copies(split: dict, rows: Sequence[int], copies: Sequence[NoisyAudio]) -> dict:
    """The training split with the noisy copies of its items `rows` appended as items of their own: the copy as
    audio and no other modality (a copy's transcript or face is its item's, trained on already: repeating it would
    weigh the other heads towards the corpora with audio). A copy shares its item's label, corpus and speaker (so
    its fold), and is marked in `is_copy`. Without features: those of the items and copies are computed together,
    into one store (memory-mapped when large), not appended to the items' in memory."""
    return {
        "items": {
            m: list(values) + (list(copies) if m == "audio" else [None] * len(rows))
            for m, values in split["items"].items()
        },
        "labels": np.concatenate([split["labels"], split["labels"][rows]]),
        "corpora": list(split["corpora"]) + [split["corpora"][i] for i in rows],
        "speakers": list(split["speakers"]) + [split["speakers"][i] for i in rows],
        "is_copy": np.concatenate([split["is_copy"], np.ones(len(rows), dtype=bool)]),
    }
