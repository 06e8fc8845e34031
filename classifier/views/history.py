"""Looking back: the signed-in user's history with its filters and pages, the same list as a CSV
streamed row by row, and for staff who may view all images, the site's stats as charts."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from classifier import charts, exports
from classifier.forms import HistoryFilterForm
from classifier.permissions import may_see_all_images
from classifier.selectors import ImageFilters, image_list_for, site_stats

HISTORY_PAGE_SIZE = 25


def _history_filters(request) -> tuple[HistoryFilterForm, ImageFilters]:
    form = HistoryFilterForm(request.GET or None, user=request.user)
    return form, form.to_filters()


@require_GET
def history(request):
    form, filters = _history_filters(request)
    page = Paginator(image_list_for(request.user, filters), HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    # Links (pages, CSV) carry only the filters this page applied, so the CSV matches the list.
    query = request.GET.copy()
    for name in ("page", *form.errors):
        query.pop(name, None)
    context = {"form": form, "page": page, "query": query.urlencode(), "ignored": form.invalid_filters()}
    return render(request, "classifier/history.html", context)


@require_GET
def history_export(request):
    """The signed-in user's history (with the page's filters) as CSV, streamed row by row.

    An invalid filter is refused: a file that silently holds more than was asked for would
    pass as the filtered one."""
    form, filters = _history_filters(request)
    if invalid := form.invalid_filters():
        reason = "Not exported; fix these filters and try again:\n" + "\n".join(invalid) + "\n"
        return HttpResponseBadRequest(reason, content_type="text/plain; charset=utf-8")
    images = image_list_for(request.user, filters).select_related("feedback")
    response = StreamingHttpResponse(exports.history_csv(images), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y-%m-%d")
    response["Content-Disposition"] = f'attachment; filename="digitsite-history-{stamp}.csv"'
    return response


@require_GET
def stats(request):
    """Staff who may view images: how the site and its models are doing, as charts with their numbers."""
    if not may_see_all_images(request.user):
        raise Http404
    data = site_stats()
    versions = data.versions
    labels = [v.label for v in versions]
    figures = [
        charts.uploads_per_day(data.days, data.uploads_per_day),
        charts.predictions_per_digit(data.predictions_per_digit),
        charts.confidence_histogram(data.confidence_bins),
        charts.flagged_share_per_version(labels, [v.flagged for v in versions], [v.predictions for v in versions]),
        charts.unsure_share_per_version(
            labels, [v.unsure for v in versions], [v.not_a_digit for v in versions], [v.predictions for v in versions]
        ),
        charts.review_queue(data.days, data.review_queue_per_day),
        charts.correction_confusion(data.corrections),
        charts.version_metrics(labels, [v.test_accuracy for v in versions]),
    ]
    return render(request, "classifier/stats.html", {"stats": data, "charts": figures})
