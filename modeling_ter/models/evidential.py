"""Evidential opinions, their fusion and the Trusted CE loss (design notes §1-§3), in torch only.

Each modality's evidence `e >= 0` (K values) is a Dirichlet opinion `alpha = e + 1`; opinions are fused by the
reduced Dempster-Shafer rule of TMC (Han et al., ICLR 2021) or one of two alternatives; the Trusted CE loss is EDL's
adjusted cross-entropy plus an annealed KL term (Sensoy et al. 2018). Copied with the model as remote code.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------------------------------------------
# Opinions and their fusion (design notes §1-§2)
# ----------------------------------------------------------------------------------------------------------------


def opinion_from_evidence(evidence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Subjective-logic opinion of non-negative evidence `(..., K)`.

    Returns `alpha = e + 1` `(..., K)`, belief `b = e / S` `(..., K)` and uncertainty `u = K / S` `(...)`, with
    `S = sum_k alpha_k`, so that `sum_k b_k + u = 1`.
    """
    num_classes = evidence.shape[-1]
    alpha = evidence + 1.0
    strength = alpha.sum(-1, keepdim=True)
    return alpha, evidence / strength, (num_classes / strength).squeeze(-1)


def dempster_shafer_evidence(evidence_a: torch.Tensor, evidence_b: torch.Tensor) -> torch.Tensor:
    """Reduced Dempster-Shafer combination of two opinions, written in evidence form `(..., K)`.

    With `b = e / S` and `u = K / S`, TMC's rule `b_k = (b1_k b2_k + b1_k u2 + b2_k u1) / (1 - C)`,
    `u = u1 u2 / (1 - C)`, mapped back through `S = K / u`, `e = b S`, is exactly
    `e_k = e1_k + e2_k + e1_k e2_k / K`. This form never divides by `1 - C`, so it stays exact when two confident
    modalities disagree (conflict -> 1). It is commutative and associative, and zero evidence (the vacuous opinion)
    is its identity.
    """
    num_classes = evidence_a.shape[-1]
    return evidence_a + evidence_b + evidence_a * evidence_b / num_classes


def opinion_conflict(evidence_a: torch.Tensor, evidence_b: torch.Tensor) -> torch.Tensor:
    """Conflict `C = sum_{i != j} b1_i b2_j` of two opinions given by their evidence `(..., K)`; returns `(...)`.

    Computed from the beliefs `b = e / (E + K)` (each in [0, 1]), so that no intermediate overflows: finite for any
    finite evidence in float16/32/64, and clamped to [0, 1] against rounding.
    """
    num_classes = evidence_a.shape[-1]
    belief_a = evidence_a / (evidence_a.sum(-1, keepdim=True) + num_classes)  # (..., K)
    belief_b = evidence_b / (evidence_b.sum(-1, keepdim=True) + num_classes)
    agreeing = (belief_a * belief_b).sum(-1)  # sum_k b1_k b2_k
    conflict = belief_a.sum(-1) * belief_b.sum(-1) - agreeing
    return conflict.clamp(0.0, 1.0)


def fuse_opinions(evidence: torch.Tensor, present: torch.Tensor, rule: str) -> torch.Tensor:
    """Fuses per-modality opinions into one Dirichlet.

    Args:
        evidence: `(batch_size, num_modalities, num_labels)`, zero for absent modalities.
        present: `(batch_size, num_modalities)` bool; an absent modality is the vacuous opinion and drops out.
        rule: `"dempster_shafer"`, `"evidence_average"` or `"confidence_weighted"`.

    Returns:
        The fused `alpha` `(batch_size, num_labels)`, every entry >= 1.
    """
    evidence = evidence * present.unsqueeze(-1)
    if rule == "dempster_shafer":
        fused = torch.zeros_like(evidence[:, 0])
        for modality_evidence in evidence.unbind(1):
            fused = dempster_shafer_evidence(fused, modality_evidence)
        return fused + 1.0
    num_present = present.sum(1, keepdim=True).clamp_min(1)
    if rule == "evidence_average":
        return evidence.sum(1) / num_present + 1.0
    if rule == "confidence_weighted":
        # p = sum_m c_m p_m / sum_m c_m with the confidence-weighted strength; alpha = p * S keeps E[p] = p.
        num_classes = evidence.shape[-1]
        alpha = evidence + 1.0  # (batch, M, K)
        strength = alpha.sum(-1)  # (batch, M)
        weights = (1.0 - num_classes / strength) * present  # c_m = 1 - u_m, 0 for absent modalities
        # All present opinions vacuous (zero evidence): equal weights over them, which fuses to the vacuous opinion.
        nobody_knows = weights.sum(1, keepdim=True) <= 0
        weights = torch.where(nobody_knows, present.to(weights.dtype), weights)
        total_weight = weights.sum(1, keepdim=True)  # > 0: every sample has a present modality
        probs = (weights.unsqueeze(-1) * alpha / strength.unsqueeze(-1)).sum(1) / total_weight
        fused_strength = (weights * strength).sum(1, keepdim=True) / total_weight
        return probs * fused_strength
    raise ValueError(
        f"Unknown fusion rule {rule!r}; use 'dempster_shafer', 'evidence_average' or 'confidence_weighted'."
    )


