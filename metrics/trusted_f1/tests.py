# Copyright 2025 The TER authors. Licensed under the Apache License, Version 2.0.
"""Tests of the trusted_f1 evaluate module and its numpy core, against independent brute-force references."""

import doctest
import inspect
import itertools
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import evaluate  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sklearn.metrics import f1_score, recall_score, roc_auc_score  # noqa: E402

from trusted_f1 import trusted_metrics as core  # noqa: E402

METRIC_DIR = Path(__file__).resolve().parent
README = (METRIC_DIR / "README.md").read_text(encoding="utf-8")
STRATEGIES = ("max_f1", "break_even", "target_precision")


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(str(METRIC_DIR))


@pytest.fixture(scope="module")
def probabilities_metric():
    return evaluate.load(str(METRIC_DIR), "probabilities")


# ----------------------------------------------------------------------------------------------------------------------
# Independent references: a loop over every candidate threshold, exact fractions
# ----------------------------------------------------------------------------------------------------------------------


def _ratio(numerator, denominator, zero_division):
    return Fraction(numerator, denominator) if denominator else Fraction(zero_division)


def brute_force_rates(correct, confidences, tau, zero_division):
    """Trusted P/R/F1/accuracy and coverage at τ by counting, as Fractions."""
    trusted = [c >= tau for c in confidences]
    n, n_correct = len(correct), sum(correct)
    n_trusted = sum(trusted)
    both = sum(t and r for t, r in zip(trusted, correct, strict=True))
    precision = _ratio(both, n_trusted, zero_division)
    recall = _ratio(both, n_correct, zero_division)
    # scikit-learn >= 1.3: F1 = 2·tp / (2·tp + fp + fn), undefined only when tp + fp + fn = 0.
    f1 = _ratio(2 * both, 2 * both + (n_trusted - both) + (n_correct - both), zero_division)
    accuracy = Fraction(sum(t == r for t, r in zip(trusted, correct, strict=True)), n)
    return {
        "trusted_precision": precision,
        "trusted_recall": recall,
        "trusted_f1": f1,
        "trusted_accuracy": accuracy,
        "coverage": Fraction(n_trusted, n),
    }


def brute_force_threshold(correct, confidences, strategy, target_precision, zero_division):
    if not isinstance(strategy, str):
        return strategy
    candidates = sorted(set(confidences))
    rates = {tau: brute_force_rates(correct, confidences, tau, zero_division) for tau in candidates}
    if strategy == "max_f1":
        return max(candidates, key=lambda tau: (rates[tau]["trusted_f1"], tau))
    if strategy == "break_even":
        for tau in candidates:
            if rates[tau]["trusted_precision"] >= rates[tau]["trusted_recall"]:
                return tau
        return max(candidates, key=lambda tau: (rates[tau]["trusted_precision"] - rates[tau]["trusted_recall"], tau))
    for tau in candidates:
        if float(rates[tau]["trusted_precision"]) >= target_precision:
            return tau
    return max(candidates, key=lambda tau: (rates[tau]["trusted_precision"], tau))


def brute_force_aurc(correct, confidences):
    """(1/N) Σ_k E[errors among the k most confident] / k, ties in expectation over their order."""
    n = len(correct)
    total = Fraction(0)
    for k in range(1, n + 1):
        kth = sorted(confidences, reverse=True)[k - 1]
        above = [not r for r, c in zip(correct, confidences, strict=True) if c > kth]
        tied = [not r for r, c in zip(correct, confidences, strict=True) if c == kth]
        expected_errors = sum(above) + Fraction((k - len(above)) * sum(tied), len(tied))
        total += expected_errors / k
    return total / n


def brute_force_ece(correct, confidences, n_bins=15):
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        members = [i for i, c in enumerate(confidences) if edges[b] < c <= edges[b + 1] or (b == 0 and c == 0.0)]
        if members:
            gap = abs(np.mean([correct[i] for i in members]) - np.mean([confidences[i] for i in members]))
            total += len(members) * gap
    return total / len(confidences)


