"""Images: uploads, their classification in the worker, and flags; queued through ``classifier.queueing``.

Kept whole: an image's life from upload to stored reading and its corrections, each step
short and reading the same rows (a correction is judged against the stored prediction:
``correction_training_refusal``); drawing previews and deletion already live apart.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil

from classifier import queueing
from classifier.models import DigitImage, Feedback, Flag, ModelVersion, Prediction, SaidReading, encode_model_array
from classifier.services.serving import ModelNotLoaded, predictor_serving
from ml.serving.preprocessing import MAX_PIXELS, PreprocessingError, open_lazily, verify_image
from ml.serving.segment import MAX_DIGITS

if TYPE_CHECKING:  # TensorFlow stays out of web processes: the worker imports it when it classifies
    from ml.serving.inference import Predictor
    from ml.serving.numbers import DigitReading, NumberResult

logger = logging.getLogger(__name__)

Said = TypeVar("Said", bound=SaidReading)


@dataclass
class UploadOutcome:
    created: list[DigitImage] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason for people)


def _upload_allowance(owner) -> tuple[int, str]:
    """How many more images ``owner`` may upload now, and what to say once that is used up."""
    window = timedelta(seconds=settings.UPLOAD_RATE_WINDOW_SECONDS)
    now = timezone.now()
    recent = DigitImage.objects.filter(owner=owner, uploaded_at__gt=now - window)
    allowance = max(settings.UPLOAD_RATE_LIMIT - recent.count(), 0)
    oldest = recent.order_by("uploaded_at").values_list("uploaded_at", flat=True).first()
    free_again = timeuntil(oldest + window, now) if oldest else timeuntil(now + window, now)
    per = timesince(now - window, now).removeprefix("1\xa0")  # "hour", "30 minutes"
    reason = (
        f"Upload limit reached: {settings.UPLOAD_RATE_LIMIT} images per {per}. You can upload more in {free_again}."
    )
    return allowance, reason


def _uploads_judge(*, owner, files: Iterable[UploadedFile], refused: list[tuple[str, str]]) -> list[DigitImage]:
    """The files worth storing, as unsaved DigitImages; each other file is added to ``refused``
    with its reason. Cheap and bounded per file (headers, and the pixels of small images and
    JPEGs only: ``ml.serving.preprocessing.inspect_image``'s two steps) and per request: at most
    ``UPLOAD_MAX_REQUEST_PIXELS`` in all, judged from the headers, since the worker decodes them."""
    accepted: list[DigitImage] = []
    allowance, rate_reason = _upload_allowance(owner)
    pixels = 0
    for upload in files:
        name = Path(upload.name or "upload").name[:255]
        judged = (
            rate_reason if len(accepted) >= allowance else _upload_judge(upload, owner=owner, name=name, pixels=pixels)
        )
        if isinstance(judged, str):
            refused.append((name, judged))
            continue
        pixels += judged.width * judged.height
        accepted.append(judged)
    return accepted


def _upload_judge(upload: UploadedFile, *, owner, name: str, pixels: int) -> DigitImage | str:
    """One file of an upload whose files before it carry ``pixels``: an unsaved DigitImage, or
    why it is refused."""
    byte_limit, pixel_budget = settings.UPLOAD_MAX_BYTES, settings.UPLOAD_MAX_REQUEST_PIXELS
    if upload.size is not None and upload.size > byte_limit:
        return f"The file is larger than {byte_limit // 1_000_000} MB."
    data = upload.read()
    try:
        # Headers first: what is over the request's pixels is refused before any is decoded.
        opened, info = open_lazily(data, max_pixels=MAX_PIXELS)
        over_budget = pixels + info.width * info.height > pixel_budget
        if not over_budget:
            verify_image(opened, info)
    except PreprocessingError as exc:
        return str(exc)
    if over_budget:
        return (
            f"This upload already carries {pixels / 1e6:.0f} of the {pixel_budget / 1e6:.0f} megapixels one "
            f"upload may hold, and this image has {info.width * info.height / 1e6:.0f} more. "
            "Please upload it on its own or with fewer large images."
        )
    image = DigitImage(
        owner=owner,
        original_name=name,
        image_format=info.format,
        content_type=info.mime,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        width=info.width,
        height=info.height,
    )
    image.file.save("upload", ContentFile(data), save=False)  # the bytes already read, not a second read
    return image


def image_upload_create(
    *, owner, files: Iterable[UploadedFile], training_consent: bool = False, reading: str = DigitImage.Reading.AUTO
) -> UploadOutcome:
    """Store each acceptable file as a pending DigitImage and queue its classification.
    ``training_consent``: the owner agrees that a staff correction of these images may be
    kept for training, as a 28x28 example, after they delete them. ``reading``: what the owner
    says they show (``DigitImage.Reading``), which the worker reads them as.

    A refused file (too large, not an image we read, too many pixels on its own or for the
    request, over the owner's upload rate) gets a reason; the others in the same upload go
    through. The rows are created together once every file is judged and written, and queued
    as they commit: a request that dies before leaves no image behind, one that dies after
    leaves them queued, never an image pending that no task will pick up.
    """
    outcome = UploadOutcome()
    accepted = _uploads_judge(owner=owner, files=files, refused=outcome.refused)
    for image in accepted:
        image.training_consent = bool(training_consent)
        image.reading = DigitImage.Reading(reading)
    if accepted:
        with transaction.atomic():
            outcome.created = DigitImage.objects.bulk_create(accepted)
            transaction.on_commit(partial(queueing.images_enqueue, [image.pk for image in outcome.created]))
    return outcome


# --- Prediction (worker) ------------------------------------------------------------------


def model_warm_up() -> tuple[ModelVersion, float]:
    """Load the model this process serves (``predictor_serving``) and run it once, Grad-CAM
    included, so that the first upload is classified as fast as the rest (tracing the graphs
    costs seconds). Returns the version and the seconds it took."""
    started = time.perf_counter()
    serving = predictor_serving()
    stroke = np.zeros((1, 28, 28), dtype=np.float32)
    stroke[0, 6:22, 13:15] = 1.0  # a "1": any input traces the same graphs
    predictions = serving.predictor.predict_arrays(stroke)
    serving.predictor.explain(stroke, np.array([predictions[0].digit]))
    return serving.version, time.perf_counter() - started


def _saliency(predictor: Predictor, arrays: np.ndarray, digits: np.ndarray) -> list[bytes | None]:
    """Grad-CAM heat maps of the predicted ``digits``, as stored; predictions are stored even
    if this fails."""
    try:
        heat = predictor.explain(arrays, digits)
    except Exception:
        logger.exception("Grad-CAM failed; the predictions are stored without it")
        return [None] * len(arrays)
    return [Prediction.encode_heat_map(h) for h in heat]


def prediction_run(*, image_id: int) -> Prediction | None:
    """Classify one stored image; see ``predictions_run``."""
    return predictions_run(image_ids=[image_id]).get(image_id)


def predictions_run(*, image_ids: list[int]) -> dict[int, Prediction]:
    """Classify stored images with the active model, all survivors in one model call, and
    store one Prediction each. Returns the predictions by image id.

    Idempotent per image: one that already has a prediction is left as it is (the one-to-one
    column backs this). One that cannot be classified ends ``failed`` with the reason.
    A batch delivered again means a worker died in it: its images that were already tried
    are queued one by one instead, so that one image that kills workers fails alone after
    ``CLASSIFY_MAX_ATTEMPTS`` and takes no other image with it.
    """
    images = {image.pk: image for image in DigitImage.objects.filter(pk__in=image_ids)}
    existing = _predictions_existing(images)
    todo = _images_claim(images, existing=existing)
    if not todo:
        return existing
    readable, blobs = _files_read(todo)
    try:
        serving = predictor_serving()
    except ModelNotLoaded as exc:
        # At once: every attempt would meet the same missing model.
        queueing.images_fail(image_ids=[image.pk for image in readable], message=str(exc))
        return existing
    classified, inference_ms = _images_classify(serving.predictor, readable, blobs)
    if not classified:
        return existing
    return existing | _predictions_store(
        classified, predictor=serving.predictor, version=serving.version, inference_ms=inference_ms
    )


def _predictions_existing(images: dict[int, DigitImage]) -> dict[int, Prediction]:
    """The images' stored predictions; an image that has one is marked done, whatever its
    status said."""
    existing = {p.image_id: p for p in Prediction.objects.filter(image_id__in=images)}
    finished_late = [pk for pk in existing if images[pk].status != DigitImage.Status.DONE]
    DigitImage.objects.filter(pk__in=finished_late).update(status=DigitImage.Status.DONE, error_message="")
    return existing


def _images_claim(images: dict[int, DigitImage], *, existing: dict[int, Prediction]) -> list[DigitImage]:
    """The images this run classifies, marked processing with one more attempt. Those done or
    failed are skipped, those out of attempts fail, and those already tried in a batch
    delivered again are queued on their own."""
    todo = []
    for pk, image in images.items():
        if pk in existing or image.status == DigitImage.Status.FAILED:
            continue
        if image.attempts >= settings.CLASSIFY_MAX_ATTEMPTS:
            # Every earlier delivery ended without a result: its worker died on this image.
            queueing.images_fail(
                image_ids=[pk], message=f"This image could not be classified after {image.attempts} attempts."
            )
        elif image.attempts and len(images) > 1:
            queueing.image_enqueue_alone(pk)
        else:
            todo.append(image)
    DigitImage.objects.filter(pk__in=[image.pk for image in todo]).update(
        status=DigitImage.Status.PROCESSING, attempts=F("attempts") + 1
    )
    return todo


def _files_read(images: list[DigitImage]) -> tuple[list[DigitImage], list[bytes]]:
    """The images whose stored file could be read, and its bytes; the others fail, but for
    those their owner deleted meanwhile, which are left out."""
    readable, blobs = [], []
    for image in images:
        try:
            with image.file.open("rb") as fh:
                blobs.append(fh.read())
            readable.append(image)
        except Exception as exc:  # a storage's own error for a missing file (S3's ClientError), or OSError
            if not DigitImage.objects.filter(pk=image.pk).exists():
                logger.info("image %s was deleted while it waited; skipped", image.pk)
                continue
            if not isinstance(exc, OSError):
                raise
            queueing.images_fail(image_ids=[image.pk], message="The stored file could not be read.")
    return readable, blobs


def _images_classify(
    predictor: Predictor, images: list[DigitImage], blobs: list[bytes]
) -> tuple[list[tuple[DigitImage, NumberResult]], float]:
    """(image, reading) for each image the model read, as one digit or a number as its owner
    said (``DigitImage.reading``), and
    the milliseconds per image of the batch; each image that could not be read fails with the
    reason."""
    from ml.serving.numbers import read_numbers  # the worker's: TensorFlow stays out of web processes

    started = time.perf_counter()
    results = read_numbers(predictor, blobs, [image.reading for image in images])
    inference_ms = (time.perf_counter() - started) * 1000 / max(len(blobs), 1)
    classified = []
    for image, result in zip(images, results, strict=True):
        if result.error is not None:
            queueing.images_fail(image_ids=[image.pk], message=result.error)
        elif not result.digits:
            queueing.images_fail(image_ids=[image.pk], message="No writing was found in this image.")
        else:
            classified.append((image, result))
    return classified, inference_ms


def weakest_reading(result: NumberResult) -> DigitReading:
    """The digit a reading is as sure as: for one digit, that digit."""
    return min(result.digits, key=lambda reading: reading.prediction.confidence)


def _prediction_of(image: DigitImage, result: NumberResult, **fields) -> Prediction:
    """The Prediction row of a reading: the number and each digit, and in the single-digit
    fields the least sure digit (``Prediction``'s docstring says why)."""
    weakest = weakest_reading(result)
    several = len(result.digits) > 1
    return Prediction(
        image_id=image.pk,
        digit=weakest.prediction.digit,
        confidence=weakest.prediction.confidence,
        verdict=result.verdict,
        verdict_reason=result.reason,
        number_confidence=result.sureness,  # None for one digit
        probabilities=list(weakest.prediction.probabilities),
        number=result.number,
        digits=[reading.as_dict() | {"verdict": reading.prediction.verdict} for reading in result.digits],
        model_input=Prediction.encode_model_input(weakest.model_input.display),
        digit_inputs=b"".join(Prediction.encode_model_input(r.model_input.display) for r in result.digits)
        if several
        else None,
        model_input_exact=encode_model_array(np.stack([r.model_input.array for r in result.digits]))
        if image.training_consent
        else None,
        **fields,
    )


def _predictions_store(
    classified: list[tuple[DigitImage, NumberResult]],
    *,
    predictor: Predictor,
    version: ModelVersion,
    inference_ms: float,
) -> dict[int, Prediction]:
    """Store a Prediction (with its Grad-CAM heat map) for each classified image still there,
    mark them done, and return the stored predictions by image id. An image its owner deleted
    meanwhile is skipped: its row is locked first, as ``image_delete`` locks it, so either the
    delete waits and removes the new prediction with the image, or the image is gone here."""
    weakest = [weakest_reading(result) for _, result in classified]
    saliency = _saliency(
        predictor,
        np.stack([reading.model_input.array for reading in weakest]),
        np.array([reading.prediction.digit for reading in weakest]),
    )
    with transaction.atomic():
        present = set(
            DigitImage.objects.select_for_update()
            .filter(pk__in=[image.pk for image, _ in classified])
            .order_by("pk")  # one order for every locker: two deliveries of a batch never deadlock
            .values_list("pk", flat=True)
        )
        # ignore_conflicts: a duplicate delivery that got here first keeps its prediction.
        Prediction.objects.bulk_create(
            [
                _prediction_of(image, result, model_version=version, inference_ms=inference_ms, saliency=heat)
                for (image, result), heat in zip(classified, saliency, strict=True)
                if image.pk in present
            ],
            ignore_conflicts=True,
        )
        done = [image.pk for image, _ in classified if image.pk in present]
        DigitImage.objects.filter(pk__in=done).update(status=DigitImage.Status.DONE, error_message="")
    return {p.image_id: p for p in Prediction.objects.filter(image_id__in=done)}


# --- Flags --------------------------------------------------------------------------------


def image_retry(*, image: DigitImage) -> bool:
    """Classify a failed image again (its attempts start over), queued as the transaction
    commits; False, and nothing changes, for an image that has not failed."""
    with transaction.atomic():
        retried = DigitImage.objects.filter(pk=image.pk, status=DigitImage.Status.FAILED).update(
            status=DigitImage.Status.PENDING, error_message="", attempts=0
        )
        if retried:
            transaction.on_commit(partial(queueing.images_enqueue, [image.pk]))
    return bool(retried)


def image_read_as(*, image: DigitImage, reading: str) -> bool:
    """Read an image again as its owner now says (``DigitImage.Reading``: one digit, a number,
    or left to the site): its answer goes and it is queued again as the transaction commits.
    False, and nothing changes, while it is still being read, or where it is read that way
    already. What anyone said it shows (a flag, a feedback) stays."""
    if reading not in DigitImage.Reading.values:
        raise ValueError(f"read it as one of {', '.join(DigitImage.Reading.values)}")
    finished = [DigitImage.Status.DONE, DigitImage.Status.FAILED]
    with transaction.atomic():
        locked = (
            DigitImage.objects.select_for_update()
            .filter(pk=image.pk, status__in=finished)
            .exclude(reading=reading)
            .first()
        )
        if locked is None:
            return False
        Prediction.objects.filter(image=locked).delete()
        DigitImage.objects.filter(pk=locked.pk).update(
            reading=reading, status=DigitImage.Status.PENDING, error_message="", attempts=0
        )
        transaction.on_commit(partial(queueing.images_enqueue, [locked.pk]))
    return True


def _reading_clean(text: str, *, what: str) -> str:
    """A reading as typed: its digits, left to right; ValueError for anything else."""
    reading = str(text).strip()
    if not reading.isascii() or not reading.isdigit() or len(reading) > MAX_DIGITS:
        raise ValueError(f"Write {what} as digits only, left to right, such as 583124 (1 to {MAX_DIGITS} digits).")
    return reading


def _said_store(model: type[Said], *, image: DigitImage, number: str | None, **fields) -> Said:
    """Record (or replace) what someone says ``image`` reads, with ``fields`` of their own:
    ``number`` as ``_reading_clean`` left it, or ``None``: it is not a digit."""
    said, _ = model.objects.update_or_create(
        image=image,
        defaults={
            model.NUMBER_FIELD: number or "",
            model.DIGIT_FIELD: None,  # SaidReading.save() sets it from the number
            "not_a_digit": number is None,
            **fields,
        },
    )
    return said


def correction_training_refusal(*, correct_number: str | None, prediction: Prediction | None) -> str | None:
    """Why retraining will not learn from a correction, for people; None when it will.

    Each digit of a correction teaches the digit in one box the model found, so a correction
    trains only with as many digits as boxes: otherwise nothing says which digit belongs to
    which box. "Not a digit" always teaches the reject option, whatever the reader found: the
    image read whole and each of its groups of strokes are things that are not digits.
    An image with no prediction (it failed) is read again from its file, as one digit."""
    if not correct_number:
        return None
    found = len(prediction.readings()) if prediction is not None else 1
    given = len(correct_number)
    if given == found:
        return None
    return f"{given} {'digit' if given == 1 else 'digits'} given, {found} found: kept, not trained on."


def image_flag(*, image: DigitImage, correct_number: str | None, flagged_by, note: str = "") -> Flag:
    """Record (or correct) what an image really reads: its digits left to right ("7",
    "583124"); ``None``: it is not a digit. Anything else raises ValueError with a message for
    people."""
    number = None if correct_number is None else _reading_clean(correct_number, what="the correct reading")
    return _said_store(Flag, image=image, number=number, flagged_by=flagged_by, note=note, flagged_at=timezone.now())


def images_mark_reviewed(*, images: Iterable[DigitImage], reviewed_by) -> int:
    """Staff found these predictions right: they leave the review queue. Returns how many."""
    ids = [image.pk for image in images]
    return DigitImage.objects.filter(pk__in=ids, status=DigitImage.Status.DONE).update(
        reviewed_at=timezone.now(), reviewed_by=reviewed_by
    )


# --- Feedback from owners -----------------------------------------------------------------


def feedback_give(*, image: DigitImage, user, suggested_number: str | None) -> Feedback:
    """The owner says the reading is wrong: what the image really reads, digit by digit (not
    the current reading), or ``None``: it is not a digit, nor a number. The prediction stays as
    it is; staff see the suggestion in the admin. Saying it again replaces it. Refusals raise
    ValueError with a message for people."""
    if image.owner_id != user.pk:
        raise PermissionError("Only the owner of an image can give feedback on it.")
    number = None if suggested_number is None else _reading_clean(suggested_number, what="what it reads")
    prediction = Prediction.objects.filter(image=image).first()
    if prediction is None:
        raise ValueError("This image has no prediction yet.")
    if suggested_number is None and prediction.verdict == Prediction.Verdict.NOT_A_DIGIT:
        raise ValueError("The model already says this is not a digit.")
    # An image judged not a digit still has a best guess, which is what people see offered.
    if number == prediction.reading:
        raise ValueError(f"The model already reads {prediction.reading}; write what it really reads.")
    return _said_store(Feedback, image=image, number=number, confirmed_by=None, confirmed_at=None)


@dataclass(frozen=True)
class FeedbackConfirmation:
    """What ``feedback_confirm_as_seen`` did: how many it confirmed, and the suggestions it left
    because they say something else now than staff saw (their owner changed them since)."""

    confirmed: int
    changed: list[tuple[Feedback, str]]  # each with what staff saw: its ``says`` then


def feedback_confirm_as_seen(*, seen: dict[int, str], confirmed_by) -> FeedbackConfirmation:
    """Confirm each suggestion of ``seen`` (its primary key -> its ``says`` as staff saw it)
    that still says the same; one changed since is left waiting. The rows are locked while
    compared and confirmed, so an owner's change cannot slip in between."""
    with transaction.atomic():
        rows = Feedback.objects.select_for_update(of=("self",)).filter(pk__in=seen).select_related("image__owner")
        current = list(rows.order_by("pk"))
        same = [item for item in current if item.says == seen[item.pk]]
        confirmed = feedback_confirm(feedback=same, confirmed_by=confirmed_by)
    changed = [(item, seen[item.pk]) for item in current if item.says != seen[item.pk]]
    return FeedbackConfirmation(confirmed=confirmed, changed=changed)


def feedback_confirm(*, feedback: Iterable[Feedback], confirmed_by) -> int:
    """Staff agree with owners' suggestions: each becomes a Flag that retraining learns from."""
    count = 0
    with transaction.atomic():
        for item in feedback:
            image_flag(
                image=item.image,
                correct_number=None if item.not_a_digit else item.suggested_number,
                flagged_by=confirmed_by,
                note=f"confirmed from the owner's feedback ({item.image.owner})",
            )
            Feedback.objects.filter(pk=item.pk).update(confirmed_by=confirmed_by, confirmed_at=timezone.now())
            count += 1
    return count
