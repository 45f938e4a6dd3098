"""The wall clock and the sleeper, injected so tests drive time explicitly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

# The daemon sleeps until the next fire, but never longer than this, so a wall-clock step
# (NTP, a suspended VM) is noticed within a minute: the scheduler itself wakes once a minute when
# idle. (The file watcher's thread polls on its own every 30 ms: see kron/watch.py.)
MAX_SLEEP_S = 60.0


class Clock(Protocol):
    """What the runner knows of time."""

    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait this long (retry back-off); may be driven by a test."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Wait until `when` or a little earlier; callers re-check the time."""
        ...


class RealClock:
    """The system clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, when: datetime) -> None:
        delay = (when - self.now()).total_seconds()
        await asyncio.sleep(min(max(0.0, delay), MAX_SLEEP_S))
