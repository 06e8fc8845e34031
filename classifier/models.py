"""digitsite's data: uploaded images, their predictions, staff corrections, model versions.

Kept whole: every model of the app in one module past 400 lines, where Django, the admin and readers look
for them: they refer to each other (an image's prediction, flag and feedback), each short, and
the migrations import this module by its path (``classifier.models._upload_path``), which a
package would move. What an image is read as comes from ``ml.serving.readings``; what a
person says it reads (a flag, a feedback) is one shape, ``SaidReading``.
"""

from __future__ import annotations

import base64
import io
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from ml.serving.artifacts import INPUT_SIDE, NUM_CLASSES
from ml.serving.preprocessing import FORMAT_SUFFIXES
from ml.serving.readings import MODES as READING_MODES
from ml.serving.segment import MAX_DIGITS
from ml.serving.verdicts import BLANK, REASONS

DIGITS = range(NUM_CLASSES)
DIGIT_CHOICES = [(digit, str(digit)) for digit in DIGITS]
DIGIT_VALIDATORS = [MinValueValidator(DIGITS[0]), MaxValueValidator(DIGITS[-1])]
NUMBER_VALIDATOR = RegexValidator(r"^[0-9]+$", "Write the digits only, left to right, such as 583124.")


def _in_step(number: str, digit: int | None) -> tuple[str, int | None]:
    """A reading and its one-digit field kept in step: the digit is the reading where that is
    one digit; a reading given only as its digit gets it as the reading."""
    if not number and digit is not None:
        number = str(int(digit))
    return number, int(number) if len(number) == 1 else None


def _a_reading(number: str) -> str:
    """A reading as people say it: "a 7" for one digit, "583124" for a number."""
    return f"a {number}" if len(number) == 1 else number


class ModelVersion(models.Model):
    """A trained model on disk; exactly one is active and serves predictions."""

    number = models.PositiveIntegerField(unique=True)
    architecture = models.CharField(max_length=32)
    path = models.CharField(max_length=500, help_text="directory holding model.keras and metadata.json")
    metrics = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    flags_used = models.PositiveIntegerField(default=0, help_text="corrections it was trained on")
    notes = models.TextField(blank=True)
    # Where its files live for every machine (classifier.services.versions), and their SHA-256;
    # empty for the shipped version, which is in the image.
    archive = models.CharField(max_length=300, blank=True, help_text="its files, one archive in storage")
    checksum = models.CharField(
        max_length=64,
        blank=True,
        validators=[RegexValidator(r"^[0-9a-f]{64}$", "A SHA-256 checksum is 64 hexadecimal digits.")],
        help_text="SHA-256 of the archive",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Why a worker last could not load it (classifier.services.serving); cleared once one does.
    load_error = models.TextField(blank=True)
    load_failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model"),
        ]

    def __str__(self) -> str:
        return f"v{self.number} ({self.architecture})"

    @property
    def directory(self) -> Path:
        path = Path(self.path)
        return path if path.is_absolute() else Path(settings.BASE_DIR) / path

    @property
    def test_accuracy(self) -> float | None:
        return self.metrics.get("test_accuracy")

    @property
    def judging(self) -> list[dict]:
        """The fixed judging sets it was compared on with its parent when it was retrained
        (``ml.fitting.judging``): per set, its name, images, what is counted, both shares, the
        difference and the noise it had to exceed (in points), and the verdict."""
        return [
            row
            | {
                "parent_percent": f"{100 * row['parent']:.1f}",
                "candidate_percent": f"{100 * row['candidate']:.1f}",
                "difference_points": f"{100 * row['difference']:+.1f}",
                "noise_points": f"{100 * row['noise']:.1f}",
            }
            for row in self.metrics.get("judging", [])
        ]

    @property
    def judged_worse_on(self) -> list[str]:
        """The judging sets it read worse than its parent beyond their noise."""
        return [row["set"] for row in self.metrics.get("judging", []) if row["verdict"] == "worse"]


def _upload_path(instance: DigitImage, filename: str) -> str:
    # Generated names only: the original name is data, never a path.
    return f"uploads/{instance.owner_id}/{uuid.uuid4().hex}{FORMAT_SUFFIXES.get(instance.image_format, '')}"


