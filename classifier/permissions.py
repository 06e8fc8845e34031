"""Who may do what on the site beyond their own images, by Django's model permissions, as the
admin decides it: staff status opens the admin's door, a permission opens each thing in it.
Superusers hold every permission; other staff get them from groups (the ``Reviewers`` group,
made by the migrations, holds what reviewing needs) or one by one in the admin."""

from __future__ import annotations

REVIEWERS_GROUP = "Reviewers"
# What the review work needs: every image and its reading, flags, owners' feedback, versions.
REVIEWER_PERMISSIONS = (
    "view_digitimage",
    "change_digitimage",  # mark reviewed
    "view_prediction",
    "view_flag",
    "add_flag",
    "change_flag",
    "view_feedback",
    "change_feedback",  # confirm an owner's suggestion
    "view_modelversion",
)


def _staff_with(user, *codenames: str) -> bool:
    return bool(
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and any(user.has_perm(f"classifier.{name}") for name in codenames)
    )


def may_see_all_images(user) -> bool:
    """Any user's image, its file and its reading, everyone's history and its export, the site's
    statistics: staff who may view images in the admin (view or change, as the admin counts)."""
    return _staff_with(user, "view_digitimage", "change_digitimage")


def may_flag(user) -> bool:
    """Record or correct what an image really reads (a Flag retraining learns from): staff who
    may see every image and both add and change flags, as the admin's flag forms need."""
    return may_see_all_images(user) and _staff_with(user, "add_flag") and _staff_with(user, "change_flag")
