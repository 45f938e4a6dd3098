"""The status page's actions (`[web] actions = true`): the token file, the login, what the
buttons do and where they are written down, and every request that must be refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from kron.model.errors import KronError
from kron.model.settings import WebSettings
from kron.service.daemon import Daemon
from kron.service.html import CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_FORMS
from kron.service.webauth import read_token

from .clock import FakeClock
from .conftest import CliResult
from .harness import Events, write_job
from .test_metrics import with_listener
from .test_web import Page

T0 = datetime(2026, 3, 2, 7, 0, 30, tzinfo=UTC)
TOKEN = "s3cret-token-for-the-status-page"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")


def token_file(folder: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path = folder / "web-token"
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


def actions_on(path: Path) -> str:
    return f'[web]\nactions = true\ntoken_file = "{path}"\n'


def same_origin(client: httpx.AsyncClient) -> dict[str, str]:
    """What a browser sends with a form of the page itself."""
    return {"origin": str(client.base_url).rstrip("/"), "sec-fetch-site": "same-origin"}


async def log_in(client: httpx.AsyncClient, token: str = TOKEN) -> str:
    """Log in as the form does; the client keeps the cookie. Returns the session id."""
    response = await client.post(
        "/login", data={"token": token, "next": "/"}, headers=same_origin(client)
    )
    assert response.status_code == 303, response.text
    session = client.cookies.get("kron_session")
    assert session
    return session


def expected_csrf(session: str, token: str = TOKEN) -> str:
    """The CSRF token, computed here the way the docs say it is."""
    key = hmac.new(token.encode(), b"kron web csrf", hashlib.sha256).digest()
    return hmac.new(key, session.encode(), hashlib.sha256).hexdigest()


def forms(text: str) -> list[tuple[str, str]]:
    """Each form's action and its button's label."""
    return re.findall(r'<form[^>]* action="([^"]*)"[^>]*>.*?<button[^>]*>([^<]*)</button>', text)


def csrf_fields(text: str) -> set[str]:
    return set(re.findall(r'name="csrf" value="([^"]*)"', text))


def audit_lines(jobs_dir: Path) -> list[dict[str, Any]]:
    path = jobs_dir / ".kron" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def web_lines(jobs_dir: Path) -> list[dict[str, Any]]:
    """The audit log's lines of actions taken on the status page, without their time."""
    return [
        {k: v for k, v in line.items() if k != "time"}
        for line in audit_lines(jobs_dir)
        if line.get("via") == "web"
    ]


# -- the token file and the settings ---------------------------------------------------------


def test_actions_need_the_listener_and_a_token_file_named_in_kron_toml(
    jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    (jobs_dir / "kron.toml").write_text("[web]\nactions = true\n", encoding="utf-8")
    result = cli("validate", "--jobs-dir", jobs_dir)
    assert result.code == 1
    path = jobs_dir / "kron.toml"
    assert result.lines[:2] == [
        f"{path}:2:1: web.actions: the status page's actions need its listener: "
        'set metrics = "127.0.0.1:9108" at the top of kron.toml',
        f"{path}:2:1: web.actions: actions need token_file: a 0600 file holding the token "
        "operators log in with",
    ]


def test_a_token_file_others_can_read_is_refused_and_a_missing_one_is_a_warning(
    jobs_dir: Path, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    token = token_file(tmp_path, mode=0o640)
    path = jobs_dir / "kron.toml"
    path.write_text(f'metrics = "127.0.0.1:9108"\n{actions_on(token)}', encoding="utf-8")
    result = cli("validate", "--jobs-dir", jobs_dir)
    assert (result.code, result.lines[0]) == (
        1,
        f"{path}:4:1: web.token_file: refused: token file {token} is readable by group "
        f"(mode 0640), not 0600; run chmod 600 {token}",
    )
    os.chmod(token, 0o602)
    result = cli("validate", "--jobs-dir", jobs_dir)
    assert result.lines[0].endswith(
        f"token file {token} is writable by others (mode 0602), not 0600; run chmod 600 {token}"
    )
    token.unlink()
    result = cli("validate", "--jobs-dir", jobs_dir)
    assert (result.code, result.lines[0]) == (
        0,
        f"{path}:4:1: warning: web.token_file: {str(token)!r} does not exist: "
        "the daemon will not start until it does",
    )


@as_root
def test_a_token_file_of_another_user_is_refused(tmp_path: Path) -> None:
    token = token_file(tmp_path)
    os.chown(token, 65534, 65534)
    with pytest.raises(KronError) as caught:
        read_token(WebSettings(actions=True, token_file=token, token_file_at="kron.toml:3"))
    assert str(caught.value).startswith(
        f"kron.toml:3: web.token_file: refused: token file {token} is owned by "
    )


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "short\n",
            "the token in {path} has 5 characters, fewer than 16; make one with "
            "`openssl rand -base64 32 > {path}`",
        ),
        (
            "",
            "the token in {path} has 0 characters, fewer than 16; make one with "
            "`openssl rand -base64 32 > {path}`",
        ),
        (
            "two lines of a token\nsecond line here\n",
            "the token in {path} is not one line of printable text",
        ),
        ("x" * 5000, "{path} is over 4096 bytes; it holds one token"),
    ],
)
def test_a_token_file_that_holds_no_usable_token_is_refused_with_the_fix(
    tmp_path: Path, text: str, said: str
) -> None:
    path = token_file(tmp_path, text)
    with pytest.raises(KronError) as caught:
        read_token(WebSettings(actions=True, token_file=path, token_file_at="kron.toml:4"))
    assert str(caught.value) == "kron.toml:4: web.token_file: " + said.format(path=path)