def _reverse_one_to_one(instance: models.Model, name: str):
    """The row behind a reverse one-to-one accessor, or None where there is none (Django raises)."""
    try:
        return getattr(instance, name)
    except ObjectDoesNotExist:
        return None


# What an image is read as (``Reading.AUTO``, ...): the modes declared once, in
# ``ml.serving.readings``, which the worker reads by.
Reading = models.TextChoices("Reading", [(mode.name.upper(), (mode.name, mode.label)) for mode in READING_MODES])


class DigitImage(models.Model):
    Reading = Reading

    class Status(models.TextChoices):
        PENDING = "pending", "Queued"
        PROCESSING = "processing", "Processing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="digit_images")
    file = models.FileField(upload_to=_upload_path, max_length=300)
    original_name = models.CharField(max_length=255)
    image_format = models.CharField(max_length=10)
    content_type = models.CharField(max_length=50)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    uploaded_at = models.DateTimeField(auto_now_add=True, db_index=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Recovery knows what is stranded instead of waiting for age: when the image last reached the
    # broker (empty: it never did, its publish failed), and which worker run took its message.
    queued_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, help_text="the worker run that took its message")
    # Asked once, at upload: if staff correct this image, may the correction outlive the image
    # (as a 28x28 TrainingExample, with nothing that leads back to the person)?
    training_consent = models.BooleanField(
        default=False,
        help_text="if staff correct it, its owner lets the 28x28 model input and the answer be kept "
        "for training after the image is deleted",
    )
    reading = models.CharField(
        max_length=8,
        choices=Reading.choices,
        default=Reading.AUTO,
        help_text="what its owner said it shows: one digit, a number, or left to the site",
    )
    # Staff looked at the prediction and found it right ("looks right" in the admin's review
    # queue); a flag says it was wrong. Either takes the image out of the queue.
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="images_reviewed"
    )

    class Meta:
        ordering = ["-uploaded_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-uploaded_at"]),
            # The review queue's size and the reviews per day on the statistics page.
            models.Index(fields=["status", "reviewed_at"], name="image_review_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.original_name} (#{self.pk})"

    def get_absolute_url(self) -> str:
        return reverse("classifier:image_detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def prediction_or_none(self) -> Prediction | None:
        return _reverse_one_to_one(self, "prediction")

    @property
    def flag_or_none(self) -> Flag | None:
        return _reverse_one_to_one(self, "flag")

    @property
    def feedback_or_none(self) -> Feedback | None:
        return _reverse_one_to_one(self, "feedback")


def runner_up(probabilities) -> tuple[int, float]:
    """The second most likely of ten probabilities (digit 0 first): its digit and probability."""
    ranked = sorted(range(len(probabilities)), key=lambda d: probabilities[d], reverse=True)
    return ranked[1], float(probabilities[ranked[1]])


class Prediction(models.Model):
    """A model version's answer for an image, with the input it saw and, where Grad-CAM ran,
    which pixels drove it. Both are stored as INPUT_SIDE x INPUT_SIDE uint8 bytes, row by row;
    the methods below are the one place that encodes and decodes them.

    An image is read as a number (``ml.serving.numbers``): ``number`` holds its digits left to right
    and ``digits`` each digit's reading and box. For an image of one digit every field is that
    digit's, as it always was. For several, the verdict is ``number`` (sure) or
    ``unsure``, ``number_confidence`` the calibrated probability that the whole number is
    exactly right (where the model version calibrates numbers: ``ml.serving.sureness``), and
    ``digit``, ``confidence``, ``probabilities``, ``model_input`` and ``saliency`` are those of
    the least sure digit.
    """

    class Verdict(models.TextChoices):
        """How far the answer can be trusted (``ml.fitting.reject``): a digit read with confidence, a
        best guess the model is not sure of, or an image that does not show one digit."""

        DIGIT = "digit", "digit"
        NUMBER = "number", "number"
        UNSURE = "unsure", "not sure"
        NOT_A_DIGIT = "not_a_digit", "not a digit"

    image = models.OneToOneField(DigitImage, on_delete=models.CASCADE, related_name="prediction")
    digit = models.PositiveSmallIntegerField(
        validators=DIGIT_VALIDATORS, help_text="the best guess, whatever the verdict"
    )
    confidence = models.FloatField(help_text="calibrated probability of the digit, where the model is calibrated")
    verdict = models.CharField(max_length=12, choices=Verdict.choices, default=Verdict.DIGIT, db_index=True)
    verdict_reason = models.CharField(
        max_length=200, blank=True, help_text="for not a digit: what the image looks like instead"
    )
    probabilities = models.JSONField(help_text="ten probabilities, digit 0 first")
    number = models.CharField(
        max_length=MAX_DIGITS, blank=True, help_text="the digits read, left to right; empty when it is not a digit"
    )
    digits = models.JSONField(
        default=list,
        blank=True,
        help_text="each digit left to right: digit, confidence, probabilities, verdict, box [x, y, width, height] "
        "on the image; empty for predictions made before numbers were read",
    )
    number_confidence = models.FloatField(
        null=True,
        blank=True,
        help_text="for several digits: the calibrated probability that the whole number is exactly right, "
        "where the model version calibrates numbers",
    )
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    model_input = models.BinaryField(help_text="the 28x28 uint8 image the model saw, row by row")
    saliency = models.BinaryField(
        null=True, blank=True, help_text="Grad-CAM: 28x28 uint8, how much each pixel drove the prediction"
    )
    # model_input is rounded to 8 bits for people; a kept TrainingExample must train on exactly
    # what the model took, so the float input is stored too, only where the owner consented.
    model_input_exact = models.BinaryField(
        null=True, blank=True, help_text="the 28x28 float32 input itself, kept only with the owner's training consent"
    )
    digit_inputs = models.BinaryField(
        null=True, blank=True, help_text="for a number: each digit's 28x28 uint8 input, one after another"
    )
    inference_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The statistics page counts every prediction by version, verdict, digit, confidence bin
        # and day. Rows carry ~2 kB of input and heat map: these narrow indexes answer those counts
        # without reading the rows.
        indexes = [
            models.Index(fields=["model_version", "verdict", "digit", "confidence"], name="prediction_stats_idx"),
            models.Index(fields=["created_at"], name="prediction_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.digit} ({self.confidence:.0%}, {self.get_verdict_display()})"

    @property
    def runner_up(self) -> tuple[int, float]:
        """The second most likely digit and its probability."""
        return runner_up(self.probabilities)

    @property
    def looks_blank(self) -> bool:
        """Nothing was found on the image to read: its figures are the model's for an empty
        input, which people need not see."""
        return self.verdict == self.Verdict.NOT_A_DIGIT and self.verdict_reason == REASONS[BLANK]

    @property
    def runner_up_digit(self) -> int:
        return self.runner_up[0]

    @staticmethod
    def encode_model_input(pixels: np.ndarray) -> bytes:
        """``model_input`` for the uint8 image the model saw (``ModelInput.display``)."""
        return pixels.astype(np.uint8, copy=False).reshape(INPUT_SIDE, INPUT_SIDE).tobytes()

    @staticmethod
    def encode_heat_map(heat: np.ndarray) -> bytes:
        """``saliency`` for a Grad-CAM heat map of floats in [0, 1]."""
        return np.round(np.clip(heat, 0, 1) * 255).astype(np.uint8).reshape(INPUT_SIDE, INPUT_SIDE).tobytes()

    def model_input_pixels(self) -> np.ndarray:
        """The uint8 image the model saw (for a number, its least sure digit's)."""
        return _decode_square(self.model_input)

    @property
    def is_number(self) -> bool:
        return len(self.digits) > 1

    @property
    def doubts_a_digit(self) -> bool:
        """Whether one of a number's digits is itself unsure (or not a digit): only then is its
        least sure digit the figure that says why the number is not sure."""
        return any(digit.get("verdict", "digit") != "digit" for digit in self.digits)

    @property
    def reading(self) -> str:
        """What it reads, in a word: the number, or for one digit (or none) its best guess."""
        return self.number or str(self.digit)

    def readings(self) -> list[dict]:
        """Each digit's reading, left to right (``digits``); a prediction made before numbers
        were read is its one digit, with no box."""
        if self.digits:
            return self.digits
        return [
            {
                "digit": self.digit,
                "confidence": self.confidence,
                "probabilities": self.probabilities,
                "verdict": self.verdict,
                "box": None,
            }
        ]

    def digit_input_pixels(self) -> np.ndarray:
        """Each digit's uint8 input, (n, 28, 28), left to right."""
        if not self.digit_inputs:
            return self.model_input_pixels()[None]
        return np.frombuffer(bytes(self.digit_inputs), dtype=np.uint8).reshape(-1, INPUT_SIDE, INPUT_SIDE)

    def exact_inputs(self) -> np.ndarray | None:
        """Each digit's float32 input as the model took it, (n, 28, 28), where the owner
        consented to its keeping; None otherwise."""
        if not self.model_input_exact:
            return None
        return np.frombuffer(bytes(self.model_input_exact), dtype="<f4").reshape(-1, INPUT_SIDE, INPUT_SIDE)

    def heat_map(self) -> np.ndarray | None:
        """The Grad-CAM heat map as float32 in [0, 1]; None where Grad-CAM failed."""
        return _decode_square(self.saliency).astype(np.float32) / 255 if self.saliency else None

    @property
    def heat_map_is_empty(self) -> bool:
        """An all-zero heat map: nothing in the image spoke for the digit."""
        return bool(self.saliency) and not any(bytes(self.saliency))


def _decode_square(stored: bytes | memoryview, dtype=np.uint8) -> np.ndarray:
    return np.frombuffer(bytes(stored), dtype=dtype).reshape(INPUT_SIDE, INPUT_SIDE)


def encode_model_array(array: np.ndarray) -> bytes:
    """The float32 model input (``ModelInput.array``), row by row, little-endian: stored as is,
    it decodes to the very array the model took. Several inputs (a number's digits) are stored
    one after another."""
    return array.astype("<f4", copy=False).reshape(-1, INPUT_SIDE, INPUT_SIDE).tobytes()


def decode_model_array(stored: bytes | memoryview) -> np.ndarray:
    return _decode_square(stored, dtype="<f4").astype(np.float32)


def _digit_field(help_text: str) -> models.PositiveSmallIntegerField:
    return models.PositiveSmallIntegerField(null=True, blank=True, validators=DIGIT_VALIDATORS, help_text=help_text)


def _number_field(help_text: str) -> models.CharField:
    return models.CharField(max_length=MAX_DIGITS, blank=True, validators=[NUMBER_VALIDATOR], help_text=help_text)


def _says_a_reading_or_not_a_digit(*, digit: str, number: str, name: str) -> models.CheckConstraint:
    # Not a digit, one digit (the digit is the number's one digit), or a number.
    return models.CheckConstraint(
        condition=models.Q(not_a_digit=True, **{f"{digit}__isnull": True, number: ""})
        | (models.Q(not_a_digit=False) & ~models.Q(**{number: ""})),
        name=name,
    )


class SaidReading(models.Model):
    """What a person says an image really reads: its digits left to right, the one-digit field
    kept in step (``_in_step``), or that it is not a digit. Staff's ``Flag`` and the owner's
    ``Feedback`` say it alike; their columns keep their own names and help (``correct_*``,
    ``suggested_*``: ``DIGIT_FIELD``, ``NUMBER_FIELD``; the image's accessor, ``flag`` or
    ``feedback``), which the migrations know them by."""

    DIGIT_FIELD: str
    NUMBER_FIELD: str

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self._keep_in_step()
        super().save(*args, **kwargs)

    @property
    def said_digit(self) -> int | None:
        """The digit said, where one digit is (None for a number or not a digit)."""
        return getattr(self, self.DIGIT_FIELD)

    @property
    def said_number(self) -> str:
        """The digits said, left to right; empty for not a digit."""
        return getattr(self, self.NUMBER_FIELD)

    def _keep_in_step(self) -> None:
        number, digit = _in_step(self.said_number, self.said_digit)
        setattr(self, self.NUMBER_FIELD, number)
        setattr(self, self.DIGIT_FIELD, digit)

    @property
    def says(self) -> str:
        """What it says, as people read it: "is not a digit", "is a 7", "is 583124"."""
        return "is not a digit" if self.not_a_digit else f"is {_a_reading(self.said_number)}"


class Feedback(SaidReading):
    """An owner's word that a prediction is wrong: what it really reads, or that it is not a
    digit (nor a number) at all. A suggestion for staff, not a correction.

    It changes nothing by itself; staff confirm it into a Flag (which retraining learns from).
    """

    DIGIT_FIELD, NUMBER_FIELD = "suggested_digit", "suggested_number"

    image = models.OneToOneField(DigitImage, on_delete=models.CASCADE, related_name="feedback")
    suggested_digit = _digit_field("where the owner says it is one digit")
    suggested_number = _number_field(
        "what the owner says it reads, digit by digit; empty when they say it is not a digit"
    )
    not_a_digit = models.BooleanField(default=False, help_text="the owner says it shows no digits")
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="feedback_confirmed"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "feedback"
        constraints = [
            _says_a_reading_or_not_a_digit(
                digit="suggested_digit", number="suggested_number", name="feedback_says_a_reading_or_not_a_digit"
            )
        ]

    def __str__(self) -> str:
        if self.not_a_digit:
            return f"#{self.image_id} may not be a digit"
        return f"#{self.image_id} may be {_a_reading(self.suggested_number)}"

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None


class Flag(SaidReading):
    """A staff correction: the digit an image really shows, or that it shows no one digit
    (which teaches the reject option, not a digit class)."""

    DIGIT_FIELD, NUMBER_FIELD = "correct_digit", "correct_number"

    image = models.OneToOneField(DigitImage, on_delete=models.CASCADE, related_name="flag")
    correct_digit = _digit_field("where the image shows one digit: that digit")
    correct_number = _number_field("what the image really reads, digit by digit; empty when it is not a digit")
    not_a_digit = models.BooleanField(default=False, help_text="the image shows no digits")
    flagged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="flags_made"
    )
    flagged_at = models.DateTimeField(auto_now_add=True)
    note = models.TextField(blank=True)
    trained_in = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="flags_learned"
    )

    class Meta:
        constraints = [
            _says_a_reading_or_not_a_digit(
                digit="correct_digit", number="correct_number", name="flag_says_a_reading_or_not_a_digit"
            )
        ]

    def __str__(self) -> str:
        return f"#{self.image_id} {self.says}"

    def clean(self):
        self._keep_in_step()
        if self.not_a_digit == bool(self.correct_number):
            raise ValidationError("Give the correct digit or number, or say that it is not a digit (not both).")


class TrainingExample(models.Model):
    """What retraining needs of a corrected image whose owner deleted it, having agreed at
    upload that a correction may be kept: the 28x28 input the model took and the right answer.
    Nothing links it to the person, the file or the upload; retraining learns from it as from
    a flag."""

    class Source(models.TextChoices):
        FLAG = "flag", "staff correction"

    model_input = models.BinaryField(help_text="the 28x28 float32 model input, row by row")
    correct_digit = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=DIGIT_VALIDATORS, help_text="empty when it is not a digit"
    )
    not_a_digit = models.BooleanField(default=False, help_text="the image did not show one digit")
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.FLAG)
    created_at = models.DateTimeField(auto_now_add=True, help_text="when its image was deleted")
    trained_in = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="examples_learned"
    )

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(not_a_digit=True, correct_digit__isnull=True)
                | models.Q(not_a_digit=False, correct_digit__isnull=False),
                name="example_says_a_digit_or_not_a_digit",
            )
        ]

    def __str__(self) -> str:
        return f"example #{self.pk} {self.says}"

    @property
    def says(self) -> str:
        return "is not a digit" if self.not_a_digit else f"is a {self.correct_digit}"

    def array(self) -> np.ndarray:
        """The float32 input the model took, as retraining feeds it."""
        return decode_model_array(self.model_input)

    def png_base64(self) -> str:
        """The input as a small PNG for the admin, base64-encoded for a data: URL."""
        from PIL import Image

        out = io.BytesIO()
        Image.fromarray(np.round(self.array() * 255).astype(np.uint8), mode="L").save(out, "PNG")
        return base64.b64encode(out.getvalue()).decode("ascii")


