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
        # One class at a time: (batch, D) in memory, not (batch, K, D) (1 GB for 10^5 items); ONNX has no cdist.
        means = self.whitened_means.to(dtype)
        per_class = torch.stack([(whitened - mean).square().sum(-1).sqrt() for mean in means.unbind(0)], -1)
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


def _ledoit_wolf_from_moments(gram: torch.Tensor, square_gram: torch.Tensor, square_sum: torch.Tensor, n: int) -> float:
    """The Ledoit-Wolf intensity from sums over `n` centred rows `x`: `gram = x^T x`, `square_gram = (x^2)^T x^2`
    `(D, D)` and `square_sum = sum(x^2, 0)` `(D,)` (float64)."""
    p = gram.shape[0]
    emp_cov_trace = square_sum / n
    mu = emp_cov_trace.sum() / p
    beta_sum = square_gram.sum()
    delta_sum = gram.square().sum() / n**2
    beta = (beta_sum / n - delta_sum) / (p * n)
    delta = (delta_sum - 2.0 * mu * emp_cov_trace.sum() + p * mu**2) / p
    beta = torch.minimum(beta, delta)
    return 0.0 if float(delta) == 0.0 else float(beta / delta)


def ledoit_wolf_shrinkage(centered: torch.Tensor) -> float:
    """The Ledoit-Wolf (2004) shrinkage intensity of the covariance of `centered` `(N, D)` towards `mu * I`.

    The formula of `sklearn.covariance.ledoit_wolf_shrinkage` (centred data), in float64; returns a float in [0, 1].
    """
    x = centered.double()
    x2 = x.square()
    return _ledoit_wolf_from_moments(x.T @ x, x2.T @ x2, x2.sum(0), len(x))


# Rows per step of `fit_mahalanobis`: its memory is O(chunk x D + D^2), flat in the number of training items.
FIT_CHUNK = 8192


def fit_mahalanobis(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, shrinkage: float | None = None
) -> dict[str, torch.Tensor]:
    """Class means and a shared, shrunk covariance of pooled training features, as `MahalanobisDomain` buffers.

    The within-class residuals are standardised per dimension, their covariance (a correlation matrix) is shrunk
    towards the identity with the Ledoit-Wolf intensity (or `shrinkage` in [0, 1]); i.e. the covariance is shrunk
    towards its own diagonal, which is robust to the very unequal scales of Whisper's feature dimensions. The sums
    run over chunks of `FIT_CHUNK` rows in float64, so no `(N, D)` float64 copy is held.

    Args:
        features: `(N, D)` pooled features of the training speakers (float; computed in float64).
        labels: `(N,)` int class ids in [0, num_classes).
        num_classes: K.
        shrinkage: a fixed intensity; `None` = Ledoit-Wolf.

    Returns:
        `{"whitening": (D, D), "whitened_means": (K, D), "class_present": (K,) bool, "shrinkage": () float64}`,
        float32 tensors (the first two), for `MahalanobisDomain.load_statistics(**stats)`.
    """
    x = torch.as_tensor(features)
    y = torch.as_tensor(labels).long()
    if x.dim() != 2 or y.shape != x.shape[:1] or len(x) < 2:
        raise ValueError(
            f"fit_mahalanobis needs (N, D) features and N labels, N >= 2; got {tuple(x.shape)}, {tuple(y.shape)}."
        )
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}].")
    n, dim = x.shape
    chunks = [slice(start, start + FIT_CHUNK) for start in range(0, n, FIT_CHUNK)]
    sums = torch.zeros(num_classes, dim, dtype=torch.float64)
    for rows in chunks:
        sums.index_add_(0, y[rows], x[rows].double())
    counts = torch.bincount(y, minlength=num_classes)
    present = counts > 0
    means = sums / counts.clamp_min(1)[:, None].double()

    def residuals(rows: slice) -> torch.Tensor:
        return x[rows].double() - means[y[rows]]

    square_sum, largest = torch.zeros(dim, dtype=torch.float64), 0.0
    for rows in chunks:
        r = residuals(rows)
        square_sum += r.square().sum(0)
        largest = max(largest, float(r.abs().max()))
    # The residuals have mean 0 in every class, so their standard deviation is the root mean square.
    std = (square_sum / n).sqrt().clamp_min(1e-8 * max(largest, 1e-30))
    gram = torch.zeros(dim, dim, dtype=torch.float64)
    square_gram, standardized_square_sum = torch.zeros_like(gram), torch.zeros(dim, dtype=torch.float64)
    for rows in chunks:
        z = residuals(rows) / std
        z2 = z.square()
        gram += z.T @ z
        square_gram += z2.T @ z2
        standardized_square_sum += z2.sum(0)
    if shrinkage is None:
        intensity = _ledoit_wolf_from_moments(gram, square_gram, standardized_square_sum, n)
    else:
        intensity = float(shrinkage)
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"shrinkage must lie in [0, 1], got {intensity}.")
    correlation = gram / n
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
