"""File responses shared by the pages and the API: what the browser may do with image bytes."""

from __future__ import annotations

import io

import numpy as np
from django.http import FileResponse, Http404, HttpResponse
from PIL import Image


def image_file_response(image) -> FileResponse:
    """The stored upload with its real content type; browsers must not guess another."""
    try:
        handle = image.file.open("rb")
    except OSError:
        raise Http404 from None
    response = FileResponse(handle, content_type=image.content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    return response


def png_response(pixels: np.ndarray) -> HttpResponse:
    """Pixels (grey or RGB uint8) as a PNG that browsers may keep for a day."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    response = HttpResponse(buffer.getvalue(), content_type="image/png")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=86400"
    return response
