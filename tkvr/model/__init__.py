"""The model layer: backbones, the video model, temporal modules, heads, text embeddings, objectives."""
