"""The fusion algebra (design notes §2) and the Trusted CE loss (§3), checked against independent references."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import digamma, gammaln

from modeling_ter.models.evidential import (
    TrustedCELoss,
    calibrated_confidence,
    confidence_log_odds,
    dempster_shafer_evidence,
    fuse_opinions,
    opinion_conflict,
    opinion_from_evidence,
    pairwise_conflict,
)

NUM_CLASSES = 5
evidence_values = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False, width=32)
opinion_sets = arrays(
    np.float32, st.tuples(st.integers(1, 4), st.just(3), st.just(NUM_CLASSES)), elements=evidence_values
)

# Three confident modalities, each for another class (found by hypothesis in a clean CI run).
OPPOSED_CONFIDENT = np.zeros((1, 3, NUM_CLASSES), dtype=np.float32)
OPPOSED_CONFIDENT[0, 0, 0] = OPPOSED_CONFIDENT[0, 1, 1] = 917420.6
OPPOSED_CONFIDENT[0, 2, 2] = 470529.0


def tmc_combine(belief_a, uncertainty_a, belief_b, uncertainty_b):
    """TMC's rule as published, in belief form, the reference for our evidence form: in exact rational arithmetic,
    since in floats its `1 - C` cancels when confident modalities disagree (C -> 1) and the reference itself drifts
    (by ~1e-6 relative for three opposed opinions of evidence ~1e6)."""
    belief_a, belief_b = [Fraction(x) for x in belief_a], [Fraction(x) for x in belief_b]
    uncertainty_a, uncertainty_b = Fraction(uncertainty_a), Fraction(uncertainty_b)
    conflict = sum(a * b for i, a in enumerate(belief_a) for j, b in enumerate(belief_b) if i != j)
    scale = 1 - conflict
    belief = [(a * b + a * uncertainty_b + b * uncertainty_a) / scale for a, b in zip(belief_a, belief_b)]
    return belief, uncertainty_a * uncertainty_b / scale, conflict


@settings(max_examples=60, deadline=None)
@example(OPPOSED_CONFIDENT)  # conflict -> 1: the float reference drifted here by 1e-6
@given(opinion_sets)
def test_dempster_shafer_matches_tmc_belief_form_and_keeps_mass_one(evidence):
    evidence = evidence.astype(np.float64)
    alpha = fuse_opinions(
        torch.from_numpy(evidence), torch.ones(evidence.shape[:2], dtype=torch.bool), "dempster_shafer"
    )
    _, belief, uncertainty = opinion_from_evidence(alpha - 1.0)
    np.testing.assert_allclose((belief.sum(-1) + uncertainty).numpy(), 1.0, rtol=0, atol=1e-9)
    for sample in range(evidence.shape[0]):
        exact = [[Fraction(float(x)) for x in row] for row in evidence[sample]]
        strengths = [sum(row) + NUM_CLASSES for row in exact]
        ref_belief = [x / strengths[0] for x in exact[0]]
        ref_uncertainty = Fraction(NUM_CLASSES) / strengths[0]
        for modality in range(1, 3):
            ref_belief, ref_uncertainty, _ = tmc_combine(
                ref_belief,
                ref_uncertainty,
                [x / strengths[modality] for x in exact[modality]],
                Fraction(NUM_CLASSES) / strengths[modality],
            )
        np.testing.assert_allclose(belief[sample].numpy(), [float(x) for x in ref_belief], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(uncertainty[sample].item(), float(ref_uncertainty), rtol=1e-6, atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(opinion_sets)
def test_dempster_shafer_is_commutative_and_associative(evidence):
    evidence = torch.from_numpy(evidence.astype(np.float64))
    present = torch.ones(evidence.shape[:2], dtype=torch.bool)
    reference = fuse_opinions(evidence, present, "dempster_shafer")
    for order in itertools.permutations(range(3)):
        torch.testing.assert_close(
            fuse_opinions(evidence[:, list(order)], present, "dempster_shafer"), reference, rtol=1e-12, atol=0
        )
    a, b, c = evidence.unbind(1)
    left = dempster_shafer_evidence(dempster_shafer_evidence(a, b), c)
    right = dempster_shafer_evidence(a, dempster_shafer_evidence(b, c))
    torch.testing.assert_close(left, right, rtol=1e-12, atol=0)


@settings(max_examples=40, deadline=None)
@given(opinion_sets, st.sampled_from(["dempster_shafer", "evidence_average", "confidence_weighted"]))
def test_vacuous_opinion_is_the_identity_of_every_rule(evidence, rule):
    evidence = torch.from_numpy(evidence.astype(np.float64))
    present = torch.ones(evidence.shape[:2], dtype=torch.bool)
    with_vacuous = torch.cat([evidence, torch.zeros_like(evidence[:, :1])], dim=1)
    present_with_absent = torch.cat([present, torch.zeros_like(present[:, :1])], dim=1)
    torch.testing.assert_close(
        fuse_opinions(with_vacuous, present_with_absent, rule), fuse_opinions(evidence, present, rule), rtol=0, atol=0
    )
    # Dempster-Shafer also treats a *present* vacuous opinion (zero evidence) as the identity.
    torch.testing.assert_close(
        dempster_shafer_evidence(evidence[:, 0], torch.zeros_like(evidence[:, 0])), evidence[:, 0], rtol=0, atol=0
    )


def test_strong_conflict_stays_finite_and_conflict_tends_to_one():
    evidence = torch.zeros(1, 2, NUM_CLASSES)
    evidence[0, 0, 0] = 1e6
    evidence[0, 1, 1] = 1e6
    present = torch.ones(1, 2, dtype=torch.bool)
    for rule in ("dempster_shafer", "evidence_average", "confidence_weighted"):
        alpha = fuse_opinions(evidence, present, rule)
        assert torch.isfinite(alpha).all() and (alpha > 0).all(), rule
    conflict = pairwise_conflict(evidence, present)
    assert conflict[0, 0, 1].item() == pytest.approx(1e12 / (1e6 + NUM_CLASSES) ** 2, rel=1e-6)
    assert conflict[0, 0, 1] == conflict[0, 1, 0] and conflict[0, 0, 0] == 0
    # With conflict ~1 the belief form divides by ~0; the evidence form stays exact: both classes keep equal mass.
    alpha = fuse_opinions(evidence, present, "dempster_shafer")
    assert alpha[0, 0] == alpha[0, 1] and alpha[0, 0] > alpha[0, 2]


@settings(max_examples=60, deadline=None)
@given(st.floats(0.5, 1e4), st.floats(0.5, 1e4), st.integers(0, NUM_CLASSES - 1))
def test_agreement_lowers_fused_uncertainty_below_both(strength_a, strength_b, label):
    evidence = torch.zeros(1, 2, NUM_CLASSES, dtype=torch.float64)
    evidence[0, 0, label] = strength_a
    evidence[0, 1, label] = strength_b
    alpha = fuse_opinions(evidence, torch.ones(1, 2, dtype=torch.bool), "dempster_shafer")
    fused_uncertainty = NUM_CLASSES / alpha.sum()
    _, _, uncertainties = opinion_from_evidence(evidence)
    assert fused_uncertainty < uncertainties.min()
    assert opinion_conflict(evidence[:, 0], evidence[:, 1]).item() == 0.0


def test_alternative_rules_follow_their_definitions():
    torch.manual_seed(0)
    evidence = torch.rand(4, 3, NUM_CLASSES, dtype=torch.float64) * 10
    present = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=torch.bool)
    average = fuse_opinions(evidence, present, "evidence_average")
    weighted = fuse_opinions(evidence, present, "confidence_weighted")
    for sample in range(4):
        members = evidence[sample, present[sample]]
        torch.testing.assert_close(average[sample], members.mean(0) + 1)
        strengths = members.sum(-1) + NUM_CLASSES
        confidences = 1 - NUM_CLASSES / strengths
        probs = (members + 1) / strengths[:, None]
        expected_probs = (confidences[:, None] * probs).sum(0) / confidences.sum()
        torch.testing.assert_close(weighted[sample] / weighted[sample].sum(), expected_probs)


def reference_trusted_ce(alpha, label, kl_weight):
    """EDL adjusted CE + KL(Dir(alpha~) || Dir(1)) written out with scipy's digamma and log-gamma (float64)."""
    num_classes = alpha.shape[0]
    one_hot = np.eye(num_classes)[label]
    strength = alpha.sum()
    adjusted_ce = sum(one_hot[k] * (digamma(strength) - digamma(alpha[k])) for k in range(num_classes))
    tilde = one_hot + (1 - one_hot) * alpha
    tilde_strength = tilde.sum()
    kl = gammaln(tilde_strength) - sum(gammaln(a) for a in tilde) - gammaln(num_classes)
    kl += sum((tilde[k] - 1) * (digamma(tilde[k]) - digamma(tilde_strength)) for k in range(num_classes))
    return adjusted_ce + kl_weight * kl


