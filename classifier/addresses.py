"""The client's address, as every per-address limit counts it (django-axes' lockout, the
sign-up and password-reset limits, DRF's throttling of anonymous requests).

Behind a reverse proxy every request comes from the proxy's own address, so one client's
failures would count against everyone. Each proxy appends the address it received the request
from to ``X-Forwarded-For``; with ``TRUSTED_PROXY_COUNT`` proxies in front of the site, the entry
that many places from the right is the one the first proxy saw, and everything left of it is
whatever the client chose to send. Without proxies (the default, 0) the header is ignored:
trusting it there would let anyone pick the address their failures count against.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def client_address(request) -> str:
    """The address of the client that sent ``request``, by ``TRUSTED_PROXY_COUNT``."""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < proxies:
        return remote  # it did not come through every proxy (a health check from inside, say)
    try:
        return str(ipaddress.ip_address(forwarded[-proxies]))
    except ValueError:
        return remote  # not an address: no proxy of ours wrote it
