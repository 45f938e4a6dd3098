"""The daemon's agent budget: the ledger of kron.actions.agent, seeded from the run records.

Records of agent runs carry an `agent` field, so a restarted daemon knows what the day has
already spent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from pathlib import Path

from kron.actions.agent import Ledger, Ticket
from kron.engine.store import FileRecordStore, RecordStore
from kron.model.clock import RealClock
from kron.model.job import Job
from kron.model.run import RunEnded
from kron.model.settings import Settings

__all__ = ["AgentBudget"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AgentBudget(Ledger):
    """Daily agent limits (per job, and kron.toml's for all), counted from today's records.

    Args:
        max_runs_per_day: global limit on agent runs in a UTC day (kron.toml).
        max_tokens_per_day: global limit on agent tokens in a UTC day (kron.toml).
        store: where today's runs so far are read from.
        records_root: without `store`, the folder of the records files to read; with neither,
            the records beside the first agent job's file.
        now: the clock; the day is its UTC date.
    """

    def __init__(
        self,
        *,
        max_runs_per_day: int | None = None,
        max_tokens_per_day: int | None = None,
        store: RecordStore | None = None,
        records_root: Path | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        def seed(job: Job, today: date) -> list[Ticket]:
            root = records_root or job.path.parents[job.id.count("/")]
            return _tickets(store or _files_under(root), today)

        super().__init__(
            max_runs_per_day=max_runs_per_day,
            max_tokens_per_day=max_tokens_per_day,
            seed=seed,
            now=now,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        store: RecordStore | None = None,
        records_root: Path | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> AgentBudget:
        """A jobs directory's budget: kron.toml's limits, its records in `store`."""
        return cls(
            max_runs_per_day=settings.max_runs_per_day,
            max_tokens_per_day=settings.max_tokens_per_day,
            store=store,
            records_root=records_root,
            now=now,
        )


def _files_under(root: Path) -> FileRecordStore:
    return FileRecordStore(jobs_dir=root, records_dir=None, clock=RealClock())


def _tickets(store: RecordStore, today: date) -> list[Ticket]:
    """Today's agent runs (those that started today, UTC) in the store."""
    midnight = datetime.combine(today, time(), tzinfo=UTC)
    found = []
    for record in store.runs(since=midnight):
        if (
            isinstance(record, RunEnded)
            and "agent" in record.extra
            and record.started_at is not None
            and record.started_at >= midnight
        ):
            tokens = record.extra.get("tokens_total")
            found.append(
                Ticket(job=record.job, day=today, tokens=tokens if isinstance(tokens, int) else 0)
            )
    return found