@pytest.mark.parametrize("step", [0, 37, 100, 250])
def test_trusted_ce_equals_written_out_reference(step):
    rng = np.random.default_rng(step)
    alpha = 1.0 + rng.gamma(1.0, 5.0, size=(16, NUM_CLASSES))
    labels = rng.integers(0, NUM_CLASSES, size=16)
    loss = TrustedCELoss(NUM_CLASSES, annealing_steps=100)
    got = loss(torch.from_numpy(alpha), torch.from_numpy(labels), step).numpy()
    kl_weight = min(1.0, step / 100)
    expected = [reference_trusted_ce(alpha[i], labels[i], kl_weight) for i in range(16)]
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_kl_weight_follows_min_one_step_over_annealing_steps():
    loss = TrustedCELoss(3, annealing_steps=40)
    assert [loss.kl_weight(step) for step in (0, 10, 40, 80)] == [0.0, 0.25, 1.0, 1.0]
    assert loss.kl_weight(None) == 1.0
    with pytest.raises(ValueError, match="step must be >= 0"):
        loss.kl_weight(-1)


def test_calibrated_confidence_values_and_vacuous():
    alpha = torch.tensor([[1.0, 1.0, 1.0], [5.0, 2.0, 1.0]])
    assert calibrated_confidence(alpha, "belief").tolist() == pytest.approx([0.0, 0.5])
    assert calibrated_confidence(alpha, "uncertainty").tolist() == pytest.approx([0.0, 5 / 8])
    assert calibrated_confidence(alpha, "max_probability").tolist() == pytest.approx([1 / 3, 5 / 8])
    # a temperature: E -> E * exp(b) for 1 - u
    b = 0.4
    expected = 5 * math.exp(b) / (5 * math.exp(b) + 3)
    assert calibrated_confidence(alpha[1:], "uncertainty", 1.0, b).item() == pytest.approx(expected)