def dempster_shafer_pool(evidence: torch.Tensor, present: torch.Tensor, max_evidence: float = 1e20) -> torch.Tensor:
    """Dempster-Shafer combination of many opinions (e.g. the windows of a long clip), without overflow.

    The evidence form of the rule multiplies: `1 + e / K = prod_i (1 + e_i / K)`, so `N` agreeing opinions grow the
    evidence exponentially in `N` (float32 overflows after a few hundred windows). The product is summed in log space
    in float64; when the largest class evidence would pass `max_evidence`, the whole vector is scaled down to it,
    which keeps the ratios between classes (hence the label) and a confidence of `1 - K / S` ~ 1.

    Args:
        evidence: `(num_opinions, num_labels)`, non-negative.
        present: `(num_opinions,)` bool; absent opinions are vacuous and drop out.
        max_evidence: the cap on the largest class evidence.

    Returns:
        `(num_labels,)` pooled evidence, in `evidence`'s dtype.
    """
    num_classes = evidence.shape[-1]
    log_growth = (torch.log1p(evidence.double() / num_classes) * present.unsqueeze(-1)).sum(0)  # log(1 + e / K)
    excess = (log_growth.max() - math.log(max_evidence / num_classes)).clamp_min(0.0)
    pooled = torch.where(
        excess > 0, num_classes * torch.exp(log_growth - excess), num_classes * torch.expm1(log_growth)
    )
    return pooled.to(evidence.dtype)


