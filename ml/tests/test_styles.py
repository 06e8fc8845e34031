"""The stand-ins for other writers and scanners (ml/fitting/styles.py) are what they say they are."""

import io

import numpy as np
import pytest
from PIL import Image

from ml.fitting.styles import STYLES, load_digits_uploads, style_set


@pytest.mark.parametrize("style", STYLES)
def test_each_style_renders_labelled_pngs_reproducibly(mnist, style):
    uploads = style_set(mnist.test.images, mnist.test.labels, style=style, count=20, seed=3)
    again = style_set(mnist.test.images, mnist.test.labels, style=style, count=20, seed=3)
    assert [u.data for u in uploads] == [u.data for u in again]
    assert all(u.scenario == style and 0 <= u.label <= 9 for u in uploads)
    assert all(Image.open(io.BytesIO(u.data)).format == "PNG" for u in uploads)


def test_the_european_set_is_half_ones_and_sevens_with_their_extra_strokes(mnist):
    uploads = style_set(mnist.test.images, mnist.test.labels, style="european", count=40, seed=0)
    assert sum(u.label in (1, 7) for u in uploads) >= 20
    one = next(u for u in uploads if u.label == 1)
    ink = 255 - np.asarray(Image.open(io.BytesIO(one.data)))
    rows, cols = np.nonzero(ink > 127)
    # The flag reaches out to the left of the stem, near the top.
    top = rows < rows.min() + (rows.max() - rows.min()) * 0.4
    assert cols[top].min() < np.median(cols) - 8


def test_low_resolution_scans_are_small_and_cropped_tight(mnist):
    uploads = style_set(mnist.test.images, mnist.test.labels, style="lowres", count=30, seed=0)
    sizes = [Image.open(io.BytesIO(u.data)).size for u in uploads]
    assert all(max(size) <= 20 for size in sizes)
    assert max(max(size) for size in sizes) >= 16


def test_scikit_learns_digits_are_43_writers_8x8():
    uploads = load_digits_uploads()
    assert len(uploads) == 1797
    assert {Image.open(io.BytesIO(u.data)).size for u in uploads} == {(8, 8)}
    assert sorted({u.label for u in uploads}) == list(range(10))
