# Copyright 2025 The TER authors. Licensed under the Apache License, Version 2.0.
"""The plot helpers draw exactly the trusted-metric curves and write PNGs of the expected size."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from modeling_ter.evaluation.plotting import (
    THRESHOLD_CURVES,
    plot_reliability_diagram,
    plot_risk_coverage,
    plot_threshold_curves,
)
from trusted_f1.trusted_metrics import (
    calibration_bins,
    risk_coverage_curve,
    select_threshold,
    threshold_sweep,
    trusted_scores,
)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    references = rng.integers(0, 4, 300)
    confidences = np.round(rng.random(300), 2)  # rounded: ties
    predictions = np.where(rng.random(300) < confidences, references, (references + 1) % 4)
    return predictions, references, predictions == references, confidences


def _assert_png(path, size):
    assert path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == size


def test_threshold_curves_plot_the_sweep(inputs, tmp_path):
    _, _, correct, confidences = inputs
    path = tmp_path / "threshold.png"
    ax = plot_threshold_curves(correct, confidences, threshold="break_even", path=path, figsize=(6, 4), dpi=50)
    _assert_png(path, (300, 200))
    sweep = threshold_sweep(correct, confidences)
    for line, (key, label) in zip(ax.lines[: len(THRESHOLD_CURVES)], THRESHOLD_CURVES, strict=True):
        assert line.get_label() == label
        np.testing.assert_array_equal(line.get_xdata(), sweep["thresholds"])
        np.testing.assert_array_equal(line.get_ydata(), sweep[key])
    tau = select_threshold(correct, confidences, "break_even")
    assert ax.lines[len(THRESHOLD_CURVES)].get_xdata()[0] == tau
    assert ax.lines[len(THRESHOLD_CURVES)].get_label().startswith(f"τ = {tau:.3f}")


def test_threshold_curves_from_a_returned_curve_on_given_axes(inputs):
    predictions, references, correct, confidences = inputs
    scores = trusted_scores(predictions, references, confidences, threshold="max_f1", return_curve=True)
    figure = Figure()
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    assert plot_threshold_curves(curve=scores["curve"], ax=ax) is ax
    assert ax.lines[-1].get_xdata()[0] == scores["threshold"]
    np.testing.assert_array_equal(ax.lines[2].get_ydata(), scores["curve"]["trusted_f1"])
    with pytest.raises(ValueError, match="not both"):
        plot_threshold_curves(correct, confidences, curve=scores["curve"])


def test_risk_coverage_plots_the_curve(inputs, tmp_path):
    predictions, references, correct, confidences = inputs
    path = tmp_path / "risk.png"
    ax = plot_risk_coverage(correct, confidences, path=path, figsize=(4, 3), dpi=80)
    _assert_png(path, (320, 240))
    curve = risk_coverage_curve(correct, confidences)
    scores = trusted_scores(predictions, references, confidences)
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), curve["coverage"])
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), curve["selective_risk"])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), curve["generalized_risk"])
    assert f"AURC {scores['aurc']:.4f}" in ax.lines[0].get_label()
    assert f"AUGRC {scores['augrc']:.4f}" in ax.lines[1].get_label()


def test_reliability_diagram_plots_the_bins(inputs, tmp_path):
    predictions, references, correct, confidences = inputs
    path = tmp_path / "reliability.png"
    ax = plot_reliability_diagram(correct, confidences, n_bins=10, path=path, figsize=(3, 3), dpi=100)
    _assert_png(path, (300, 300))
    bins = calibration_bins(correct, confidences, 10)
    heights = [patch.get_height() for patch in ax.patches]
    np.testing.assert_allclose(heights, np.nan_to_num(bins["accuracy"]))
    np.testing.assert_allclose([patch.get_x() for patch in ax.patches], bins["edges"][:-1])
    default = plot_reliability_diagram(correct, confidences)
    assert f"ECE {trusted_scores(predictions, references, confidences)['ece']:.4f}" in default.get_title()
