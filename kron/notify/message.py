"""What a notification says about a run: one message, rendered for each channel's size limit.

Secrets are masked before anything is cut, so half a secret never survives a cut. Of a command's
output the end is kept (where errors are); of an agent's answer, the start (it reads from the top).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kron.model.job import AgentAction, Job
from kron.model.run import FORMAT_VERSION, HOST, Outcome, RunEnded
from kron.model.secrets import Secrets
from kron.model.times import format_time
from kron.model.units import format_duration

__all__ = [
    "CUT_MARK",
    "EMAIL_TEXT_MAX",
    "ERROR_MAX",
    "JSON_OUTPUT_MAX",
    "SLACK_TEXT_MAX",
    "TELEGRAM_TEXT_MAX",
    "Message",
    "build_message",
    "cut",
    "render_json",
    "render_text",
    "stuck_message",
    "utf16_len",
]

# Slack cuts a message's `text` at 40,000 characters; Telegram refuses more than 4096 (counted
# in UTF-16 code units) in `sendMessage`. Mail has no hard limit: 100,000 characters reads whole.
SLACK_TEXT_MAX = 40_000
TELEGRAM_TEXT_MAX = 4096
EMAIL_TEXT_MAX = 100_000
# stdout and stderr each, in the JSON message of a webhook or a command.
JSON_OUTPUT_MAX = 16 * 1024
ERROR_MAX = 2000
CUT_MARK = "[... cut ...]"


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """What a delivery says about one run; secrets already masked."""

    job: str
    outcome: str
    recovery: bool
    run_id: str
    attempt: int
    trigger: str
    slot: str
    started_at: str | None
    ended_at: str | None  # None: the run goes on (a `stuck` message)
    duration_s: float | None
    host: str
    exit_code: int | None
    signal: int | None
    error: str | None
    upstream: str | None
    stdout: str
    stderr: str
    truncated: bool
    answer: bool  # an agent job: stdout is its answer, read from the top

    @property
    def headline(self) -> str:
        verb = f"recovered ({self.outcome})" if self.recovery else self.outcome
        return f"kron: {self.job} {verb}"

    @property
    def summary(self) -> str:
        """One line: what happened, how, how long, where."""
        how = []
        if self.exit_code is not None:
            how.append(f"exit code {self.exit_code}")
        if self.signal is not None:
            how.append(f"signal {self.signal}")
        if self.duration_s is not None:
            since = "after" if self.ended_at is not None else "running for"
            how.append(f"{since} {_seconds(self.duration_s)}")
        detail = f" ({', '.join(how)})" if how else ""
        return f"{self.headline}{detail} on {self.host}"


def build_message(
    job: Job, ended: RunEnded, *, recovery: bool, secrets: Iterable[str], host: str = HOST
) -> Message:
    """The message about a run's final record, with every secret value masked."""
    hidden = Secrets(secrets)
    return Message(
        job=ended.job,
        outcome=ended.outcome.value,
        recovery=recovery,
        run_id=ended.run_id,
        attempt=ended.attempt,
        trigger=ended.trigger.value,
        slot=format_time(ended.slot),
        started_at=format_time(ended.started_at) if ended.started_at else None,
        ended_at=format_time(ended.ended_at),
        duration_s=ended.duration_s,
        host=host,
        exit_code=ended.exit_code,
        signal=ended.signal,
        error=hidden.mask(ended.error) if ended.error else None,
        upstream=ended.upstream,
        stdout=hidden.mask(ended.stdout),
        stderr=hidden.mask(ended.stderr),
        truncated=ended.truncated,
        answer=isinstance(job.action, AgentAction),
    )


def stuck_message(
    job: Job, run_id: str, *, slot: datetime, started_at: datetime, attempt: int, trigger: str,
    reason: str, now: datetime, host: str = HOST,
) -> Message:  # fmt: skip
    """The message about a run found stuck: it still runs, so there is no output yet."""
    return Message(
        job=job.id,
        outcome="stuck",
        recovery=False,
        run_id=run_id,
        attempt=attempt,
        trigger=trigger,
        slot=format_time(slot),
        started_at=format_time(started_at),
        ended_at=None,
        duration_s=(now - started_at).total_seconds(),
        host=host,
        exit_code=None,
        signal=None,
        error=f"stuck: {reason}; it goes on running",
        upstream=None,
        stdout="",
        stderr="",
        truncated=False,
        answer=isinstance(job.action, AgentAction),
    )


