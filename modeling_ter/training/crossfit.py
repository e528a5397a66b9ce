"""Honest calibration data by cross-fitting over speaker folds (design notes §7), for frozen-encoder training.

The heads are trained once per speaker fold of the training speakers, on the other folds; every training item is then
scored by heads that never saw its speaker. From those held-out opinions come:

- the number of epochs: the one with the lowest pooled held-out NLL of the fused opinion (not the best accuracy on
  one validation speaker: that picked noisy epochs, and the Trusted CE loss is no guide since its KL term rises);
- the domain gate of a modality: class-conditional Gaussians with a shared shrunk covariance on the pooled features
  (`models.domain`), its reference and width from the *cross-fitted* distances (Gaussians fitted without that
  speaker), since a new speaker lies about twice as far as a training item;
- the confidence calibration (a temperature on the evidence) and the trusted threshold, fitted on the held-out,
  gated opinions;
- the evaluation report: every training speaker scored by heads that never saw it.

The heads of these fold models are small (an MLP per modality on cached features), so they are trained here with a
plain loop on tensors, identically in every process; the final heads are trained by `training.loop` with Accelerate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.augmentation import modality_dropout
from ..data.feature_cache import CachedFeatures
from ..evaluation.predict import fused_predictions
from ..models import TERConfig, TERForEmotionRecognition
from ..models.domain import MahalanobisDomain, fit_mahalanobis, gate_parameters
from ..models.evidential import calibrated_confidence, fuse_opinions
from .calibration import fit_platt

# The gate of the measured recipe: evidence whole up to the median held-out distance, falling over (Q99 - median).
GATE_QUANTILE, GATE_REFERENCE_QUANTILE = 0.99, 0.5


@dataclass
class CrossFit:
    """What the fold models found.

    Attributes:
        epochs: E*, the epoch count with the lowest pooled held-out NLL.
        nll: `(max_epochs,)` the pooled held-out NLL after each epoch.
        evidence: `(N, num_modalities, num_labels)` each item's per-modality evidence at E*, from the heads of the
            fold that held its speaker out (ungated).
        fold: `(N,)` the fold of each item.
    """

    epochs: int
    nll: np.ndarray
    evidence: torch.Tensor
    fold: np.ndarray


def heads_config(config: TERConfig) -> TERConfig:
    """The config of `config`'s model without backbones: the heads on cached features (same widths and layers)."""
    keys = ("embed_dim", "num_feature_layers", "use_weighted_layer_sum")
    modality_configs = {m: {k: config.modality_config(m)[k] for k in keys} for m in config.modalities}
    return TERConfig(
        modality_configs=modality_configs,
        id2label=config.id2label,
        label2id=config.label2id,
        fusion=config.fusion,
        head_hidden_size=config.head_hidden_size,
        head_dropout=config.head_dropout,
        annealing_steps=config.annealing_steps,
    )


def _inputs(features: CachedFeatures, index: torch.Tensor) -> dict[str, torch.Tensor]:
    embeds = {f"{m}_embeds": features.features[m][index] for m in features.modalities}
    return {**embeds, "modality_mask": features.mask[index]}


