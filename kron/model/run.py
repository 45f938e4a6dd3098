"""What a run is and what it leaves: its states and outcomes, and its records.

The scheduler emits frozen past-tense events (`RunStarted`, `RunEnded`); a run record is such an
event serialised, one JSON object per line (SPEC section 7), and reading a line back gives the
same event again. A delivery leaves a `DeliveryNote` beside the run it reports on.
"""

from __future__ import annotations

import enum
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from types import MappingProxyType
from typing import Any

from kron.model.times import format_time, parse_time

__all__ = [
    "FORMAT_VERSION",
    "HOST",
    "DeliveryNote",
    "Event",
    "Outcome",
    "Output",
    "ProcessNote",
    "RunEnded",
    "RunRecord",
    "RunStarted",
    "RunState",
    "Trigger",
    "new_run_id",
    "read_line",
]

FORMAT_VERSION = 1
HOST = socket.gethostname()
_NOTHING: Mapping[str, Any] = MappingProxyType({})


class Outcome(enum.StrEnum):
    """How a run or a slot ended; the `outcome` field of a record (`started` while it runs)."""

    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"
    MISSED = "missed"
    REPLACED = "replaced"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"
    DEPENDENCY_FAILED = "dependency_failed"
    WAIT_TIMEOUT = "wait_timeout"

    @property
    def is_terminal(self) -> bool:
        """Every outcome but `started` ends a run (or records a slot that never ran)."""
        return self is not Outcome.STARTED

    @property
    def failed_for_good(self) -> bool:
        """The work did not get done: it breaks a chain, notifies `failure`, pings `/fail`."""
        return self in FAILED_FOR_GOOD


# `skipped` and `replaced` are neither a success nor a failure: the job chose not to act, or a
# newer run took over.
FAILED_FOR_GOOD = frozenset(
    {Outcome.FAILED, Outcome.TIMEOUT, Outcome.WAIT_TIMEOUT, Outcome.CANCELLED, Outcome.ABANDONED}
)


class Trigger(enum.StrEnum):
    """Why a run fired; the `trigger` field of a record."""

    SCHEDULE = "schedule"
    CATCHUP = "catchup"
    MANUAL = "manual"
    DEPENDENCY = "dependency"
    REBOOT = "reboot"


class RunState(enum.StrEnum):
    """Where a live run stands (`kron status`); a run that ended is no longer listed."""

    QUEUED = "queued"  # waiting for a place under max_concurrent, or for the run it replaces
    RUNNING = "running"  # an attempt is under way (its wait, then its action)
    RETRY_WAIT = "retry-wait"  # between two attempts
    DONE = "done"


def new_run_id() -> str:
    """A sortable id: milliseconds since the epoch (11 hex digits), then 9 random ones."""
    # os.urandom, as the secrets module does: importing that one loads OpenSSL's hmac.
    return f"{int(time.time() * 1000):011x}{os.urandom(5).hex()[:9]}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Output:
    """What a run leaves for its record: how it exited, its output, and any further fields.

    An action's result and a run's final record both carry these; `output()` copies them from
    one to the other.
    """

    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    error: str | None = None
    pid: int | None = None
    # More record fields (http_status, tokens, wait, ...); one shared empty mapping by default.
    extra: Mapping[str, Any] = field(default_factory=lambda: _NOTHING)

    def output(self) -> dict[str, Any]:
        """The fields of `Output` alone, to build another `Output` from."""
        return {f.name: getattr(self, f.name) for f in fields(Output)}


@dataclass(frozen=True, kw_only=True, slots=True)
class RunRecord(Output):
    """One run line of a job's records; a `RunStarted` or a `RunEnded`."""

    run_id: str
    job: str
    slot: datetime
    trigger: Trigger
    attempt: int
    outcome: Outcome
    started_at: datetime | None
    ended_at: datetime | None = None
    config_sha: str
    upstream: str | None = None
    host: str = HOST
    node: str | None = None  # the cluster node that wrote it (cluster mode only)

    @property
    def late(self) -> bool:
        """Written by a node that had lost the run's lease (frozen, cut off): kept, but never
        the run's result (docs/cluster.md)."""
        return bool(self.extra.get("late"))

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return round((self.ended_at - self.started_at).total_seconds(), 6)

    def to_json(self) -> dict[str, Any]:
        """The record as its line holds it."""
        raise NotImplementedError

    def _head(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "run_id": self.run_id,
            "job": self.job,
            "slot": format_time(self.slot),
            "trigger": self.trigger.value,
            "attempt": self.attempt,
            "outcome": self.outcome.value,
            "started_at": format_time(self.started_at) if self.started_at else None,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class RunStarted(RunRecord):
    """A run began: written before the action starts, so a crash leaves a trace."""

    outcome: Outcome = Outcome.STARTED
    started_at: datetime
    daemon_pid: int = field(default_factory=os.getpid)

    def to_json(self) -> dict[str, Any]:
        line = self._head() | {
            "config_sha": self.config_sha,
            "host": self.host,
            "daemon_pid": self.daemon_pid,
        }
        if self.node:
            line["node"] = self.node
        if self.upstream:
            line["upstream"] = self.upstream
        return line


@dataclass(frozen=True, kw_only=True, slots=True)
class RunEnded(RunRecord):
    """A run or a slot reached its outcome (a skipped or missed slot has no RunStarted)."""

    ended_at: datetime

    def to_json(self) -> dict[str, Any]:
        line = self._head() | {
            "ended_at": format_time(self.ended_at),
            "duration_s": self.duration_s,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "truncated": self.truncated,
            "error": self.error,
            "config_sha": self.config_sha,
            "host": self.host,
            "pid": self.pid,
        }
        line.update(self.extra)
        if self.node:
            line["node"] = self.node
        if self.upstream:
            line["upstream"] = self.upstream
        return line


@dataclass(frozen=True, kw_only=True, slots=True)
class ProcessNote:
    """Where a run's processes are: written once its process group starts, so that the next
    daemon can find them again after a crash. `start_ticks` (the leader's start time, from
    /proc) and `boot_id` rule out a pid that was used again."""

    run_id: str
    job: str
    pgid: int
    start_ticks: int | None
    boot_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "run_id": self.run_id,
            "job": self.job,
            "process": {
                "pgid": self.pgid,
                "start_ticks": self.start_ticks,
                "boot_id": self.boot_id,
            },
        }


