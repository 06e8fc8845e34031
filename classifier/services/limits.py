"""Counts in the cache over a fixed window: the rate limits on password resets, sign-ups and
the draw page's live answer."""

from __future__ import annotations

from django.core.cache import cache


def window_count(key: str, window_seconds: int) -> int:
    """Add one to a count that starts at the first request and ends ``window_seconds`` later."""
    cache.add(key, 0, timeout=window_seconds)
    try:
        return cache.incr(key)
    except ValueError:  # it expired between the two calls: this request starts a new window
        cache.set(key, 1, timeout=window_seconds)
        return 1
