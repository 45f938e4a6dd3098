"""The real clock's sleeper: early by the kernel's slack, then exact."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from kron.model import clock
from kron.model.clock import RealClock


def asked_to_sleep(monkeypatch: pytest.MonkeyPatch, ahead: timedelta) -> list[float]:
    """What one sleep_until `ahead` from now asks asyncio to sleep, without sleeping."""
    asked: list[float] = []

    async def record(seconds: float) -> None:
        asked.append(seconds)

    async def main() -> None:
        real = RealClock()
        await real.sleep_until(real.now() + ahead)

    monkeypatch.setattr(clock.asyncio, "sleep", record)
    asyncio.run(main())
    return asked


def test_a_long_sleep_ends_before_its_time_by_at_least_the_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = asked_to_sleep(monkeypatch, timedelta(seconds=30))
    # 30 s less the kernel's 0.1 % (30 ms) and the finish: the caller then sleeps the rest.
    assert len(asked) == 1
    assert 30 - 0.030 - clock.FINISH_S - 0.01 <= asked[0] <= 30 - 0.030 - clock.FINISH_S


def test_the_last_stretch_never_ends_early() -> None:
    async def main() -> list[float]:
        real = RealClock()
        lateness = []
        for _ in range(20):
            when = real.now() + timedelta(seconds=clock.FINISH_S / 2)
            await real.sleep_until(when)
            lateness.append((real.now() - when).total_seconds())
        return lateness

    # The wall clock may be slewed by NTP (at most 0.05 %) while the sleep counts monotonic time.
    assert min(asyncio.run(main())) >= -1e-5


def test_a_sleep_is_capped_so_a_clock_step_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert asked_to_sleep(monkeypatch, timedelta(hours=5)) == [clock.MAX_SLEEP_S]
