"""The model layer: from clips to class scores.

- settings.py: the model group (`ModelConfig`), its choices, `SHAPE_KEYS` and `--logit-scale`'s
  parser; torch-free.
- backbones.py (open_clip and built-in backbones, timm towers), video_model.py (the video model,
  its training policy, `build` from a `ModelConfig`), temporal.py, heads.py, text.py (class
  embeddings), objectives.py, cost.py (GFLOPs), released.py (the authors' checkpoint layout).

It receives the model group and the few values it needs by name (seed), never the run.
"""
