"""The status page's actions in a real headless Chromium against a real `kron daemon`: an
operator logs in with the token and the buttons do what they say; without the token there are
none; a page of another origin cannot use them, even holding a valid CSRF token."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kron.engine import records

from .browser import ARTIFACTS, DevTools, kron_daemon, wait_until
from .harness import write_job
from .test_web_actions import TOKEN, actions_on, token_file, web_lines


def log_in(browser: DevTools, base: str, page: str) -> None:
    """Follow the header's link to the login form, type the token, and come back to `page`."""
    browser.load(f"{base}{page}")
    browser.click("header a.who")
    assert browser.location() == f"{base}/login?next={page}"
    browser.type_into("#token", TOKEN)
    browser.click("form.login button")
    assert browser.location() == f"{base}{page}"


def ended(path: Path) -> list[dict[str, Any]]:
    return [r for r in records.read(path) if r.get("outcome") not in (None, "started")]


def paused(jobs_dir: Path) -> list[str]:
    found: list[str] = json.loads((jobs_dir / ".kron" / "state.json").read_text())["paused"]
    return found


def policy_violations(browser: DevTools) -> list[str]:
    return [str(e["text"]) for e in browser.log if "Content Security Policy" in str(e["text"])]


def test_an_operator_with_the_token_runs_cancels_pauses_and_resumes_jobs_in_a_real_browser(
    jobs_dir: Path, short_tmp: Path, browser: DevTools
) -> None:
    write_job(jobs_dir, "hello.toml", 'schedule = "@manual"\nshell = "echo hello from a button"\n')
    write_job(jobs_dir, "deploy.toml", 'schedule = "@manual"\nshell = "sleep 300"\n')
    write_job(
        jobs_dir, "nightly.toml", 'schedule = "0 3 * * *"\ntimezone = "UTC"\ncommand = ["true"]\n'
    )
    token = token_file(short_tmp)
    with kron_daemon(jobs_dir, short_tmp, actions_on(token)) as base:
        browser.viewport(1280, mobile=False)
        browser.load(f"{base}/jobs/hello")
        assert browser.count("form") == 0  # no button before logging in
        assert browser.text("header a.who") == ["Log in"]

        log_in(browser, base, "/jobs/hello")
        assert browser.text("form.act button") == ["Log out", "Run now", "Pause"]
        (cookie,) = browser.send("Network.getCookies", urls=[base])["cookies"]
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
            "kron_session",
            True,
            "Strict",
        )
        assert browser.evaluate("document.cookie") == ""  # no script could read it
        browser.screenshot(ARTIFACTS / "status-page-actions.png", width=1280, mobile=False)

        # Run now: the run really starts, and the button lands on its page.
        browser.click('form[action="/jobs/hello/run"] button')
        (run,) = wait_until("the run", lambda: ended(jobs_dir / "hello.runs.jsonl"))
        assert (run["trigger"], run["outcome"], run["stdout"]) == (
            "manual",
            "succeeded",
            "hello from a button\n",
        )
        assert browser.location() == f"{base}/runs/{run['run_id']}?job=hello"

        # Cancel, on the page of a run still going.
        browser.load(f"{base}/jobs/deploy")
        browser.click('form[action="/jobs/deploy/run"] button')
        assert browser.text("table.fields td .badge") == ["running"]
        browser.click('form[action$="/cancel"] button')
        (cancelled,) = wait_until("the cancel", lambda: ended(jobs_dir / "deploy.runs.jsonl"))
        assert cancelled["outcome"] == "cancelled"
        assert browser.location() == f"{base}/runs/{cancelled['run_id']}?job=deploy"
        browser.load(browser.location())
        assert browser.text("table.fields td .badge") == ["cancelled"]
        assert browser.count('form[action$="/cancel"]') == 0

        # Pause, then resume: the daemon keeps the pause in its state file.
        browser.load(f"{base}/jobs/nightly")
        browser.click('form[action="/jobs/nightly/pause"] button')
        assert browser.location() == f"{base}/jobs/nightly"
        assert paused(jobs_dir) == ["nightly"]
        assert "paused" in browser.text("table.fields")[0]
        browser.click('form[action="/jobs/nightly/resume"] button')
        assert paused(jobs_dir) == []
        assert browser.text("form.act button") == ["Log out", "Run now", "Pause"]

        # Log out: the buttons are gone.
        browser.click('form[action="/logout"] button')
        browser.load(f"{base}/jobs/nightly")
        assert browser.count("form") == 0
        assert policy_violations(browser) == []
    assert [(line["event"], line["job"], line.get("run_id")) for line in web_lines(jobs_dir)] == [
        ("run", "hello", run["run_id"]),
        ("run", "deploy", cancelled["run_id"]),
        ("cancel", "deploy", cancelled["run_id"]),
        ("pause", "nightly", None),
        ("resume", "nightly", None),
    ]


