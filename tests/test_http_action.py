"""The http action against a real HTTP server on 127.0.0.1: request, expectations, record, stop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kron.actions.base import ActionResult
from kron.actions.dispatch import execute
from kron.config.catalog import load_dir
from kron.engine.scheduler import Scheduler
from kron.model.job import Job
from kron.model.run import Trigger

from .clock import FakeClock
from .harness import DEADLINE_S, Events, make_job, until_true

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


# (status, headers, body); None hangs up without answering.
Reply = tuple[int, dict[str, str], bytes] | None


class Server:
    """A real HTTP server on 127.0.0.1 in a thread; `routes` map a path to its answer."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[Request], Reply]] = {}
        self.requests: list[Request] = []
        self.release = threading.Event()  # lets handlers that wait for it finish at close
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one_request(self) -> None:
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline or not self.parse_request():
                    self.close_connection = True
                    return
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command, self.path, dict(self.headers.items()), self.rfile.read(length)
                )
                outer.requests.append(request)
                route = outer.routes.get(self.path.split("?")[0])
                reply = route(request) if route else (404, {}, b"no such route")
                self.close_connection = True
                if reply is None:
                    return
                status, headers, body = reply
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(DEADLINE_S)


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as srv:
        yield srv


def http_job(jobs_dir: Path, body: str, *, extra: str = "") -> Job:
    return make_job(jobs_dir, "probe.toml", f'schedule = "@manual"\n{extra}\n[http]\n{body}\n')


def call(job: Job, stop: asyncio.Event | None = None) -> ActionResult:
    async def main() -> ActionResult:
        return await execute(job, run_env={}, stop=stop or asyncio.Event())

    return asyncio.run(asyncio.wait_for(main(), DEADLINE_S))


