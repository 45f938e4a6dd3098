"""Where a notification goes: webhook, Slack, Telegram, email, command; one attempt each.

A target is read from its delivery's table once per run, with tokens and passwords taken from
the job's environment (`env`, `env_file`, then the daemon's). Sending raises DeliveryError; a
`permanent` one (a refused token, a 404, a missing variable) is not worth trying again. No error
names a URL: Slack webhook and Telegram URLs carry their credentials.

Email goes through the standard library's smtplib in a worker thread rather than an async SMTP
client: it needs no dependency, handles STARTTLS and AUTH, and every socket operation in it is
bounded by the delivery's timeout, so a stuck server frees the thread soon after the attempt has
been given up on the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kron import __version__
from kron.actions.base import connection_reason, working_dir
from kron.actions.process import run_process
from kron.model.job import Delivery, DeliveryKind, Job
from kron.model.units import format_duration
from kron.notify.message import (
    EMAIL_TEXT_MAX,
    SLACK_TEXT_MAX,
    TELEGRAM_TEXT_MAX,
    Message,
    cut,
    render_json,
    render_text,
    utf16_len,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "CommandTarget",
    "DeliveryError",
    "EmailTarget",
    "SlackTarget",
    "Target",
    "TelegramTarget",
    "WebhookTarget",
    "resolve_target",
    "send",
    "target_secrets",
]

COMMAND_KILL_GRACE = timedelta(seconds=2)
_USER_AGENT = f"kron/{__version__}"
_SENSITIVE_HEADER_WORDS = ("auth", "token", "key", "secret", "cookie", "signature")


class DeliveryError(Exception):
    """One attempt failed; `permanent` ones (a refused token, a 404) are not tried again."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookTarget:
    url: str
    headers: Mapping[str, str]


@dataclass(frozen=True, kw_only=True, slots=True)
class SlackTarget:
    url: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TelegramTarget:
    token: str
    chat_id: str | int
    base_url: str


@dataclass(frozen=True, kw_only=True, slots=True)
class EmailTarget:
    to: tuple[str, ...]
    sender: str
    host: str
    port: int
    starttls: bool
    username: str | None
    password: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class CommandTarget:
    argv: tuple[str, ...]


Target = WebhookTarget | SlackTarget | TelegramTarget | EmailTarget | CommandTarget


def resolve_target(delivery: Delivery, env: Mapping[str, str]) -> Target:
    """Turn a delivery's target table into a typed target, reading secrets from `env`.

    Raises:
        DeliveryError: a token or password variable is missing (permanent).
    """
    raw = delivery.target
    if delivery.kind is DeliveryKind.WEBHOOK:
        if isinstance(raw, str):
            return WebhookTarget(url=raw, headers={})
        return WebhookTarget(url=raw["url"], headers=dict(raw.get("headers", {})))
    if delivery.kind is DeliveryKind.SLACK:
        return SlackTarget(url=raw)
    if delivery.kind is DeliveryKind.TELEGRAM:
        token = raw.get("bot_token") or _from_env(env, raw.get("bot_token_env"), "bot_token_env")
        if not token:
            raise DeliveryError("telegram needs bot_token or bot_token_env", permanent=True)
        return TelegramTarget(
            token=token,
            chat_id=raw["chat_id"],
            base_url=raw.get("base_url", "https://api.telegram.org").rstrip("/"),
        )
    if delivery.kind is DeliveryKind.EMAIL:
        username = raw.get("username")
        password = _from_env(env, raw.get("password_env"), "password_env")
        if username and not password:
            raise DeliveryError("email: username is set but password_env is not", permanent=True)
        return EmailTarget(
            to=tuple(raw["to"]),
            sender=raw.get("from", "kron@localhost"),
            host=raw["host"],
            port=int(raw.get("port", 587)),
            starttls=bool(raw.get("starttls", True)),
            username=username,
            password=password,
        )
    if delivery.kind is DeliveryKind.COMMAND:
        return CommandTarget(argv=tuple(raw))
    raise DeliveryError(f"unknown delivery kind {delivery.kind!r}", permanent=True)


def _from_env(env: Mapping[str, str], name: str | None, field: str) -> str | None:
    if name is None:
        return None
    value = env.get(name)
    if not value:
        raise DeliveryError(f"{field}: variable {name} is not set", permanent=True)
    return value


def target_secrets(target: Target) -> list[str]:
    """Values of a target that must never appear in a message, a record or a log."""
    if isinstance(target, TelegramTarget):
        return [target.token]
    if isinstance(target, EmailTarget):
        return [target.password] if target.password else []
    if isinstance(target, WebhookTarget):
        return [
            value
            for name, value in target.headers.items()
            if value and any(word in name.lower() for word in _SENSITIVE_HEADER_WORDS)
        ]
    return []


async def _post(
    client: httpx.AsyncClient,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str],
    timeout_s: float,
) -> httpx.Response:
    import httpx  # lazy: only a daemon that sends a notification loads httpx

    try:
        response = await client.post(
            url, json=body, headers={"User-Agent": _USER_AGENT, **headers}, timeout=timeout_s
        )
    except httpx.TimeoutException:
        raise DeliveryError(f"no answer within {timeout_s:g}s") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(connection_reason(exc)) from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    excerpt = " ".join(response.text.split())[:200]
    retryable = status in (408, 429) or status >= 500
    raise DeliveryError(
        f"HTTP {status}" + (f": {excerpt}" if excerpt else ""), permanent=not retryable
    )


