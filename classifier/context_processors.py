"""Template context for every page."""

from django.conf import settings
from django.utils.functional import SimpleLazyObject

from classifier.selectors import workers_ready


def workers(request) -> dict:
    """``workers_ready`` (asked of the database only by a page that shows a waiting image) and
    whether password reset by e-mail works here, and whether its mail is only printed on the
    console (``make run`` without a mail server)."""
    return {
        "workers_ready": SimpleLazyObject(workers_ready),
        "password_reset_enabled": settings.PASSWORD_RESET_ENABLED,
        "mail_to_console": settings.EMAIL_BACKEND == settings.CONSOLE_EMAIL_BACKEND,
    }