def fit_heads(
    config: TERConfig,
    features: CachedFeatures,
    labels: torch.Tensor,
    rows: torch.Tensor,
    epochs: int,
    args,
    seed: int,
    batch_size: int,
    held_out: torch.Tensor | None = None,
) -> tuple[TERForEmotionRecognition, list[torch.Tensor]]:
    """Fresh heads (seed `seed`) trained on the cached items `rows` for `epochs` epochs, as the training loop does
    (Adam, Trusted CE with the KL annealed over `args.annealing_epochs` epochs of steps, modality dropout if asked),
    in one process with the run's effective batch (`batch_size`: per process x processes x accumulation steps).

    Returns:
        The model and, after every epoch, the per-modality evidence `(len(held_out), M, K)` of the `held_out` items.
    """
    torch.manual_seed(seed)
    model = TERForEmotionRecognition(heads_config(config))
    steps_per_epoch = math.ceil(len(rows) / batch_size)
    model.trusted_ce.annealing_steps = max(1, round(args.annealing_epochs * steps_per_epoch))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    order_generator = torch.Generator().manual_seed(seed)
    dropout_rng = np.random.default_rng(seed)
    history, step = [], 0
    for _ in range(epochs):
        model.train()
        order = rows[torch.randperm(len(rows), generator=order_generator)]
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = _inputs(features, index)
            if "modality_dropout" in args.augmentations:
                batch["modality_mask"] = modality_dropout(batch["modality_mask"], args.modality_dropout, dropout_rng)
            loss = model(**batch, labels=labels[index], global_step=step).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        if held_out is not None:
            model.eval()
            with torch.no_grad():
                history.append(model(**_inputs(features, held_out)).modality_alpha - 1.0)
    return model.eval(), history


def _fused_nll(evidence: torch.Tensor, present: torch.Tensor, labels: torch.Tensor, fusion: str) -> torch.Tensor:
    """`-log p_y` of the fused expected probability, per item `(N,)`."""
    alpha = fuse_opinions(evidence, present, fusion)
    return -(alpha.gather(1, labels[:, None]).squeeze(1) / alpha.sum(-1)).log()


def cross_fit(
    config: TERConfig,
    features: CachedFeatures,
    labels: torch.Tensor,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    args,
    batch_size: int,
    show_progress: bool = False,
) -> CrossFit:
    """Heads trained per speaker fold for up to `args.epochs` epochs; E* and the held-out evidence at E*.

    Args:
        folds: `(train_idx, test_idx)` speaker-disjoint folds of the cached items (`data.manifest.speaker_folds_of`).
        batch_size: the run's effective batch, so that the fold models do not depend on the number of processes.
    """
    num_items = features.mask.shape[0]
    per_epoch = torch.zeros(args.epochs, num_items, len(config.modalities), config.num_labels)
    fold_of = np.zeros(num_items, dtype=np.int64)
    for j, (train_idx, test_idx) in enumerate(tqdm(folds, desc="cross-fitting folds", disable=not show_progress)):
        held_out = torch.as_tensor(test_idx)
        rows = torch.as_tensor(train_idx)
        _, history = fit_heads(config, features, labels, rows, args.epochs, args, args.seed + j, batch_size, held_out)
        for epoch, evidence in enumerate(history):
            per_epoch[epoch, held_out] = evidence
        fold_of[test_idx] = j
    nll = torch.stack([_fused_nll(e, features.mask, labels, config.fusion).mean() for e in per_epoch]).numpy()
    best = int(np.argmin(nll))
    return CrossFit(epochs=best + 1, nll=nll, evidence=per_epoch[best], fold=fold_of)


def pooled_features(model: TERForEmotionRecognition, features: CachedFeatures, modality: str) -> torch.Tensor:
    """What the modality's head reads `(N, embed_dim)`: its layers through the model's learned weighting (or the
    last layer)."""
    layers = features.features[modality]
    with torch.no_grad():
        return model.layer_weighting[modality](layers) if modality in model.layer_weighting else layers[:, -1]


