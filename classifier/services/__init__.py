"""The only bridge between Django and ``ml``: typed, keyword-only services.

Web processes import this package too, so TensorFlow is imported lazily, inside the
functions that run in the worker or in commands.
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
    image_retry,
    image_upload_create,
    images_mark_reviewed,
    model_warm_up,
    prediction_run,
    predictions_run,
)
from classifier.services.modelling import (
    image_files_predict,
    mnist_load,
    mnist_missing_here,
    model_calibrate,
    model_evaluate,
    model_evaluate_real,
    model_path_default,
    model_train,
    model_version_activate,
    model_version_ensure_initial,
)
from classifier.services.previews import PreviewError, PreviewRateLimited, drawing_preview_create, drawing_preview_run
from classifier.services.retraining import (
    MnistUnavailable,
    NothingToLearn,
    RetrainError,
    RetrainReport,
    model_retrain,
    retrain_request,
    retrain_run,
)
from classifier.services.serving import ModelNotLoaded, Serving, model_load_forget, predictor_serving
from classifier.services.versions import (
    ModelVersionUnavailable,
    model_version_archive_save,
    model_version_directory,
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
    "RetrainReport",
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
    "image_files_predict",
    "image_flag",
    "image_retry",
    "image_upload_create",
    "images_mark_reviewed",
    "mnist_load",
    "mnist_missing_here",
    "model_calibrate",
    "model_evaluate",
    "model_evaluate_real",
    "model_load_forget",
    "model_path_default",
    "model_retrain",
    "model_train",
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
    "retrain_run",
    "signup_allow",
]