def reference_scores(predictions, references, confidences, threshold, target_precision, zero_division):
    correct = [p == r for p, r in zip(predictions, references, strict=True)]
    tau = brute_force_threshold(correct, confidences, threshold, target_precision, zero_division)
    scores = {k: float(v) for k, v in brute_force_rates(correct, confidences, tau, zero_division).items()}
    accuracy = sum(correct) / len(correct)
    if all(correct) or not any(correct):
        augrc = 0.5 * (1 - accuracy) ** 2
    else:
        auroc = roc_auc_score(correct, confidences)
        augrc = (1 - auroc) * accuracy * (1 - accuracy) + 0.5 * (1 - accuracy) ** 2
    scores.update(
        threshold=tau,
        accuracy=accuracy,
        macro_f1=f1_score(references, predictions, average="macro", zero_division=zero_division),
        uar=recall_score(references, predictions, average="macro", zero_division=zero_division),
        aurc=float(brute_force_aurc(correct, confidences)),
        augrc=augrc,
        ece=brute_force_ece(correct, confidences),
        n=len(correct),
    )
    return scores


def assert_scores_equal(actual, expected):
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, abs=1e-12, nan_ok=True), key


# ----------------------------------------------------------------------------------------------------------------------
# 1. evaluate.load(...) equals the brute force on random inputs with ties
# ----------------------------------------------------------------------------------------------------------------------

# 0.2 and 0.8 are ECE bin edges (3/15, 12/15): they belong to the bin below.
TIED_VALUES = [0.0, 0.1, 0.2, 0.25, 0.5, 0.5 + 1e-12, 0.75, 0.8, 0.9, 1.0]


@st.composite
def samples(draw):
    n = draw(st.integers(1, 25))
    num_classes = draw(st.integers(1, 4))
    labels = st.lists(st.integers(0, num_classes - 1), min_size=n, max_size=n)
    confidence = st.one_of(st.sampled_from(TIED_VALUES), st.floats(0.0, 1.0))
    return draw(labels), draw(labels), draw(st.lists(confidence, min_size=n, max_size=n))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=samples(),
    threshold=st.one_of(st.sampled_from(STRATEGIES), st.floats(0.0, 1.0)),
    target_precision=st.sampled_from([0.5, 0.8, 0.95, 1.0]),
    zero_division=st.sampled_from([0.0, 1.0]),
)
def test_evaluate_module_equals_brute_force(metric, data, threshold, target_precision, zero_division):
    predictions, references, confidences = data
    kwargs = dict(threshold=threshold, target_precision=target_precision, zero_division=zero_division)
    expected = reference_scores(predictions, references, confidences, **kwargs)
    actual = metric.compute(predictions=predictions, references=references, confidences=confidences, **kwargs)
    assert_scores_equal(actual, expected)
    assert type(actual["n"]) is int and all(type(v) is float for k, v in actual.items() if k != "n")


@settings(max_examples=40, deadline=None)
@given(data=samples(), zero_division=st.sampled_from([0.0, 1.0]))
def test_sweep_and_curves_equal_brute_force(data, zero_division):
    predictions, references, confidences = data
    correct = [p == r for p, r in zip(predictions, references, strict=True)]
    sweep = core.threshold_sweep(correct, confidences, zero_division)
    candidates = sorted(set(confidences))
    assert sweep["thresholds"].tolist() == candidates
    for i, tau in enumerate(candidates):
        for key, value in brute_force_rates(correct, confidences, tau, zero_division).items():
            assert sweep[key][i] == pytest.approx(float(value), abs=1e-12), key
    curve = core.risk_coverage_curve(correct, confidences)
    assert curve["thresholds"].tolist() == candidates[::-1]
    for i, tau in enumerate(candidates[::-1]):
        accepted = [r for r, c in zip(correct, confidences, strict=True) if c >= tau]
        assert curve["coverage"][i] == pytest.approx(len(accepted) / len(correct))
        assert curve["selective_risk"][i] == pytest.approx(accepted.count(False) / len(accepted))
        assert curve["generalized_risk"][i] == pytest.approx(accepted.count(False) / len(correct))


