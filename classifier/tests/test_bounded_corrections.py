"""Gathering the corrections for a retrain is bounded as a reading is (STYLE rule 13): a "not a
digit" on a page of thousands of specks (issue 42: a 7 drawn in dots) costs milliseconds, not
the minutes that kept a retrain at "Gathering the corrections"."""

import time

import numpy as np
import pytest

from classifier.services import image_flag
from classifier.services.retraining import _flag_inputs
from classifier.tests.factories import DigitImageFactory, ReviewerFactory
from ml.serving.preprocessing import to_model_input
from ml.tests.test_bounded_reading import CPU_BOUND, ISSUE_GRID, dotted

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("drawing", ["a seven in dots", "issue grid"])
def test_a_not_a_digit_on_a_page_of_specks_teaches_the_image_read_whole_at_once(mnist, drawing):
    data = dotted(mnist.test.images[0]) if drawing == "a seven in dots" else ISSUE_GRID
    flag = image_flag(image=DigitImageFactory(data=data), correct_number=None, flagged_by=ReviewerFactory())
    started = time.process_time()
    inputs, digits = _flag_inputs(flag)
    assert time.process_time() - started < CPU_BOUND
    # Too many marks to be read as a number's digits: the image read whole is the lesson.
    assert digits == [-1] and np.array_equal(inputs[0], to_model_input(data).array)
