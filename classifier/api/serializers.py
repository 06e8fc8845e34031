from django.conf import settings
from django.urls import reverse
from django.utils.text import Truncator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from classifier.models import DIGITS, NUMBER_VALIDATOR, DigitImage, ModelVersion, Prediction, SaidReading
from ml.serving.preprocessing import ACCEPTED_FORMATS_TEXT
from ml.serving.readings import AUTO, readings_described, readings_named
from ml.serving.segment import MAX_DIGITS


def _probabilities(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.FloatField(), min_length=len(DIGITS), max_length=len(DIGITS), help_text=help_text
    )


class DigitReadingSerializer(serializers.Serializer):
    digit = serializers.IntegerField(min_value=DIGITS[0], max_value=DIGITS[-1])
    confidence = serializers.FloatField(help_text="calibrated probability of the digit")
    probabilities = _probabilities("digit 0 first")
    verdict = serializers.ChoiceField(
        choices=[Prediction.Verdict.DIGIT, Prediction.Verdict.UNSURE, Prediction.Verdict.NOT_A_DIGIT],
        help_text="this digit's own verdict",
    )
    box = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        min_length=4,
        max_length=4,
        allow_null=True,
        help_text="[x, y, width, height] in the image's pixels; null for images read before numbers",
    )


class PredictionSerializer(serializers.ModelSerializer):
    probabilities = _probabilities("digit 0 first (for a number, its least sure digit's)")
    model_version = serializers.IntegerField(source="model_version.number", help_text="the version that predicted")
    digits = DigitReadingSerializer(
        source="readings", many=True, read_only=True, help_text="each digit read, left to right"
    )

    class Meta:
        model = Prediction
        fields = [
            "number",
            "digit",
            "confidence",
            "verdict",
            "verdict_reason",
            "number_confidence",
            "probabilities",
            "digits",
            "model_version",
            "created_at",
        ]
        extra_kwargs = {
            "number": {"help_text": "the digits read, left to right; empty when it is not a digit"},
            "digit": {"help_text": "the best guess, whatever the verdict (for a number, its least sure digit)"},
            "confidence": {"help_text": "calibrated probability of the digit (for a number, its least sure digit's)"},
            "verdict": {
                "help_text": "digit: one digit read with confidence; number: several digits, the whole number read "
                "with confidence; unsure: a best guess (of one digit or more); not_a_digit: not a digit"
            },
        }


class _SaidField(serializers.Field):
    """One part of what a correction of the image says (``SaidReading``: staff's ``flag``, the
    owner's ``feedback``, as ``of`` names it), null where it says nothing of that part."""

    def __init__(self, *, of: str, **kwargs):
        self.of = of
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, image):
        return self.part(getattr(image, f"{self.of}_or_none"))

    def part(self, said: SaidReading | None):
        raise NotImplementedError


@extend_schema_field(serializers.IntegerField(allow_null=True))
class SaidDigitField(_SaidField):
    def part(self, said: SaidReading | None) -> int | None:
        return said.said_digit if said else None


@extend_schema_field(serializers.CharField(allow_null=True))
class SaidNumberField(_SaidField):
    def part(self, said: SaidReading | None) -> str | None:
        return said.said_number or None if said else None


@extend_schema_field(serializers.BooleanField())
class SaidNotADigitField(_SaidField):
    def part(self, said: SaidReading | None) -> bool:
        return bool(said and said.not_a_digit)


class ImageSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:image-detail")
    file_url = serializers.SerializerMethodField(help_text="the uploaded file itself")
    format = serializers.CharField(source="image_format")
    error = serializers.CharField(source="error_message", help_text="why it failed; empty otherwise")
    prediction = PredictionSerializer(allow_null=True, read_only=True, help_text="null until the status is done")
    flagged_as = SaidDigitField(of="flag", help_text="the digit staff say it really is (null for a number)")
    flagged_number = SaidNumberField(of="flag", help_text="what staff say it really reads")
    flagged_not_a_digit = SaidNotADigitField(of="flag", help_text="staff say it is not a digit")
    your_feedback = SaidDigitField(of="feedback", help_text="the digit you said it really is (null for a number)")
    your_feedback_number = SaidNumberField(of="feedback", help_text="what you said it really reads")
    your_feedback_not_a_digit = SaidNotADigitField(of="feedback", help_text="you said it is not a digit")

    class Meta:
        model = DigitImage
        fields = [
            "id",
            "url",
            "file_url",
            "original_name",
            "format",
            "content_type",
            "width",
            "height",
            "size_bytes",
            "uploaded_at",
            "status",
            "error",
            "prediction",
            "flagged_as",
            "flagged_number",
            "flagged_not_a_digit",
            "your_feedback",
            "your_feedback_number",
            "your_feedback_not_a_digit",
            "training_consent",
            "reading",
        ]
        extra_kwargs = {
            "training_consent": {"help_text": "if staff correct it, its 28x28 version may be kept for training"},
            "reading": {
                "help_text": "what the uploader said it shows: " + readings_named(asides={AUTO: "left to the site"})
            },
        }

    def to_representation(self, instance):
        # The one-to-one reverse accessors raise when missing; the API says null instead.
        data = super().to_representation(instance)
        if instance.prediction_or_none is None:
            data["prediction"] = None
        return data

    def get_file_url(self, image) -> str:
        return self.context["request"].build_absolute_uri(reverse("api:image-file", args=[image.pk]))


