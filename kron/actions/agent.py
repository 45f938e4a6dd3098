"""The agent action: a prompt to an agent CLI or a chat-completions API, within daily budgets.

Budgets (`agent.max_runs_per_day`, `agent.max_tokens_per_day`, and the same two in kron.toml
for all agent jobs together) are kept in an in-memory ledger of the current UTC day. The ledger
is seeded once, on first use, from the run records on disk (records of agent runs carry an
`agent` field), so a restarted daemon knows what the day has already spent. A run counts from
the moment it is admitted, so runs in flight count too; tokens count when the API reports them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from kron.actions.base import ActionResult, Interrupted, connection_reason, until_stopped
from kron.actions.process import OutputBuffer, run_job_process
from kron.model.job import AgentAction, Job
from kron.model.run import Outcome
from kron.model.secrets import NO_SECRETS, Secrets
from kron.model.units import format_duration

__all__ = ["Ledger", "Seed", "Ticket", "run_agent"]

log = logging.getLogger("kron.agent")

PROMPT_ARGUMENT = "{prompt}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True, slots=True)
class Ticket:
    """One admitted agent run in the ledger; `tokens` is filled in when the run ends."""

    job: str
    day: date
    tokens: int = 0


# What a ledger learns, on first use, of the runs a day has had already: from the records.
Seed = Callable[[Job, date], list[Ticket]]


class Ledger:
    """The day's agent runs and tokens, per job and in total, and the limits on them.

    Args:
        max_runs_per_day: global limit on agent runs in a UTC day (kron.toml).
        max_tokens_per_day: global limit on agent tokens in a UTC day (kron.toml).
        seed: today's runs so far (called once, in a worker thread, on the first admission);
            None starts from nothing.
        now: the clock; the day is its UTC date.
    """

    def __init__(
        self,
        *,
        max_runs_per_day: int | None = None,
        max_tokens_per_day: int | None = None,
        seed: Seed | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.max_runs_per_day = max_runs_per_day
        self.max_tokens_per_day = max_tokens_per_day
        self._seed = seed
        self._now = now
        self._tickets: list[Ticket] = []
        self._lock = asyncio.Lock()

    async def admit(self, job: Job, action: AgentAction) -> Ticket | str:
        """Count a run of `job` now, or say why today's budget refuses it."""
        async with self._lock:
            if self._seed is not None:
                seed, self._seed = self._seed, None
                self._tickets.extend(await asyncio.to_thread(seed, job, self._today()))
            today = self._today()
            self._tickets = [t for t in self._tickets if t.day == today]
            mine = [t for t in self._tickets if t.job == job.id]
            checks = (
                (
                    len(mine),
                    action.max_runs_per_day,
                    "runs",
                    "for this job (agent.max_runs_per_day)",
                ),
                (
                    sum(t.tokens for t in mine),
                    action.max_tokens_per_day,
                    "tokens",
                    "for this job (agent.max_tokens_per_day)",
                ),
                (
                    len(self._tickets),
                    self.max_runs_per_day,
                    "agent runs",
                    "across all jobs (max_runs_per_day in kron.toml)",
                ),
                (
                    sum(t.tokens for t in self._tickets),
                    self.max_tokens_per_day,
                    "agent tokens",
                    "across all jobs (max_tokens_per_day in kron.toml)",
                ),
            )
            for spent, limit, unit, scope in checks:
                if limit is not None and spent >= limit:
                    return f"agent budget spent: {spent} of {limit} {unit} today (UTC) {scope}"
            ticket = Ticket(job=job.id, day=today)
            self._tickets.append(ticket)
            return ticket

    def _today(self) -> date:
        return self._now().astimezone(UTC).date()

    def spent_today(self, job_id: str | None = None) -> tuple[int, int]:
        """Runs and tokens counted today, for one job or (None) for all (seeded on first admit)."""
        today = self._today()
        tickets = [t for t in self._tickets if t.day == today and job_id in (None, t.job)]
        return len(tickets), sum(t.tokens for t in tickets)


_ledgers: dict[Path, Ledger] = {}


def _ledger_of(job: Job) -> Ledger:
    """Without a ledger from the daemon: per-job limits, one in-memory ledger per jobs directory
    (the daemon and `kron run` pass one seeded from the records)."""
    root = job.path.parents[job.id.count("/")]
    return _ledgers.setdefault(root, Ledger())


async def run_agent(
    job: Job,
    action: AgentAction,
    *,
    env: dict[str, str],
    stop: asyncio.Event,
    on_spawn: Callable[[int], None] | None = None,
    budget: Ledger | None = None,
    secrets: Secrets = NO_SECRETS,
) -> ActionResult:
    """Ask the agent, unless today's budget is spent (then the run is recorded `skipped`)."""
    ticket = await (budget or _ledger_of(job)).admit(job, action)
    if isinstance(ticket, str):
        log.warning("job %s: %s", job.id, ticket)
        return ActionResult(outcome=Outcome.SKIPPED, error=ticket)
    if action.command is not None:
        return await _cli(
            job, action, action.command, env=env, stop=stop, on_spawn=on_spawn, secrets=secrets
        )
    result = await _api(job, action, env=env, stop=stop, secrets=secrets)
    tokens = result.extra.get("tokens_total")
    ticket.tokens = tokens if isinstance(tokens, int) else 0
    return result


