"""The http action: one request with httpx; status, latency and a body excerpt go in the record."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx

from kron.actions.base import ActionResult, Interrupted, connection_reason, until_stopped
from kron.actions.httpclient import client
from kron.actions.process import OutputBuffer
from kron.model.job import HttpAction, Job
from kron.model.secrets import NO_SECRETS, Secrets
from kron.model.units import format_duration

__all__ = ["MATCH_LIMIT", "run_http"]

# `expect_body` is searched in the first this-many bytes of the body; the record keeps only a
# head-and-tail excerpt of max_output bytes, never the whole body.
MATCH_LIMIT = 16 * 1024 * 1024


async def run_http(
    job: Job, action: HttpAction, *, stop: asyncio.Event, secrets: Secrets = NO_SECRETS
) -> ActionResult:
    """Send the request; succeed when the status is expected and the body matches.

    `http.timeout` bounds the request (no answer in time is `failed`, so retries apply); the
    job's `timeout` bounds the attempt (`timeout`). Redirects are not followed, as with curl.
    """
    done = await until_stopped(_request(job, action, secrets), stop=stop, timeout=job.timeout)
    if done is Interrupted.STOPPED:
        return ActionResult(stopped=True, error=f"stopped during {action.method} {action.url}")
    if done is Interrupted.TIMED_OUT:
        assert job.timeout is not None
        limit = format_duration(job.timeout)
        return ActionResult(
            timed_out=True, error=f"timeout {limit} reached during {action.method} {action.url}"
        )
    return done


async def _request(job: Job, action: HttpAction, secrets: Secrets) -> ActionResult:
    excerpt = OutputBuffer(job.max_output, secrets)
    body = bytearray()
    content: dict[str, Any] = {}
    if action.json is not None:
        content["json"] = action.json
    elif action.body is not None:
        content["content"] = action.body.encode()
    started = time.monotonic()
    latency_ms = None
    try:
        async with (
            client(action.timeout.total_seconds()) as http,
            http.stream(
                action.method, action.url, headers=dict(action.headers), **content
            ) as response,
        ):
            latency_ms = round((time.monotonic() - started) * 1000, 1)
            async for chunk in response.aiter_bytes():
                excerpt.feed(chunk)
                if action.expect_body is not None and len(body) < MATCH_LIMIT:
                    body += chunk[: MATCH_LIMIT - len(body)]
    except httpx.TimeoutException:
        waited = format_duration(action.timeout)
        return ActionResult(
            ok=False, error=f"no answer from {action.url} within {waited} (http.timeout)"
        )
    except httpx.HTTPError as exc:
        error = f"{action.method} {action.url}: {connection_reason(exc)}"
        if latency_ms is None:
            return ActionResult(ok=False, error=error)
        return ActionResult(
            ok=False, error=error, stdout=excerpt.text(), truncated=excerpt.truncated
        )
    status = response.status_code
    problems = []
    if not _status_ok(status, action.expect_status):
        wanted = ", ".join(map(str, action.expect_status)) if action.expect_status else "2xx"
        problems.append(f"status {status}, expected {wanted}")
    if action.expect_body is not None and not re.search(
        action.expect_body, body.decode(response.encoding or "utf-8", "replace")
    ):
        problems.append(f"body does not match {action.expect_body!r}")
    return ActionResult(
        ok=not problems,
        stdout=excerpt.text(),
        truncated=excerpt.truncated,
        error="; ".join(problems) or None,
        extra={"http_status": status, "latency_ms": latency_ms},
    )


def _status_ok(status: int, expected: tuple[int, ...] | None) -> bool:
    return 200 <= status < 300 if expected is None else status in expected