def test_log_odds_exact_for_huge_evidence_float32():
    alpha = torch.tensor([[1e30, 1.0, 1.0]])
    assert torch.isfinite(confidence_log_odds(alpha, "uncertainty")).all()
    assert confidence_log_odds(alpha, "belief").item() == pytest.approx(math.log(1e30 - 1) - math.log(3.0), rel=1e-5)


def test_conflict_finite_at_huge_evidence_float32():
    a, b = torch.zeros(7), torch.zeros(7)
    a[0], b[1] = 2e19, 2e19
    assert opinion_conflict(a, b).item() == pytest.approx(1.0)
    assert opinion_conflict(a, a).item() == pytest.approx(0.0)


def test_conflict_known_value():
    e1, e2 = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0])  # b1 = (0.5, 0), b2 = (0, 0.5)
    assert opinion_conflict(e1, e2).item() == pytest.approx(0.25)


def test_confidence_weighted_all_vacuous_is_vacuous_with_finite_gradient():
    evidence = torch.zeros(2, 2, 4, requires_grad=True)
    present = torch.tensor([[True, True], [True, False]])
    alpha = fuse_opinions(evidence, present, "confidence_weighted")
    assert alpha.tolist() == [[1.0] * 4, [1.0] * 4]
    alpha.lgamma().sum().backward()
    assert torch.isfinite(evidence.grad).all()


def test_dempster_shafer_pool_is_the_pairwise_rule_and_never_overflows():
    from modeling_ter.models.evidential import dempster_shafer_evidence, dempster_shafer_pool

    generator = torch.Generator().manual_seed(0)
    evidence = torch.rand(5, 4, generator=generator, dtype=torch.float64) * 3
    present = torch.tensor([True, True, False, True, True])
    folded = torch.zeros(4, dtype=torch.float64)
    for row in evidence[present]:
        folded = dempster_shafer_evidence(folded, row)
    assert torch.allclose(dempster_shafer_pool(evidence, present), folded, rtol=1e-12)
    # 300 agreeing float32 opinions: the fold overflows to inf (and the probabilities to NaN); the pool stays finite
    # with the same label and a confidence of ~1.
    many = torch.tensor([[4.0, 1.0, 0.5, 0.2]]).repeat(300, 1)
    pooled = dempster_shafer_pool(many, torch.ones(300, dtype=torch.bool))
    assert torch.isfinite(pooled).all() and pooled.argmax() == 0 and pooled.max() == pytest.approx(1e20, rel=1e-6)
    assert 1 - 4 / (pooled + 1).sum() == pytest.approx(1.0)
    unfolded = torch.zeros(4)
    for row in many:
        unfolded = dempster_shafer_evidence(unfolded, row)
    assert not torch.isfinite(unfolded).all()
