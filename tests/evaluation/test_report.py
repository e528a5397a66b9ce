"""The threshold's promise in the report: Wilson intervals of trusted precision and coverage, and the prediction
intervals of one new speaker, on known counts."""

import numpy as np
import pytest

from modeling_ter.evaluation.report import new_speaker_interval, threshold_promise, wilson_interval


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


def test_new_speaker_interval_is_the_binomial_spread_for_alike_speakers():
    # 4 speakers, each 1000 trusted of 2000 items, 800 of them right: one new speaker's 1000 trusted items vary as
    # Binomial(1000, 0.8) / 1000 (sd 0.0126), widened a little by the Jeffreys uncertainty of each 0.8.
    speakers = np.repeat(["a", "b", "c", "d"], 2000)
    trusted = np.tile(np.arange(2000) < 1000, 4)
    correct = np.tile(np.arange(2000) < 800, 4)
    interval = new_speaker_interval(correct, trusted, speakers)
    assert interval["trusted_per_speaker"] == 1000 and interval["items_per_speaker"] == 2000
    low, high = interval["trusted_precision_pi95"]
    assert 0.8 - 0.04 < low < 0.8 - 0.02 and 0.8 + 0.02 < high < 0.8 + 0.04
    assert interval["coverage_pi95"][0] < 0.5 < interval["coverage_pi95"][1]


def test_new_speaker_interval_spans_speakers_that_differ():
    # One speaker right on half its trusted items, one on all: a new speaker may be either, unlike the pooled 0.75.
    speakers = np.repeat(["a", "b"], 400)
    trusted = np.ones(800, dtype=bool)
    correct = np.concatenate([np.arange(400) < 200, np.ones(400, dtype=bool)])
    low, high = new_speaker_interval(correct, trusted, speakers)["trusted_precision_pi95"]
    assert low < 0.5 and high == 1.0
    pooled_low, pooled_high = wilson_interval(600, 800)
    assert low < pooled_low - 0.2
    assert new_speaker_interval(correct[:400], trusted[:400], speakers[:400]) is None  # one speaker: no spread