def fit_domain_gate(
    model: TERForEmotionRecognition,
    features: CachedFeatures,
    labels: torch.Tensor,
    modality: str,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
) -> torch.Tensor:
    """Fits `modality`'s domain gate into `model` (its Gaussians on every training item, its reference and width
    from the cross-fitted distances) and returns the cross-fitted gate `(N,)` of every item (0 where absent)."""
    column = list(model.config.modalities).index(modality)
    present = features.mask[:, column]
    pooled = pooled_features(model, features, modality)
    num_labels = model.config.num_labels
    distance = torch.full((len(pooled),), math.nan)
    for train_idx, test_idx in folds:
        train_rows = torch.as_tensor(train_idx)[present[train_idx]]
        test_rows = torch.as_tensor(test_idx)[present[test_idx]]
        if len(train_rows) < 2 or len(test_rows) == 0:
            continue
        fold_domain = MahalanobisDomain(num_labels, pooled.shape[1])
        fold_domain.load_statistics(**fit_mahalanobis(pooled[train_rows], labels[train_rows], num_labels))
        distance[test_rows] = fold_domain.distance(pooled[test_rows])
    reference, width = gate_parameters(distance[present], GATE_QUANTILE, GATE_REFERENCE_QUANTILE)
    model.config.modality_configs[modality].update(domain_reference=reference, domain_width=width)
    domain = MahalanobisDomain(num_labels, pooled.shape[1], reference, width)
    rows = present.nonzero().flatten()
    domain.load_statistics(**fit_mahalanobis(pooled[rows], labels[rows], num_labels))
    model.domains[modality] = domain
    # The gate of the fitted module, applied to the cross-fitted distances (NaN where absent: scale 0).
    return domain.evidence_scale(pooled, distance) * present


def calibrate_confidence(
    config: TERConfig, evidence: torch.Tensor, present: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float]:
    """Fits the temperature of the reported confidence on held-out opinions and stores it in `config`.

    Args:
        evidence: `(N, M, K)` held-out (cross-fitted, gated) evidence; present: `(N, M)` bool.

    Returns:
        `(slope, intercept)` (slope 1: a temperature on the evidence).
    """
    rows, predictions, raw = fused_predictions(config, evidence, present, calibrated=False)
    slope, intercept = fit_platt(raw, predictions == labels[rows].numpy(), fit_slope=False)
    config.confidence_calibration = [slope, intercept]
    return slope, intercept


def calibrate_modalities(
    config: TERConfig, evidence: torch.Tensor, present: torch.Tensor, labels: torch.Tensor
) -> dict[str, float]:
    """Fits one temperature per modality on held-out opinions and stores it in `config.evidence_calibration`.

    Each modality's evidence `(N, M, K)` is multiplied by `exp(b_m)`; `b` minimises the cross-entropy between the
    fused opinion's raw confidence and whether its prediction is right (Nelder-Mead from 0: a few parameters, a
    non-smooth objective since predictions move). A modality's heads can be over-confident on one corpus and
    under-confident on another; one temperature after the fusion cannot serve both.

    Returns:
        `{modality: b_m}` for the modalities present in the held-out data.
    """
    from scipy.optimize import minimize

    columns = [m for m, used in zip(config.modalities, present.any(0).tolist()) if used]
    index = [config.modalities.index(m) for m in columns]
    rows = present.any(1)
    evidence, present, labels = evidence[rows].double(), present[rows], labels[rows]

    def cross_entropy(log_factors: np.ndarray) -> float:
        factors = torch.ones(len(config.modalities), dtype=torch.float64)
        factors[index] = torch.as_tensor(np.exp(log_factors))
        alpha = fuse_opinions(evidence * factors[None, :, None], present, config.fusion)
        confidence = calibrated_confidence(alpha, config.confidence_measure).clamp(1e-9, 1 - 1e-9)
        correct = (alpha.argmax(-1) == labels).double()
        return float(-(correct * confidence.log() + (1 - correct) * (1 - confidence).log()).mean())

    result = minimize(
        cross_entropy, np.zeros(len(columns)), method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6}
    )
    config.evidence_calibration = {m: float(b) for m, b in zip(columns, result.x)}
    return config.evidence_calibration


def apply_evidence_calibration(config: TERConfig, evidence: torch.Tensor) -> torch.Tensor:
    """`evidence` `(N, M, K)` with each modality's `exp(config.evidence_calibration[m])` applied (as the model does)."""
    factors = torch.tensor([math.exp((config.evidence_calibration or {}).get(m, 0.0)) for m in config.modalities])
    return evidence * factors[None, :, None].to(evidence.dtype)