Event = RunStarted | RunEnded | ProcessNote


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryNote:
    """How one notification of a run went; a line beside the run's, with no `outcome`."""

    run_id: str
    job: str
    target: str
    ok: bool
    attempts: int
    error: str | None
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "run_id": self.run_id,
            "job": self.job,
            "delivery": {
                "target": self.target,
                "ok": self.ok,
                "attempts": self.attempts,
                "error": self.error,
            },
            "at": format_time(self.at),
        }


# The fields a record line carries beyond `Output.extra`; anything else is extra.
_KNOWN = frozenset(
    {"v", "run_id", "job", "slot", "trigger", "attempt", "outcome", "started_at", "ended_at"}
    | {"duration_s", "exit_code", "signal", "stdout", "stderr", "truncated", "error"}
    | {"config_sha", "host", "pid", "daemon_pid", "upstream", "node"}
)


def read_line(line: Mapping[str, Any]) -> RunRecord | DeliveryNote | ProcessNote | None:
    """The record a decoded line holds, or None for a line that is not one kron can read."""
    try:
        if "outcome" not in line:
            if isinstance(line.get("delivery"), Mapping):
                return _note(line)
            if isinstance(line.get("process"), Mapping):
                return _process(line)
            return None
        return _run(line)
    except (KeyError, TypeError, ValueError):
        return None


def _run(line: Mapping[str, Any]) -> RunRecord:
    outcome = Outcome(line["outcome"])
    common: dict[str, Any] = {
        "run_id": _str(line["run_id"]),
        "job": _str(line["job"]),
        "slot": parse_time(line["slot"]),
        "trigger": Trigger(line["trigger"]),
        "attempt": _int(line.get("attempt", 1)),
        "config_sha": str(line.get("config_sha") or ""),
        "upstream": line.get("upstream"),
        "host": str(line.get("host") or ""),
        "node": line["node"] if isinstance(line.get("node"), str) else None,
    }
    started = line.get("started_at")
    if outcome is Outcome.STARTED:
        pid = line.get("daemon_pid")
        return RunStarted(
            **common,
            started_at=parse_time(started),
            daemon_pid=pid if isinstance(pid, int) else 0,
        )
    return RunEnded(
        **common,
        outcome=outcome,
        started_at=parse_time(started) if started else None,
        ended_at=parse_time(line["ended_at"]),
        exit_code=_maybe_int(line.get("exit_code")),
        signal=_maybe_int(line.get("signal")),
        stdout=str(line.get("stdout") or ""),
        stderr=str(line.get("stderr") or ""),
        truncated=bool(line.get("truncated")),
        error=line.get("error") if isinstance(line.get("error"), str) else None,
        pid=_maybe_int(line.get("pid")),
        extra={key: value for key, value in line.items() if key not in _KNOWN},
    )


def _note(line: Mapping[str, Any]) -> DeliveryNote:
    delivery = line["delivery"]
    error = delivery.get("error")
    return DeliveryNote(
        run_id=_str(line["run_id"]),
        job=_str(line["job"]),
        target=str(delivery.get("target", "")),
        ok=bool(delivery.get("ok")),
        attempts=_int(delivery.get("attempts", 0)),
        error=error if isinstance(error, str) else None,
        at=parse_time(line["at"]),
    )


def _process(line: Mapping[str, Any]) -> ProcessNote:
    process = line["process"]
    ticks = process.get("start_ticks")
    return ProcessNote(
        run_id=_str(line["run_id"]),
        job=_str(line["job"]),
        pgid=_int(process["pgid"]),
        start_ticks=ticks if isinstance(ticks, int) else None,
        boot_id=str(process.get("boot_id") or ""),
    )


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _maybe_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
