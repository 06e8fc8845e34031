"""Accounts: signing up, the sign-in lockout page of django-axes, changing and resetting a
password (counted and rate-limited), the API token, the account page, "download my data" and
deleting the account with everything in it."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from rest_framework.authtoken.models import Token

from classifier import exports
from classifier.addresses import client_address
from classifier.forms import AccountDeleteForm, CountedPasswordChangeForm, SignUpForm
from classifier.selectors import account_summary, image_list_for
from classifier.services import (
    AccountDeleteRefused,
    account_delete,
    account_delete_refusal,
    api_token_create,
    api_token_revoke,
    password_reset_request_allow,
    signup_allow,
)


@login_not_required
def locked_out(request, original_response=None, credentials=None):
    """What django-axes answers to a sign-in while the username and address are locked out."""
    minutes = round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    context = {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "username": (credentials or {}).get("username") or request.POST.get("username", ""),
        "cooloff": ngettext("%(count)d minute", "%(count)d minutes", minutes) % {"count": minutes},
        "password_reset": settings.PASSWORD_RESET_ENABLED,
        # The same count pauses the password change form: it says what it paused.
        "changing_password": bool(request.resolver_match and request.resolver_match.url_name == "password_change"),
    }
    return render(request, "registration/locked_out.html", context, status=429)


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change, with wrong old passwords counted as failed sign-ins."""

    form_class = CountedPasswordChangeForm

    def get_form_kwargs(self):
        return super().get_form_kwargs() | {"request": self.request}


@method_decorator(login_not_required, name="dispatch")
class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset page, rate-limited, and switched off where no mail server is set
    (PASSWORD_RESET_ENABLED)."""

    def dispatch(self, request, *args, **kwargs):
        if not settings.PASSWORD_RESET_ENABLED:
            return render(request, "registration/password_reset_unavailable.html")
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form):
        allowed = password_reset_request_allow(
            client_address=client_address(self.request), email=form.cleaned_data["email"]
        )
        if allowed:
            return super().form_valid(form)
        # Over the limit: no mail, and the same answer as when one was sent.
        return redirect(self.get_success_url())


@login_not_required
@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("classifier:home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not signup_allow(client_address=client_address(request)):
            minutes = round(settings.SIGNUP_RATE_WINDOW_SECONDS / 60)
            context = {"form": form, "paused": {"limit": settings.SIGNUP_RATE_PER_ADDRESS, "minutes": minutes}}
            return render(request, "registration/signup.html", context, status=429)
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}! Upload a digit to get started.")
        return redirect("classifier:home")
    return render(request, "registration/signup.html", {"form": form})


@never_cache  # the page shows the token: no browser or proxy may keep a copy
@require_http_methods(["GET", "POST"])
def api_token(request):
    """Create, replace or revoke the signed-in user's API token."""
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            if api_token_revoke(user=request.user):
                messages.success(request, "Your API token is revoked: requests with it are refused from now on.")
        else:
            replaced = Token.objects.filter(user=request.user).exists()
            api_token_create(user=request.user)
            messages.success(
                request,
                "Your new API token is ready. The old one no longer works."
                if replaced
                else "Your API token is ready: copy it into your script or app.",
            )
        return redirect("classifier:api_token")
    token = Token.objects.filter(user=request.user).first()
    return render(request, "classifier/api_token.html", {"token": token})


@require_GET
def account(request):
    """The signed-in user's account: password, API token, their data, deleting it all."""
    return render(request, "classifier/account.html", {"summary": account_summary(request.user)})


@never_cache  # personal data: no proxy or browser cache keeps a copy
@require_GET
def account_data(request):
    """ "Download my data": the history CSV and every image file, as a zip streamed while it is
    written (memory stays bounded whatever the number of images)."""
    images = image_list_for(request.user).select_related("feedback")
    stamp = timezone.now().strftime("%Y-%m-%d")
    response = StreamingHttpResponse(exports.data_zip(images, stamp=stamp), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="digitsite-data-{stamp}.zip"'
    return response


@require_http_methods(["GET", "POST"])
def account_delete_view(request):
    """Delete the account and everything in it, once the password confirms it; the person
    lands, signed out, on the landing page with a word that it is done."""
    refusal = account_delete_refusal(user=request.user)
    form = AccountDeleteForm(request.POST or None, request=request)
    if request.method == "POST" and refusal is None and form.is_valid():
        try:
            deletion = account_delete(user=request.user)
        except AccountDeleteRefused as exc:  # became the last superuser since the page was shown
            messages.error(request, str(exc))
            return redirect("classifier:account_delete")
        logout(request)
        kept = (
            ngettext(
                " %(count)d corrected image is kept as a 28x28 training example, as you agreed.",
                " %(count)d corrected images are kept as 28x28 training examples, as you agreed.",
                deletion.kept,
            )
            % {"count": deletion.kept}
            if deletion.kept
            else ""
        )
        messages.success(
            request,
            ngettext(
                "Your account was deleted, with its %(count)d image and everything about it.",
                "Your account was deleted, with its %(count)d images and everything about them.",
                deletion.images,
            )
            % {"count": deletion.images}
            + kept,
        )
        return redirect("classifier:home")
    context = {"form": form, "summary": account_summary(request.user), "refusal": refusal}
    return render(request, "classifier/account_delete.html", context, status=400 if form.errors else 200)
