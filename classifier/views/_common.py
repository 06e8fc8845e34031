"""What more than one page shows: the ten confidence bars of an answer, drawn the same on an
image's detail page (``images``) and in the draw page's live answer (``drawing``)."""

from __future__ import annotations


def confidence_bars(probabilities: list[float], digit: int) -> list[dict]:
    """The ten confidence bars of the detail page and the live answer; the answer's stands out."""
    return [{"digit": d, "percent": 100 * p, "probability": p, "top": d == digit} for d, p in enumerate(probabilities)]
