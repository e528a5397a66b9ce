"""The threshold's promise in the report: Wilson intervals of trusted precision and coverage, on known counts."""

import pytest

from modeling_ter.evaluation.report import threshold_promise, wilson_interval


def test_wilson_interval_known_values():
    # 8 of 10: the textbook Wilson score interval (z = 1.96) is 0.490 - 0.943
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0


def test_promise_counts_trusted_and_correct_items_per_corpus():
    metrics = {"n": 20, "coverage": 0.5, "trusted_precision": 0.8}
    nothing = {"n": 4, "coverage": 0.0, "trusted_precision": 0.0}
    promise = threshold_promise(
        {"overall": metrics, "corpora": {"emodb": {"fused": metrics}, "meld": {"fused": nothing}}}
    )
    assert promise["emodb"]["trusted"] == 10 and promise["emodb"]["trusted_precision_ci95"] == wilson_interval(8, 10)
    assert promise["emodb"]["coverage_ci95"] == wilson_interval(10, 20)
    assert promise["meld"]["trusted_precision"] is None and promise["meld"]["trusted_precision_ci95"] is None