async def _cli(
    job: Job,
    action: AgentAction,
    command: tuple[str, ...],
    *,
    env: dict[str, str],
    stop: asyncio.Event,
    on_spawn: Callable[[int], None] | None,
    secrets: Secrets,
) -> ActionResult:
    """Run the agent CLI: the prompt replaces a `{prompt}` argument, else goes on stdin."""
    in_argv = PROMPT_ARGUMENT in command
    argv = [action.prompt if arg == PROMPT_ARGUMENT else arg for arg in command]
    result = await run_job_process(
        job,
        argv,
        env=env,
        stop=stop,
        on_spawn=on_spawn,
        stdin_data=None if in_argv else action.prompt.encode(),
        secrets=secrets,
    )
    return replace(result, extra={"agent": "cli"})


async def _api(
    job: Job, action: AgentAction, *, env: dict[str, str], stop: asyncio.Event, secrets: Secrets
) -> ActionResult:
    """POST the prompt to `<endpoint>/chat/completions`; the answer is the run's output."""
    assert action.endpoint is not None
    assert action.model is not None
    url = action.endpoint.rstrip("/") + "/chat/completions"
    headers = {}
    if action.api_key_env is not None:
        key = env.get(action.api_key_env)
        if not key:
            return ActionResult(
                ok=False,
                error=f"agent.api_key_env: {action.api_key_env} is not set",
                extra={"agent": "api"},
            )
        headers["Authorization"] = f"Bearer {key}"
    messages = [{"role": "system", "content": action.system}] if action.system is not None else []
    messages.append({"role": "user", "content": action.prompt})
    payload: dict[str, Any] = {"model": action.model, "messages": messages}
    if action.max_tokens is not None:
        payload["max_tokens"] = action.max_tokens
    done = await until_stopped(_post(url, payload, headers, action), stop=stop, timeout=job.timeout)
    if done is Interrupted.STOPPED:
        return ActionResult(
            stopped=True, error=f"stopped while waiting for {url}", extra={"agent": "api"}
        )
    if done is Interrupted.TIMED_OUT:
        assert job.timeout is not None
        limit = format_duration(job.timeout)
        return ActionResult(
            timed_out=True,
            error=f"timeout {limit} reached while waiting for {url}",
            extra={"agent": "api"},
        )
    if isinstance(done, str):
        return ActionResult(
            ok=False, error=done, extra={"agent": "api", "agent_model": action.model}
        )
    status, answer = done
    return _answer(job, action, url, status, answer, secrets=secrets)


async def _post(
    url: str, payload: dict[str, Any], headers: dict[str, str], action: AgentAction
) -> tuple[int, Any] | str:
    """The status and decoded JSON answer, or why there is none."""
    # Lazy (memory, start-up): the daemon imports this module for its budget ledger, and a
    # daemon whose agents are all CLIs never needs httpx.
    import httpx

    from kron.actions.httpclient import client

    try:
        async with client(action.request_timeout.total_seconds()) as http:
            response = await http.post(url, json=payload, headers=headers)
    except httpx.TimeoutException:
        within = format_duration(action.request_timeout)
        return f"no answer from {url} within {within} (agent.request_timeout)"
    except httpx.HTTPError as exc:
        return f"POST {url}: {connection_reason(exc)}"
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def _answer(
    job: Job, action: AgentAction, url: str, status: int, answer: Any, *, secrets: Secrets
) -> ActionResult:
    extra: dict[str, Any] = {"agent": "api", "agent_model": action.model}
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if isinstance(usage, dict):
        for ours, theirs in (
            ("tokens_prompt", "prompt_tokens"),
            ("tokens_completion", "completion_tokens"),
            ("tokens_total", "total_tokens"),
        ):
            if isinstance(usage.get(theirs), int):
                extra[ours] = usage[theirs]
    if not 200 <= status < 300:
        return ActionResult(
            ok=False, error=f"{url} answered {status}: {_api_error(answer)}", extra=extra
        )
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ActionResult(
            ok=False, error=f"{url} sent no chat completion: {_excerpt(answer)}", extra=extra
        )
    output = OutputBuffer(job.max_output, secrets)
    output.feed(str(content or "").encode())
    return ActionResult(ok=True, stdout=output.text(), truncated=output.truncated, extra=extra)


def _api_error(answer: Any) -> str:
    """The API's own error message (`{"error": {"message": ...}}`), else the start of the body."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        return str(answer["error"].get("message") or _excerpt(answer))
    return _excerpt(answer)


def _excerpt(answer: Any) -> str:
    text = answer if isinstance(answer, str) else repr(answer)
    return text if len(text) <= 200 else text[:197] + "..."
