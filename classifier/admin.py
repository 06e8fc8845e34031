from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timezone import localtime
from django.utils.translation import ngettext

from classifier.forms import FlagImagesForm, RetrainForm
from classifier.models import (
    DIGIT_CHOICES,
    DigitImage,
    Feedback,
    Flag,
    ModelVersion,
    Prediction,
    RetrainRun,
    TrainingExample,
)
from classifier.permissions import may_flag
from classifier.selectors import REVIEW_ORDER, review_queue
from classifier.services import (
    AccountDeleteRefused,
    ModelVersionUnavailable,
    RetrainError,
    account_delete,
    account_delete_refusal,
    correction_training_refusal,
    feedback_confirm,
    image_delete,
    image_flag,
    images_mark_reviewed,
    model_version_activate,
    retrain_request,
)


class PredictedDigitFilter(admin.SimpleListFilter):
    title = "predicted digit"
    parameter_name = "digit"
    field = "prediction__digit"

    def lookups(self, request, model_admin):
        return DIGIT_CHOICES

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: int(self.value())}) if self.value() else queryset


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


class _IsSetFilter(admin.SimpleListFilter):
    """The rows whose ``field`` is set ("yes") or empty ("no"), offered with ``labels``."""

    field: str
    labels: dict[str, str]

    def lookups(self, request, model_admin):
        return list(self.labels.items())

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(**{f"{self.field}__isnull": self.value() == "no"})
        return queryset


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


class FlaggedFilter(_IsSetFilter):
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
        return _training(obj.correct_number, obj.image) if obj.pk else "-"


def _of_prediction(image: DigitImage, show: Callable[[Prediction], object]):
    """A column that shows something of the image's prediction; "-" while there is none."""
    prediction = image.prediction_or_none
    return show(prediction) if prediction else "-"


def _training(correct_number: str, image: DigitImage) -> str:
    """Whether retraining learns from a correction of ``image``, and why not."""
    refusal = correction_training_refusal(correct_number=correct_number, prediction=image.prediction_or_none)
    return refusal or "trained on"


def _cut(text: str, length: int = 24):
    """A name on one short line (a phone's file name, an e-mail address as a username); the whole
    of it on hover."""
    return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(length))


