"""The Hub: model cards generated from evaluation results, and pushes of checkpoints and the metric Space."""
