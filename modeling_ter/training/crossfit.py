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

The heads of these fold models are small (an MLP per modality on cached features), so they are trained here on
tensors, every fold in one vectorised step (`torch.func.vmap` over their stacked parameters), identically in every
process; the final heads are trained by `training.loop` with Accelerate.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from ..data.augmentation import modality_dropout
from ..data.feature_cache import CachedFeatures
from ..evaluation.predict import fused_predictions
from ..models import TERConfig, TERForEmotionRecognition
from ..models.domain import MahalanobisDomain, fit_mahalanobis, gate_parameters
from ..models.evidential import calibrated_confidence, fuse_opinions
from .calibration import fit_platt

# The fewest held-out items that a modality's evidence temperature is fitted on.
MIN_CALIBRATION_ITEMS = 30
# Rows scored (held-out rows per fold after each epoch) or pooled at once: memory stays flat in the corpus size.
EVALUATION_CHUNK = 1024
# The gate of the measured recipe: evidence whole up to the median held-out distance, falling over (Q99 - median).
GATE_QUANTILE, GATE_REFERENCE_QUANTILE = 0.99, 0.5


@dataclass
class CrossFit:
    """What the fold models found.

    Attributes:
        epochs: E*, the epoch count with the lowest pooled held-out NLL.
        nll: `(epochs run,)` the pooled held-out NLL after each epoch (up to the early stop).
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
        class_weights=config.class_weights,
    )


class CachedFeatureHeads(nn.Module):
    """A heads-only model as a function of cached features `{modality: (batch, layers, dim)}` and the presence mask
    `(batch, M)` to the evidence `(batch, M, K)`: what `torch.func.functional_call` runs for every fold at once."""

    def __init__(self, model: TERForEmotionRecognition):
        super().__init__()
        self.model = model

    def forward(self, embeds: dict, present: torch.Tensor) -> torch.Tensor:
        return self.model.modality_evidence(embeds, present)[0]


def _cycled_batches(rows: torch.Tensor, num_batches: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """`(num_batches, batch_size)` rows of one epoch: shuffled `rows`, cycled (reshuffled) to fill every batch."""
    needed = num_batches * batch_size
    orders = [rows[torch.randperm(len(rows), generator=generator)] for _ in range(math.ceil(needed / len(rows)))]
    return torch.cat(orders)[:needed].view(num_batches, batch_size)


def fit_fold_heads(
    config: TERConfig,
    features: CachedFeatures,
    labels: torch.Tensor,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    epochs: int,
    args,
    batch_size: int,
    on_epoch=None,
) -> list[TERForEmotionRecognition]:
    """Fresh heads per fold (fold `j` seeded `args.seed + j`), each trained on its fold's training rows for `epochs`
    epochs, all folds at once (`torch.func.vmap` over their stacked parameters; Adam is elementwise, so each fold's
    heads train exactly as they would alone). As the training loop: Adam, Trusted CE with the KL annealed over
    `args.annealing_epochs` epochs of steps, modality dropout if asked, batches of the run's effective batch
    (`batch_size`: per process x processes x accumulation steps). Every fold takes the same number of steps per
    epoch, `ceil(largest fold / batch_size)`, of full batches drawn from its own shuffled rows (cycled): one
    vectorised step serves all folds.

    Args:
        folds: `(train_idx, test_idx)` row indices of the cached items.
        on_epoch: called after every epoch as `on_epoch(epoch, evidence)`, with `evidence` `(N, M, K)` of each
            fold's held-out rows from that fold's heads (eval mode; zero for rows in no test fold); training stops
            early when it returns `True`.

    Returns:
        The fold models, trained, in eval mode.
    """
    models = []
    for j in range(len(folds)):
        torch.manual_seed(args.seed + j)
        models.append(TERForEmotionRecognition(heads_config(config)))
    params, buffers = stack_module_state([CachedFeatureHeads(model) for model in models])
    template = CachedFeatureHeads(copy.deepcopy(models[0])).to("meta")
    train_rows = [torch.as_tensor(train_idx) for train_idx, _ in folds]
    steps_per_epoch = math.ceil(max(len(rows) for rows in train_rows) / batch_size)
    annealing_steps = max(1, round(args.annealing_epochs * steps_per_epoch))
    for model in models + [template.model]:
        model.trusted_ce.annealing_steps = annealing_steps
    optimizer = torch.optim.Adam(params.values(), lr=args.learning_rate, weight_decay=args.weight_decay, fused=True)
    generators = [torch.Generator().manual_seed(args.seed + j) for j in range(len(folds))]
    dropout_rng = np.random.default_rng(args.seed)
    # Held-out rows per fold, padded to the largest fold by repeating its first row.
    tests = [torch.as_tensor(test_idx) for _, test_idx in folds]
    test_size = max(len(rows) for rows in tests)
    test_index = torch.stack([torch.cat([rows, rows[:1].expand(test_size - len(rows))]) for rows in tests])

    def fold_evidence(fold_params, fold_buffers, embeds, present):
        return functional_call(template, (fold_params, fold_buffers), (embeds, present))

    def fold_loss(fold_params, fold_buffers, embeds, present, fold_labels, step):
        evidence = fold_evidence(fold_params, fold_buffers, embeds, present)
        alpha = fuse_opinions(evidence, present, config.fusion)
        return template.model.trusted_ce_loss(alpha, evidence + 1.0, present, fold_labels, step)

    train_step = vmap(fold_loss, in_dims=(0, 0, 0, 0, 0, None), randomness="different")
    step = 0
    for epoch in range(epochs):
        template.train()
        epoch_rows = torch.stack(
            [_cycled_batches(rows, steps_per_epoch, batch_size, g) for rows, g in zip(train_rows, generators)], 1
        )  # (steps, folds, batch)
        for index in epoch_rows:
            present = features.mask[index]
            if "modality_dropout" in args.augmentations:
                present = modality_dropout(present.flatten(0, 1), args.modality_dropout, dropout_rng).view_as(present)
            embeds = {m: features.features[m][index] for m in features.modalities}
            loss = train_step(params, buffers, embeds, present, labels[index], step).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        if on_epoch is not None:
            template.eval()
            chunks = []  # (F, T, M, K) in chunks of held-out rows: memory stays flat in the corpus size
            for chunk in test_index.split(EVALUATION_CHUNK, dim=1):
                embeds = {m: features.features[m][chunk] for m in features.modalities}
                with torch.no_grad():
                    chunks.append(vmap(fold_evidence)(params, buffers, embeds, features.mask[chunk]))
            evidence = torch.cat(chunks, 1)
            held_out = torch.zeros(features.mask.shape[0], *evidence.shape[2:])
            for j, rows in enumerate(tests):
                held_out[rows] = evidence[j, : len(rows)]
            if on_epoch(epoch, held_out):
                break
    for j, model in enumerate(models):
        state = {name.removeprefix("model."): value[j].detach() for name, value in {**params, **buffers}.items()}
        model.load_state_dict(state)
    return [model.eval() for model in models]


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
    """Heads trained per speaker fold for up to `args.epochs` epochs, stopped once the pooled held-out NLL has not
    improved for `args.early_stopping_patience` epochs; E* and the held-out evidence at E*.

    Args:
        folds: `(train_idx, test_idx)` speaker-disjoint folds of the cached items (`data.manifest.speaker_folds_of`).
        batch_size: the run's effective batch, so that the fold models do not depend on the number of processes.
    """
    fold_of = np.zeros(features.mask.shape[0], dtype=np.int64)
    for j, (_, test_idx) in enumerate(folds):
        fold_of[test_idx] = j
    nll = np.full(args.epochs, np.nan)
    best = {"epoch": -1, "evidence": None}
    bar = tqdm(total=args.epochs, desc=f"cross-fitting {len(folds)} folds (epochs)", disable=not show_progress)

    def keep_best(epoch: int, evidence: torch.Tensor) -> bool:
        nll[epoch] = float(_fused_nll(evidence, features.mask, labels, config.fusion).mean())
        if best["evidence"] is None or nll[epoch] < nll[best["epoch"]]:
            best.update(epoch=epoch, evidence=evidence)
        bar.update()
        return epoch - best["epoch"] >= args.early_stopping_patience

    fit_fold_heads(config, features, labels, folds, args.epochs, args, batch_size, on_epoch=keep_best)
    bar.close()
    nll = nll[~np.isnan(nll)]
    return CrossFit(epochs=best["epoch"] + 1, nll=nll, evidence=best["evidence"], fold=fold_of)


def pooled_features(model: TERForEmotionRecognition, features: CachedFeatures, modality: str) -> torch.Tensor:
    """What the modality's head reads `(N, embed_dim)`: its layers through the model's learned weighting (or the
    last layer), pooled in chunks of rows (the weighting over all rows at once copies the whole `(N, layers, dim)`
    tensor: 0.8 GB of memory-mapped features at 10^5 items)."""
    with torch.no_grad():
        layers = features.features[modality]
        return torch.cat([model.pool_layers(modality, chunk) for chunk in layers.split(EVALUATION_CHUNK)])


def fit_domain_gate(
    model: TERForEmotionRecognition,
    features: CachedFeatures,
    labels: torch.Tensor,
    modality: str,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    in_domain: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fits `modality`'s domain gate into `model` (its Gaussians on the training items, its reference and width
    from their cross-fitted distances) and returns the cross-fitted gate `(N,)` of every item (0 where absent).

    `in_domain` `(N,)` bool: the items that define the domain (default: all). Noisy copies train the heads to
    classify noisy speech, but are left out here, so that the gate measures how far an input is from the recordings
    trained on and noise lowers the confidence."""
    column = list(model.config.modalities).index(modality)
    present = features.mask[:, column]
    fitted = present if in_domain is None else present & in_domain
    pooled = pooled_features(model, features, modality)
    num_labels = model.config.num_labels
    distance = torch.full((len(pooled),), math.nan)
    for train_idx, test_idx in folds:
        train_rows = torch.as_tensor(train_idx)[fitted[train_idx]]
        test_rows = torch.as_tensor(test_idx)[present[test_idx]]
        if len(train_rows) < 2 or len(test_rows) == 0:
            continue
        fold_domain = MahalanobisDomain(num_labels, pooled.shape[1])
        fold_domain.load_statistics(**fit_mahalanobis(pooled[train_rows], labels[train_rows], num_labels))
        distance[test_rows] = fold_domain.distance(pooled[test_rows])
    reference, width = gate_parameters(distance[fitted], GATE_QUANTILE, GATE_REFERENCE_QUANTILE)
    model.config.modality_configs[modality].update(domain_reference=reference, domain_width=width)
    domain = MahalanobisDomain(num_labels, pooled.shape[1], reference, width)
    rows = fitted.nonzero().flatten()
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

    A modality present in fewer than `MIN_CALIBRATION_ITEMS` held-out items keeps `b_m = 0`: a temperature fitted
    on a handful of items runs off (CREMA-D's 6 video clips gave `b = 29`, a factor of 4e12).

    Returns:
        `{modality: b_m}` for the modalities calibrated.
    """
    from scipy.optimize import minimize

    counts = present.sum(0).tolist()
    columns = [m for m, count in zip(config.modalities, counts) if count >= MIN_CALIBRATION_ITEMS]
    if not columns:
        config.evidence_calibration = None
        return {}
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
    factors = torch.tensor([config.evidence_factor(m) for m in config.modalities])
    return evidence * factors[None, :, None].to(evidence.dtype)