def render_json(message: Message) -> dict[str, Any]:
    """The message as the JSON object a webhook receives and a command reads on stdin."""
    stdout = cut(message.stdout, JSON_OUTPUT_MAX, keep_head=message.answer)
    stderr = cut(message.stderr, JSON_OUTPUT_MAX, keep_head=False)
    return {
        "v": FORMAT_VERSION,
        "job": message.job,
        "outcome": message.outcome,
        "recovery": message.recovery,
        "summary": message.summary,
        "run_id": message.run_id,
        "attempt": message.attempt,
        "trigger": message.trigger,
        "slot": message.slot,
        "started_at": message.started_at,
        "ended_at": message.ended_at,
        "duration_s": message.duration_s,
        "host": message.host,
        "exit_code": message.exit_code,
        "signal": message.signal,
        "error": message.error,
        "upstream": message.upstream,
        "stdout": stdout,
        "stderr": stderr,
        "truncated": message.truncated or stdout != message.stdout or stderr != message.stderr,
    }


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts a message."""
    return len(text.encode("utf-16-le")) // 2


def render_text(
    message: Message,
    *,
    limit: int,
    slack: bool = False,
    measure: Callable[[str], int] = len,
) -> str:
    """The message as chat or mail text, at most `limit` long as `measure` counts.

    The facts always fit; the output gets what room is left, shared between stderr and stdout.
    Of a command's output the end is kept (where errors are); of an agent's answer, the start.

    Args:
        message: the message.
        limit: the channel's size limit.
        slack: Slack mrkdwn: a bold headline, `&<>` escaped (no `<!channel>` from job output),
            output in code blocks.
        measure: how the channel counts length (`utf16_len` for Telegram).

    Returns:
        The text.
    """
    esc = _slack_escape if slack else _same
    head = f"*{esc(message.headline)}*" if slack else message.headline
    facts = [head, f"run: {message.run_id} (attempt {message.attempt})"]
    facts.append(f"trigger: {message.trigger}, slot {message.slot}")
    if message.upstream:
        facts.append(f"upstream run: {message.upstream}")
    facts.append(f"host: {esc(message.host)}")
    if message.duration_s is not None:
        facts.append(f"duration: {_seconds(message.duration_s)}")
    if message.exit_code is not None:
        facts.append(f"exit code: {message.exit_code}")
    if message.signal is not None:
        facts.append(f"signal: {message.signal}")
    if message.error:
        facts.append(f"error: {esc(cut(message.error, ERROR_MAX, keep_head=True))}")
    text = "\n".join(facts)
    sections: list[tuple[str, str, bool]] = []
    if message.answer and message.stdout:
        sections.append(("answer", message.stdout, True))
        if message.outcome != Outcome.SUCCEEDED.value and message.stderr:
            sections.append(("stderr (end)", message.stderr, False))
    else:
        sections += [("stderr (end)", message.stderr, False)] if message.stderr else []
        sections += [("stdout (end)", message.stdout, False)] if message.stdout else []
    bodies = [esc(body.rstrip("\n")) for _, body, _ in sections]
    frames = [_frame(title, "", slack=slack) for title, _, _ in sections]
    room = limit - measure(text) - sum(measure(f) for f in frames)
    shares = _share(max(room, 0), [measure(b) for b in bodies])
    for (title, _, keep_head), body, share in zip(sections, bodies, shares, strict=True):
        if share > measure(CUT_MARK) or share >= measure(body):
            text += _frame(title, cut(body, share, keep_head=keep_head, measure=measure), slack)
    return cut(text, limit, keep_head=True, measure=measure)


def _frame(title: str, body: str, slack: bool) -> str:
    if slack:
        return f"\n\n{title}:\n```\n{body}\n```"
    return f"\n\n{title}:\n{body}"


def _share(room: int, sizes: list[int]) -> list[int]:
    """Split `room` between parts of these sizes: a part that needs less leaves the rest over."""
    shares = [0] * len(sizes)
    left = room
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    for rank, index in enumerate(order):
        fair = left // (len(sizes) - rank)
        shares[index] = min(sizes[index], fair)
        left -= shares[index]
    return shares


def cut(text: str, budget: int, *, keep_head: bool, measure: Callable[[str], int] = len) -> str:
    """`text` if it fits in `budget`, else its start or end with a mark where the rest was."""
    if measure(text) <= budget:
        return text
    mark = CUT_MARK + "\n"
    if measure(mark) > budget:
        return ""

    def fitted(n: int) -> str:
        if keep_head:
            return text[:n].rstrip("\n") + "\n" + CUT_MARK
        return mark + text[len(text) - n :]

    low, high = 0, len(text)  # the most characters whose piece still fits
    while low < high:
        middle = (low + high + 1) // 2
        if measure(fitted(middle)) <= budget:
            low = middle
        else:
            high = middle - 1
    return fitted(low)


def _slack_escape(text: str) -> str:
    # Slack reads <...> as links and mentions (<!channel>); only these three are escaped.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _same(text: str) -> str:
    return text


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 600 else format_duration(timedelta(seconds=round(value)))
