"""The wall clock and the sleeper, injected so tests drive time explicitly."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol

# The daemon sleeps until the next fire, but never longer than this, so a wall-clock step
# (NTP, a suspended VM) is noticed within a minute: the scheduler itself wakes once a minute when
# idle.
MAX_SLEEP_S = 60.0
# Linux lets a poll or epoll timeout run late by 0.1% of its length (up to 100 ms, to batch
# wake-ups: `select_estimate_accuracy`), epoll counts whole milliseconds, rounded up, and a
# virtual CPU woken from idle adds up to a millisecond more. A plain asyncio sleep of 45 s would
# start a job 45 ms late. So the clock wakes early by that slack plus FINISH_S and sleeps the
# rest on the loop's thread with a monotonic-clock sleep, which the kernel keeps to about 50 µs
# (the timer slack): the loop pauses at most FINISH_S once per fire instant.
SLACK_RATIO = 0.001
FINISH_S = 0.0025


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
        if delay > FINISH_S:
            # Early by the kernel's slack: the caller sees the time has not come and calls
            # again with a delay short enough to be kept to the microsecond.
            await asyncio.sleep(min(delay - delay * SLACK_RATIO - FINISH_S, MAX_SLEEP_S))
        elif delay > 0:
            _sleep_on_thread(delay)


def _sleep_on_thread(seconds: float) -> None:
    """Sleep less than FINISH_S on the loop's thread: a bounded pause, to the microsecond."""
    time.sleep(seconds)
