"""Parity of two trusted-emotion-recognition pipelines (e.g. onnxruntime against PyTorch) on the same inputs.

Examples:

```python
>>> from modeling_ter.export.parity import compare_results
>>> a = {"label": "anger", "confidence": 0.8, "trusted": True,
...      "scores": [{"label": "anger", "score": 0.7}, {"label": "fear", "score": 0.3}]}
>>> b = {"label": "anger", "confidence": 0.80002, "trusted": True,
...      "scores": [{"label": "fear", "score": 0.29999}, {"label": "anger", "score": 0.70001}]}
>>> report = compare_results([a], [b])
>>> round(report["max_abs_probability"], 6), round(report["max_abs_confidence"], 6), report["label_mismatches"]
(1e-05, 2e-05, [])

```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from ..processing.audio import load_audio


def compare_results(reference: Sequence[dict], candidate: Sequence[dict]) -> dict[str, Any]:
    """Compares pipeline outputs item by item.

    Args:
        reference, candidate: pipeline outputs (dicts with `label`, `confidence`, `trusted`, `scores`), same order.

    Returns:
        `n`; `max_abs_probability` (over every item and class of `scores`), `max_abs_confidence`; the indices of
        the items whose `label` differs (`label_mismatches`) and whose `trusted` differs (`trust_mismatches`).
    """
    if len(reference) != len(candidate):
        raise ValueError(f"Got {len(reference)} reference and {len(candidate)} candidate results; pair them up.")
    probability, confidence = 0.0, 0.0
    labels, trust = [], []
    for index, (a, b) in enumerate(zip(reference, candidate)):
        scores_a = {entry["label"]: entry["score"] for entry in a["scores"]}
        scores_b = {entry["label"]: entry["score"] for entry in b["scores"]}
        if scores_a.keys() != scores_b.keys():
            raise ValueError(f"Item {index}: the label sets differ ({sorted(scores_a)} vs {sorted(scores_b)}).")
        probability = max(probability, *(abs(scores_a[k] - scores_b[k]) for k in scores_a))
        confidence = max(confidence, abs(a["confidence"] - b["confidence"]))
        if a["label"] != b["label"]:
            labels.append(index)
        if a["trusted"] != b["trusted"]:
            trust.append(index)
    return {
        "n": len(reference),
        "max_abs_probability": probability,
        "max_abs_confidence": confidence,
        "label_mismatches": labels,
        "trust_mismatches": trust,
    }


def length_extremes(
    audio_path: str | os.PathLike,
    text: Optional[str],
    seconds: Sequence[float] = (0.5, 30.0),
    sampling_rate: int = 16000,
) -> list[dict[str, Any]]:
    """Pipeline inputs of one clip cut or repeated to each of `seconds` (waveform arrays at `sampling_rate`).

    Returns:
        One `{"audio": {"array": (T,) float32, "sampling_rate": ...}, "text": text}` per duration.
    """
    waveform = load_audio(audio_path, sampling_rate=sampling_rate)
    items = []
    for duration in seconds:
        samples = int(round(duration * sampling_rate))
        repeated = np.tile(waveform, -(-samples // len(waveform)))[:samples]
        items.append({"audio": {"array": repeated, "sampling_rate": sampling_rate}, "text": text})
    return items


__all__ = ["compare_results", "length_extremes"]
