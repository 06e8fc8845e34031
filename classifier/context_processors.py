"""Template context for every page."""

from django.utils.functional import SimpleLazyObject

from classifier.selectors import workers_ready


def workers(request) -> dict:
    """``workers_ready``: asked of the database only by a page that shows a waiting image."""
    return {"workers_ready": SimpleLazyObject(workers_ready)}
