"""Deletion: an image with everything stored about it, and a whole account.

What survives is decided here (with ``selectors.images_kept_on_delete``): a staff
correction of an image whose owner agreed at upload (``DigitImage.training_consent``) is
kept as ``TrainingExample``s, one per digit the model found (the 28x28 input the model took
and the right digit, nothing that leads back to the person), where retraining would learn
from it; of every other image nothing is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from django.contrib.auth import get_user_model
from django.core.files.storage import Storage
from django.db import transaction
from rest_framework.authtoken.models import Token

from classifier.models import DigitImage, Flag, Prediction, TrainingExample
from classifier.selectors import images_kept_on_delete

logger = logging.getLogger(__name__)

# Images deleted per query while an account goes: bounded memory whatever their number.
ACCOUNT_DELETE_BATCH = 200


class AccountDeleteRefused(Exception):
    """The account may not be deleted; the message says why, for people."""


def _file_delete(storage: Storage, name: str) -> None:
    # Through the storage API, so that S3 works as the file system does; a file already
    # missing is no error for either. Run once the rows are gone for good (on commit): a
    # rolled-back delete keeps its file.
    try:
        storage.delete(name)
    except Exception:
        logger.exception("the row of %s is deleted but its file could not be; remove it by hand", name)


def _training_examples_keep(image: DigitImage) -> list[TrainingExample]:
    """The image's correction as TrainingExamples, one per digit (one for "not a digit"),
    where ``images_kept_on_delete`` says so: then the correction has a digit for each input
    stored."""
    if not images_kept_on_delete(DigitImage.objects.filter(pk=image.pk)).exists():
        return []
    flag = Flag.objects.get(image=image)
    stored = bytes(Prediction.objects.only("model_input_exact").get(image=image).model_input_exact)
    size = len(stored) // max(len(flag.correct_number), 1)
    answers = [None] if flag.not_a_digit else [int(digit) for digit in flag.correct_number]
    return [
        TrainingExample.objects.create(
            model_input=stored[index * size : (index + 1) * size],  # the same encoding: copied, never re-rounded
            correct_digit=digit,
            not_a_digit=flag.not_a_digit,
            source=TrainingExample.Source.FLAG,
            trained_in=flag.trained_in,
        )
        for index, digit in enumerate(answers)
    ]


def image_delete(*, image: DigitImage) -> list[TrainingExample]:
    """Delete an image: its row, its prediction (with the model input and the Grad-CAM heat
    map stored in it), feedback and flag, and, once that commits, its file. Returns the
    TrainingExamples kept of its correction (see the module), none for most images.

    The row is locked first, as the worker locks it before it stores a prediction, so an image
    deleted while it is classified loses the new prediction with it, or the worker skips it.
    An image already gone is no error: a second click finds nothing to do.
    """
    with transaction.atomic():
        locked = DigitImage.objects.select_for_update().filter(pk=image.pk).first()
        if locked is None:
            return []
        kept = _training_examples_keep(locked)
        name, storage = locked.file.name, locked.file.storage
        locked.delete()
        if name:
            transaction.on_commit(partial(_file_delete, storage, name))
    return kept


@dataclass(frozen=True)
class AccountDeletion:
    images: int  # deleted
    kept: int  # images whose correction is kept as training examples


def account_delete_refusal(*, user) -> str | None:
    """Why ``user`` may not delete their account, or None. The last active superuser may not:
    nobody would be left to run the admin."""
    if user.is_superuser:
        others = get_user_model().objects.filter(is_superuser=True, is_active=True).exclude(pk=user.pk)
        if not others.exists():
            return (
                "You are the only superuser: make someone else a superuser in the admin first, "
                "or nobody could run the site."
            )
    return None


def account_delete(*, user) -> AccountDeletion:
    """Delete ``user`` with all their images (each through ``image_delete``, files included),
    their API token and the account itself. Corrections of images they agreed to keep for
    training survive as TrainingExamples; flags they made as staff stay, without their name.

    Each image goes in its own transaction, so the files go as the deletion proceeds and a
    failure half-way leaves an account that can be deleted again, never files without rows.
    Images uploaded meanwhile (another tab) are caught by the loop, which runs until none is
    left. Raises AccountDeleteRefused for the last superuser."""
    if reason := account_delete_refusal(user=user):
        raise AccountDeleteRefused(reason)
    images = kept = 0
    while batch := list(DigitImage.objects.filter(owner=user).order_by("pk")[:ACCOUNT_DELETE_BATCH]):
        for image in batch:
            examples = image_delete(image=image)
            images += 1
            kept += bool(examples)
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        user.delete()
    logger.info("account deleted: %d images, %d corrections kept as training examples", images, kept)
    return AccountDeletion(images=images, kept=kept)
