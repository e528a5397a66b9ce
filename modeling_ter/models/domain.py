"""Domain awareness for TER's opinions: evidence scaled by how familiar a modality's pooled features are.

A modality's evidence is multiplied by a gate `g(d)` in [0, 1] of the Mahalanobis distance `d` of its pooled features
to the nearest class-conditional Gaussian of the training data (one shared, shrunk covariance; Lee et al. 2018,
"A simple unified framework for detecting out-of-distribution samples"; as a density scaling of the Dirichlet
evidence, DAEDL, Yoon & Kim 2024):

    d(h) = min_k || W (h - mu_k) ||,   W^T W = Sigma^-1 (the shared precision)
    g(d) = exp(-(max(0, d - reference) / width) ** 2)
    evidence <- g(d) * evidence

`reference` and `width` come from distances of *held-out* training speakers (cross-fitted over speaker folds: the
Gaussians fitted without that speaker): `reference` a high quantile (default 0.99) of them, so in-domain speech of new
speakers keeps its evidence; `width` the spread between that quantile and the median, so that inputs a few spreads
further out (noise, tones, music, silence) end with evidence ~0, i.e. the vacuous opinion: never trusted, and they
drop out of the Dempster-Shafer fusion exactly as a missing modality does.

This file imports only `math` and `torch`: it is copied with the model as remote code. `MahalanobisDomain` holds the fitted statistics as
buffers (saved in the state dict) and the two gate floats (stored in the config); `fit_mahalanobis` and
`gate_parameters` are the plain fitting functions the training script calls.

Example:
```python
>>> import torch
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> features, labels = torch.randn(300, 8), torch.randint(0, 3, (300,))
>>> stats = fit_mahalanobis(features[:200], labels[:200], num_classes=3)
>>> domain = MahalanobisDomain(num_classes=3, embed_dim=8)
>>> domain.load_statistics(**stats)
>>> held_out = domain.distance(features[200:])
>>> domain.reference, domain.width = gate_parameters(held_out)
>>> far = torch.full((1, 8), 50.0)
>>> domain.evidence_scale(far).item() < 1e-6, bool((domain.evidence_scale(features[200:]) > 0.5).float().mean() > 0.95)
(True, True)

```
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MahalanobisDomain(nn.Module):
    """Class-conditional Gaussians with a shared precision, as buffers, and the evidence gate of the module docstring.

    Args:
        num_classes: K, the number of class means.
        embed_dim: D, the width of the pooled features the gate reads (the input of the modality's evidential head).
        reference: the distance up to which evidence is kept whole (the sub-config's `domain_reference`).
        width: how fast evidence falls beyond `reference` (the sub-config's `domain_width`).

    Buffers:
        whitening (`(D, D)`): `W` with `W^T W = Sigma^-1`.
        whitened_means (`(K, D)`): `W mu_k`.
        class_present (`(K,)` bool): classes that had training data (others are ignored by the minimum).
        fitted (`()` bool): whether statistics were loaded; an unfitted module is the identity gate (scale 1).
    """

    def __init__(self, num_classes: int, embed_dim: int, reference: float = math.inf, width: float = 1.0):
        super().__init__()
        if num_classes < 1 or embed_dim < 1:
            raise ValueError(
                f"MahalanobisDomain needs num_classes >= 1 and embed_dim >= 1, got {num_classes}, {embed_dim}."
            )
        if not width > 0:
            raise ValueError(f"The gate width must be positive, got {width}.")
        self.reference, self.width = float(reference), float(width)
        self.register_buffer("whitening", torch.eye(embed_dim))
        self.register_buffer("whitened_means", torch.zeros(num_classes, embed_dim))
        self.register_buffer("class_present", torch.ones(num_classes, dtype=torch.bool))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def load_statistics(
        self,
        whitening: torch.Tensor,
        whitened_means: torch.Tensor,
        class_present: torch.Tensor,
        shrinkage: torch.Tensor | None = None,
    ) -> None:
        """Loads what `fit_mahalanobis` returns (shapes `(D, D)`, `(K, D)`, `(K,)`; `shrinkage` is only a report)."""
        if whitening.shape != self.whitening.shape or whitened_means.shape != self.whitened_means.shape:
            raise ValueError(
                f"Statistics of shapes {tuple(whitening.shape)}, {tuple(whitened_means.shape)} do not fit this module "
                f"({tuple(self.whitening.shape)}, {tuple(self.whitened_means.shape)})."
            )
        self.whitening.copy_(whitening)
        self.whitened_means.copy_(whitened_means)
        self.class_present.copy_(class_present.to(torch.bool))
        self.fitted.fill_(True)

    def distance(self, features: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance to the nearest class mean: `(batch_size, D)` -> `(batch_size,)` (not squared).

        Computed as a Euclidean distance of whitened vectors (differences first), which is accurate in float32 even when
        the features are large (no `x^T P x - 2 x^T P mu + mu^T P mu` cancellation). Computed in at least float32.
        """
        dtype = torch.promote_types(features.dtype, torch.float32)
        whitened = features.to(dtype) @ self.whitening.to(dtype).T  # (batch, D)
        difference = whitened[:, None, :] - self.whitened_means.to(dtype)[None]  # (batch, K, D); ONNX has no cdist
        per_class = difference.square().sum(-1).sqrt()  # (batch, K)
        per_class = per_class.masked_fill(~self.class_present, math.inf)
        return per_class.min(-1).values

    def evidence_scale(self, features: torch.Tensor, distance: torch.Tensor | None = None) -> torch.Tensor:
        """The gate `g(d)` in [0, 1]: `(batch_size, D)` -> `(batch_size,)`, in the features' dtype.

        1 up to `reference`, then `exp(-((d - reference) / width) ** 2)`; non-finite features give 0. An unfitted
        module returns ones.
        """
        d = self.distance(features) if distance is None else distance
        excess = (d - self.reference).clamp_min(0.0) / self.width
        scale = torch.nan_to_num(torch.exp(-excess.square()), nan=0.0)
        # Branch-free (no data-dependent `if`), so that torch.export / ONNX can trace it.
        return torch.where(self.fitted, scale, torch.ones_like(scale)).to(features.dtype)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """`evidence_scale(features)`: multiply a modality's evidence `(batch, K)` by `scale[:, None]`."""
        return self.evidence_scale(features)


def ledoit_wolf_shrinkage(centered: torch.Tensor) -> float:
    """The Ledoit-Wolf (2004) shrinkage intensity of the covariance of `centered` `(N, D)` towards `mu * I`.

    The formula of `sklearn.covariance.ledoit_wolf_shrinkage` (centred data), in float64; returns a float in [0, 1].
    """
    x = centered.double()
    n, p = x.shape
    x2 = x.square()
    emp_cov_trace = x2.sum(0) / n
    mu = emp_cov_trace.sum() / p
    beta_sum = (x2.T @ x2).sum()
    delta_sum = (x.T @ x).square().sum() / n**2
    beta = (beta_sum / n - delta_sum) / (p * n)
    delta = (delta_sum - 2.0 * mu * emp_cov_trace.sum() + p * mu**2) / p
    beta = torch.minimum(beta, delta)
    return 0.0 if float(delta) == 0.0 else float(beta / delta)


def fit_mahalanobis(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, shrinkage: float | None = None
) -> dict[str, torch.Tensor]:
    """Class means and a shared, shrunk covariance of pooled training features, as `MahalanobisDomain` buffers.

    The within-class residuals are standardised per dimension, their covariance (a correlation matrix) is shrunk
    towards the identity with the Ledoit-Wolf intensity (or `shrinkage` in [0, 1]); i.e. the covariance is shrunk
    towards its own diagonal, which is robust to the very unequal scales of Whisper's feature dimensions.

    Args:
        features: `(N, D)` pooled features of the training speakers (float; computed in float64).
        labels: `(N,)` int class ids in [0, num_classes).
        num_classes: K.
        shrinkage: a fixed intensity; `None` = Ledoit-Wolf.

    Returns:
        `{"whitening": (D, D), "whitened_means": (K, D), "class_present": (K,) bool, "shrinkage": () float64}`,
        float32 tensors (the first two), for `MahalanobisDomain.load_statistics(**stats)`.
    """
    x = torch.as_tensor(features).double()
    y = torch.as_tensor(labels).long()
    if x.dim() != 2 or y.shape != x.shape[:1] or len(x) < 2:
        raise ValueError(
            f"fit_mahalanobis needs (N, D) features and N labels, N >= 2; got {tuple(x.shape)}, {tuple(y.shape)}."
        )
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}].")
    dim = x.shape[1]
    means = torch.zeros(num_classes, dim, dtype=torch.float64)
    present = torch.zeros(num_classes, dtype=torch.bool)
    residuals = torch.empty_like(x)
    for k in range(num_classes):
        rows = y == k
        if bool(rows.any()):
            means[k], present[k] = x[rows].mean(0), True
            residuals[rows] = x[rows] - means[k]
    std = residuals.std(0, unbiased=False).clamp_min(1e-8 * float(residuals.abs().max().clamp_min(1e-30)))
    standardized = residuals / std
    intensity = ledoit_wolf_shrinkage(standardized) if shrinkage is None else float(shrinkage)
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"shrinkage must lie in [0, 1], got {intensity}.")
    correlation = standardized.T @ standardized / len(x)
    shrunk = (1.0 - intensity) * correlation + intensity * torch.eye(dim, dtype=torch.float64)
    eigenvalues, eigenvectors = torch.linalg.eigh(shrunk)
    eigenvalues = eigenvalues.clamp_min(1e-6 * float(eigenvalues.max()))
    # Sigma = D R D with D = diag(std), R = V L V^T  =>  Sigma^-1 = W^T W with W = L^-1/2 V^T D^-1.
    whitening = (eigenvectors / eigenvalues.sqrt()).T / std
    return {
        "whitening": whitening.float(),
        "whitened_means": (means @ whitening.T).float(),
        "class_present": present,
        "shrinkage": torch.tensor(intensity, dtype=torch.float64),
    }


