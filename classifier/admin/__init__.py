"""The admin, a module per sub-domain: ``images`` (the image list and review queue, predictions),
``corrections`` (flags, owners' feedback, kept training examples), ``versions`` (model versions,
rollback, "Retrain now") and ``users``; ``_common`` holds the filters and columns they share.
Django's autodiscovery imports this package: importing the modules here registers their admins."""

from classifier.admin import corrections, images, users, versions  # noqa: F401
