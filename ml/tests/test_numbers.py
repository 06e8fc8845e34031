"""Reading whole numbers honestly: pieces that each pass for a digit are judged whole too."""

import io

import numpy as np
from PIL import Image, ImageDraw

from ml.negatives import _printed, negative_set
from ml.synth import number_set, render_upload


def test_photographed_words_are_not_read_as_confident_numbers(shipped_predictor):
    # Each letter alone can pass for a digit; judged whole, a word is text.
    photos = []
    for word in ("hello world", "digitsite", "Total", "abc"):
        for seed in range(10):
            rng = np.random.default_rng(seed)
            photos.append(render_upload(_printed(word, rng), scenario="photo", rng=rng).data)
    results = shipped_predictor.read_numbers(photos)
    confident = [r.number for r in results if r.error is None and r.verdict in ("digit", "number")]
    assert len(confident) <= 2, confident  # measured: 1 of 40 ("Total" once), the rest unsure or refused


def test_several_pieces_of_non_digits_are_rarely_a_confident_number(mnist, shipped_predictor):
    uploads = [u for u in negative_set(mnist.test.images, count=120, seed=5) if u.scenario != "number"]
    results = shipped_predictor.read_numbers([u.data for u in uploads])
    confident = [r for r in results if r.error is None and r.verdict in ("digit", "number")]
    assert len(confident) <= 0.2 * len(uploads)  # measured on 500 (seed 12): 9%; 25% judged piece by piece


def test_two_clean_strokes_on_a_canvas_are_a_number_not_a_drawing(shipped_predictor):
    # Judged whole, a "17" of two straight strokes looks like a drawing to the detector; its
    # groups, each a clean digit, say what it is.
    canvas = Image.new("L", (280, 280), 255)
    pen = ImageDraw.Draw(canvas)
    for stroke in [[(70, 50), (70, 230)], [(140, 60), (240, 60)], [(240, 60), (175, 230)]]:
        pen.line(stroke, fill=0, width=18)
    out = io.BytesIO()
    canvas.save(out, "PNG")
    (result,) = shipped_predictor.read_numbers([out.getvalue()])
    assert (result.number, result.verdict) == ("17", "number")


def test_numbers_still_read_as_numbers(mnist, shipped_predictor):
    uploads = number_set(mnist.test.images, mnist.test.labels, count=40, seed=5)
    results = shipped_predictor.read_numbers([u.data for u in uploads])
    assert sum(r.verdict == "not_a_digit" for r in results) <= 4  # measured: about 3% (seed 12, 300)
    assert sum(r.number == u.number for u, r in zip(uploads, results, strict=True)) >= 28