def gate_parameters(
    held_out_distances: torch.Tensor, quantile: float = 0.99, reference_quantile: float | None = None
) -> tuple[float, float]:
    """`(reference, width)` of the gate from distances of held-out in-domain items `(N,)`.

    Use cross-fitted distances: each training speaker's items scored by Gaussians fitted without that speaker (the
    distance of a *new* speaker is larger than that of a training item, which the density has seen).
    `width` = the `quantile` of those distances minus their median (the in-domain spread); `reference` = the
    `reference_quantile` of them (default: `quantile`, i.e. held-out speech up to that quantile keeps its evidence
    whole; a lower one, e.g. 0.5, makes evidence fall gradually as the features drift, e.g. with noise).
    """
    d = torch.as_tensor(held_out_distances).double().flatten()
    d = d[torch.isfinite(d)]
    reference_quantile = quantile if reference_quantile is None else reference_quantile
    if len(d) < 2 or not 0.5 < quantile < 1.0 or not 0.0 < reference_quantile < 1.0:
        raise ValueError(
            f"gate_parameters needs >= 2 finite distances, quantile in (0.5, 1) and reference_quantile in (0, 1); got "
            f"{len(d)}, {quantile}, {reference_quantile}."
        )
    reference = float(torch.quantile(d, reference_quantile))
    width = max(float(torch.quantile(d, quantile)) - float(torch.quantile(d, 0.5)), 1e-6 * max(reference, 1.0))
    return reference, width


__all__ = ["MahalanobisDomain", "fit_mahalanobis", "gate_parameters", "ledoit_wolf_shrinkage"]
