"""Training with Accelerate: arguments, datasets, checkpoints, calibration and the training loop."""
