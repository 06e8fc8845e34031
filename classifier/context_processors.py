"""Template context for every page."""

from django.conf import settings
from django.utils.functional import SimpleLazyObject

from classifier.selectors import workers_ready


def workers(request) -> dict:
    """``workers_ready`` (asked of the database only by a page that shows a waiting image) and
    whether password reset by e-mail works here."""
    return {"workers_ready": SimpleLazyObject(workers_ready), "password_reset_enabled": settings.PASSWORD_RESET_ENABLED}