def test_a_token_file_that_is_not_a_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    for path, said in [
        (fifo, f"{fifo} is not a regular file"),
        (tmp_path, f"{tmp_path} is not a regular file"),
        (tmp_path / "absent", f"cannot read {tmp_path / 'absent'}: No such file or directory"),
    ]:
        with pytest.raises(KronError) as caught:
            read_token(WebSettings(actions=True, token_file=path, token_file_at="kron.toml:4"))
        assert str(caught.value) == f"kron.toml:4: web.token_file: {said}"
    (tmp_path / "bytes").write_bytes(b"\xff\xfe" * 10)
    os.chmod(tmp_path / "bytes", 0o400)
    with pytest.raises(KronError) as caught:
        read_token(WebSettings(actions=True, token_file=tmp_path / "bytes"))
    assert str(caught.value) == f"web.token_file: {tmp_path / 'bytes'} is not UTF-8 text"


def test_the_token_is_the_file_s_one_line_without_its_newline(tmp_path: Path) -> None:
    path = token_file(tmp_path, f"  {TOKEN}\n", mode=0o400)
    assert read_token(WebSettings(actions=True, token_file=path)) == TOKEN


def test_a_daemon_whose_token_file_went_bad_does_not_start(jobs_dir: Path, tmp_path: Path) -> None:
    token = token_file(tmp_path, "too short\n")
    with pytest.raises(KronError) as caught:
        with_listener(jobs_dir, FakeClock(T0), _never, settings=actions_on(token))
    assert str(caught.value) == (
        f"{jobs_dir / 'kron.toml'}:4: web.token_file: the token in {token} has 9 characters, "
        f"fewer than 16; make one with `openssl rand -base64 32 > {token}`"
    )


