"""The images and the review queue: the image list with its filters (to review, owner's
feedback, predicted digit, verdict, confidence, flagged), flagging one image inline or many at
once, marking them reviewed, deleting through the same service as their owner; and the
predictions, read-only."""

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timezone import localtime
from django.utils.translation import ngettext

from classifier.admin._common import IsSetFilter, PredictedDigitFilter, image_thumbnail, of_prediction, retraining_note
from classifier.forms import FlagImagesForm
from classifier.models import DigitImage, Flag, Prediction
from classifier.permissions import may_flag
from classifier.selectors import REVIEW_ORDER, review_queue
from classifier.services import correction_training_refusal, image_delete, image_flag, images_mark_reviewed


class ConfidenceBandFilter(admin.SimpleListFilter):
    title = "confidence"
    parameter_name = "confidence"
    BANDS = {"low": (0.0, 0.5), "medium": (0.5, 0.9), "high": (0.9, 1.01)}

    def lookups(self, request, model_admin):
        return [("low", "below 50%"), ("medium", "50% to 90%"), ("high", "90% and above")]

    def queryset(self, request, queryset):
        if self.value() not in self.BANDS:
            return queryset
        low, high = self.BANDS[self.value()]
        return queryset.filter(prediction__confidence__gte=low, prediction__confidence__lt=high)


class ReviewFilter(admin.SimpleListFilter):
    """ "To review": predictions nobody has flagged or found right yet, least certain first."""

    title = "review"
    parameter_name = "review"

    def lookups(self, request, model_admin):
        return [("todo", "to review (least certain first)"), ("done", "reviewed or flagged")]

    def queryset(self, request, queryset):
        if self.value() == "todo":
            return review_queue(queryset)
        if self.value() == "done":
            return queryset.filter(Q(reviewed_at__isnull=False) | Q(flag__isnull=False))
        return queryset


class FlaggedFilter(IsSetFilter):
    title = "flagged"
    parameter_name = "flagged"
    field = "flag"
    labels = {"yes": "flagged", "no": "not flagged"}


class OwnerFeedbackFilter(admin.SimpleListFilter):
    """The owner's own word that a prediction is wrong, and whether staff have acted on it."""

    title = "owner's feedback"
    parameter_name = "owner_feedback"

    def lookups(self, request, model_admin):
        return [("waiting", "waiting for staff"), ("confirmed", "confirmed"), ("none", "none")]

    def queryset(self, request, queryset):
        if self.value() == "waiting":
            return queryset.filter(feedback__isnull=False, feedback__confirmed_at__isnull=True)
        if self.value() == "confirmed":
            return queryset.filter(feedback__confirmed_at__isnull=False)
        if self.value() == "none":
            return queryset.filter(feedback__isnull=True)
        return queryset


class FlagInline(admin.StackedInline):
    """Flag a single image from its change page."""

    model = Flag
    fields = ("correct_number", "not_a_digit", "note", "training", "flagged_by", "flagged_at", "trained_in")
    readonly_fields = ("training", "flagged_by", "flagged_at", "trained_in")
    extra = 0
    max_num = 1
    verbose_name = verbose_name_plural = "correction (flag)"
    can_delete = True

    @admin.display(description="retraining")
    def training(self, obj):
        return retraining_note(obj.correct_number, obj.image) if obj.pk else "-"

    # Adding or changing a flag here is flagging: it needs what flagging needs (may_flag), not
    # add_flag or change_flag alone.
    def has_add_permission(self, request, obj=None):
        return may_flag(request.user)

    def has_change_permission(self, request, obj=None):
        return may_flag(request.user)


def _cut(text: str, length: int = 24):
    """A name on one short line (a phone's file name, an e-mail address as a username); the whole
    of it on hover."""
    return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(length))


