"""Accounts: API tokens and password-reset requests."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import transaction
from rest_framework.authtoken.models import Token

from classifier.services.limits import window_count


def api_token_create(*, user) -> Token:
    """A new API token for ``user``; an older one stops working at once."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def api_token_revoke(*, user) -> bool:
    """Delete ``user``'s API token; False when there was none."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted > 0


def password_reset_request_allow(*, client_address: str, email: str) -> bool:
    """Count one password-reset request; False when its client address or its e-mail address
    is over the limit for the window (settings ``PASSWORD_RESET_RATE_*``).

    Every request counts, for known and unknown e-mail addresses alike, so the outcome says
    nothing about which addresses have accounts."""
    window = settings.PASSWORD_RESET_RATE_WINDOW_SECONDS
    # Hashed: the cache (Redis in production) need not hold people's e-mail addresses.
    email_key = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    per_address = window_count(f"password-reset:address:{client_address}", window)
    per_email = window_count(f"password-reset:email:{email_key}", window)
    return (
        per_address <= settings.PASSWORD_RESET_RATE_PER_ADDRESS and per_email <= settings.PASSWORD_RESET_RATE_PER_EMAIL
    )


def signup_allow(*, client_address: str) -> bool:
    """Count one account about to be made from ``client_address``; False when that address
    has made ``SIGNUP_RATE_PER_ADDRESS`` in the window (``SIGNUP_RATE_WINDOW_SECONDS``)."""
    count = window_count(f"signup:address:{client_address}", settings.SIGNUP_RATE_WINDOW_SECONDS)
    return count <= settings.SIGNUP_RATE_PER_ADDRESS