async def _never(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
    raise AssertionError("the daemon started")


# -- with actions off, and before logging in --------------------------------------------------


def test_without_web_actions_there_is_no_button_no_login_and_no_post(jobs_dir: Path) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        for path in ("/", "/jobs/j"):
            response = await client.get(path)
            assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert "<form" not in response.text
            assert "/login" not in response.text
        assert (await client.get("/login")).status_code == 404
        assert (await client.get("/jobs/j/run")).status_code == 404
        for path in ("/login", "/jobs/j/run", "/jobs/j/pause", "/logout"):
            response = await client.post(path, data={"token": TOKEN}, headers=same_origin(client))
            assert (response.status_code, response.headers["allow"]) == (405, "GET")
        assert daemon.scheduler.jobs["j"].paused is False
        assert daemon.scheduler.running() == []

    with_listener(jobs_dir, FakeClock(T0), body)


def test_before_logging_in_a_page_shows_no_button_and_a_link_to_log_in(
    jobs_dir: Path, tmp_path: Path
) -> None:
    write_job(
        jobs_dir, "team/j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n'
    )

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        response = await client.get("/jobs/team/j")
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY_FORMS
        page = Page(response.text)
        assert "form" not in page.tags
        # In the header, and where the buttons would be.
        assert page.links.count("/login?next=/jobs/team/j") == 2
        login = Page((await client.get("/login?next=/jobs/team/j")).text)
        assert login.headings == ["Log in"]
        assert (
            'name="next" value="/jobs/team/j"'
            in (await client.get("/login?next=/jobs/team/j")).text
        )
        # A `next` that leaves the site is dropped: the login returns to the jobs.
        hostile = await client.get("/login?next=//evil.example/x")
        assert 'name="next" value="/"' in hostile.text

    with_listener(jobs_dir, FakeClock(T0), body, settings=actions_on(token_file(tmp_path)))


# -- logging in -----------------------------------------------------------------------------


def test_the_token_logs_a_browser_in_with_a_strict_http_only_cookie_and_buttons_appear(
    jobs_dir: Path, tmp_path: Path
) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/login", data={"token": TOKEN, "next": "/jobs/j"}, headers=same_origin(client)
        )
        assert (response.status_code, response.headers["location"]) == (303, "/jobs/j")
        session = client.cookies["kron_session"]
        assert len(session) == 43  # 32 random bytes, base64url
        assert response.headers["set-cookie"] == (
            f"kron_session={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"
        )
        page = await client.get("/jobs/j")
        assert forms(page.text) == [
            ("/logout", "Log out"),
            ("/jobs/j/run", "Run now"),
            ("/jobs/j/pause", "Pause"),
        ]
        assert csrf_fields(page.text) == {expected_csrf(session)}

    with_listener(jobs_dir, FakeClock(T0), body, settings=actions_on(token_file(tmp_path)))


def test_a_wrong_token_is_refused_and_ten_in_a_minute_hold_every_login_off_for_it(
    jobs_dir: Path, tmp_path: Path
) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        for wrong in ["", "nope", TOKEN + " ", TOKEN.upper(), "é" * 40, TOKEN[:-1]]:
            response = await client.post(
                "/login", data={"token": wrong}, headers=same_origin(client)
            )
            assert response.status_code == 403
            assert Page(response.text).paragraphs[0] == "That is not the token."
        for _ in range(4):
            await client.post("/login", data={"token": "x"}, headers=same_origin(client))
        response = await client.post("/login", data={"token": TOKEN}, headers=same_origin(client))
        assert response.status_code == 429
        assert Page(response.text).paragraphs[0] == (
            "Too many wrong tokens in the last minute: wait a minute."
        )
        assert "kron_session" not in client.cookies
        await clock.set(T0 + timedelta(seconds=61))
        await log_in(client)

    with_listener(jobs_dir, clock, body, settings=actions_on(token_file(tmp_path)))


# -- the actions ----------------------------------------------------------------------------


def test_run_now_starts_a_manual_run_and_the_audit_log_says_via_web(
    jobs_dir: Path, tmp_path: Path
) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\nshell = "echo hi"\n')

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        session = await log_in(client)
        response = await client.post(
            "/jobs/j/run", data={"csrf": expected_csrf(session)}, headers=same_origin(client)
        )
        assert response.status_code == 303
        await events.until(lambda e: e.outcomes("j") == ["succeeded"])
        (ended,) = events.ended("j")
        assert (ended.trigger.value, ended.stdout) == ("manual", "hi\n")
        assert response.headers["location"] == f"/runs/{ended.run_id}?job=j"
        assert web_lines(jobs_dir) == [
            {
                "event": "run",
                "job": "j",
                "path": None,
                "config_sha": None,
                "error": None,
                "run_id": ended.run_id,
                "via": "web",
            }
        ]

    with_listener(jobs_dir, FakeClock(T0), body, settings=actions_on(token_file(tmp_path)))