@admin.register(DigitImage)
class DigitImageAdmin(admin.ModelAdmin):
    # Eight short columns beside the filters fit 1280 px: the prediction's digit, confidence,
    # verdict and model in one, names cut to a line, the date without words.
    list_display = (
        "thumbnail",
        "name",
        "owner_name",
        "prediction_column",
        "status",
        "owner_feedback",
        "flag_digit",
        "uploaded",
    )
    list_display_links = ("thumbnail", "name")
    list_filter = (
        ReviewFilter,
        OwnerFeedbackFilter,
        "status",
        PredictedDigitFilter,
        ("prediction__verdict", admin.ChoicesFieldListFilter),
        ConfidenceBandFilter,
        FlaggedFilter,
        "training_consent",
        "reading",
        ("prediction__model_version", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("owner__username", "original_name")
    list_select_related = ("owner", "prediction", "prediction__model_version", "flag", "feedback")
    date_hierarchy = "uploaded_at"
    actions = ["flag_selected", "mark_reviewed"]
    inlines = [FlagInline]
    readonly_fields = (
        "preview",
        "owner",
        "original_name",
        "image_format",
        "content_type",
        "sha256",
        "size_bytes",
        "width",
        "height",
        "uploaded_at",
        "status",
        "error_message",
        "attempts",
        "training_consent",
        "reading",
        "prediction_summary",
        "reviewed_at",
        "reviewed_by",
    )
    exclude = ("file",)

    @admin.display(description="image")
    def thumbnail(self, obj):
        return image_thumbnail(obj)

    @admin.display(description="image")
    def preview(self, obj):
        return image_thumbnail(obj, size=240)

    @admin.display(description="name", ordering="original_name")
    def name(self, obj):
        return _cut(obj.original_name)

    @admin.display(description="owner", ordering="owner__username")
    def owner_name(self, obj):
        return _cut(obj.owner.username)

    @admin.display(description="prediction", ordering="prediction__confidence")
    def prediction_column(self, obj):
        """ "7 · 99.9% · v1", and the verdict when it is not a plain digit; for a number,
        "583124 · 97.1% · number · v1" with its least sure digit's confidence."""
        return of_prediction(
            obj,
            lambda prediction: format_html(
                "<strong>{}</strong> · {}{} · v{}",
                prediction.reading,
                f"{prediction.confidence:.1%}",
                "" if prediction.verdict == Prediction.Verdict.DIGIT else f" · {prediction.get_verdict_display()}",
                prediction.model_version.number,
            ),
        )

    @admin.display(description="owner says")
    def owner_feedback(self, obj):
        feedback = obj.feedback_or_none
        if feedback is None:
            return ""
        state = "confirmed" if feedback.is_confirmed else "waiting"
        return format_html("{} <small>({})</small>", feedback.says.removeprefix("is "), state)

    @admin.display(description="flag")
    def flag_digit(self, obj):
        flag = obj.flag_or_none
        if flag is None:
            return ""
        if correction_training_refusal(correct_number=flag.correct_number, prediction=obj.prediction_or_none):
            return format_html("{} <small>(not trained on)</small>", flag.says)
        return flag.says

    @admin.display(description="uploaded", ordering="uploaded_at")
    def uploaded(self, obj):
        return date_format(localtime(obj.uploaded_at), "Y-m-d H:i")

    @admin.display(description="prediction")
    def prediction_summary(self, obj):
        prediction = obj.prediction_or_none
        if prediction is None:
            return "-"
        return format_html(
            '{} at {} ({}{}) by v{} <img src="{}" alt="model input" width="84" height="84" '
            'style="vertical-align:middle">',
            prediction.reading,
            f"{prediction.confidence:.1%}" + (" for its least sure digit" if prediction.is_number else ""),
            prediction.get_verdict_display(),
            f": {prediction.verdict_reason}" if prediction.verdict_reason else "",
            prediction.model_version.number,
            reverse("classifier:image_model_input", args=[obj.pk]),
        )

    def has_add_permission(self, request):
        return False  # images come from uploads

    # Deleting here goes through the same service as the owner's delete: files go too, and a
    # consented correction is kept as a training example.
    def delete_model(self, request, obj):
        image_delete(image=obj)

    def delete_queryset(self, request, queryset):
        for image in queryset:
            image_delete(image=image)

    def get_ordering(self, request):
        # The review queue keeps its order (least certain first) unless a column is clicked.
        if request.GET.get(ReviewFilter.parameter_name) == "todo":
            return list(REVIEW_ORDER)
        return super().get_ordering(request)

    def has_flag_permission(self, request) -> bool:
        return may_flag(request.user)

    @admin.action(description="Looks right: mark selected images reviewed", permissions=["change"])
    def mark_reviewed(self, request, queryset):
        count = images_mark_reviewed(images=queryset, reviewed_by=request.user)
        message = ngettext("Marked %(count)d image reviewed.", "Marked %(count)d images reviewed.", count)
        self.message_user(request, message % {"count": count}, messages.SUCCESS)

    def save_formset(self, request, form, formset, change):
        if formset.model is not Flag:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)
        for deleted in formset.deleted_objects:
            deleted.delete()
        for inline_form in formset.forms:
            if inline_form in formset.deleted_forms or not inline_form.has_changed():
                continue
            image_flag(
                image=form.instance,
                correct_number=None
                if inline_form.cleaned_data.get("not_a_digit")
                else inline_form.cleaned_data["correct_number"],
                flagged_by=request.user,
                note=inline_form.cleaned_data.get("note", ""),
            )

    @admin.action(description="Flag selected images as misclassified…", permissions=["flag"])
    def flag_selected(self, request, queryset):
        images = list(queryset.select_related("prediction"))
        if "apply" in request.POST:
            form = FlagImagesForm(request.POST, images=images)
            if form.is_valid():
                answers = form.cleaned_data["answers"]
                for image in images:
                    image_flag(
                        image=image,
                        correct_number=answers[image.pk],
                        flagged_by=request.user,
                        note=form.cleaned_data["note"],
                    )
                said = {"not a digit" if answer is None else answer for answer in answers.values()}
                count = len(images)
                if len(said) == 1:
                    message = ngettext(
                        "Flagged %(count)d image as %(answer)s.", "Flagged %(count)d images as %(answer)s.", count
                    ) % {"count": count, "answer": said.pop()}
                else:
                    each = [
                        f"{image.original_name} as {'not a digit' if answers[image.pk] is None else answers[image.pk]}"
                        for image in images
                    ]
                    message = f"Flagged {count} images: {', '.join(each)}."
                self.message_user(request, message, messages.SUCCESS)
                for image in images:
                    if refusal := correction_training_refusal(
                        correct_number=answers[image.pk], prediction=image.prediction_or_none
                    ):
                        # Not led by the file name: the admin capitalises a message's first letter.
                        self.message_user(request, f"The flag of {image.original_name}: {refusal}", messages.WARNING)
                return None
        else:
            form = FlagImagesForm(images=images)
        context = {
            **self.admin_site.each_context(request),
            "title": "Flag images with their correct reading",
            "images": images,
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/classifier/flag_images.html", context)


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("image", "digit", "confidence", "verdict", "model_version", "inference_ms", "created_at")
    list_filter = ("verdict", "digit", "model_version")
    search_fields = ("image__original_name", "image__owner__username")
    list_select_related = ("image", "model_version")
    exclude = ("model_input", "model_input_exact")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
