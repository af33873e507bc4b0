"""The run layer: runs that train, score, predict, export and sweep.

- settings.py: the optimiser, run and device groups, `TrainConfig` (the run's record, as
  config.yaml and checkpoints hold it) and the recipes; torch-free.
- launch.py (Fabric), engine.py (the loop), training.py, evaluation.py, predict.py, export.py,
  convert.py, embedding.py, protocols.py (few-shot, zero-shot), checkpoint.py, metrics.py,
  collective.py, plots.py.

The functions that do a command's work take that command's settings object (declared in
`tkvr.commands`); this layer never imports it.
"""
