"""What an image is read as, declared once: each reading mode's name, the label a person picks
it by, and the line that says what it does.

``ml.serving.numbers.read_numbers`` reads by the name: ``auto`` chooses between one digit and a
number on the evidence; people who know what they sent say ``digit`` or ``number``. Django
takes the rest from here (``classifier.models.Reading``'s choices, hence the forms, the draw
page and the API's; the API's and ``manage.py predict``'s help), so a new mode is one line in
``MODES`` and its reading in ``ml.serving.numbers``. A label changed here is a migration for
``DigitImage.reading``'s choices (no data changes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ReadingMode:
    name: str  # what is stored, sent and typed
    label: str  # what a person picks on the upload form and the draw page
    does: str  # what it does, after its name: "auto (each read as ...)"


MODES = (
    ReadingMode("auto", "Work it out", "each read as one digit unless it clearly holds several"),
    ReadingMode("digit", "One digit", "one digit each"),
    ReadingMode("number", "A number", "a number each"),
)
AUTO, DIGIT, NUMBER = READINGS = tuple(mode.name for mode in MODES)


def readings_named(*, asides: Mapping[str, str] | None = None) -> str:
    """The modes' names as a sentence says them, "auto, digit or number", each with its aside
    in brackets where ``asides`` gives one: "auto (left to the site), digit or number"."""
    asides = asides or {}
    named = [f"{name} ({asides[name]})" if name in asides else name for name in READINGS]
    return f"{', '.join(named[:-1])} or {named[-1]}"


def readings_described() -> str:
    """Each mode and what it does, as help says it: "auto (each read as ...), digit (one digit
    each) or number (a number each)"."""
    return readings_named(asides={mode.name: mode.does for mode in MODES})
