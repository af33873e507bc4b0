"""The run layer: launch, the training loop, training and evaluation runs, checkpoints, protocols."""