class _Other(BaseHTTPRequestHandler):
    """Another site on the same host: it serves one page, whatever is asked."""

    page = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def other_site() -> Iterator[tuple[str, type[_Other]]]:
    """A real HTTP server on another 127.0.0.1 port; yields its URL and its handler class."""
    handler = type("Handler", (_Other,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_form_on_another_port_is_refused_though_it_carries_the_cookie_and_a_valid_csrf_token(
    jobs_dir: Path, short_tmp: Path, browser: DevTools
) -> None:
    write_job(
        jobs_dir, "nightly.toml", 'schedule = "0 3 * * *"\ntimezone = "UTC"\ncommand = ["true"]\n'
    )
    token = token_file(short_tmp)
    with kron_daemon(jobs_dir, short_tmp, actions_on(token)) as base, other_site() as (url, site):
        browser.viewport(1280, mobile=False)
        log_in(browser, base, "/jobs/nightly")
        csrf = browser.evaluate(
            "document.querySelector('form[action=\"/jobs/nightly/pause\"] input[name=csrf]').value"
        )
        site.page = (
            f'<!doctype html><form method="post" action="{base}/jobs/nightly/pause">'
            f'<input type="hidden" name="csrf" value="{csrf}">'
            '<button id="go">Claim your prize</button></form>'
        ).encode()
        browser.send("Network.enable")
        browser.load(url)
        browser.click("#go")
        assert browser.location() == f"{base}/jobs/nightly/pause"
        assert browser.text("h1") == ["Cross-origin request refused"]
        assert browser.text("main p")[0] == (
            "Actions are taken only from this status page's own pages "
            "(Sec-Fetch-Site is 'same-site')."
        )
        # The browser did send the session: another port of the same host is the same site,
        # which SameSite=Strict lets through. Only the origin check stood in the way.
        (sent,) = [h for h in browser.sent_headers if h.get("Origin") == url.rstrip("/")]
        assert sent["Cookie"].startswith("kron_session=")
        assert sent["Sec-Fetch-Site"] == "same-site"
        assert paused(jobs_dir) == []

        # A GET to an action's address does nothing either.
        browser.load(f"{base}/jobs/nightly/pause")
        assert browser.text("h1") == ["Method not allowed"]
        assert paused(jobs_dir) == []

        # The same token from the page's own button works: it was valid all along.
        browser.load(f"{base}/jobs/nightly")
        browser.click('form[action="/jobs/nightly/pause"] button')
        assert paused(jobs_dir) == ["nightly"]
    assert [line["event"] for line in web_lines(jobs_dir)] == ["pause"]


def test_a_browser_without_the_token_gets_no_button_and_cannot_log_in(
    jobs_dir: Path, short_tmp: Path, browser: DevTools
) -> None:
    write_job(jobs_dir, "hello.toml", 'schedule = "@manual"\nshell = "echo hi"\n')
    token = token_file(short_tmp)
    with kron_daemon(jobs_dir, short_tmp, actions_on(token)) as base:
        browser.viewport(390, mobile=True)
        browser.load(f"{base}/login?next=/jobs/hello")
        browser.type_into("#token", "not-the-token-at-all")
        browser.click("form.login button")
        assert browser.text("h1") == ["Log in"]
        assert browser.text("p.notice") == ["That is not the token."]
        browser.load(f"{base}/jobs/hello")
        assert browser.count("form") == 0
        assert browser.send("Network.getCookies", urls=[base])["cookies"] == []
        assert browser.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    assert not (jobs_dir / "hello.runs.jsonl").exists()
    assert web_lines(jobs_dir) == []
