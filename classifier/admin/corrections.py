"""Corrections: staff flags, owners' feedback (confirmed into flags by an action), and the
training examples kept of corrected images after their owner deleted them."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import ngettext

from classifier.admin._common import IsSetFilter, PredictedDigitFilter, image_thumbnail, of_prediction, retraining_note
from classifier.models import Feedback, Flag, TrainingExample
from classifier.permissions import may_flag
from classifier.services import feedback_confirm


@admin.register(TrainingExample)
class TrainingExampleAdmin(admin.ModelAdmin):
    """Corrections kept after their image was deleted (its owner agreed at upload): read-only,
    deletable (retraining then no longer learns from it)."""

    list_display = ("pk", "says", "source", "created_at", "trained_in", "picture")
    list_filter = ("not_a_digit", "correct_digit", "source", "trained_in")
    list_select_related = ("trained_in",)
    fields = ("picture", "correct_digit", "not_a_digit", "source", "created_at", "trained_in")
    readonly_fields = fields

    @admin.display(description="28x28 input")
    def picture(self, obj):
        return format_html(
            '<img src="data:image/png;base64,{}" alt="the 28x28 model input" width="56" height="56" '
            'style="image-rendering:pixelated">',
            obj.png_base64(),
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Flag)
class FlagAdmin(admin.ModelAdmin):
    list_display = ("image", "says", "predicted", "training", "flagged_by", "flagged_at", "trained_in")
    list_filter = ("not_a_digit", "correct_digit", "trained_in")
    search_fields = ("image__original_name", "image__owner__username", "note", "correct_number")
    list_select_related = ("image__prediction", "flagged_by", "trained_in")
    readonly_fields = ("image", "flagged_by", "flagged_at", "trained_in")

    @admin.display(description="predicted")
    def predicted(self, obj):
        return of_prediction(obj.image, lambda prediction: prediction.reading)

    @admin.display(description="retraining")
    def training(self, obj):
        return retraining_note(obj.correct_number, obj.image)

    def has_add_permission(self, request):
        return False  # flags are made on images


class ConfirmedFilter(IsSetFilter):
    title = "confirmed"
    parameter_name = "confirmed"
    field = "confirmed_at"
    labels = {"no": "waiting for staff", "yes": "confirmed as a flag"}


class FeedbackPredictedFilter(PredictedDigitFilter):
    field = "image__prediction__digit"


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """Owners' suggestions: staff review them and confirm the right ones into flags."""

    list_display = (
        "thumbnail",
        "image_link",
        "owner",
        "predicted",
        "owner_says",
        "confidence",
        "training",
        "created_at",
        "confirmed",
    )
    list_filter = (ConfirmedFilter, "not_a_digit", "suggested_digit", FeedbackPredictedFilter, "created_at")
    search_fields = ("image__original_name", "image__owner__username")
    ordering = ("confirmed_at", "-created_at")  # waiting ones first, newest first
    list_select_related = ("image__prediction", "image__owner")
    actions = ["confirm_as_flags"]
    readonly_fields = ("image", "suggested_number", "not_a_digit", "created_at", "confirmed_by", "confirmed_at")

    @admin.display(description="image")
    def thumbnail(self, obj):
        return image_thumbnail(obj.image, size=40)

    @admin.display(description="file", ordering="image__original_name")
    def image_link(self, obj):
        url = reverse("admin:classifier_digitimage_change", args=[obj.image_id])
        return format_html('<a href="{}">{}</a>', url, obj.image.original_name)

    @admin.display(description="owner", ordering="image__owner__username")
    def owner(self, obj):
        return obj.image.owner

    @admin.display(description="predicted", ordering="image__prediction__digit")
    def predicted(self, obj):
        return of_prediction(obj.image, lambda prediction: prediction.reading)

    @admin.display(description="owner says", ordering="suggested_number")
    def owner_says(self, obj):
        return obj.says.removeprefix("is ")

    @admin.display(description="retraining, once confirmed")
    def training(self, obj):
        return retraining_note(None if obj.not_a_digit else obj.suggested_number, obj.image)

    @admin.display(description="confidence", ordering="image__prediction__confidence")
    def confidence(self, obj):
        return of_prediction(obj.image, lambda prediction: f"{prediction.confidence:.0%}")

    @admin.display(description="confirmed", boolean=True, ordering="confirmed_at")
    def confirmed(self, obj):
        return obj.is_confirmed

    def has_add_permission(self, request):
        return False

    def has_flag_permission(self, request) -> bool:
        return may_flag(request.user) and request.user.has_perm("classifier.change_feedback")

    @admin.action(description="Confirm selected suggestions as flags", permissions=["flag"])
    def confirm_as_flags(self, request, queryset):
        count = feedback_confirm(feedback=queryset.select_related("image__owner"), confirmed_by=request.user)
        message = ngettext(
            "%(count)d suggestion confirmed as flags.", "%(count)d suggestions confirmed as flags.", count
        )
        self.message_user(request, message % {"count": count}, messages.SUCCESS)