class WorkerHeartbeat(models.Model):
    """A Celery worker's last sign of life, written by the worker itself every few seconds."""

    hostname = models.CharField(max_length=255, unique=True)
    seen_at = models.DateTimeField()
    started_at = models.DateTimeField()
    # When one of its pool processes had loaded the active model and could classify at once;
    # cleared when the worker starts (again), so that a restart warms up visibly.
    ready_at = models.DateTimeField(null=True, blank=True)
    # This run of the worker (new at each start): images claimed by any other run of it are
    # stranded, so a restarted worker queues them again at once.
    run = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.hostname} (seen {self.seen_at:%Y-%m-%d %H:%M:%S})"


class RetrainRun(models.Model):
    """A retrain asked for from the admin (or `retrain --background`): queued on the training
    queue, its progress while it runs, and its outcome. At most one is queued or running."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PROMOTED = "promoted", "Promoted"
        KEPT = "kept", "Kept the active version"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    # True while queued or running; the constraint below lets one row at a time have it.
    in_progress = models.BooleanField(default=True)
    epochs = models.PositiveSmallIntegerField(null=True, blank=True, help_text="empty: RETRAIN_EPOCHS")
    force = models.BooleanField(default=False, help_text="activate the candidate whatever the gate says")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    requested_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    epoch = models.PositiveSmallIntegerField(default=0, help_text="the epoch it is in, while it runs")
    epochs_total = models.PositiveSmallIntegerField(default=0)
    candidate = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.TextField(blank=True, help_text="why the candidate was promoted or kept, or why it failed")
    explanation = models.TextField(
        blank=True, help_text="what the gate's comparison could and could not show, where corrections are few"
    )
    # Each stage as it went: {"name", "started_at", "finished_at" (ISO times), "progress" (0-1
    # or null), "detail" (its latest line)}, in order; the names are STAGES'.
    stages = models.JSONField(default=list, blank=True)
    # The trainer that took it and that trainer's run (WorkerHeartbeat): a run whose trainer
    # stopped beating, or started again as another run, died with it (``retrains_fail_orphaned``).
    trainer = models.CharField(max_length=255, blank=True)
    trainer_run = models.CharField(max_length=64, blank=True)

    # A retrain's stages, in order, as staff read them (``ml.fitting.retrain`` names the middle three).
    STAGES = {
        "gathering": "Gathering the corrections",
        "fine-tuning": "Fine-tuning",
        "calibrating": "Calibrating its confidence and fitting the reject option",
        "judging": "Judging it against the active version",
        "storing": "Storing the new version",
    }
    # The option, as the admin offers it, that activates a candidate whatever the gate says
    # (and lets a retrain with no corrections fine-tune on MNIST alone).
    FORCE_LABEL = "Activate the new version even if it is not better"

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["in_progress"], condition=Q(in_progress=True), name="one_retrain_at_a_time"
            ),
        ]

    def __str__(self) -> str:
        return f"retrain of {self.requested_at:%Y-%m-%d %H:%M}: {self.get_status_display()}"

    @property
    def summary(self) -> str:
        """What staff read on the model versions page."""
        if self.status == self.Status.QUEUED:
            return "Queued: waiting for a trainer (a worker of the training queue)."
        if self.status == self.Status.RUNNING:
            current = self.stages[-1] if self.stages else None
            if current is None:
                return "Running: starting."
            detail = f", {current['detail']}" if current.get("detail") else ""
            return f"Running: {self.STAGES.get(current['name'], current['name']).lower()}{detail}."
        version = f"v{self.candidate.number}" if self.candidate else "the candidate"
        if self.status == self.Status.PROMOTED:
            return f"Promoted: {version} is active ({self.reason})."
        if self.status == self.Status.KEPT:
            return f"Kept the active version; {version} is stored, not active ({self.reason})."
        return f"Failed: {self.reason}"

    @property
    def rejects_summary(self) -> str:
        """What the images staff said are not digits taught the candidate's reject option."""
        metrics = self.candidate.metrics if self.candidate else {}
        taught = metrics.get("rejects_taught")
        if not taught:
            return ""
        said = f"The reject option learnt from {taught} image{'s' if taught != 1 else ''} staff said are not digits"
        new, old = metrics.get("rejects_caught"), metrics.get("parent_rejects_caught")
        if new is None or old is None:
            return f"{said}."
        parent = f"v{self.candidate.parent.number}" if self.candidate.parent else "the active version"
        return (
            f"{said}: v{self.candidate.number} says so of {new:.0%} of what the reader judges of them, "
            f"{parent} of {old:.0%}."
        )

    def stage_rows(self, now: datetime | None = None) -> list[dict]:
        """Every stage for the status page: its label, ``state`` (done, running, waiting;
        stopped where a run ended in it, not reached after that; skipped where a later stage
        began without it), seconds taken or so far, progress in percent where known
        (``estimated``: from earlier runs' durations, not its own steps), and while it runs the
        seconds left where known (``left``) or what earlier runs took (``expected``)."""
        now = now or timezone.now()
        seen = {stage["name"]: stage for stage in self.stages}
        reached = max((list(self.STAGES).index(name) for name in seen if name in self.STAGES), default=-1)
        rows = []
        for index, (name, label) in enumerate(self.STAGES.items()):
            stage = seen.get(name)
            if stage is None:
                later = "waiting" if self.in_progress else "not reached"
                rows.append({"name": name, "label": label, "state": later if index > reached else "skipped"})
                continue
            started = datetime.fromisoformat(stage["started_at"])
            finished = datetime.fromisoformat(stage["finished_at"]) if stage.get("finished_at") else None
            running = finished is None and self.in_progress
            end = finished or (now if running else self.finished_at or now)
            progress = stage.get("progress")
            rows.append(
                {
                    "name": name,
                    "label": label,
                    "state": "running" if running else "done" if finished else "stopped",
                    "seconds": max((end - started).total_seconds(), 0.0),
                    "percent": round(100 * progress) if progress is not None else None,
                    "estimated": stage.get("estimated", False),
                    "left": stage.get("left_seconds"),
                    "expected": stage.get("expected_seconds"),
                    "detail": stage.get("detail", ""),
                }
            )
        return rows

    def elapsed_seconds(self, now: datetime | None = None) -> float | None:
        """Seconds since it started: so far while it runs, in all once it ended."""
        if self.started_at is None:
            return None
        return ((self.finished_at or now or timezone.now()) - self.started_at).total_seconds()


