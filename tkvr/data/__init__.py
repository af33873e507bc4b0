"""The data layer: from a `--data` name to batches of clips.

- settings.py: the data group (`SourceConfig`, `DataConfig`), its choices and `--views`' parser;
  torch-free.
- specs.py (dataset formats, built-in names, class subsets), classes.py (class lists, labels
  files), sampling.py (frame indices, K-shot, label fraction), video.py (one reader per kind of
  source), transforms.py, loader.py (datasets, samplers, loaders, the bad-file budget).
- check.py and prepare.py: the work of `tkvr check` and `tkvr prepare`; toy.py: the toy world.

It receives the data group and the few values it needs by name (frames, seed), never the run.
"""