def _thumbnail(image: DigitImage, size: int = 56):
    url = reverse("classifier:image_file", args=[image.pk])
    return format_html(
        '<img src="{}" alt="{}" style="max-width:{}px;max-height:{}px;background:#fff">',
        url,
        image.original_name,
        size,
        size,
    )


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
        return _thumbnail(obj)

    @admin.display(description="image")
    def preview(self, obj):
        return _thumbnail(obj, size=240)

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
        return _of_prediction(
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
        return format_html("{} <small>({})</small>", feedback.suggested_number, state)

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
                        self.message_user(request, f"{image.original_name}: {refusal}", messages.WARNING)
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
        return _of_prediction(obj.image, lambda prediction: prediction.reading)

    @admin.display(description="retraining")
    def training(self, obj):
        return _training(obj.correct_number, obj.image)

    def has_add_permission(self, request):
        return False  # flags are made on images


class ConfirmedFilter(_IsSetFilter):
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
        "suggested_number",
        "confidence",
        "training",
        "created_at",
        "confirmed",
    )
    list_filter = (ConfirmedFilter, "suggested_digit", FeedbackPredictedFilter, "created_at")
    search_fields = ("image__original_name", "image__owner__username")
    ordering = ("confirmed_at", "-created_at")  # waiting ones first, newest first
    list_select_related = ("image__prediction", "image__owner")
    actions = ["confirm_as_flags"]
    readonly_fields = ("image", "suggested_number", "created_at", "confirmed_by", "confirmed_at")

    @admin.display(description="image")
    def thumbnail(self, obj):
        return _thumbnail(obj.image, size=40)

    @admin.display(description="file", ordering="image__original_name")
    def image_link(self, obj):
        url = reverse("admin:classifier_digitimage_change", args=[obj.image_id])
        return format_html('<a href="{}">{}</a>', url, obj.image.original_name)

    @admin.display(description="owner", ordering="image__owner__username")
    def owner(self, obj):
        return obj.image.owner

    @admin.display(description="predicted", ordering="image__prediction__digit")
    def predicted(self, obj):
        return _of_prediction(obj.image, lambda prediction: prediction.reading)

    @admin.display(description="retraining, once confirmed")
    def training(self, obj):
        return _training(obj.suggested_number, obj.image)

    @admin.display(description="confidence", ordering="image__prediction__confidence")
    def confidence(self, obj):
        return _of_prediction(obj.image, lambda prediction: f"{prediction.confidence:.0%}")

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


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = (
        "number",
        "architecture",
        "accuracy",
        "flag_accuracy",
        "created_at",
        "is_active",
        "parent",
        "flags_used",
        "flags_learned_count",
        "loads",
    )
    list_filter = ("is_active", "architecture")
    readonly_fields = (
        "number",
        "architecture",
        "path",
        "metrics",
        "is_active",
        "parent",
        "flags_used",
        "notes",
        "archive",
        "checksum",
        "created_at",
        "load_error",
        "load_failed_at",
    )
    actions = ["activate"]
    # Above the list: "Retrain now" with `manage.py retrain`'s options, and the last retrain's
    # state (queued, running with its epoch, or its outcome), refreshed while it runs.
    change_list_template = "admin/classifier/modelversion/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("parent").annotate(learned=Count("flags_learned"))

    def get_urls(self):
        retrain = path(
            "retrain/", self.admin_site.admin_view(self.retrain_view), name="classifier_modelversion_retrain"
        )
        return [retrain, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        last = RetrainRun.objects.select_related("candidate", "requested_by").first()
        context = {"retrain_form": RetrainForm(), "retrain_run": last, "can_retrain": self._can_retrain(request)}
        return super().changelist_view(request, extra_context=context | (extra_context or {}))

    def _can_retrain(self, request) -> bool:
        return request.user.has_perm("classifier.change_modelversion")

    def retrain_view(self, request):
        changelist = reverse("admin:classifier_modelversion_changelist")
        if request.method != "POST" or not self._can_retrain(request):
            return HttpResponseRedirect(changelist)
        form = RetrainForm(request.POST)
        if not form.is_valid():
            errors = "; ".join(f"{name}: {' '.join(e)}" for name, e in form.errors.items())
            self.message_user(request, f"Not queued: {errors}", messages.ERROR)
            return HttpResponseRedirect(changelist)
        try:
            retrain_request(
                epochs=form.cleaned_data["epochs"], force=form.cleaned_data["force"], requested_by=request.user
            )
        except RetrainError as exc:
            self.message_user(request, str(exc), messages.WARNING)
        else:
            self.message_user(request, "Retrain queued on the training queue; this page follows it.", messages.SUCCESS)
        return HttpResponseRedirect(changelist)

    @admin.display(description="MNIST accuracy")
    def accuracy(self, obj):
        return f"{obj.test_accuracy:.2%}" if obj.test_accuracy is not None else "-"

    @admin.display(description="corrections accuracy")
    def flag_accuracy(self, obj):
        value = obj.metrics.get("flag_accuracy")
        return f"{value:.0%}" if value is not None else "-"

    @admin.display(description="flags learned", ordering="learned")
    def flags_learned_count(self, obj):
        return obj.learned

    @admin.display(description="loads")
    def loads(self, obj):
        """What a worker last found loading it: a version that could not be loaded says why."""
        if not obj.load_error:
            return "yes"
        when = localtime(obj.load_failed_at).strftime("%Y-%m-%d %H:%M") if obj.load_failed_at else ""
        return f"no, since {when}: {obj.load_error}" if when else f"no: {obj.load_error}"

    def has_add_permission(self, request):
        return False  # versions come from `manage.py retrain`

    @admin.action(description="Activate the selected version (rollback)", permissions=["change"])
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.WARNING)
            return
        try:
            version = model_version_activate(number=queryset.get().number)
        except ModelVersionUnavailable as exc:
            self.message_user(request, f"Not activated, the active version stays: {exc}", messages.ERROR)
            return
        self.message_user(request, f"v{version.number} is now active.", messages.SUCCESS)


admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class AccountAdmin(UserAdmin):
    """Django's user admin, but deleting a user deletes their account as they would: each
    image through ``image_delete`` (files included, consented corrections kept), never a
    cascade that would leave their files behind. The last superuser is refused."""

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or account_delete_refusal(user=obj) is None)

    def delete_model(self, request, obj):
        account_delete(user=obj)

    def delete_queryset(self, request, queryset):
        for user in queryset:
            try:
                account_delete(user=user)
            except AccountDeleteRefused as exc:  # the last superuser, among those selected
                self.message_user(request, f"{user}: {exc}", messages.ERROR)
