"""A wall clock the test moves by hand; only time is fake, processes and files are real."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self._now = start
        self._waiters: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + timedelta(seconds=seconds))

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((when, future))
        try:
            await future
        finally:
            self._waiters = [(w, f) for w, f in self._waiters if f is not future]

    @property
    def sleepers(self) -> int:
        return sum(1 for _, f in self._waiters if not f.done())

    async def set(self, when: datetime) -> None:
        """Move the clock (forwards or backwards) and let everything due run."""
        self._now = when
        for due, future in list(self._waiters):
            if due <= when and not future.done():
                future.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        await self.set(self._now + timedelta(seconds=seconds))