def test_aurc_with_ties_is_the_mean_over_all_tie_orders():
    correct = [True, False, True, False, True, True]
    confidences = [0.9, 0.9, 0.9, 0.4, 0.4, 0.1]

    def aurc_of_order(order):
        errors = np.cumsum([not correct[i] for i in order])
        return np.mean(errors / np.arange(1, len(order) + 1))

    orders = [
        order
        for order in itertools.permutations(range(len(correct)))
        if all(confidences[a] >= confidences[b] for a, b in zip(order, order[1:], strict=False))
    ]
    assert len(orders) == 3 * 2 * 2 * 1  # 3! orders of the 0.9 block, 2! of the 0.4 block
    assert core.aurc(correct, confidences) == pytest.approx(np.mean([aurc_of_order(o) for o in orders]), abs=1e-12)


def test_probabilities_config_equals_confidences(metric, probabilities_metric):
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(5), size=200)
    probabilities[:20] = probabilities[0]  # ties
    predictions = probabilities.argmax(1)
    references = np.where(rng.random(200) < 0.6, predictions, rng.integers(0, 5, 200))
    from_probabilities = probabilities_metric.compute(
        predictions=predictions, references=references, probabilities=probabilities, threshold="break_even"
    )
    from_confidences = metric.compute(
        predictions=predictions,
        references=references,
        confidences=probabilities.max(1),
        threshold="break_even",
        num_classes=5,
    )
    assert_scores_equal(from_probabilities, from_confidences)


# ----------------------------------------------------------------------------------------------------------------------
# 2. Known cases
# ----------------------------------------------------------------------------------------------------------------------


def test_trust_everything_gives_two_acc_over_one_plus_acc(metric):
    # 824 of 1000 correct (the paper's Music-video accuracy 0.8240); every confidence below τ = 0.
    predictions = [1] * 1000
    references = [1] * 824 + [0] * 176
    confidences = np.random.default_rng(1).uniform(0.05, 1.0, 1000)
    scores = metric.compute(predictions=predictions, references=references, confidences=confidences, threshold=0.0)
    assert scores["accuracy"] == pytest.approx(0.824)
    assert scores["trusted_precision"] == pytest.approx(0.824) and scores["trusted_recall"] == 1.0
    assert scores["trusted_f1"] == pytest.approx(2 * 0.824 / 1.824)
    assert round(scores["trusted_f1"], 4) == 0.9035
    assert scores["coverage"] == 1.0 and scores["trusted_accuracy"] == pytest.approx(0.824)
    # Equal confidences leave one candidate: "max_f1" then trusts everything too.
    tied = metric.compute(predictions=predictions, references=references, confidences=[0.6] * 1000)
    assert tied["threshold"] == 0.6 and round(tied["trusted_f1"], 4) == 0.9035


def test_perfect_ranking_gives_the_oracle_aurc(metric):
    rng = np.random.default_rng(2)
    n, n_correct = 300, 210
    references = rng.integers(0, 3, n)
    predictions = references.copy()
    predictions[n_correct:] = (references[n_correct:] + 1) % 3
    confidences = np.concatenate([rng.uniform(0.6, 1.0, n_correct), rng.uniform(0.0, 0.5, n - n_correct)])
    scores = metric.compute(predictions=predictions, references=references, confidences=confidences)
    # Oracle: the k most confident hold max(0, k - n_correct) errors.
    oracle = sum(max(0, k - n_correct) / k for k in range(1, n + 1)) / n
    assert scores["aurc"] == pytest.approx(oracle, abs=1e-12)
    error_rate = 1 - n_correct / n
    assert scores["augrc"] == pytest.approx(error_rate**2 / 2, abs=1e-12)
    assert scores["threshold"] == confidences[:n_correct].min()
    assert scores["trusted_f1"] == scores["trusted_precision"] == scores["trusted_recall"] == 1.0
    # A reversed ranking is worse.
    worse = metric.compute(predictions=predictions, references=references, confidences=1 - confidences)
    assert worse["aurc"] > scores["aurc"] and worse["augrc"] > scores["augrc"]


def test_all_correct(metric):
    scores = metric.compute(predictions=[0, 1, 2, 1], references=[0, 1, 2, 1], confidences=[0.2, 0.9, 0.5, 0.5])
    assert scores["threshold"] == 0.2  # every τ has TP = 1; F1 is largest when everything is trusted
    for key in ("trusted_precision", "trusted_recall", "trusted_f1", "trusted_accuracy", "coverage"):
        assert scores[key] == 1.0, key
    assert scores["accuracy"] == scores["macro_f1"] == scores["uar"] == 1.0
    assert scores["aurc"] == 0.0 and scores["augrc"] == 0.0
    assert scores["ece"] == pytest.approx(np.mean([0.8, 0.1, 0.5, 0.5]))


