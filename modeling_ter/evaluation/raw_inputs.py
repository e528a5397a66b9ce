"""Raw inputs of a manifest (decoded waveforms, transcripts, video paths) and the checkpoint's processor and model run
on them in batches: what the robustness and out-of-distribution harnesses perturb and score."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from transformers import AutoModel, AutoProcessor

from ..data.manifest import read_manifest
from ..encoders.whisper_conversion import SAMPLING_RATE
from ..processing.audio import load_audio
from .predict import collect_outputs
from .report import labelled_rows


def load_checkpoint(model_dir: str) -> tuple[Any, Any]:
    """The checkpoint's model (eval mode) and processor; `ValueError` without a calibrated threshold."""
    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} holds no config.json; pass a checkpoint folder from train.py.")
    model = AutoModel.from_pretrained(model_dir).eval()
    if model.config.trusted_threshold is None:
        raise ValueError(
            f"The checkpoint {model_dir} has no calibrated trusted_threshold; train it with scripts/train.py."
        )
    return model, AutoProcessor.from_pretrained(model_dir)


def load_samples(
    manifest: str | os.PathLike,
    model: torch.nn.Module,
    corpus: Optional[str] = None,
    speakers: Optional[str] = None,
    max_items: Optional[int] = None,
    seed: int = 0,
) -> tuple[list[dict], dict]:
    """The evaluated manifest rows (filtered, seeded subset) and their raw inputs: decoded 16 kHz waveforms,
    transcripts, video paths and class ids, as lists of length N.

    Args:
        corpus: keep only this corpus; speakers: keep only these comma-separated speaker ids; max_items: a seeded
            random subset of at most this many rows.
    """
    rows, problems = read_manifest(manifest)
    rows, skipped = labelled_rows(rows, model.config.label2id)
    if corpus:
        rows = [row for row in rows if row["corpus"] == corpus]
    if speakers:
        wanted = {s.strip() for s in speakers.split(",")}
        rows = [row for row in rows if row["speaker_id"] in wanted]
    rows = [row for row in rows if any(row[m] is not None for m in model.config.modalities)]
    if not rows:
        raise ValueError(
            f"No row of --manifest {manifest} matches --corpus {corpus!r} / --speakers {speakers!r} "
            f"with a label the model knows ({sorted(model.config.label2id)}); check those arguments."
        )
    if max_items and len(rows) > max_items:
        rows = sorted(random.Random(seed).sample(rows, max_items), key=lambda row: row["id"])
    modalities = model.config.modalities
    samples = {
        "audio": [
            load_audio(row["audio"], SAMPLING_RATE) if row["audio"] and "audio" in modalities else None for row in rows
        ],
        "text": [row["text"] if "text" in modalities else None for row in rows],
        "video": [row["video"] if "video" in modalities else None for row in rows],
        "labels": np.array([model.config.label2id[row["label"]] for row in rows]),
    }
    return rows, samples


@torch.no_grad()
def run_on_samples(
    model: torch.nn.Module,
    processor: Any,
    samples: dict,
    batch_size: int,
    frames: Optional[Callable] = None,
    rng: Optional[np.random.Generator] = None,
) -> dict[str, np.ndarray]:
    """The processor and the model on raw inputs, in batches.

    Args:
        samples: lists `audio` (16 kHz waveforms or `None`), `text`, `video` (paths or `None`) of length N.
        frames: optional corruption of the face crops `video_pixel_values` `(batch, frames, 1, H, W)`.

    Returns:
        `predictions` `(N,)`, `confidence` `(N,)`, `uncertainty` `(N,)`, `modality_confidence` `(N, M)`,
        `modality_predictions` `(N, M)`, `modality_mask` `(N, M)`.
    """
    kept: list[np.ndarray] = []

    def batches():
        num_items = len(samples["labels"])
        for start in range(0, num_items, batch_size):
            part = slice(start, start + batch_size)
            given = {
                m: samples[m][part] for m in model.config.modalities if any(v is not None for v in samples[m][part])
            }
            if not given:
                raise ValueError(f"Items {start}..{start + batch_size - 1} have no input left in this condition.")
            batch = processor(**given, sampling_rate=SAMPLING_RATE, return_tensors="np")
            if frames is not None and "video_pixel_values" in batch:
                batch["video_pixel_values"] = frames(batch["video_pixel_values"], rng)
            keep = batch["modality_mask"].any(1)
            kept.append(keep)
            yield {name: torch.from_numpy(np.asarray(value)[keep]) for name, value in batch.items()}

    outputs = collect_outputs(model, batches())
    has_input = np.concatenate(kept)
    full = {}
    for name, value in outputs.items():
        full[name] = np.zeros((len(has_input), *value.shape[1:]), dtype=value.dtype)
        full[name][has_input] = value
    return {**full, "has_input": has_input}
