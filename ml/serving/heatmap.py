"""Heat maps as pictures for people. numpy and matplotlib's colour maps only: the web process
draws these, and it never loads TensorFlow."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from ml.serving.artifacts import INPUT_SIDE

HEATMAP_SIZE = (INPUT_SIDE, INPUT_SIDE)  # one heat value per pixel of the model input
OVERLAY_COLORMAP = "inferno"  # perceptually even, and black where there is no heat, like the background
OVERLAY_ALPHA = 0.5


def heatmap_overlay(model_input_display: np.ndarray, heat: np.ndarray, zoom: int = 8) -> np.ndarray:
    """A (28*zoom, 28*zoom, 3) uint8 RGB picture: the 28x28 uint8 model input under its coloured heat map."""
    if model_input_display.shape != HEATMAP_SIZE or heat.shape != HEATMAP_SIZE:
        raise ValueError(f"expected two {HEATMAP_SIZE} arrays, got {model_input_display.shape} and {heat.shape}")
    if zoom < 1:
        raise ValueError(f"zoom must be at least 1, got {zoom}")
    gray = np.repeat(model_input_display[..., None].astype(np.float32) / 255.0, 3, axis=-1)
    colour = colormaps[OVERLAY_COLORMAP](np.clip(heat, 0.0, 1.0))[..., :3]
    blended = np.round(((1 - OVERLAY_ALPHA) * gray + OVERLAY_ALPHA * colour) * 255).astype(np.uint8)
    # Nearest neighbour: each model pixel becomes a crisp zoom x zoom block.
    return blended.repeat(zoom, axis=0).repeat(zoom, axis=1)