def test_pause_and_resume_hold_and_free_the_schedule_and_are_audited(
    jobs_dir: Path, tmp_path: Path
) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        csrf = expected_csrf(await log_in(client))
        response = await client.post(
            "/jobs/j/pause", data={"csrf": csrf}, headers=same_origin(client)
        )
        assert (response.status_code, response.headers["location"]) == (303, "/jobs/j")
        assert daemon.scheduler.jobs["j"].paused is True
        state = json.loads((jobs_dir / ".kron" / "state.json").read_text())
        assert state["paused"] == ["j"]
        page = await client.get("/jobs/j")
        assert forms(page.text)[1:] == [("/jobs/j/run", "Run now"), ("/jobs/j/resume", "Resume")]
        assert Page(page.text).tables[0][3] == ["State", "paused"]
        await client.post("/jobs/j/resume", data={"csrf": csrf}, headers=same_origin(client))
        assert daemon.scheduler.jobs["j"].paused is False
        assert [(line["event"], line["job"]) for line in web_lines(jobs_dir)] == [
            ("pause", "j"),
            ("resume", "j"),
        ]

    with_listener(jobs_dir, FakeClock(T0), body, settings=actions_on(token_file(tmp_path)))


def test_cancel_stops_a_running_run_from_its_page_or_the_jobs_page(
    jobs_dir: Path, tmp_path: Path
) -> None:
    write_job(
        jobs_dir,
        "slow.toml",
        'schedule = "* * * * *"\ntimezone = "UTC"\nshell = "sleep 60"\n',
    )
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        csrf = expected_csrf(await log_in(client))
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await events.until(lambda e: len(e.started("slow")) == 1)
        run_id = events.started("slow")[0].run_id
        index = await client.get("/")
        assert Page(index.text).tables[1][0][-1] == "Action"
        assert (f"/runs/{run_id}/cancel", "Cancel") in forms(index.text)
        run_page = await client.get(f"/runs/{run_id}")
        assert forms(run_page.text)[1:] == [(f"/runs/{run_id}/cancel", "Cancel")]
        response = await client.post(
            f"/runs/{run_id}/cancel", data={"csrf": csrf}, headers=same_origin(client)
        )
        assert (response.status_code, response.headers["location"]) == (
            303,
            f"/runs/{run_id}?job=slow",
        )
        await events.until(lambda e: e.outcomes("slow") == ["cancelled"])
        ended = await client.get(f"/runs/{run_id}")
        assert forms(ended.text) == [("/logout", "Log out")]  # nothing left to cancel
        again = await client.post(
            f"/runs/{run_id}/cancel", data={"csrf": csrf}, headers=same_origin(client)
        )
        assert again.status_code == 404
        assert Page(again.text).paragraphs[0] == (
            f"No running run {run_id!r}: it has ended, or never ran."
        )
        assert web_lines(jobs_dir) == [
            {
                "event": "cancel",
                "job": "slow",
                "path": None,
                "config_sha": None,
                "error": None,
                "run_id": run_id,
                "via": "web",
            }
        ]

    with_listener(jobs_dir, clock, body, settings=actions_on(token_file(tmp_path)))


