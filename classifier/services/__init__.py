"""The only bridge between Django and ``ml``: typed, keyword-only services.

This package's names are what web processes and classifying workers use, and none of them loads
fitting code; TensorFlow is imported lazily, inside the functions that run in the worker. The
offline commands' services (``services.modelling``) and the trainer's (``services.retraining``)
load fitting code and are imported from their own modules, where they run.
"""

from classifier.services.accounts import api_token_create, api_token_revoke, password_reset_request_allow, signup_allow
from classifier.services.deletion import (
    AccountDeleteRefused,
    AccountDeletion,
    account_delete,
    account_delete_refusal,
    image_delete,
)
from classifier.services.images import (
    FeedbackConfirmation,
    UploadOutcome,
    correction_training_refusal,
    feedback_confirm,
    feedback_confirm_as_seen,
    feedback_give,
    image_flag,
    image_read_as,
    image_retry,
    image_upload_create,
    images_mark_reviewed,
    model_warm_up,
    prediction_run,
    predictions_run,
)
from classifier.services.previews import PreviewError, PreviewRateLimited, drawing_preview_create, drawing_preview_run
from classifier.services.retrain_requests import (
    MnistUnavailable,
    NothingToLearn,
    RetrainError,
    retrain_request,
    retrains_fail_orphaned,
)
from classifier.services.serving import ModelNotLoaded, Serving, model_load_forget, predictor_serving
from classifier.services.versions import (
    ModelVersionUnavailable,
    model_path_default,
    model_version_activate,
    model_version_archive_save,
    model_version_directory,
    model_version_ensure_initial,
    model_version_verify,
)

__all__ = [
    "AccountDeleteRefused",
    "AccountDeletion",
    "FeedbackConfirmation",
    "MnistUnavailable",
    "ModelNotLoaded",
    "ModelVersionUnavailable",
    "NothingToLearn",
    "PreviewError",
    "PreviewRateLimited",
    "RetrainError",
    "Serving",
    "UploadOutcome",
    "account_delete",
    "account_delete_refusal",
    "api_token_create",
    "api_token_revoke",
    "correction_training_refusal",
    "drawing_preview_create",
    "drawing_preview_run",
    "feedback_confirm",
    "feedback_confirm_as_seen",
    "feedback_give",
    "image_delete",
    "image_flag",
    "image_read_as",
    "image_retry",
    "image_upload_create",
    "images_mark_reviewed",
    "model_load_forget",
    "model_path_default",
    "model_version_activate",
    "model_version_archive_save",
    "model_version_directory",
    "model_version_ensure_initial",
    "model_version_verify",
    "model_warm_up",
    "password_reset_request_allow",
    "prediction_run",
    "predictions_run",
    "predictor_serving",
    "retrain_request",
    "retrains_fail_orphaned",
    "signup_allow",
]
