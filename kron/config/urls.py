"""URLs and requests checked by the parser that will send them: a URL that loads is one that fires.

`model.conditions.check_http_url` says what a reader expects (a scheme, a host, a port); httpx,
which sends kron's requests, is stricter (IDNA host names, non-printable characters, header
values that are not ASCII, JSON without NaN). A job that only failed there used to fail at fire
time, outside the action's error handling, as a "Task exception was never retrieved".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kron.model.conditions import (
    AllOf,
    AnyOf,
    Condition,
    HttpProbe,
    Not,
    check_http_url,
    parse_condition,
)
from kron.model.errors import ValueProblem, excerpt, shorten

__all__ = [
    "check_condition_urls",
    "check_headers",
    "check_healthcheck",
    "check_json",
    "check_url",
    "ping_urls",
]

_ANY_HOST = "http://kron.invalid/"


def check_url(url: str, *, sent_as: Iterable[str] = ()) -> str:
    """Return `url` if httpx can send a request to it, and to each URL kron builds from it
    (`sent_as`: `<url>/start`, `<endpoint>/chat/completions`); raise ValueProblem if not."""
    check_http_url(url)
    httpx = _httpx()
    for target in (url, *sent_as):
        try:
            httpx.Request("GET", target)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            # ValueError covers the idna package's errors (`http://xn--a.com`).
            raise ValueProblem(f"bad URL {excerpt(url)}: {_reason(exc)}") from None
    return url


def check_healthcheck(url: str) -> str:
    """Return a healthcheck URL if httpx can send each of its pings; raise ValueProblem if not."""
    check_http_url(url)  # first: ping_urls cannot split what this refuses
    return check_url(url, sent_as=ping_urls(url))


def ping_urls(url: str) -> tuple[str, ...]:
    """The URLs a healthcheck pings besides its own: `<url>/start` and `<url>/fail`, query kept
    (as `notify.healthcheck.ping_url` builds them)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    return tuple(urlunsplit(parts._replace(path=f"{path}/{kind}")) for kind in ("start", "fail"))


def check_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """Return `headers` if httpx can send them; raise ValueProblem naming the first it cannot."""
    httpx = _httpx()
    for name, value in headers.items():
        try:
            httpx.Request("GET", _ANY_HOST, headers={name: value})
        except UnicodeEncodeError:
            raise ValueProblem(
                f"header {excerpt(name)} cannot be sent: HTTP header values are ASCII text"
            ) from None
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise ValueProblem(f"header {excerpt(name)} cannot be sent: {_reason(exc)}") from None
    return headers


def check_json(value: Any) -> Any:
    """Return `value` if httpx can send it as a JSON body; raise ValueProblem saying why not."""
    httpx = _httpx()
    try:
        httpx.Request("POST", _ANY_HOST, json=value)
    except (ValueError, TypeError) as exc:
        # A TOML date (a datetime to Python), NaN or infinity: JSON has no word for them.
        raise ValueProblem(f"cannot be sent as JSON: {_reason(exc)}") from None
    return value


def check_condition_urls(text: str) -> str:
    """Return a parsed `wait.until` if httpx can send each of its HTTP probes."""
    for probe in _http_probes(parse_condition(text)):
        check_url(probe.url)
    return text


def _http_probes(condition: Condition) -> Iterable[HttpProbe]:
    if isinstance(condition, HttpProbe):
        yield condition
    elif isinstance(condition, AllOf | AnyOf):
        for item in condition.items:
            yield from _http_probes(item)
    elif isinstance(condition, Not):
        yield from _http_probes(condition.item)


def _reason(exc: BaseException) -> str:
    return shorten(str(exc) or type(exc).__name__, 120)


def _httpx() -> Any:
    # Lazy, as in the actions: only a file with a URL pays for httpx (~0.1 s), and the daemon
    # that fires such a job loads it anyway.
    import httpx

    return httpx