@pytest.mark.parametrize("zero_division", [0.0, 1.0])
def test_all_wrong(metric, zero_division):
    scores = metric.compute(
        predictions=[1, 0, 0], references=[0, 1, 2], confidences=[0.3, 0.8, 0.6], zero_division=zero_division
    )
    # R is empty: TR = zero_division; TP = 0 at every τ; F1 = 0 (T is never empty at a candidate).
    assert scores["trusted_recall"] == zero_division and scores["trusted_precision"] == 0.0
    assert scores["trusted_f1"] == 0.0
    assert scores["threshold"] == 0.8  # F1 ties everywhere -> the largest τ
    assert scores["trusted_accuracy"] == pytest.approx(2 / 3) and scores["coverage"] == pytest.approx(1 / 3)
    assert scores["accuracy"] == 0.0 and scores["aurc"] == 1.0 and scores["augrc"] == 0.5
    assert scores["uar"] == 0.0 and scores["macro_f1"] == 0.0  # every class has support, none is recalled


def test_single_sample(metric):
    scores = metric.compute(predictions=[3], references=[3], confidences=[0.3])
    assert_scores_equal(
        scores,
        {
            "trusted_precision": 1.0,
            "trusted_recall": 1.0,
            "trusted_f1": 1.0,
            "trusted_accuracy": 1.0,
            "threshold": 0.3,
            "coverage": 1.0,
            "accuracy": 1.0,
            "macro_f1": 1.0,
            "uar": 1.0,
            "aurc": 0.0,
            "augrc": 0.0,
            "ece": 0.7,
            "n": 1,
        },
    )
    wrong = metric.compute(predictions=[2], references=[3], confidences=[0.3], threshold="break_even")
    assert wrong["trusted_f1"] == 0.0 and wrong["aurc"] == 1.0 and wrong["ece"] == pytest.approx(0.3)


@pytest.mark.parametrize("zero_division", [0.0, 1.0, math.nan])
def test_empty_trusted_set_uses_zero_division(metric, zero_division):
    # τ above every confidence: T is empty, so TP = zero_division; R is not empty, so TR = 0 and F1 = 0.
    scores = metric.compute(
        predictions=[0, 1, 1],
        references=[0, 1, 0],
        confidences=[0.2, 0.4, 0.6],
        threshold=0.9,
        zero_division=zero_division,
    )
    assert scores["trusted_precision"] == pytest.approx(zero_division, nan_ok=True)
    assert scores["trusted_recall"] == 0.0 and scores["trusted_f1"] == 0.0 and scores["coverage"] == 0.0
    assert scores["trusted_accuracy"] == pytest.approx(1 / 3)
    # T and R both empty: F1 is undefined too.
    nothing = metric.compute(
        predictions=[1, 1], references=[0, 0], confidences=[0.2, 0.4], threshold=0.9, zero_division=zero_division
    )
    for key in ("trusted_precision", "trusted_recall", "trusted_f1"):
        assert nothing[key] == pytest.approx(zero_division, nan_ok=True), key
    assert nothing["trusted_accuracy"] == 1.0


def test_unreachable_target_precision_falls_back_and_warns(caplog):
    correct = [True, False, True, False, True]
    confidences = [0.9, 0.9, 0.5, 0.3, 0.1]  # TP: 3/5 at τ=0.1, 2/4 at 0.3, 2/3 at 0.5, 1/2 at 0.9
    with caplog.at_level(logging.WARNING):
        tau = core.select_threshold(correct, confidences, "target_precision", target_precision=0.95)
    assert tau == 0.5 and "No threshold reaches trusted precision 0.95" in caplog.text
    assert core.select_threshold(correct, confidences, "target_precision", target_precision=0.6) == 0.1