async def _send_telegram(
    client: httpx.AsyncClient, target: TelegramTarget, text: str, timeout_s: float
) -> None:
    url = f"{target.base_url}/bot{target.token}/sendMessage"
    body = {"chat_id": target.chat_id, "text": text, "disable_web_page_preview": True}
    try:
        response = await _post(client, url, body, headers={}, timeout_s=timeout_s)
    except DeliveryError as exc:
        raise DeliveryError(f"Telegram: {exc}", permanent=exc.permanent) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get("ok") is not True:
        raise DeliveryError(f"Telegram: unexpected answer {response.text[:200]!r}")


def _send_email_sync(target: EmailTarget, message: Message, timeout_s: float) -> None:
    """Send with smtplib; runs in a worker thread, every socket operation bounded by timeout_s."""
    # Lazy (memory, start-up): smtplib, ssl and the email package, for email deliveries only.
    import email.utils
    import smtplib
    import ssl
    from email.message import EmailMessage

    mail = EmailMessage()
    mail["Subject"] = message.summary
    mail["From"] = target.sender
    mail["To"] = ", ".join(target.to)
    mail["Date"] = email.utils.formatdate(usegmt=True)
    mail["Message-ID"] = email.utils.make_msgid(domain=message.host or None)
    mail["X-Kron-Job"] = message.job
    mail["X-Kron-Run-Id"] = message.run_id
    mail["X-Kron-Outcome"] = message.outcome
    mail.set_content(render_text(message, limit=EMAIL_TEXT_MAX))
    try:
        with smtplib.SMTP(target.host, target.port, timeout=timeout_s) as smtp:
            smtp.ehlo()
            if target.starttls:
                # Never fall back to plain text: a server without STARTTLS is an error.
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if target.username and target.password:
                smtp.login(target.username, target.password)
            smtp.send_message(mail)
    except smtplib.SMTPNotSupportedError:
        raise DeliveryError("SMTP: the server does not offer STARTTLS", permanent=True) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"SMTP: login refused ({exc.smtp_code})", permanent=True) from None
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(sorted(exc.recipients))
        raise DeliveryError(f"SMTP: recipients refused: {refused}", permanent=True) from None
    except smtplib.SMTPResponseException as exc:
        reply = (
            exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else ""
        )
        raise DeliveryError(
            f"SMTP {exc.smtp_code}: {reply}".rstrip(": "), permanent=500 <= exc.smtp_code < 600
        ) from None
    except ssl.SSLError as exc:
        raise DeliveryError(f"SMTP: TLS failed: {exc.reason or exc}", permanent=True) from None
    except smtplib.SMTPException as exc:
        raise DeliveryError(f"SMTP: {exc}") from None
    except TimeoutError:
        raise DeliveryError(f"SMTP: no answer within {timeout_s:g}s") from None
    except OSError as exc:
        raise DeliveryError(f"SMTP: {connection_reason(exc)}") from None


async def _send_command(
    job: Job,
    target: CommandTarget,
    message: Message,
    env: Mapping[str, str],
    limit: timedelta,
) -> None:
    payload = json.dumps(render_json(message), ensure_ascii=False).encode("utf-8") + b"\n"
    result = await run_process(
        target.argv,
        cwd=str(working_dir(job)),
        env={**env, "KRON_JOB": message.job, "KRON_RUN_ID": message.run_id},
        # The job's identity, not the daemon's: a job file must not gain root through notify.
        user=job.user,
        group=job.group,
        umask=job.umask,
        timeout=limit,
        kill_grace=COMMAND_KILL_GRACE,
        max_output=4096,
        stdin_data=payload,
    )
    if result.timed_out:
        raise DeliveryError(f"command timed out after {format_duration(limit)}")
    if result.pid is None:
        raise DeliveryError(f"command: {result.error}", permanent=True)
    if result.exit_code != 0:
        how = (
            f"exit code {result.exit_code}"
            if result.exit_code is not None
            else f"signal {result.signal}"
        )
        said = cut(result.stderr.strip(), 300, keep_head=False)
        raise DeliveryError(f"command ended with {how}" + (f": {said}" if said else ""))


async def send(
    target: Target,
    message: Message,
    *,
    job: Job,
    env: Mapping[str, str],
    limit: timedelta,
    http: Callable[[], httpx.AsyncClient],
) -> None:
    """Make one attempt at delivering `message` to `target` within `limit`.

    Args:
        target: where to.
        message: what.
        job: the job the message is about (a command runs in its folder, as its user).
        env: the job's environment (a command gets it).
        limit: the attempt's timeout.
        http: gives the shared HTTP client.

    Raises:
        DeliveryError: the attempt failed.
    """
    if isinstance(target, CommandTarget):
        # run_process has its own timeout: SIGTERM to the group, SIGKILL after a grace.
        await _send_command(job, target, message, env, limit)
        return
    timeout_s = limit.total_seconds()
    try:
        async with asyncio.timeout(timeout_s):
            if isinstance(target, EmailTarget):
                await asyncio.to_thread(_send_email_sync, target, message, timeout_s)
            elif isinstance(target, WebhookTarget):
                body = render_json(message)
                await _post(http(), target.url, body, headers=target.headers, timeout_s=timeout_s)
            elif isinstance(target, SlackTarget):
                text = render_text(message, limit=SLACK_TEXT_MAX, slack=True)
                await _post(http(), target.url, {"text": text}, headers={}, timeout_s=timeout_s)
            else:
                text = render_text(message, limit=TELEGRAM_TEXT_MAX, measure=utf16_len)
                await _send_telegram(http(), target, text, timeout_s)
    except TimeoutError:
        raise DeliveryError(f"no answer within {format_duration(limit)}") from None