def test_a_2xx_answer_succeeds_and_records_status_latency_and_the_body(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/health"] = lambda r: (200, {"Content-Type": "text/plain"}, b"all good")
    result = call(http_job(jobs_dir, f'url = "{server.url}/health"'))
    assert (result.ok, result.stdout, result.error, result.truncated) == (
        True,
        "all good",
        None,
        False,
    )
    assert result.extra["http_status"] == 200
    assert isinstance(result.extra["latency_ms"], float)
    assert 0 < result.extra["latency_ms"] < DEADLINE_S * 1000


def test_method_headers_and_a_json_body_are_sent(jobs_dir: Path, server: Server) -> None:
    server.routes["/hook"] = lambda r: (201, {}, b"created")
    job = http_job(
        jobs_dir,
        f'method = "POST"\nurl = "{server.url}/hook"\nheaders = {{ X-Token = "t0ken" }}\njson = {{ event = "nightly", n = 3 }}',
    )
    result = call(job)
    assert (result.ok, result.extra["http_status"]) == (True, 201)
    [request] = server.requests
    assert (request.method, request.headers["X-Token"], request.headers["Content-Type"]) == (
        "POST",
        "t0ken",
        "application/json",
    )
    assert json.loads(request.body) == {"event": "nightly", "n": 3}


def test_a_raw_body_is_sent_as_written(jobs_dir: Path, server: Server) -> None:
    server.routes["/put"] = lambda r: (204, {}, b"")
    call(http_job(jobs_dir, f'method = "PUT"\nurl = "{server.url}/put"\nbody = "line 1\\nline 2"'))
    assert [(r.method, r.body) for r in server.requests] == [("PUT", b"line 1\nline 2")]


def test_a_status_outside_expect_status_fails_with_both_in_the_error(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/x"] = lambda r: (503, {}, b"maintenance")
    default = call(http_job(jobs_dir, f'url = "{server.url}/x"'))
    listed = call(http_job(jobs_dir, f'url = "{server.url}/x"\nexpect_status = [200, 204]'))
    allowed = call(http_job(jobs_dir, f'url = "{server.url}/x"\nexpect_status = [503]'))
    assert (default.ok, default.error, default.stdout) == (
        False,
        "status 503, expected 2xx",
        "maintenance",
    )
    assert (listed.ok, listed.error) == (False, "status 503, expected 200, 204")
    assert (allowed.ok, allowed.error, allowed.extra["http_status"]) == (True, None, 503)


def test_expect_body_is_a_regex_searched_in_the_body(jobs_dir: Path, server: Server) -> None:
    server.routes["/status"] = lambda r: (200, {}, b'{"db": "up", "queue": "degraded"}')
    good = call(http_job(jobs_dir, f'url = "{server.url}/status"\nexpect_body = \'"db": "up"\''))
    bad = call(
        http_job(jobs_dir, f'url = "{server.url}/status"\nexpect_body = \'"queue": "(up|ok)"\'')
    )
    assert (good.ok, good.error) == (True, None)
    assert (bad.ok, bad.error) == (False, """body does not match '"queue": "(up|ok)"'""")


def test_a_large_body_is_kept_as_a_bounded_head_and_tail(jobs_dir: Path, server: Server) -> None:
    server.routes["/big"] = lambda r: (200, {}, b"<" + b"x" * 99_998 + b">")
    result = call(
        http_job(
            jobs_dir, f'url = "{server.url}/big"\nexpect_body = "x>$"', extra='max_output = "100B"'
        )
    )
    assert result.ok is True
    assert result.truncated is True
    assert result.stdout == "<" + "x" * 49 + "\n[... 99900 bytes dropped ...]\n" + "x" * 49 + ">"


def test_a_refused_connection_is_a_failed_run_with_the_error(jobs_dir: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = call(http_job(jobs_dir, f'url = "http://127.0.0.1:{port}/health"'))
    assert (result.ok, result.error, result.extra) == (
        False,
        f"GET http://127.0.0.1:{port}/health: connection refused",
        {},
    )


def test_no_answer_within_the_request_timeout_is_a_failed_run(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/slow"] = lambda r: server.release.wait(DEADLINE_S) and (200, {}, b"late")
    result = call(http_job(jobs_dir, f'url = "{server.url}/slow"\ntimeout = "200ms"'))
    assert (result.ok, result.timed_out) == (False, False)
    assert result.error == f"no answer from {server.url}/slow within 200ms (http.timeout)"


def test_the_jobs_timeout_ends_the_request_as_a_timeout(jobs_dir: Path, server: Server) -> None:
    server.routes["/slow"] = lambda r: server.release.wait(DEADLINE_S) and (200, {}, b"late")
    result = call(http_job(jobs_dir, f'url = "{server.url}/slow"', extra='timeout = "200ms"'))
    assert (result.timed_out, result.error) == (
        True,
        f"timeout 200ms reached during GET {server.url}/slow",
    )


def test_a_stop_cancels_the_request_in_flight(jobs_dir: Path, server: Server) -> None:
    server.routes["/slow"] = lambda r: server.release.wait(DEADLINE_S) and (200, {}, b"late")
    job = http_job(jobs_dir, f'url = "{server.url}/slow"')

    async def main() -> ActionResult:
        stop = asyncio.Event()
        task = asyncio.ensure_future(execute(job, run_env={}, stop=stop))
        await until_true(lambda: len(server.requests) == 1)
        stop.set()
        return await task

    result = asyncio.run(asyncio.wait_for(main(), DEADLINE_S))
    assert (result.stopped, result.error) == (True, f"stopped during GET {server.url}/slow")


def test_a_failed_request_is_retried_by_the_jobs_retry_policy(
    jobs_dir: Path, server: Server
) -> None:
    answers = iter([(502, {}, b"bad gateway"), (200, {}, b"ok")])
    server.routes["/flaky"] = lambda r: next(answers)
    job = http_job(
        jobs_dir,
        f'url = "{server.url}/flaky"',
        extra='[retry]\nattempts = 3\ndelay = "10s"\nbackoff = "fixed"',
    )

    async def main() -> None:
        clock = FakeClock(T0)
        scheduler = Scheduler(clock=clock)
        events = Events()
        scheduler.subscribe(events)
        scheduler.add(job, cursor=T0, paused=True, now=T0)
        try:
            scheduler.fire(job.id, slot=T0, trigger=Trigger.MANUAL)
            await events.until(lambda e: len(e.ended()) == 1)
            await clock.advance(10)
            await events.until(lambda e: len(e.ended()) == 2)
        finally:
            await scheduler.shutdown(timedelta(seconds=5))
        ended = events.ended()
        assert [(e.attempt, e.outcome.value, e.extra["http_status"], e.stdout) for e in ended] == [
            (1, "failed", 502, "bad gateway"),
            (2, "succeeded", 200, "ok"),
        ]

    asyncio.run(asyncio.wait_for(main(), DEADLINE_S))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://:8080/x", "bad URL 'http://:8080/x': no host"),
        (
            "https://example.org:0/",
            "bad URL 'https://example.org:0/': the port must be a number from 1 to 65535",
        ),
        ("http://exa mple.org/", "bad URL 'http://exa mple.org/': it contains a space"),
        ("ftp://example.org/", '"ftp://example.org/" is not an http(s) URL'),
    ],
)
def test_a_bad_url_is_a_validation_error_on_the_url_line(
    jobs_dir: Path, write: Any, url: str, message: str
) -> None:
    write("probe.toml", f'schedule = "@manual"\n[http]\nmethod = "GET"\nurl = "{url}"\n')
    assert [str(p) for p in load_dir(jobs_dir).errors] == [
        f"{jobs_dir / 'probe.toml'}:4:1: http.url: {message}"
    ]
