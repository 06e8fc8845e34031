import logging

from django.apps import AppConfig
from django.db.models.signals import post_migrate

logger = logging.getLogger(__name__)


def _register_shipped_model(sender, **kwargs):
    from classifier.services import model_version_ensure_initial

    try:
        model_version_ensure_initial()
    except FileNotFoundError as exc:
        logger.warning("no shipped model to register as version 1: %s", exc)


class ClassifierConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "classifier"
    verbose_name = "Digit classifier"

    def ready(self):
        # The first ModelVersion is the shipped model, registered as soon as the tables exist.
        post_migrate.connect(_register_shipped_model, sender=self)
