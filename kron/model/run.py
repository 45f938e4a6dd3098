"""What the runner reports: frozen past-tense events; run records are these, serialised."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kron.engine.records import FORMAT_VERSION, format_time
from kron.model.job import Outcome, Trigger

HOST = socket.gethostname()


def new_run_id() -> str:
    """A sortable id: milliseconds since the epoch (11 hex digits), then 9 random ones."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(5)[:9]}"


@dataclass(frozen=True, kw_only=True, slots=True)
class RunStarted:
    """A run began: written before the action starts, so a crash leaves a trace."""

    run_id: str
    job: str
    slot: datetime
    trigger: Trigger
    attempt: int
    started_at: datetime
    config_sha: str
    upstream: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RunEnded:
    """A run or a slot reached its outcome (a skipped or missed slot has no RunStarted)."""

    run_id: str
    job: str
    slot: datetime
    trigger: Trigger
    attempt: int
    outcome: Outcome
    started_at: datetime | None
    ended_at: datetime
    config_sha: str
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    error: str | None = None
    pid: int | None = None
    upstream: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        return round((self.ended_at - self.started_at).total_seconds(), 6)


Event = RunStarted | RunEnded


def to_record(event: Event) -> dict[str, Any]:
    """Serialise an event as a run record (SPEC section 7)."""
    record: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "run_id": event.run_id,
        "job": event.job,
        "slot": format_time(event.slot),
        "trigger": event.trigger.value,
        "attempt": event.attempt,
    }
    if isinstance(event, RunStarted):
        record |= {
            "outcome": Outcome.STARTED.value,
            "started_at": format_time(event.started_at),
            "config_sha": event.config_sha,
            "host": HOST,
            "daemon_pid": os.getpid(),
        }
    else:
        record |= {
            "outcome": event.outcome.value,
            "started_at": format_time(event.started_at) if event.started_at else None,
            "ended_at": format_time(event.ended_at),
            "duration_s": event.duration_s,
            "exit_code": event.exit_code,
            "signal": event.signal,
            "stdout": event.stdout,
            "stderr": event.stderr,
            "truncated": event.truncated,
            "error": event.error,
            "config_sha": event.config_sha,
            "host": HOST,
            "pid": event.pid,
        }
        record.update(event.extra)
    if event.upstream:
        record["upstream"] = event.upstream
    return record
