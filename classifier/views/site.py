"""The site's plumbing: the health check load balancers ask (database, broker, workers, beat,
the active model), the error pages Django's handlers answer with (JSON under /api/, the site's
page elsewhere), and the favicon browsers ask for whatever the page says."""

from __future__ import annotations

from dataclasses import asdict

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import TooManyFilesSent
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.utils import timezone
from django.views import defaults
from django.views.decorators.http import require_GET

from classifier.selectors import (
    RequeueHealth,
    heartbeat_window,
    model_version_health,
    requeue_stale_health,
    trainer_health,
    workers_alive,
)
from digitsite.brokers import broker_check
from digitsite.celery import app as celery_app


@login_not_required
@require_GET
def healthz(request):
    """For load balancers: 200 when the database and the broker answer (status "degraded"
    when no worker has recorded a heartbeat lately, beat's requeue_stale is overdue, a worker
    could not load the active model version, or the trainer cannot take work), 503 when
    either does not. Only staff see why: host names, paths and errors are no one else's."""
    checks = _connections_checked()
    workers, requeue = [], RequeueHealth(last_run_seconds_ago=None, requeued=None, overdue=False)
    model = {"version": None, "status": "unknown"}
    trainer = {"status": "unknown"}
    if checks["database"] == "ok":
        try:
            workers = workers_alive(within_seconds=heartbeat_window())
            requeue = requeue_stale_health(workers=workers)
            model = model_version_health()
            trainer = trainer_health()
        except DatabaseError:  # not migrated yet: no worker has a place to say it is alive
            pass
    up = checks["database"] == "ok" and checks["broker"] == "ok"
    healthy = (
        workers
        and not requeue.overdue
        and model["status"] != "cannot be loaded"
        and trainer["status"] != "cannot take work"
    )
    status = ("ok" if healthy else "degraded") if up else "down"
    if not (request.user.is_authenticated and request.user.is_staff):
        return _no_store(JsonResponse({"status": status}, status=200 if up else 503))
    now = timezone.now()
    hosts = [{"hostname": w.hostname, "seen_seconds_ago": round((now - w.seen_at).total_seconds(), 1)} for w in workers]
    body = {
        "status": status,
        **checks,
        "workers": {"alive": len(workers), "hosts": hosts},
        "requeue_stale": asdict(requeue),
        "model": model,
        "trainer": trainer,
    }
    return _no_store(JsonResponse(body, status=200 if up else 503))


def _connections_checked() -> dict[str, str]:
    """Whether the database and the broker answer: "ok", or "unreachable" and the error's kind."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except DatabaseError as exc:
        checks["database"] = f"unreachable ({exc.__class__.__name__})"
    try:
        with celery_app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, timeout=2)
            broker_check(broker)
        checks["broker"] = "ok"
    except Exception as exc:  # kombu raises the transport's own errors
        checks["broker"] = f"unreachable ({exc.__class__.__name__})"
    return checks


def _no_store(response):
    response["Cache-Control"] = "no-store"
    return response


def bad_request(request, exception):
    """400 for a request Django would not read (e.g. more files than DATA_UPLOAD_MAX_NUMBER_FILES):
    JSON under /api/, the reason on a page elsewhere."""
    if isinstance(exception, TooManyFilesSent):
        reason = f"Upload at most {settings.UPLOAD_MAX_FILES} files at once."
    else:
        reason = "The request could not be read; please try again."
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": reason}, status=400)
    return render(request, "400.html", {"reason": reason}, status=400)


def page_not_found(request, exception):
    """404: JSON under /api/ (clients parse it), the site's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "404.html", {"path": request.path}, status=404)


def server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Something went wrong on our side; please try again."}, status=500)
    # No context processors, no database: whatever failed may fail again while rendering this.
    return defaults.server_error(request, template_name="500.html")


@login_not_required
@require_GET
def favicon(request):
    """Browsers ask for /favicon.ico whatever the page says; the icon is a static file (its
    hashed name is known only at request time in production)."""
    return redirect(static("favicon.svg"), permanent=True)
