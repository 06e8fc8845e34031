"""Corrections: staff flags, owners' feedback (confirmed into flags by an action), and the
training examples kept of corrected images after their owner deleted them."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import ngettext

from classifier.admin._common import IsSetFilter, PredictedDigitFilter, image_thumbnail, of_prediction, retraining_note
from classifier.models import Feedback, Flag, TrainingExample
from classifier.permissions import may_flag
from classifier.services import feedback_confirm_as_seen, image_flag


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
    # The one-digit field follows the reading (Flag.save).
    readonly_fields = ("image", "correct_digit", "flagged_by", "flagged_at", "trained_in")

    @admin.display(description="predicted")
    def predicted(self, obj):
        return of_prediction(obj.image, lambda prediction: prediction.reading)

    @admin.display(description="retraining")
    def training(self, obj):
        return retraining_note(obj.correct_number, obj.image)

    def has_add_permission(self, request):
        return False  # flags are made on images

    def has_change_permission(self, request, obj=None):
        # Changing what a flag says is flagging: it needs what flagging needs, not change_flag
        # alone (with which the page is read-only).
        return may_flag(request.user)

    def save_model(self, request, obj, form, change):
        # Through the service, as every flag: the correction is recorded as this person's, now.
        image_flag(
            image=obj.image,
            correct_number=None if obj.not_a_digit else obj.correct_number,
            flagged_by=request.user,
            note=obj.note,
        )


# The hidden field of each feedback row that carries what the list showed of it.
SEEN = "seen_"


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
        # What this row says as the list shows it travels with the action's form: confirming
        # leaves a suggestion its owner changed since (see confirm_as_flags).
        return format_html(
            '{}<input type="hidden" name="{}{}" value="{}">', obj.says.removeprefix("is "), SEEN, obj.pk, obj.says
        )

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
        """Confirm what the list showed: a suggestion whose owner changed it after the list was
        opened is left waiting, named, and so is one selected without being shown ("select all"
        across pages)."""
        selected = list(queryset.values_list("pk", flat=True))
        seen = {pk: request.POST[f"{SEEN}{pk}"] for pk in selected if f"{SEEN}{pk}" in request.POST}
        outcome = feedback_confirm_as_seen(seen=seen, confirmed_by=request.user)
        if outcome.confirmed:
            message = ngettext(
                "%(count)d suggestion confirmed as flags.",
                "%(count)d suggestions confirmed as flags.",
                outcome.confirmed,
            )
            self.message_user(request, message % {"count": outcome.confirmed}, messages.SUCCESS)
        for item, before in outcome.changed:
            self.message_user(
                request,
                f"The suggestion on {item.image.original_name} changed after you opened the list: it now says "
                f'"{item.says.removeprefix("is ")}", where the list said "{before.removeprefix("is ")}". It was '
                "not confirmed: look again before confirming.",
                messages.WARNING,
            )
        if unseen := len(selected) - len(seen):
            message = ngettext(
                "%(count)d selected suggestion was not on the page, so it was not confirmed: confirm it from a "
                "page that shows it.",
                "%(count)d selected suggestions were not on the page, so they were not confirmed: confirm them "
                "from a page that shows them.",
                unseen,
            )
            self.message_user(request, message % {"count": unseen}, messages.WARNING)