def pairwise_conflict(evidence: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Conflict between every pair of present modalities.

    Args:
        evidence: `(batch_size, num_modalities, num_labels)`.
        present: `(batch_size, num_modalities)` bool.

    Returns:
        `(batch_size, num_modalities, num_modalities)`, symmetric, zero on the diagonal and for absent modalities.
    """
    conflict = opinion_conflict(evidence.unsqueeze(2), evidence.unsqueeze(1))
    both_present = present.unsqueeze(2) & present.unsqueeze(1)
    off_diagonal = ~torch.eye(evidence.shape[1], dtype=torch.bool, device=evidence.device)
    return conflict * (both_present & off_diagonal)


# ----------------------------------------------------------------------------------------------------------------
# The reported confidence (design notes §7): a raw confidence of the fused opinion, mapped by a calibration
# ----------------------------------------------------------------------------------------------------------------

# `belief`: the belief mass of the predicted class `b_max = e_max / S` (0 for the vacuous opinion); `uncertainty`:
# `1 - u = E / S`; `max_probability`: `max_k p_k`.
CONFIDENCE_MEASURES = ("belief", "uncertainty", "max_probability")


def confidence_log_odds(alpha: torch.Tensor, measure: str = "belief") -> torch.Tensor:
    """Log-odds `log(c / (1 - c))` of a raw confidence of Dirichlet opinions `alpha` `(..., K)`; returns `(...)`.

    Computed from `alpha` directly, so it is exact where `c` itself would round to 0 or 1 in float32:

    - `"uncertainty"`: `c = 1 - u = E / S`, log-odds `log E - log K` (`E = S - K`, the total evidence);
    - `"max_probability"`: `c = max_k p_k = alpha_max / S`, log-odds `log alpha_max - log(S - alpha_max)`;
    - `"belief"`: `c = b_max = e_max / S`, the belief mass of the predicted class (`= (1 - u) e_max / E`; 0 for
      the vacuous opinion), log-odds `log e_max - log(S - e_max)`.

    `-inf` for a vacuous opinion under `"uncertainty"` and `"belief"`.
    """
    if measure not in CONFIDENCE_MEASURES:
        raise ValueError(f"measure must be one of {CONFIDENCE_MEASURES}, got {measure!r}.")
    num_classes = alpha.shape[-1]
    if measure == "uncertainty":
        return torch.log((alpha - 1.0).sum(-1)) - math.log(num_classes)
    top, index = alpha.max(-1)
    # the other classes' alpha summed directly (not S - alpha_max, which cancels to 0 for huge evidence)
    rest = alpha.scatter(-1, index.unsqueeze(-1), 0.0).sum(-1)
    if measure == "belief":
        return torch.log(top - 1.0) - torch.log(rest + 1.0)  # b_max / (1 - b_max) = e_max / (S - e_max)
    return torch.log(top) - torch.log(rest)


def calibrated_confidence(
    alpha: torch.Tensor, measure: str = "belief", slope: float = 1.0, intercept: float = 0.0
) -> torch.Tensor:
    """The reported confidence `sigmoid(slope * logit(c) + intercept)` of opinions `alpha` `(..., K)` -> `(...)`.

    `c` is the raw confidence `measure` (see `confidence_log_odds`); `(slope, intercept)` come from `fit_platt`
    (`TERConfig.confidence_calibration`), `(1.0, 0.0)` reports `c` itself. A vacuous opinion gets exactly 0 under
    `"uncertainty"` and `"belief"`.
    """
    if not slope > 0:
        raise ValueError(f"The calibration slope must be positive (an increasing map), got {slope}.")
    return torch.sigmoid(slope * confidence_log_odds(alpha, measure) + intercept)


# ----------------------------------------------------------------------------------------------------------------
# The Trusted CE loss (design notes §3)
# ----------------------------------------------------------------------------------------------------------------


def dirichlet_kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """`KL(Dir(alpha) || Dir(1))` for `alpha` `(..., K)`; returns `(...)`."""
    num_classes = alpha.shape[-1]
    strength = alpha.sum(-1)
    return (
        torch.lgamma(strength)
        - torch.lgamma(alpha).sum(-1)
        - torch.lgamma(alpha.new_tensor(float(num_classes)))
        + ((alpha - 1.0) * (torch.digamma(alpha) - torch.digamma(strength).unsqueeze(-1))).sum(-1)
    )


class TrustedCELoss(nn.Module):
    """EDL's adjusted cross-entropy plus the KL term annealed over optimizer steps, per sample.

    `L(alpha) = sum_k y_k (psi(S) - psi(alpha_k)) + lambda_t KL(Dir(alpha~) || Dir(1))`, with
    `alpha~ = y + (1 - y) alpha` and `lambda_t = min(1, t / annealing_steps)`.

    Args:
        num_labels: number of classes K.
        annealing_steps: optimizer steps over which the KL weight rises from 0 to 1.
    """

    def __init__(self, num_labels: int, annealing_steps: int):
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"TrustedCELoss needs at least 2 classes, got num_labels={num_labels}.")
        if annealing_steps < 1:
            raise ValueError(f"annealing_steps must be >= 1 optimizer step, got {annealing_steps}.")
        self.num_labels = num_labels
        self.annealing_steps = annealing_steps

    def kl_weight(self, step: Optional[int]) -> float:
        """`min(1, step / annealing_steps)`; `step=None` means training is over (weight 1)."""
        if step is None:
            return 1.0
        if step < 0:
            raise ValueError(f"The optimizer step must be >= 0, got {step}.")
        return min(1.0, step / self.annealing_steps)

    def forward(self, alpha: torch.Tensor, labels: torch.Tensor, step: Optional[int] = None) -> torch.Tensor:
        """Per-sample loss `(batch_size,)` for `alpha` `(batch_size, K)` and integer `labels` `(batch_size,)`."""
        one_hot = F.one_hot(labels, self.num_labels).to(alpha.dtype)
        strength = alpha.sum(-1, keepdim=True)
        adjusted_ce = (one_hot * (torch.digamma(strength) - torch.digamma(alpha))).sum(-1)
        alpha_without_true_class = one_hot + (1.0 - one_hot) * alpha
        return adjusted_ce + self.kl_weight(step) * dirichlet_kl_to_uniform(alpha_without_true_class)
