"""The httpx client every HTTP-speaking action and probe uses, with TLS settings built once."""

from __future__ import annotations

import functools
import ssl

import httpx

__all__ = ["client"]


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS settings, built once: building them costs ~25 ms per client."""
    return httpx.create_ssl_context()


def client(timeout_s: float) -> httpx.AsyncClient:
    """An httpx client for one request (or one probe) with a shared TLS context."""
    return httpx.AsyncClient(timeout=timeout_s, verify=_tls())