def test_max_f1_ties_take_the_larger_threshold():
    # τ=0.2: 2|T∩R|/(|T|+|R|) = 4/6; τ=0.4: 2/3 as well.
    sweep = core.threshold_sweep([True, False, False, True], [0.2, 0.2, 0.2, 0.4])
    assert sweep["trusted_f1"][0] == sweep["trusted_f1"][1] == pytest.approx(2 / 3)
    assert core.threshold_from_sweep(sweep, "max_f1") == 0.4


def test_ece_bins_are_closed_on_the_right():
    # 0.2 = 3/15 is the upper edge of bin 2, so it does not share a bin with 0.21.
    assert core.expected_calibration_error([True, False], [0.2, 0.21]) == pytest.approx((0.8 + 0.21) / 2)
    assert core.calibration_bins([True, False], [0.2, 0.21])["count"][2:4].tolist() == [1, 1]


def test_break_even_without_crossing_takes_the_closest():
    # One correct sample among three tied at the top: TP < TR = 1 at both candidates; TR - TP is 3/4 then 2/3.
    assert core.select_threshold([False, True, False, False], [0.2, 0.8, 0.8, 0.8], "break_even") == 0.8
    correct, confidences = [True, False, False, False], [0.2, 0.7, 0.7, 0.7]
    # τ=0.2: TP 1/4, TR 1; τ=0.7: TP 0, TR 0 -> TP >= TR reached at 0.7.
    assert core.select_threshold(correct, confidences, "break_even") == 0.7
    assert core.select_threshold(correct, confidences, "break_even", zero_division=1.0) == 0.7


def test_macro_scores_follow_scikit_learn_with_num_classes(metric):
    # Without num_classes: the classes seen in predictions or references (class 1 is only predicted: F1 0).
    seen = metric.compute(predictions=[0, 1], references=[0, 0], confidences=[0.5, 0.5])
    assert seen["macro_f1"] == pytest.approx(1 / 3) and seen["uar"] == pytest.approx(0.25)
    predictions, references = [0, 1, 1, 0], [0, 1, 0, 0]
    for zero_division in (0.0, 1.0):
        scores = metric.compute(
            predictions=predictions,
            references=references,
            confidences=[0.5] * 4,
            num_classes=4,
            zero_division=zero_division,
        )
        labels = list(range(4))
        assert scores["macro_f1"] == pytest.approx(
            f1_score(references, predictions, labels=labels, average="macro", zero_division=zero_division)
        )
        assert scores["uar"] == pytest.approx(
            recall_score(references, predictions, labels=labels, average="macro", zero_division=zero_division)
        )


def test_return_curve_is_the_sweep(metric):
    predictions, references, confidences = [0, 1, 1, 2], [0, 1, 2, 2], [0.9, 0.4, 0.4, 0.1]
    scores = metric.compute(predictions=predictions, references=references, confidences=confidences, return_curve=True)
    sweep = core.threshold_sweep(np.equal(predictions, references), confidences)
    assert list(scores["curve"]) == list(core.SWEEP_KEYS)
    for key in core.SWEEP_KEYS:
        assert scores["curve"][key] == sweep[key].tolist()
    assert core.threshold_from_sweep(scores["curve"], "max_f1") == scores["threshold"]


def test_fixed_threshold_between_candidates_trusts_the_next_one_up():
    scores = core.trusted_scores([0, 1, 1], [0, 1, 0], [0.2, 0.6, 0.9], threshold=0.6)
    between = core.trusted_scores([0, 1, 1], [0, 1, 0], [0.2, 0.6, 0.9], threshold=0.35)
    assert scores["coverage"] == between["coverage"] == pytest.approx(2 / 3)
    assert between["threshold"] == 0.35 and between["trusted_precision"] == 0.5


# ----------------------------------------------------------------------------------------------------------------------
# 4. Bad input
# ----------------------------------------------------------------------------------------------------------------------

