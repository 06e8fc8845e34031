"""A person's data as files: the history CSV, and "download my data" (the CSV and every image
file in a zip). Both are generators of bytes for a streaming response, so that memory stays
bounded however many images there are."""

from __future__ import annotations

import csv
import json
import logging
import re
import zipfile
from collections.abc import Iterable, Iterator

from django.db.models import QuerySet

from classifier.models import DIGITS, DigitImage, Prediction

logger = logging.getLogger(__name__)

CSV_HEADER = [
    "file_name",
    "uploaded_at",
    "status",
    "number",
    "digit",
    "confidence",
    "verdict",
    "verdict_reason",
    *[f"p{digit}" for digit in DIGITS],
    "digits",
    "model_version",
    "flagged_as",
    "your_feedback",
    "error",
]
# The download's CSV adds where each image lies in the zip, so that rows and files meet.
ZIP_CSV_HEADER = [*CSV_HEADER, "file_in_zip"]

# Read and written in pieces of this size: one image never sits in memory whole.
CHUNK_BYTES = 64 * 1024
# Characters that no file system (Windows' included) takes in a name, and control characters.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')


def csv_cell(value) -> str:
    """A cell a spreadsheet shows as text: names starting with = + - @ would run as formulas."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def digits_json(prediction: Prediction) -> str:
    """Each digit's reading, left to right, as compact JSON (probabilities to six places, as in
    the p0..p9 columns); an image read before numbers is its one digit, with no box."""
    readings = [
        reading | {"probabilities": [round(p, 6) for p in reading["probabilities"]]}
        for reading in prediction.readings()
    ]
    return json.dumps(readings, separators=(",", ":"))


def history_row(image: DigitImage) -> list:
    """One image as a row of ``CSV_HEADER``."""
    prediction, flag, feedback = image.prediction_or_none, image.flag_or_none, image.feedback_or_none
    probabilities = [f"{p:.6f}" for p in prediction.probabilities] if prediction else [""] * len(DIGITS)
    return [
        csv_cell(image.original_name),
        image.uploaded_at.isoformat(),
        image.status,
        prediction.number if prediction else "",
        prediction.digit if prediction else "",
        f"{prediction.confidence:.6f}" if prediction else "",
        prediction.verdict if prediction else "",
        prediction.verdict_reason if prediction else "",
        *probabilities,
        digits_json(prediction) if prediction else "",
        f"v{prediction.model_version.number}" if prediction else "",
        ("not_a_digit" if flag.not_a_digit else flag.correct_number) if flag else "",
        ("not_a_digit" if feedback.not_a_digit else feedback.suggested_number) if feedback else "",
        csv_cell(image.error_message),
    ]


class _Echo:
    """A file-like object that hands back what is written: csv.writer then yields lines."""

    def write(self, value):
        return value


def csv_lines(rows: Iterable[list]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    return (writer.writerow(row) for row in rows)


def history_csv(images: QuerySet[DigitImage]) -> Iterator[str]:
    """The history CSV of ``images``, line by line."""
    rows = (history_row(image) for image in images.iterator(chunk_size=500))
    return csv_lines(_with_header(CSV_HEADER, rows))


def _with_header(header: list, rows: Iterable[list]) -> Iterator[list]:
    yield header
    yield from rows


def zip_name(image: DigitImage) -> str:
    """``images/<id>-<original name>``: readable, unique by the id, safe on any file system."""
    name = _UNSAFE.sub("_", image.original_name).strip(" .") or "image"
    return f"images/{image.pk}-{name}"


class _Pipe:
    """What ZipFile writes to: it collects the bytes until the generator takes them. Not
    seekable, so ZipFile writes each member's sizes after its data, as streaming needs."""

    def __init__(self):
        self.chunks: list[bytes] = []

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


README = """Your data from digitsite, as of {stamp}.

history.csv   every image you uploaded: when, its status, the predicted digit and how sure
              the model was (p0..p9), staff corrections and your own feedback; the last
              column names the image's file in this archive.
images/       the files you uploaded, as you uploaded them, named <number>-<your file name>.
"""


def data_zip(images: QuerySet[DigitImage], *, stamp: str) -> Iterator[bytes]:
    """A zip of README.txt, history.csv and every image file, yielded in pieces as it is
    written. Images are stored as they are (already compressed); the CSV is deflated. A file
    missing from storage is left out and named in the README; the rest still comes."""
    pipe = _Pipe()
    missing: list[str] = []
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("history.csv", mode="w") as member:
            rows = ([*history_row(image), zip_name(image)] for image in images.iterator(chunk_size=500))
            for line in csv_lines(_with_header(ZIP_CSV_HEADER, rows)):
                member.write(line.encode("utf-8"))
                if sum(map(len, pipe.chunks)) >= CHUNK_BYTES:
                    yield pipe.take()
        yield pipe.take()
        for image in images.iterator(chunk_size=500):
            name = zip_name(image)
            try:
                source = image.file.open("rb")
            except Exception:  # the storage's own error for a missing file (OSError, S3's ClientError)
                logger.warning("image %s: its file could not be read for the download", image.pk)
                missing.append(name)
                continue
            info = zipfile.ZipInfo(name, date_time=image.uploaded_at.timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED
            with source, archive.open(info, mode="w", force_zip64=image.size_bytes > 2**31) as member:
                while chunk := source.read(CHUNK_BYTES):
                    member.write(chunk)
                    yield pipe.take()
            yield pipe.take()
        note = README.format(stamp=stamp)
        if missing:
            note += "\nThese files could not be read from storage and are missing here:\n" + "\n".join(missing) + "\n"
        archive.writestr("README.txt", note)
    yield pipe.take()
