"""Evaluation: batched prediction, the evaluation report, plots and classic baselines."""
