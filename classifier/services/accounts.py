"""Accounts: API tokens."""

from __future__ import annotations

from django.db import transaction
from rest_framework.authtoken.models import Token


def api_token_create(*, user) -> Token:
    """A new API token for ``user``; an older one stops working at once."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def api_token_revoke(*, user) -> bool:
    """Delete ``user``'s API token; False when there was none."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted > 0
