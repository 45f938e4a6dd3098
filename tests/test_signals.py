"""A stop signal reaches the daemon however busy its event loop is (kron.service.signals)."""

from __future__ import annotations

import asyncio
import os
import signal

from kron.service.signals import Signals


async def _fill_the_self_pipe(loop: asyncio.AbstractEventLoop) -> None:
    """What hundreds of children ending during a burst do: one byte each into the loop's
    self-pipe, none read yet. asyncio's own signal handling loses a signal after this."""
    for _ in range(20_000):
        loop.call_soon_threadsafe(lambda: None)


def test_a_sigterm_sent_while_the_loop_s_self_pipe_is_full_is_handled() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        signals = Signals(loop)
        signals.on(signal.SIGTERM, stopped.set)
        try:
            await _fill_the_self_pipe(loop)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stopped.wait(), timeout=10)
        finally:
            signals.close()

    asyncio.run(main())


def test_a_signal_from_another_thread_wakes_an_idle_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        hung_up = asyncio.Event()
        signals = Signals(loop)
        signals.on(signal.SIGHUP, hung_up.set)
        try:
            # The loop sleeps in epoll with no timer due: only the signal can wake it.
            await asyncio.gather(
                asyncio.to_thread(os.kill, os.getpid(), signal.SIGHUP),
                asyncio.wait_for(hung_up.wait(), timeout=10),
            )
        finally:
            signals.close()

    asyncio.run(main())


def test_closing_puts_back_the_handlers_and_the_wakeup_fd_found() -> None:
    before = signal.getsignal(signal.SIGTERM)

    async def main() -> None:
        signals = Signals(asyncio.get_running_loop())
        signals.on(signal.SIGTERM, lambda: None)
        signals.on(signal.SIGTERM, lambda: None)  # replaced: the first handler found is kept
        assert signal.getsignal(signal.SIGTERM) is not before
        signals.close()
        assert signal.getsignal(signal.SIGTERM) is before
        assert signal.set_wakeup_fd(-1) == -1  # nothing of ours left as the wakeup fd

    asyncio.run(main())
