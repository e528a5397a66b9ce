"""Batched inference, written once: the model over batches of inputs, its per-sample outputs concatenated as arrays.

Used by validation during training (with `accelerator.gather_for_metrics`), by evaluation on cached features (and
on the windows of long clips), and by the robustness and out-of-distribution harnesses on raw inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch

from ..data.feature_cache import CachedFeatures
from ..models.evidential import calibrated_confidence, fuse_opinions
from ..pipelines.trusted_emotion_recognition import pool_windows


@torch.no_grad()
def collect_outputs(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    gather: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> dict[str, np.ndarray]:
    """Runs `model` (in eval mode) on every batch of model inputs and concatenates its per-sample outputs.

    Args:
        batches: dicts of `TERForEmotionRecognition` inputs (`<modality>_embeds` or raw inputs, `modality_mask`,
            optionally `labels`).
        gather: applied to each batch's outputs before they are kept (e.g. `accelerator.gather_for_metrics`).

    Returns:
        `predictions` `(N,)` fused class ids, `confidence` `(N,)` (float64) and `uncertainty` `(N,)`,
        `modality_confidence`, `modality_max_probability`, `modality_predictions` and `modality_mask`, each
        `(N, num_modalities)`; with labels also `labels` `(N,)` and `loss` `(N,)` (each sample holds its batch's loss).
    """
    model.eval()
    collected: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        outputs = model(**batch, return_dict=True)
        modality_probs = outputs.modality_alpha / outputs.modality_alpha.sum(-1, keepdim=True)
        values = {
            "predictions": outputs.probs.argmax(-1),
            "confidence": outputs.confidence,
            "uncertainty": outputs.uncertainty,
            "modality_confidence": outputs.modality_confidence,
            "modality_max_probability": modality_probs.max(-1).values,
            "modality_predictions": modality_probs.argmax(-1),
            "modality_mask": outputs.modality_mask,
        }
        if outputs.loss is not None:
            values["labels"] = batch["labels"]
            values["loss"] = outputs.loss.detach().repeat(len(batch["labels"]))
        if gather is not None:
            values = gather(values)
        for name, value in values.items():
            collected.setdefault(name, []).append(value.detach().cpu())
    result = {name: torch.cat(parts).numpy() for name, parts in collected.items()}
    if "confidence" in result:
        result["confidence"] = result["confidence"].astype(np.float64)
    return result


def model_opinions(
    model: torch.nn.Module, features: CachedFeatures, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each modality's (gated) evidence and presence for every cached item.

    Returns:
        `(evidence, present)`: `(N, num_modalities, num_labels)` float32 (zeros where absent) and `(N,
        num_modalities)` bool, modalities in the order of `model.config.modalities`.
    """
    device = next(model.parameters()).device
    num_items = features.mask.shape[0]
    evidence = torch.zeros(num_items, len(model.config.modalities), model.config.num_labels)
    rows = features.mask.any(1).nonzero().flatten()
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            index = rows[start : start + batch_size]
            embeds = {f"{m}_embeds": features.features[m][index].to(device) for m in features.modalities}
            outputs = model(**embeds, modality_mask=features.mask[index].to(device), return_dict=True)
            evidence[index] = (outputs.modality_alpha - 1.0).float().cpu()
    return evidence, features.mask.clone()


@torch.no_grad()
def windowed_audio_opinion(
    model: torch.nn.Module,
    processor,
    waveform: np.ndarray,
    windows: list[tuple[int, int, bool]],
    window_fusion: str,
    batch_size: int = 16,
) -> torch.Tensor | None:
    """The audio opinion of one long clip, its windows scored and pooled as the trusted-emotion-recognition pipeline
    does (`plan_audio_windows` made `windows`, `pool_windows` pools them); windows go through the model in batches.

    Args:
        waveform: `(T,)` at the processor's rate; windows: `(start, end, speech)` sample ranges.
        window_fusion: one of the pipeline's `WINDOW_RULES` (see `TERForEmotionRecognition.combine_windows`).

    Returns:
        The pooled (gated) audio evidence `(num_labels,)`, or `None` when no window counts.
    """
    device = next(model.parameters()).device
    rate = processor.feature_extractor.sampling_rate
    audio = list(model.config.modalities).index("audio")
    evidence, present, scale = [], [], []
    model.eval()
    for first in range(0, len(windows), batch_size):
        part = windows[first : first + batch_size]
        batch = processor(
            audio=[waveform[start:end] for start, end, _ in part], sampling_rate=rate, return_tensors="pt"
        )
        outputs = model(**{name: value.to(device) for name, value in batch.items()}, return_dict=True)
        evidence.append((outputs.modality_alpha[:, audio] - 1.0).float().cpu())
        present.append(outputs.modality_mask[:, audio].cpu())
        scale.append(outputs.modality_domain_scale[:, audio].float().cpu())
    speech = torch.tensor([is_speech for _, _, is_speech in windows])
    pooled = pool_windows(model, torch.cat(evidence), torch.cat(present), speech, torch.cat(scale), window_fusion)
    return None if pooled is None else pooled[0]


def fused_predictions(
    config, evidence: torch.Tensor, present: torch.Tensor, calibrated: bool = True
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Per-item opinions fused and scored as `config`'s model does.

    Args:
        config: a `TERConfig` (fusion rule, confidence measure, calibration).
        evidence: `(N, num_modalities, num_labels)`; present: `(N, num_modalities)` bool.
        calibrated: apply `config.confidence_calibration` (else the raw confidence).

    Returns:
        `(rows, predictions, confidences)`: the items with a modality present `(n,)`, their fused class ids `(n,)`
        and confidences `(n,)` float64.
    """
    rows = present.any(1).nonzero().flatten()
    alpha = fuse_opinions(evidence[rows], present[rows], config.fusion)
    slope, intercept = (config.confidence_calibration or (1.0, 0.0)) if calibrated else (1.0, 0.0)
    confidences = calibrated_confidence(alpha, config.confidence_measure, slope, intercept)
    return rows, alpha.argmax(-1).numpy(), confidences.double().numpy()
