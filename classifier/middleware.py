from django.conf import settings
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


class RequestSizeLimitMiddleware:
    """Refuse a request whose body is over ``UPLOAD_MAX_REQUEST_BYTES`` before it is read.

    Django streams file uploads to temporary files without a total limit of its own, so
    without this one request could fill the disk. Pages get the reason as a message on the
    page the form was on; the API gets 413 with the reason.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.UPLOAD_MAX_REQUEST_BYTES
        if length <= limit:
            return self.get_response(request)
        reason = (
            f"This upload is {length / 1_000_000:.3g} MB in all; one upload can carry at most "
            f"{limit / 1_000_000:.3g} MB. Please upload fewer or smaller files at a time."
        )
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": reason}, status=413)
        messages.error(request, reason)
        # Back to the page the form was on; a path such as //evil.example/ reads as another
        # host to a browser, so anything that is not a plain path here goes home instead.
        target = request.get_full_path()
        if not url_has_allowed_host_and_scheme(target, allowed_hosts=None):
            target = reverse("classifier:home")
        return redirect(target)
