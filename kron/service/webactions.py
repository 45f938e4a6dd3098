"""The status page's actions for operators, on when `kron.toml` says `[web] actions = true`.

    GET  /login                       the login form (`?next=` the page to go back to)
    POST /login                       token=...  -> a session cookie, and back to that page
    POST /logout                      csrf=...
    POST /jobs/<id>/run               csrf=...   -> 303 to the new run's page
    POST /jobs/<id>/pause | resume    csrf=...   -> 303 to the job's page
    POST /runs/<run_id>/cancel        csrf=...   -> 303 to the run's page

Every POST must come from the page's own origin, and all but the login must carry a live
session's cookie and that session's CSRF token (kron.service.webauth). An action goes through
the same `Operations` as the control API, and to the audit log with `via: web`. A refusal is a
page that says what was wrong, with a 4xx status; nothing here raises on bad input.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, quote

from kron.service.html import esc, job_href, page
from kron.service.httpd import Request, Response
from kron.service.view import DaemonView, JobView, Operations
from kron.service.webauth import Sessions, cleared_cookie, cross_origin, session_cookie

__all__ = ["JOB_ACTIONS", "Console", "Operator"]

log = logging.getLogger("kron.web")
JOB_ACTIONS = ("run", "pause", "resume")
_FORM = "application/x-www-form-urlencoded"
_MAX_FIELDS = 8
_NEXT = re.compile(r"/(?!/)[A-Za-z0-9/_.~%?=&+-]*")  # a path of this site, never `//host`
VIA = "web"


@dataclass(frozen=True, kw_only=True, slots=True)
class Operator:
    """A request from a browser that logged in: the CSRF token its forms carry."""

    csrf: str


class Console:
    """Renders the action buttons for a logged-in browser, and carries the actions out."""

    def __init__(
        self,
        view: DaemonView,
        ops: Operations,
        sessions: Sessions,
        *,
        enabled: Callable[[], bool] = lambda: True,
    ) -> None:
        self.view = view
        self.ops = ops
        self.sessions = sessions
        self.enabled = enabled  # kron.toml's `[web] actions`, as the last reload left it

    def operator(self, request: Request) -> Operator | None:
        session = self.sessions.of(request)
        return Operator(csrf=self.sessions.csrf(session)) if session is not None else None

    # -- what pages show ----------------------------------------------------------------------

    def who(self, op: Operator | None, here: str) -> str:
        """The header's right end: a link to log in, or a button to log out."""
        if op is None:
            href = "/login" if here == "/" else f"/login?next={quote(here, safe='/')}"
            return f'<a class="who" href="{esc(href)}">Log in</a>'
        return f'<span class="who">{_form("/logout", "Log out", op)}</span>'

    def job_buttons(self, job: JobView, op: Operator | None) -> str:
        """Run now, and Pause or Resume; for a browser not logged in, a line saying how."""
        if op is None:
            href = f"/login?next={quote(job_href(job.id), safe='/')}"
            return (
                f'<p class="muted"><a href="{esc(href)}">Log in</a> to run, pause or resume '
                "this job.</p>"
            )
        base = job_href(job.id)
        toggle = (
            _form(f"{base}/resume", "Resume", op)
            if job.paused
            else _form(f"{base}/pause", "Pause", op)
        )
        return f'<div class="actions">{_form(f"{base}/run", "Run now", op)}{toggle}</div>'

    def cancel_button(self, run_id: str, op: Operator | None) -> str:
        if op is None:
            return ""
        return _form(f"/runs/{quote(run_id, safe='')}/cancel", "Cancel", op, danger=True)

    def login_page(
        self, request: Request, *, status: int = 200, message: str = "", next_page: str = "/"
    ) -> Response:
        wanted = request.arg("next") if request.method == "GET" else next_page
        back = wanted if wanted and _NEXT.fullmatch(wanted) else "/"
        said = f'<p class="notice bad">{esc(message)}</p>' if message else ""
        body = (
            "<h1>Log in</h1>"
            f"{said}"
            "<p>Actions (run now, pause, resume, cancel) need the token in the file that "
            "<code>[web] token_file</code> names in <code>kron.toml</code>.</p>"
            '<form class="login" method="post" action="/login">'
            f'<input type="hidden" name="next" value="{esc(back)}">'
            '<label for="token">Token</label>'
            '<input id="token" name="token" type="password" autocomplete="current-password" '
            'required autofocus size="32">'
            '<button type="submit">Log in</button></form>'
        )
        return page(status, "Log in", body, forms=True)

    def refuse_get(self, path: str) -> Response:
        return self._refusal(
            405,
            "Method not allowed",
            f"{path} is an action: it takes a POST from its button, not a GET.",
            headers={"allow": "POST"},
        )

    # -- what a POST does ---------------------------------------------------------------------

    async def post(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        target = _target(parts)
        if target is None:
            return self._refusal(
                405,
                "Method not allowed",
                f"Nothing at {request.path} takes a POST.",
                headers={"allow": "GET"},
            )
        why = cross_origin(request)
        if why is not None:
            log.warning("status page: refused a cross-origin POST to %s: %s", request.path, why)
            return self._refusal(
                403,
                "Cross-origin request refused",
                f"Actions are taken only from this status page's own pages ({why}).",
            )
        form = _form_fields(request)
        if form is None:
            return self._refusal(
                400, "Bad request", f"An action takes a form ({_FORM}) of a few fields."
            )
        action, subject = target
        if action == "login":
            return self._login(request, form)
        session = self.sessions.of(request)
        if session is None:
            href = f"/login?next={quote(_back(action, subject), safe='/')}"
            return self._refusal(
                403,
                "Log in first",
                "This browser is not logged in (or its session has expired).",
                link=(href, "Log in"),
            )
        if not self.sessions.csrf_matches(session, form.get("csrf")):
            log.warning("status page: refused a POST to %s with a wrong CSRF token", request.path)
            return self._refusal(
                403,
                "Form expired",
                "The form's CSRF token is missing or wrong: reload the page and try again.",
            )
        if action == "logout":
            self.sessions.close(session)
            return _see_other("/", cookie=cleared_cookie())
        return self._act(action, subject)

    def _login(self, request: Request, form: dict[str, str]) -> Response:
        back = form.get("next", "/")
        if self.sessions.throttled():
            return self.login_page(
                request,
                status=429,
                message="Too many wrong tokens in the last minute: wait a minute.",
                next_page=back,
            )
        if not self.sessions.token_matches(form.get("token", "")):
            self.sessions.failed()
            log.warning("status page: a login with a wrong token")
            return self.login_page(
                request, status=403, message="That is not the token.", next_page=back
            )
        log.info("status page: an operator logged in")
        session = self.sessions.open()
        return _see_other(back if _NEXT.fullmatch(back) else "/", cookie=session_cookie(session))

    def _act(self, action: str, subject: str) -> Response:
        if action == "cancel":
            run = self.ops.cancel(subject, via=VIA)
            if run is None:
                return self._refusal(
                    404, "Not found", f"No running run {subject!r}: it has ended, or never ran."
                )
            log.info("status page: run %s of job %s cancelled", run.run_id, run.job.id)
            return _see_other(_run_href(run.run_id, run.job.id))
        if self.view.job(subject) is None:
            return self._refusal(404, "Not found", f"No job {subject!r} is loaded.")
        if action == "run":
            run = self.ops.run_now(subject, via=VIA)
            if run is None or run.task is None:
                last = self.view.last_record(subject)
                reason = f": {last.error}" if last is not None and last.error else ""
                return self._refusal(
                    409,
                    "Not started",
                    f"The job's overlap policy skipped this run{reason}. "
                    "The slot is recorded skipped.",
                    link=(job_href(subject), subject),
                )
            log.info("status page: job %s run now (run %s)", subject, run.run_id)
            return _see_other(_run_href(run.run_id, subject))
        self.ops.set_paused(subject, action == "pause", via=VIA)
        return _see_other(job_href(subject))

    def _refusal(
        self,
        status: int,
        title: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        link: tuple[str, str] = ("/", "All jobs"),
    ) -> Response:
        body = (
            f"<h1>{esc(title)}</h1><p>{esc(message)}</p>"
            f'<p><a href="{esc(link[0])}">{esc(link[1])}</a></p>'
        )
        return page(status, title, body, headers=headers, forms=True)


def _target(parts: list[str]) -> tuple[str, str] | None:
    """(action, job id or run id) of a POST's path; None when nothing there takes a POST."""
    if parts in (["login"], ["logout"]):
        return parts[0], ""
    if len(parts) >= 3 and parts[0] == "jobs" and parts[-1] in JOB_ACTIONS:
        return parts[-1], "/".join(parts[1:-1])
    if len(parts) == 3 and parts[0] == "runs" and parts[2] == "cancel":
        return "cancel", parts[1]
    return None


def _form_fields(request: Request) -> dict[str, str] | None:
    """The form's fields, first value each; None for a body that is no small urlencoded form."""
    kind = (request.header("content-type") or "").split(";")[0].strip().lower()
    if request.body and kind != _FORM:
        return None
    try:
        text = request.body.decode("utf-8")
        parsed = parse_qs(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None
    return {key: values[0] for key, values in parsed.items()}


def _form(action: str, label: str, op: Operator, *, danger: bool = False) -> str:
    css = ' class="danger"' if danger else ""
    return (
        f'<form class="act" method="post" action="{esc(action)}">'
        f'<input type="hidden" name="csrf" value="{esc(op.csrf)}">'
        f'<button type="submit"{css}>{esc(label)}</button></form>'
    )


def _run_href(run_id: str, job_id: str) -> str:
    return f"/runs/{quote(run_id, safe='')}?job={quote(job_id, safe='/')}"


def _back(action: str, subject: str) -> str:
    """The page an action was taken from, to return to after logging in."""
    if action == "cancel":
        return f"/runs/{quote(subject, safe='')}"
    return job_href(subject) if action in JOB_ACTIONS else "/"


def _see_other(location: str, *, cookie: str | None = None) -> Response:
    """Post/Redirect/Get: reloading the page it lands on repeats nothing."""
    headers = {"location": location, "cache-control": "no-store"}
    if cookie is not None:
        headers["set-cookie"] = cookie
    return Response(status=303, content_type="text/plain; charset=utf-8", headers=headers)