class RequeueRun(models.Model):
    """The last run of beat's requeue_stale (one row): /healthz tells from it whether beat is
    alive, since stranded images recover only through these runs."""

    ran_at = models.DateTimeField()
    requeued = models.PositiveIntegerField(help_text="images it queued again")

    def __str__(self) -> str:
        return f"requeue_stale at {self.ran_at:%Y-%m-%d %H:%M:%S}: {self.requeued} requeued"


class TrainerPing(models.Model):
    """The last ping a trainer's pool answered (one row): beat sends one to the training queue
    every REQUEUE_STALE_INTERVAL_SECONDS, so that /healthz sees a trainer whose process is
    alive but cannot take work."""

    answered_at = models.DateTimeField()
    hostname = models.CharField(max_length=255)
    # What keeps that trainer from having MNIST ("" where nothing does): the admin's "Retrain
    # now" says so before queueing a retrain that could not start.
    mnist_missing = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.hostname} answered at {self.answered_at:%Y-%m-%d %H:%M:%S}"


class DrawingPreview(models.Model):
    """A drawing in progress, read by a worker while the person draws (the draw page's live
    answer). Not an upload: never in the gallery, one per person at a time (a newer one
    replaces it), and gone within ``DRAW_PREVIEW_KEEP_SECONDS``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="drawing_previews")
    Reading = Reading

    drawing = models.BinaryField(help_text="the canvas as PNG")
    reading = models.CharField(max_length=8, choices=Reading.choices, default=Reading.AUTO)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # {"digit", "confidence", "probabilities", "verdict", "reason"}, or {"error"} when it could not be read.
    result = models.JSONField(null=True, blank=True)
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    inference_ms = models.FloatField(null=True, blank=True, help_text="preprocessing and model, in the worker")

    def __str__(self) -> str:
        return f"drawing preview of {self.owner_id} at {self.created_at:%H:%M:%S}"

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None