# An error names at most this many characters of what was sent: a refusal never echoes a large
# input back (a 100 KB `reading` once came back whole).
ECHOED_CHARACTERS = 20


class ShortEchoChoiceField(serializers.ChoiceField):
    """A choice whose refusal quotes only the start of a long value."""

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError:
            self.fail("invalid_choice", input=Truncator(str(data)).chars(ECHOED_CHARACTERS))


class UploadSerializer(serializers.Serializer):
    images = serializers.ListField(
        child=serializers.FileField(
            allow_empty_file=True,
            error_messages={
                "invalid": "`images` must be files sent as multipart/form-data, not text.",
                "no_name": "`images` must be files sent as multipart/form-data, not text.",
            },
        ),
        allow_empty=False,
        max_length=settings.UPLOAD_MAX_FILES,
        help_text=f"one to {settings.UPLOAD_MAX_FILES} image files ({ACCEPTED_FORMATS_TEXT})",
        error_messages={
            "required": "No files: send them in the `images` field.",
            "empty": "No files: send them in the `images` field.",
            "max_length": f"Upload at most {settings.UPLOAD_MAX_FILES} files at once.",
        },
    )
    reading = ShortEchoChoiceField(
        choices=DigitImage.Reading.choices,
        required=False,
        default=AUTO,
        help_text=f"what the images show: {readings_described()}",
        error_messages={"invalid_choice": f"reading is {readings_named()}, not {{input}}."},
    )
    training_consent = serializers.BooleanField(
        required=False,
        default=False,
        help_text="if staff correct one of these images, keep its corrected 28x28 version to train the model, "
        "even after you delete the image (nothing else is kept)",
    )


class RefusedFileSerializer(serializers.Serializer):
    file = serializers.CharField(help_text="the file's name")
    error = serializers.CharField(help_text="why it was refused")


class UploadResultSerializer(serializers.Serializer):
    images = ImageSerializer(many=True, help_text="the stored images, queued for classification")
    errors = RefusedFileSerializer(many=True, help_text="the refused files")


class FeedbackSerializer(serializers.Serializer):
    digit = serializers.IntegerField(
        min_value=DIGITS[0], max_value=DIGITS[-1], required=False, help_text="the digit the image really shows"
    )
    number = serializers.CharField(
        max_length=MAX_DIGITS,
        required=False,
        validators=[NUMBER_VALIDATOR],
        help_text="or what it really reads, every digit left to right (583124)",
    )
    not_a_digit = serializers.BooleanField(required=False, help_text="or true: it shows no digit and no number at all")

    def validate(self, attrs):
        said = ("digit" in attrs) + ("number" in attrs) + bool(attrs.get("not_a_digit"))
        if said != 1:
            raise serializers.ValidationError("Give one of digit, number or not_a_digit: true.")
        return attrs

    @property
    def suggested_number(self) -> str | None:
        """The suggestion as ``feedback_give`` takes it: None for not a digit."""
        data = self.validated_data
        if data.get("not_a_digit"):
            return None
        return data["number"] if "number" in data else str(data["digit"])


class FeedbackResultSerializer(serializers.Serializer):
    image = serializers.IntegerField()
    suggested_digit = serializers.IntegerField(allow_null=True, help_text="null when you suggested several digits")
    suggested_number = serializers.CharField(help_text="empty when you said it is not a digit")
    not_a_digit = serializers.BooleanField(help_text="you said it is not a digit")
    predicted_digit = serializers.IntegerField(help_text="for a number, its least sure digit")
    predicted_number = serializers.CharField(help_text="what the model read")
    confirmed = serializers.BooleanField(help_text="staff confirmed it as a correction")


class ModelVersionSerializer(serializers.ModelSerializer):
    test_accuracy = serializers.FloatField(allow_null=True, read_only=True, help_text="on the MNIST test set")
    parent = serializers.IntegerField(source="parent.number", allow_null=True, read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["number", "architecture", "is_active", "test_accuracy", "parent", "flags_used", "created_at", "notes"]
