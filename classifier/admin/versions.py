"""Model versions: the list with their accuracy and whether workers can load them, activating one
(rollback), and "Retrain now" above the list, which queues a retrain and follows its progress."""

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Count
from django.http import HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.timezone import localtime
from django_htmx.http import HttpResponseStopPolling

from classifier.forms import RetrainForm
from classifier.models import ModelVersion, RetrainRun
from classifier.services import ModelVersionUnavailable, RetrainError, model_version_activate, retrain_request


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
        "judging_table",
    )
    actions = ["activate"]
    # Above the list: "Retrain now" with `manage.py retrain`'s options, and the last retrain's
    # state (queued, running with each stage's progress and time left, or its outcome), polled
    # by htmx while it runs (``retrain_status_view``).
    change_list_template = "admin/classifier/modelversion/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("parent").annotate(learned=Count("flags_learned"))

    def get_urls(self):
        retrain = path(
            "retrain/", self.admin_site.admin_view(self.retrain_view), name="classifier_modelversion_retrain"
        )
        status = path(
            "retrain/status/",
            self.admin_site.admin_view(self.retrain_status_view),
            name="classifier_modelversion_retrain_status",
        )
        return [retrain, status, *super().get_urls()]

    def _retrain_context(self, request) -> dict:
        last = RetrainRun.objects.select_related("candidate", "requested_by").first()
        return {"retrain_form": RetrainForm(), "retrain_run": last, "can_retrain": self._can_retrain(request)}

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, extra_context=self._retrain_context(request) | (extra_context or {}))

    def retrain_status_view(self, request):
        """The retrain section alone, polled by htmx while a retrain is queued or running; 286
        (htmx stops polling) once none is, with the outcome swapped in."""
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        context = self._retrain_context(request)
        html = render_to_string("admin/classifier/modelversion/_retrain.html", context, request=request)
        running = context["retrain_run"] is not None and context["retrain_run"].in_progress
        return HttpResponse(html) if running else HttpResponseStopPolling(html)

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

    @admin.display(description="judging sets")
    def judging_table(self, obj):
        """The sets it was judged on against its parent when it was retrained, as on the retrain page."""
        if not obj.judging:
            return "-"
        return render_to_string("admin/classifier/modelversion/_judging.html", {"version": obj})

    def has_add_permission(self, request):
        return False  # versions come from `manage.py retrain`

    @admin.action(description="Activate the selected version (rollback)", permissions=["change"])
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.WARNING)
            return
        chosen = queryset.select_related("parent").get()
        if chosen.judging and not chosen.is_active and "confirmed" not in request.POST:
            # Judged when it was retrained: staff see the same table before they activate it.
            context = {
                **self.admin_site.each_context(request),
                "title": f"Activate v{chosen.number}?",
                "version": chosen,
                "opts": self.model._meta,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/classifier/modelversion/activate_confirm.html", context)
        try:
            version = model_version_activate(number=chosen.number)
        except ModelVersionUnavailable as exc:
            self.message_user(request, f"Not activated, the active version stays: {exc}", messages.ERROR)
            return
        worse = f", although it reads {', '.join(version.judged_worse_on)} worse" if version.judged_worse_on else ""
        self.message_user(request, f"v{version.number} is now active{worse}.", messages.SUCCESS)
