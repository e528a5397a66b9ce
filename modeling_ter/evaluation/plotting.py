# Copyright 2025 The TER authors. Licensed under the Apache License, Version 2.0.
"""Plots of the trusted metrics for reports and model cards.

The numbers come from `trusted_f1.trusted_metrics` (no metric is computed here). Figures are drawn on their own Agg
canvas, never through pyplot, so plotting neither needs a display nor changes global matplotlib state. Each function
returns the `Axes` it drew on and, given `path`, saves the figure as a PNG of `figsize · dpi` pixels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trusted_f1.trusted_metrics import (
    ECE_BINS,
    augrc,
    aurc,
    calibration_bins,
    expected_calibration_error,
    risk_coverage_curve,
    threshold_from_sweep,
    threshold_sweep,
)

THRESHOLD_CURVES = (
    ("trusted_precision", "trusted precision"),
    ("trusted_recall", "trusted recall"),
    ("trusted_f1", "trusted F1"),
    ("coverage", "coverage"),
)
"""Sweep keys drawn by `plot_threshold_curves`, in drawing order, with their legend labels."""


def _axes(ax: Axes | None, figsize: tuple[float, float], dpi: int) -> Axes:
    if ax is not None:
        return ax
    figure = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(figure)
    return figure.add_subplot()


def _finish(ax: Axes, path: str | Path | None) -> Axes:
    ax.legend(loc="best", fontsize="small")
    if path is not None:
        ax.figure.savefig(path, format="png", dpi=ax.figure.dpi)
    return ax


def plot_threshold_curves(
    correct: Sequence[bool] | np.ndarray | None = None,
    confidences: Sequence[float] | np.ndarray | None = None,
    *,
    curve: Mapping[str, Sequence[float]] | None = None,
    threshold: str | float | None = "max_f1",
    target_precision: float = 0.95,
    zero_division: float = 0.0,
    ax: Axes | None = None,
    path: str | Path | None = None,
    figsize: tuple[float, float] = (6.4, 4.0),
    dpi: int = 100,
) -> Axes:
    """Trusted precision, recall, F1 and coverage against the threshold τ, with the selected τ marked.

    Args:
        correct: shape `(N,)`, bool; with `confidences`, shape `(N,)` in [0, 1]. Or pass `curve` instead.
        curve: a `threshold_sweep` result, or `trusted_scores(..., return_curve=True)["curve"]`.
        threshold: strategy or float marked by a dashed line (see `threshold_from_sweep`); None marks nothing.
        target_precision, zero_division: as in `trusted_f1.trusted_metrics.trusted_scores`.
        ax: draw here; default a new figure of `figsize` inches at `dpi`.
        path: save the figure there as PNG.

    Returns:
        The `Axes`; its first lines are the curves of `THRESHOLD_CURVES` (x = sweep thresholds, drawn as steps:
        T(τ) is constant between two distinct confidences).
    """
    if (curve is None) == (correct is None or confidences is None):
        raise ValueError("Pass either `correct` and `confidences`, or `curve` (a threshold sweep), not both.")
    if curve is None:
        curve = threshold_sweep(correct, confidences, zero_division)
    ax = _axes(ax, figsize, dpi)
    for key, label in THRESHOLD_CURVES:
        ax.plot(curve["thresholds"], curve[key], drawstyle="steps-pre", label=label)
    if threshold is not None:
        tau = threshold_from_sweep(curve, threshold, target_precision)
        name = threshold if isinstance(threshold, str) else "given"
        ax.axvline(tau, color="black", linestyle="--", linewidth=1, label=f"τ = {tau:.3f} ({name})")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="trusted threshold τ", ylabel="value", title="Trusted metrics vs. τ")
    return _finish(ax, path)


def plot_risk_coverage(
    correct: Sequence[bool] | np.ndarray,
    confidences: Sequence[float] | np.ndarray,
    *,
    ax: Axes | None = None,
    path: str | Path | None = None,
    figsize: tuple[float, float] = (6.4, 4.0),
    dpi: int = 100,
) -> Axes:
    """Selective risk and generalized risk against coverage, labelled with AURC and AUGRC.

    Returns:
        The `Axes`; line 0 is the selective risk, line 1 the generalized risk (x = coverage, one point per distinct
        confidence, from `risk_coverage_curve`).
    """
    curve = risk_coverage_curve(correct, confidences)
    ax = _axes(ax, figsize, dpi)
    ax.plot(
        curve["coverage"],
        curve["selective_risk"],
        marker=".",
        label=f"selective risk (AURC {aurc(correct, confidences):.4f})",
    )
    ax.plot(
        curve["coverage"],
        curve["generalized_risk"],
        marker=".",
        label=f"generalized risk (AUGRC {augrc(correct, confidences):.4f})",
    )
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="coverage", ylabel="risk", title="Risk vs. coverage")
    return _finish(ax, path)


def plot_reliability_diagram(
    correct: Sequence[bool] | np.ndarray,
    confidences: Sequence[float] | np.ndarray,
    *,
    n_bins: int = ECE_BINS,
    ax: Axes | None = None,
    path: str | Path | None = None,
    figsize: tuple[float, float] = (4.8, 4.8),
    dpi: int = 100,
) -> Axes:
    """Accuracy per equal-width confidence bin against the diagonal, titled with the ECE.

    Returns:
        The `Axes`; its bars (`ax.patches`) are the bins' accuracies (0 for an empty bin), line 0 the diagonal and
        line 1 the mean confidence per non-empty bin.
    """
    bins = calibration_bins(correct, confidences, n_bins)
    edges = bins["edges"]
    filled = bins["count"] > 0
    ax = _axes(ax, figsize, dpi)
    accuracy = np.nan_to_num(bins["accuracy"])
    ax.bar(edges[:-1], accuracy, width=np.diff(edges), align="edge", alpha=0.7, edgecolor="black", label="accuracy")
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfect calibration")
    centres = (edges[:-1] + edges[1:]) / 2
    ax.plot(centres[filled], bins["confidence"][filled], "o", color="black", markersize=3, label="mean confidence")
    ece = expected_calibration_error(correct, confidences, n_bins)
    title = f"Reliability ({n_bins} bins), ECE {ece:.4f}"
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title)
    return _finish(ax, path)


def save_plots(
    correct: np.ndarray, confidences: np.ndarray, threshold: float, plots_dir: str | os.PathLike
) -> list[Path]:
    """Trusted P/R/F1 against the threshold, risk-coverage and reliability diagram of the fused opinion, as PNGs."""
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        plots_dir / "trusted_metrics_vs_threshold.png",
        plots_dir / "risk_coverage.png",
        plots_dir / "reliability_diagram.png",
    ]
    plot_threshold_curves(correct, confidences, threshold=threshold, path=paths[0])
    plot_risk_coverage(correct, confidences, path=paths[1])
    plot_reliability_diagram(correct, confidences, path=paths[2])
    return paths