GOOD = dict(predictions=[0, 1, 1], references=[0, 1, 0], confidences=[0.2, 0.5, 0.9])


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(confidences=[0.2, 0.5]), "Mismatch in the number of predictions"),
        (dict(predictions=[], references=[], confidences=[]), "is empty"),
        (dict(confidences=[0.2, 1.5, 0.9]), r"must lie in \[0, 1\]"),
        (dict(confidences=[0.2, -0.1, 0.9]), r"must lie in \[0, 1\]"),
        (dict(confidences=[0.2, float("nan"), 0.9]), "contains NaN"),
        (dict(predictions=[0.0, 1.5, 1.0]), "`predictions` must hold integer class indices"),
        (dict(references=[0, 1.5, 0]), "`references` must hold integer class indices"),
        (dict(predictions=[0, -1, 1]), "class indices >= 0"),
        (dict(threshold="f1"), "Unknown threshold strategy 'f1'"),
        (dict(threshold=1.5), r"float in \[0, 1\]; got 1.5"),
        (dict(threshold=True), "got True"),
        (dict(zero_division="warn"), "`zero_division` must be 0.0, 1.0 or nan"),
        (dict(threshold="target_precision", target_precision=95), "`target_precision` must be a number in"),
        (dict(num_classes=1), "`num_classes` is 1"),
    ],
)
def test_bad_input_through_evaluate(metric, change, message):
    with pytest.raises(ValueError, match=message):
        metric.compute(**{**GOOD, **change})


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: core.trusted_scores([0, 1], [0, 1, 1], [0.2, 0.3]), "lengths differ"),
        (lambda: core.trusted_scores([], [], []), "`predictions` is empty"),
        (lambda: core.trusted_scores([[0, 1]], [[0, 1]], [[0.1, 0.2]]), "must be one-dimensional"),
        (lambda: core.trusted_scores([0.0, 1.0], [0, 1], [0.2, 0.3]), "integer class indices"),
        (lambda: core.aurc([True, False], [0.2, np.nan]), "contains NaN"),
        (lambda: core.augrc([2, 0], [0.2, 0.3]), "`correct` must hold booleans"),
        (lambda: core.expected_calibration_error([True], [0.2], n_bins=0), "`n_bins` must be a positive integer"),
        (lambda: core.select_threshold([True], [0.2], "best"), "Unknown threshold strategy 'best'"),
        (lambda: core.threshold_sweep([True], ["0.2"]), "must be real numbers"),
        (lambda: core.confidences_from_probabilities([[0.5, 0.6]]), r"must sum to 1 \(tolerance 0.001\)"),
        (lambda: core.confidences_from_probabilities([[0.5, 0.5], [1.0]]), "same K for all"),
        (lambda: core.confidences_from_probabilities([[1.2, -0.2]]), "finite and in"),
        (lambda: core.confidences_from_probabilities([[0.3, 0.7]], predictions=[0]), "is not the arg-max"),
    ],
)
def test_bad_input_in_the_core(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_probability_sum_tolerance_is_1e_3(probabilities_metric):
    inside = probabilities_metric.compute(predictions=[1], references=[1], probabilities=[[0.2, 0.8 + 9e-4]])
    assert inside["threshold"] == pytest.approx(0.8009)
    with pytest.raises(ValueError, match="must sum to 1"):
        probabilities_metric.compute(predictions=[1], references=[1], probabilities=[[0.2, 0.8 + 2e-3]])
    with pytest.raises(ValueError, match="differs from the number of probability columns"):
        probabilities_metric.compute(predictions=[1], references=[1], probabilities=[[0.2, 0.8]], num_classes=3)


def test_add_refuses_float_labels(metric):
    with pytest.raises(ValueError, match="`prediction` must hold integer class indices"):
        metric.add(prediction=0.5, reference=1, confidences=0.3)
    metric.add(prediction=1, reference=1, confidences=0.3)
    metric.add(prediction=1, reference=0, confidences=0.6)
    assert metric.compute()["trusted_f1"] == pytest.approx(2 / 3)


def test_unknown_config_is_refused():
    with pytest.raises(ValueError, match="Unknown config 'logits'"):
        evaluate.load(str(METRIC_DIR), "logits")


# ----------------------------------------------------------------------------------------------------------------------
# Documentation: doctests, README and docstring agree
# ----------------------------------------------------------------------------------------------------------------------


def _run_doctests(module_or_text, globs=None, keep=lambda test: True):
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    if isinstance(module_or_text, str):
        tests = [doctest.DocTestParser().get_doctest(module_or_text, dict(globs or {}), "README", "README.md", 0)]
    else:
        # evaluate appends the inputs description to `add_batch.__doc__` on every instantiation: the class
        # docstring is where the examples live.
        tests = [test for test in doctest.DocTestFinder().find(module_or_text) if keep(test)]
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0 and results.failed == 0, results


def test_doctests_of_the_core():
    _run_doctests(core)


def test_doctests_of_the_evaluate_module(metric, monkeypatch):
    monkeypatch.chdir(METRIC_DIR.parent)  # so that evaluate.load("trusted_f1") finds this folder offline
    _run_doctests(inspect.getmodule(type(metric)), keep=lambda test: test.name.endswith(".TrustedF1"))


def test_readme_examples_run(metric):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    _run_doctests("\n".join(block for block in blocks if ">>>" in block), globs={"trusted_f1": metric})


def _section(text, title):
    match = re.search(rf"^#+ {title}\n(.*?)(?=^#+ |\Z)", text, flags=re.S | re.M)
    assert match, f"section {title!r} missing"
    return match.group(1)


def test_readme_and_docstring_agree(metric):
    module = inspect.getmodule(type(metric))
    keys = list(metric.compute(**GOOD, return_curve=True))
    assert re.findall(r"^- `(\w+)` \(", _section(README, "Output Values"), flags=re.M) == keys
    returns = module._KWARGS_DESCRIPTION.split("Returns:")[1].split("Examples:")[0]
    assert re.findall(r"^    (\w+) \(", returns, flags=re.M) == keys
    arguments = module._KWARGS_DESCRIPTION.split("Args:")[1].split("Returns:")[0]
    inputs = re.findall(r"^    (\w+) \(", arguments, flags=re.M)
    assert re.findall(r"^- `(\w+)` \(", _section(README, "Inputs"), flags=re.M) == inputs
    assert inputs == [p for p in inspect.signature(type(metric)._compute).parameters if p != "self"]
    citation = re.search(r"```bibtex\n(.*?)```", README, flags=re.S).group(1)
    assert citation.strip() == module._CITATION.strip()
    header = yaml.safe_load(README.split("---")[1])
    assert (header["sdk"], header["app_file"], header["pinned"]) == ("gradio", "app.py", False)
    assert {"evaluate", "metric"} <= set(header["tags"])


# ----------------------------------------------------------------------------------------------------------------------
# Packaging: the core without evaluate; the module without our package (a Hub Space)
# ----------------------------------------------------------------------------------------------------------------------


def test_core_imports_without_evaluate(tmp_path):
    code = (
        "import sys; import trusted_f1.trusted_metrics; "
        "assert 'evaluate' not in sys.modules and 'datasets' not in sys.modules, sorted(sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


_SPACE_SCRIPT = r"""
import importlib.abc, json, sys

class BlockOurPackages(importlib.abc.MetaPathFinder):
    # The editable install puts trusted_f1 and modeling_ter on sys.path; a Space has neither.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("trusted_f1", "modeling_ter", "ter"):
            raise ModuleNotFoundError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, BlockOurPackages())
try:
    import trusted_f1.trusted_metrics
    blocked = False
except ModuleNotFoundError:
    blocked = True
import evaluate
metric = evaluate.load(sys.argv[1])
scores = metric.compute(**json.loads(sys.argv[2]))
files = {k: getattr(v, "__file__", None) for k, v in sys.modules.items() if "trusted" in k}
print(json.dumps({"blocked": blocked, "scores": scores, "files": files}))
"""


def test_module_loads_from_a_copy_without_our_package(tmp_path):
    space = tmp_path / "space" / "trusted_f1"
    shutil.copytree(METRIC_DIR, space, ignore=shutil.ignore_patterns("__pycache__", "tests.py"))
    cache = tmp_path / "modules_cache"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(cache))
    result = subprocess.run(
        [sys.executable, "-c", _SPACE_SCRIPT, str(space), json.dumps(GOOD)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["blocked"]  # our package really was unavailable
    assert "trusted_f1" not in report["files"] and "trusted_f1.trusted_metrics" not in report["files"]
    core_files = [f for name, f in report["files"].items() if name.endswith(".trusted_metrics")]
    assert len(core_files) == 1 and Path(core_files[0]).is_relative_to(cache)  # evaluate's copy, not the repository's
    assert_scores_equal(report["scores"], core.trusted_scores(**GOOD))