def test_a_run_now_that_the_overlap_policy_skips_answers_409_with_the_reason(
    jobs_dir: Path, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    write_job(
        jobs_dir,
        "slow.toml",
        'schedule = "@daily"\ntimezone = "UTC"\n'
        f'shell = "while [ ! -e {release} ]; do sleep 0.02; done"\n',
    )

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        csrf = expected_csrf(await log_in(client))
        first = await client.post(
            "/jobs/slow/run", data={"csrf": csrf}, headers=same_origin(client)
        )
        assert first.status_code == 303
        await events.until(lambda e: len(e.started("slow")) == 1)
        run_id = events.started("slow")[0].run_id
        try:
            second = await client.post(
                "/jobs/slow/run", data={"csrf": csrf}, headers=same_origin(client)
            )
            assert second.status_code == 409
            page = Page(second.text)
            assert page.headings == ["Not started"]
            assert page.paragraphs[0] == (
                f"The job's overlap policy skipped this run: run {run_id} is still alive "
                "(concurrency = forbid). The slot is recorded skipped."
            )
        finally:
            release.touch()
        await events.until(lambda e: sorted(e.outcomes("slow")) == ["skipped", "succeeded"])
        assert [line["error"] for line in web_lines(jobs_dir)] == [None, "skipped"]

    with_listener(jobs_dir, FakeClock(T0), body, settings=actions_on(token_file(tmp_path)))


def test_logging_out_ends_the_session_on_the_daemon_not_only_in_the_browser(
    jobs_dir: Path, tmp_path: Path
) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        session = await log_in(client)
        csrf = expected_csrf(session)
        response = await client.post("/logout", data={"csrf": csrf}, headers=same_origin(client))
        assert (response.status_code, response.headers["location"]) == (303, "/")
        assert response.headers["set-cookie"] == (
            "kron_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        )
        # A copy of the old cookie is worth nothing now.
        replay = await client.post(
            "/jobs/j/pause",
            data={"csrf": csrf},
            headers={**same_origin(client), "cookie": f"kron_session={session}"},
        )
        assert replay.status_code == 403
        assert Page(replay.text).headings == ["Log in first"]
        assert daemon.scheduler.jobs["j"].paused is False

    with_listener(jobs_dir, FakeClock(T0), body, settings=actions_on(token_file(tmp_path)))


def test_a_session_lasts_twelve_hours(jobs_dir: Path, tmp_path: Path) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@manual"\ncommand = ["true"]\n')
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        csrf = expected_csrf(await log_in(client))
        await clock.set(T0 + timedelta(hours=12) - timedelta(seconds=1))
        ok = await client.post("/jobs/j/pause", data={"csrf": csrf}, headers=same_origin(client))
        assert ok.status_code == 303
        await clock.set(T0 + timedelta(hours=12))
        late = await client.post("/jobs/j/resume", data={"csrf": csrf}, headers=same_origin(client))
        assert late.status_code == 403
        assert Page(late.text).headings == ["Log in first"]
        assert daemon.scheduler.jobs["j"].paused is True

    with_listener(jobs_dir, clock, body, settings=actions_on(token_file(tmp_path)))


def test_a_job_id_with_markup_gets_escaped_buttons_that_work(
    jobs_dir: Path, tmp_path: Path
) -> None:
    write_job(jobs_dir, 'a&b/"<i>x</i>".toml', 'schedule = "@manual"\ncommand = ["true"]\n')

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        csrf = expected_csrf(await log_in(client))
        page = await client.get("/jobs/a%26b/%22%3Ci%3Ex%3C/i%3E%22")
        assert page.status_code == 200
        assert "<i>" not in page.text
        action = "/jobs/a%26b/%22%3Ci%3Ex%3C/i%3E%22/pause"
        assert (action, "Pause") in forms(page.text)
        response = await client.post(action, data={"csrf": csrf}, headers=same_origin(client))
        assert response.status_code == 303
        assert daemon.scheduler.jobs['a&b/"<i>x</i>"'].paused is True

    with_listener(jobs_dir, FakeClock(T0), body, settings=actions_on(token_file(tmp_path)))


# -- refusals ---------------------------------------------------------------------------------


def test_every_bad_request_is_refused_with_a_page_that_says_why_and_nothing_happens(
    jobs_dir: Path, tmp_path: Path
) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')
    write_job(jobs_dir, "x/run.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        base = str(client.base_url).rstrip("/")
        own = same_origin(client)
        anonymous = httpx.AsyncClient(base_url=base, trust_env=False)
        session = await log_in(client)
        csrf = expected_csrf(session)
        other = expected_csrf(session + "x")
        cases: list[tuple[str, str, dict[str, Any], int, str]] = [
            # (method, path, request options, status, heading)
            ("GET", "/jobs/j/run", {}, 405, "Method not allowed"),
            ("GET", "/jobs/j/pause", {}, 405, "Method not allowed"),
            ("GET", "/runs/0123456789abcdef0123/cancel", {}, 405, "Method not allowed"),
            ("GET", "/logout", {}, 405, "Method not allowed"),
            ("POST", "/", {"headers": own}, 405, "Method not allowed"),
            ("POST", "/metrics", {"headers": own}, 405, "Method not allowed"),
            ("POST", "/jobs/j", {"headers": own}, 405, "Method not allowed"),
            ("POST", "/jobs/j/run", {"headers": own, "data": {}}, 403, "Form expired"),
            ("POST", "/jobs/j/run", {"headers": own, "data": {"csrf": other}}, 403, "Form expired"),
            ("POST", "/jobs/j/run", {"headers": own, "data": {"csrf": "é"}}, 403, "Form expired"),
            (
                "POST",
                "/jobs/j/run",
                {"headers": {"origin": "http://127.0.0.1:1"}, "data": {"csrf": csrf}},
                403,
                "Cross-origin request refused",
            ),
            (
                "POST",
                "/jobs/j/run",
                {"headers": {"origin": "null"}, "data": {"csrf": csrf}},
                403,
                "Cross-origin request refused",
            ),
            (
                "POST",
                "/jobs/j/pause",
                {
                    "headers": {"origin": base, "sec-fetch-site": "same-site"},
                    "data": {"csrf": csrf},
                },
                403,
                "Cross-origin request refused",
            ),
            (
                "POST",
                "/jobs/j/pause",
                {"data": {"csrf": csrf}},
                403,
                "Cross-origin request refused",
            ),
            (
                "POST",
                "/jobs/j/pause",
                {"headers": own, "json": {"csrf": csrf}},
                400,
                "Bad request",
            ),
            (
                "POST",
                "/jobs/j/pause",
                {"headers": own, "data": {f"f{n}": "1" for n in range(20)}},
                400,
                "Bad request",
            ),
            (
                "POST",
                "/jobs/j/pause",
                {
                    "headers": {**own, "content-type": "application/x-www-form-urlencoded"},
                    "content": b"csrf=\xff\xfe",
                },
                400,
                "Bad request",
            ),
            ("POST", "/jobs/nope/run", {"headers": own, "data": {"csrf": csrf}}, 404, "Not found"),
            (
                "POST",
                "/jobs//run",
                {"headers": own, "data": {"csrf": csrf}},
                405,
                "Method not allowed",
            ),
            (
                "POST",
                "/runs/nope/cancel",
                {"headers": own, "data": {"csrf": csrf}},
                404,
                "Not found",
            ),
        ]
        for method, path, options, status, heading in cases:
            response = await client.request(method, path, **options)
            assert (response.status_code, Page(response.text).headings) == (status, [heading]), (
                method,
                path,
                options,
            )
        allowed = await client.get("/jobs/j/run")
        assert allowed.headers["allow"] == "POST"
        # A job whose id ends in an action's name keeps its page.
        assert (await client.get("/jobs/x/run")).status_code == 200
        # Without the session cookie, or with a forged one, nothing is done either.
        for cookie in (
            {},
            {"cookie": "kron_session=forged"},
            {"cookie": "kron_session=" + "x" * 5000},
        ):
            response = await anonymous.post(
                "/jobs/j/pause", data={"csrf": csrf}, headers={**own, **cookie}
            )
            assert (response.status_code, Page(response.text).headings) == (403, ["Log in first"])
        await anonymous.aclose()
        assert daemon.scheduler.jobs["j"].paused is False
        assert daemon.scheduler.running() == []
        assert web_lines(jobs_dir) == []
        assert (await client.get("/")).status_code == 200

    with_listener(jobs_dir, FakeClock(T0), body, settings=actions_on(token_file(tmp_path)))


def test_turning_actions_off_in_kron_toml_applies_at_the_reload_and_ends_every_session(
    jobs_dir: Path, tmp_path: Path
) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        csrf = expected_csrf(await log_in(client))
        settings = jobs_dir / "kron.toml"
        on = settings.read_text(encoding="utf-8")
        settings.write_text(on.replace("actions = true", "actions = false"), encoding="utf-8")
        daemon.reload(None)
        refused = await client.post(
            "/jobs/j/pause", data={"csrf": csrf}, headers=same_origin(client)
        )
        assert (refused.status_code, refused.headers["allow"]) == (405, "GET")
        page = await client.get("/jobs/j")
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "<form" not in page.text
        # On again: the token read at start serves, but the sessions of before are gone.
        settings.write_text(on, encoding="utf-8")
        daemon.reload(None)
        again = await client.post("/jobs/j/pause", data={"csrf": csrf}, headers=same_origin(client))
        assert Page(again.text).headings == ["Log in first"]
        assert daemon.scheduler.jobs["j"].paused is False
        csrf = expected_csrf(await log_in(client))
        done = await client.post("/jobs/j/pause", data={"csrf": csrf}, headers=same_origin(client))
        assert done.status_code == 303
        assert daemon.scheduler.jobs["j"].paused is True

    with_listener(jobs_dir, FakeClock(T0), body, settings=actions_on(token_file(tmp_path)))
