"""API views: parse the request, call one service or selector, serialise the result."""

from __future__ import annotations

from django.http import Http404
from django.utils.text import Truncator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from classifier.addresses import client_address
from classifier.api.serializers import (
    ECHOED_CHARACTERS,
    FeedbackResultSerializer,
    FeedbackSerializer,
    ImageSerializer,
    ModelVersionSerializer,
    UploadResultSerializer,
    UploadSerializer,
)
from classifier.forms import HistoryFilterForm
from classifier.models import DIGITS, DigitImage
from classifier.responses import image_file_response
from classifier.selectors import image_get_for, image_list_for, model_version_list
from classifier.services import feedback_give, image_upload_create

FILTERS = [
    OpenApiParameter(
        "digit", {"type": "integer", "minimum": DIGITS[0], "maximum": DIGITS[-1]}, description="predicted digit"
    ),
    OpenApiParameter(
        "number",
        {"type": "string", "pattern": "^[0-9]{1,12}$"},
        description="readings that contain these digits: 58 finds 583124",
    ),
    OpenApiParameter("status", str, enum=["pending", "processing", "done", "failed"]),
    OpenApiParameter(
        "verdict", str, enum=["digit", "number", "unsure", "not_a_digit"], description="how far to trust it"
    ),
    OpenApiParameter(
        "reading", str, enum=list(DigitImage.Reading.values), description="what the uploader said the image shows"
    ),
    OpenApiParameter(
        "below", {"type": "integer", "minimum": 1, "maximum": 100}, description="confidence below this percentage"
    ),
    OpenApiParameter("flagged", str, enum=["yes", "no"], description="flagged by staff or not"),
    OpenApiParameter("everyone", bool, description="staff only: every user's images"),
]
ERROR = OpenApiResponse(
    {"type": "object", "additionalProperties": True}, description='what is wrong, e.g. {"detail": "..."}'
)
NOT_FOUND = OpenApiResponse(ERROR.response, description="no such image, or not yours")


class UploadThrottle(ScopedRateThrottle):
    """Uploads per user (``DEFAULT_THROTTLE_RATES["uploads"]``); reading is not throttled."""

    def get_ident(self, request):
        # Used only for a request without a user (uploads need one): then the address every
        # per-address limit counts, never an X-Forwarded-For that no proxy of ours wrote.
        return client_address(request)


class ImageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your images: upload, list with the history page's filters, status and prediction."""

    serializer_class = ImageSerializer
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    lookup_value_regex = "[0-9]+"
    throttle_classes = [UploadThrottle]
    throttle_scope = "uploads"

    def get_throttles(self):
        return super().get_throttles() if self.action == "create" else []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reading the types
            return DigitImage.objects.none()
        form = HistoryFilterForm(self.request.query_params or None, user=self.request.user)
        if self.action == "list" and form.is_bound and not form.is_valid():
            raise ValidationError(_short_errors(form))
        return image_list_for(self.request.user, form.to_filters()).select_related("feedback")

    def get_object(self):
        image = image_get_for(self.request.user, self.kwargs["pk"])
        if image is None:
            raise Http404
        return image

    @extend_schema(parameters=FILTERS, responses={200: ImageSerializer(many=True), 400: ERROR, 404: NOT_FOUND})
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: ImageSerializer, 404: NOT_FOUND})
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": UploadSerializer},
        responses={
            202: UploadResultSerializer,
            400: UploadResultSerializer,
            413: ERROR,
            415: ERROR,
            429: OpenApiResponse(ERROR.response, description="too many uploads; retry after Retry-After seconds"),
        },
        description="Upload one or many files (repeat the `images` field). Each stored image is queued "
        "for classification: poll its `url` until `status` is `done` or `failed`.",
    )
    def create(self, request):
        upload = UploadSerializer(data=request.data)
        if not upload.is_valid():
            # One shape for every refusal: no images, and what was wrong.
            errors = [{"file": "", "error": message} for message in _messages(upload.errors)]
            return Response({"images": [], "errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        outcome = image_upload_create(
            owner=request.user,
            files=upload.validated_data["images"],
            training_consent=upload.validated_data["training_consent"],
            reading=upload.validated_data["reading"],
        )
        result = {
            "images": ImageSerializer(outcome.created, many=True, context={"request": request}).data,
            "errors": [{"file": name, "error": reason} for name, reason in outcome.refused],
        }
        return Response(result, status=status.HTTP_202_ACCEPTED if outcome.created else status.HTTP_400_BAD_REQUEST)

    @extend_schema(
        request=FeedbackSerializer,
        responses={200: FeedbackResultSerializer, 400: ERROR, 404: NOT_FOUND, 415: ERROR},
        description="Say the prediction is wrong and what the image really reads: one digit, a number's every "
        "digit, or that it is not a digit at all. The prediction stays; staff review it.",
    )
    @action(detail=True, methods=["post"])
    def feedback(self, request, pk=None):
        image = self.get_object()
        if image.owner_id != request.user.pk:
            raise Http404  # only owners give feedback, as on the site
        serializer = FeedbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            feedback = feedback_give(image=image, user=request.user, suggested_number=serializer.suggested_number)
        except ValueError as exc:  # no prediction yet, or what the model already reads
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(
            {
                "image": image.pk,
                "suggested_digit": feedback.suggested_digit,
                "suggested_number": feedback.suggested_number,
                "not_a_digit": feedback.not_a_digit,
                "predicted_digit": image.prediction.digit,
                "predicted_number": image.prediction.reading,
                "confirmed": feedback.is_confirmed,
            }
        )

    @extend_schema(
        responses={(200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="the file"), 404: NOT_FOUND}
    )
    @action(detail=True, methods=["get"])
    def file(self, request, pk=None):
        return image_file_response(self.get_object())


class ModelVersionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The model versions, oldest first; exactly one is active and serves predictions."""

    serializer_class = ModelVersionSerializer
    queryset = model_version_list()
    pagination_class = None


def _short_errors(form) -> dict[str, list[str]]:
    """A form's errors, each quoting at most the start of the value sent (Django's choice
    fields quote it whole), a refused choice with the values accepted."""
    return {name: [_short(form, name, error) for error in errors] for name, errors in form.errors.as_data().items()}


def _short(form, name: str, error) -> str:
    params = error.params or {}
    if "value" in params:
        params = {**params, "value": Truncator(str(params["value"])).chars(ECHOED_CHARACTERS)}
    message = str(error.message % params if params else error.message)
    if error.code == "invalid_choice":
        accepted = [str(value) for value, _ in form.fields[name].choices if value != ""]
        message += f" Accepted: {', '.join(accepted)}."
    return message


def _messages(errors) -> list[str]:
    """Every message of a serializer's errors, however nested (a list field's errors come by
    index: ``{"images": {0: [...]}}``), without the keys."""
    if isinstance(errors, dict):
        return [m for value in errors.values() for m in _messages(value)]
    if isinstance(errors, list | tuple):
        return [m for value in errors for m in _messages(value)]
    return [str(errors)]
