"""The sd_notify protocol: tell systemd the daemon is ready, reloading, stopping, and alive.

A `Type=notify` service gets the address of a datagram socket in `$NOTIFY_SOCKET`; each
message is one datagram of `KEY=value` lines (sd_notify(3)). Outside systemd the variable is
unset and every call here does nothing. The protocol is a few lines, so kron speaks it directly
instead of depending on libsystemd.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import MutableMapping

__all__ = ["Notifier", "watchdog_loop"]

log = logging.getLogger("kron.systemd")

# The variables systemd sets for the main process; children (the jobs) must not inherit them,
# or a job that speaks sd_notify itself would talk to kron's service manager.
_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends state changes to the service manager; a no-op when none listens.

    Args:
        address: the socket path; a leading `@` means Linux's abstract namespace. None (or an
            address kron cannot use) disables every message.
        watchdog_usec: the watchdog timeout systemd expects pings within (`WatchdogSec=`), in
            microseconds; None when no watchdog is armed for this process.
    """

    def __init__(self, address: str | None = None, *, watchdog_usec: int | None = None) -> None:
        self.address = address if address and address[0] in "/@" else None
        if address and self.address is None:
            log.warning("NOTIFY_SOCKET=%r is not a unix socket address; not notifying", address)
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._socket: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> Notifier:
        """Read `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`, as sd_notify does.

        Args:
            environ: where to read them (default: this process's environment).
            unset: remove them afterwards, so the jobs kron starts do not inherit them
                (sd_notify's `unset_environment`).

        Returns:
            A notifier; the watchdog is armed only when `$WATCHDOG_PID` is unset or names
            this process.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET")
        watchdog_usec = _positive_int(env.get("WATCHDOG_USEC"))
        watchdog_pid = _positive_int(env.get("WATCHDOG_PID"))
        if watchdog_pid is not None and watchdog_pid != os.getpid():
            watchdog_usec = None  # the watchdog is meant for another process
        if unset:
            for name in _VARIABLES:
                env.pop(name, None)
        return cls(address, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def ping_interval_s(self) -> float | None:
        """Seconds between watchdog pings: half the timeout, as sd_watchdog_enabled(3) advises."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` fields as one message; return whether it was sent."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                # Never wait: the loop that sends also starts jobs. systemd reads its socket at
                # once; a full queue means the manager is not reading, and the message is dropped.
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            # Once per failure streak: a manager that went away must not flood the log.
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
            self._failed = True
            return False
        if self._failed:
            log.info("notifying systemd at %s again", self.address)
        self._failed = False
        log.debug("sd_notify: %s", " ".join(fields))
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup or a reload finished: the service is up (`READY=1`)."""
        return self.notify("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """A reload starts (`RELOADING=1`); `ready()` ends it.

        MONOTONIC_USEC tells systemd 253+ which reload request this answers (Type=notify-reload).
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown starts (`STOPPING=1`)."""
        return self.notify("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        """A one-line status, shown by `systemctl status` (`STATUS=`)."""
        return self.notify(*_status(text))

    def watchdog(self) -> bool:
        """Tell the watchdog the service is alive (`WATCHDOG=1`); nothing when none is armed."""
        if self.ping_interval_s is None:
            return False
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


async def watchdog_loop(notifier: Notifier, stop: asyncio.Event) -> None:
    """Ping the watchdog every half timeout until `stop` is set.

    It runs on the daemon's event loop on purpose: a loop that is stuck (a blocking call, a
    busy callback) stops the pings, and systemd restarts the service after `WatchdogSec=`.
    Returns at once when no watchdog is armed for this process.
    """
    interval_s = notifier.ping_interval_s
    if interval_s is None:
        return
    log.debug("watchdog armed: a ping every %.3f s", interval_s)
    while not stop.is_set():
        notifier.watchdog()
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            continue


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    # One field per line: a newline inside the text would start a field of its own.
    return ("STATUS=" + " ".join(text.splitlines()),)


def _positive_int(text: str | None) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value > 0 else None
