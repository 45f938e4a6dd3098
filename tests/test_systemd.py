"""sd_notify against a real datagram socket, the watchdog's cadence, and the unit files."""

from __future__ import annotations

import asyncio
import configparser
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import kron.service.daemon
from kron.service.systemd import Notifier, watchdog_loop

from .harness import DEADLINE_S, write_job

ROOT = Path(__file__).parent.parent


class Listener:
    """systemd's end of $NOTIFY_SOCKET: a datagram socket that keeps every message it gets."""

    def __init__(self, bind_to: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(bind_to)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    @property
    def fields(self) -> list[str]:
        """Every `KEY=value` line received, in order."""
        return [line for message in self.messages for line in message.split("\n")]

    def count(self, field: str) -> int:
        return self.fields.count(field)

    def drain(self) -> list[str]:
        """Take what has arrived, without waiting."""
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    async def until(self, predicate: Callable[[Listener], bool]) -> None:
        """Receive on the running loop until `predicate` holds, with a deadline."""
        loop = asyncio.get_running_loop()

        async def receive() -> None:
            while not predicate(self):
                self.messages.append((await loop.sock_recv(self.sock, 4096)).decode())

        await asyncio.wait_for(receive(), DEADLINE_S)

    def wait(self, predicate: Callable[[Listener], bool], what: str) -> None:
        """Receive, blocking this thread, until `predicate` holds (tests without a loop)."""
        deadline = time.monotonic() + DEADLINE_S
        self.sock.settimeout(0.05)
        try:
            while not predicate(self):
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out waiting for {what}; got {self.messages}")
                try:
                    self.messages.append(self.sock.recv(4096).decode())
                except TimeoutError:
                    continue
        finally:
            self.sock.setblocking(False)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    found = Listener(str(tmp_path / "notify.sock"))
    yield found
    found.close()


@pytest.fixture
def notifier(listener: Listener) -> Iterator[Notifier]:
    found = Notifier(listener.sock.getsockname(), watchdog_usec=200_000)
    yield found
    found.close()


class RecordingNotifier(Notifier):
    """A real notifier that also notes when each watchdog ping leaves (monotonic seconds)."""

    def __init__(self, address: str, *, watchdog_usec: int) -> None:
        super().__init__(address, watchdog_usec=watchdog_usec)
        self.pings: list[float] = []

    def watchdog(self) -> bool:
        self.pings.append(time.monotonic())
        return super().watchdog()


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


# -- the protocol -----------------------------------------------------------------------------


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "200000"})
    assert notifier.enabled is False
    assert notifier.ping_interval_s is None
    sent = [
        notifier.ready("up"),
        notifier.reloading(),
        notifier.stopping(),
        notifier.status("x"),
        notifier.watchdog(),
    ]
    assert sent == [False, False, False, False, False]

    async def main() -> None:
        await asyncio.wait_for(watchdog_loop(notifier, asyncio.Event()), DEADLINE_S)

    asyncio.run(main())


def test_ready_reloading_ready_stopping_arrive_in_order_with_status_lines(
    listener: Listener, notifier: Notifier
) -> None:
    assert notifier.ready("3 jobs loaded, 0 invalid files") is True
    before = monotonic_usec()
    assert notifier.reloading("reloading jobs.d") is True
    after = monotonic_usec()
    notifier.ready("4 jobs loaded, 1 invalid file")
    notifier.status("running 2 jobs")
    notifier.stopping("stopping: 2 runs to end")
    messages = listener.drain()
    usec = int(messages[1].split("\n")[1].removeprefix("MONOTONIC_USEC="))
    assert before <= usec <= after  # CLOCK_MONOTONIC in microseconds, when it was sent
    assert messages == [
        "READY=1\nSTATUS=3 jobs loaded, 0 invalid files",
        f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading jobs.d",
        "READY=1\nSTATUS=4 jobs loaded, 1 invalid file",
        "STATUS=running 2 jobs",
        "STOPPING=1\nSTATUS=stopping: 2 runs to end",
    ]


def test_a_status_with_newlines_stays_one_field(listener: Listener, notifier: Notifier) -> None:
    notifier.status("line one\nline two\nREADY=1")
    assert listener.drain() == ["STATUS=line one line two READY=1"]


def test_an_address_starting_with_at_is_in_the_abstract_namespace(tmp_path: Path) -> None:
    name = f"kron-test-{os.getpid()}-{time.monotonic_ns()}"
    abstract = Listener("\0" + name)
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
    try:
        assert notifier.ready() is True
        assert abstract.drain() == ["READY=1"]
    finally:
        notifier.close()
        abstract.close()


def test_the_variables_are_removed_so_jobs_do_not_inherit_them(listener: Listener) -> None:
    env = {
        "NOTIFY_SOCKET": listener.sock.getsockname(),
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/usr/bin",
    }
    notifier = Notifier.from_environment(env)
    try:
        assert env == {"PATH": "/usr/bin"}
        assert notifier.ping_interval_s == 15.0
        assert notifier.watchdog() is True
        assert listener.drain() == ["WATCHDOG=1"]
    finally:
        notifier.close()


def test_unix_socket_addresses_only_others_disable_notification(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for address in ("vsock:2:1234", "notify.sock"):
        notifier = Notifier(address)
        assert (notifier.enabled, notifier.ready()) == (False, False)
    assert [r.getMessage() for r in caplog.records] == [
        "NOTIFY_SOCKET='vsock:2:1234' is not a unix socket address; not notifying",
        "NOTIFY_SOCKET='notify.sock' is not a unix socket address; not notifying",
    ]


def test_a_manager_that_went_away_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = tmp_path / "gone.sock"
    notifier = Notifier(str(gone), watchdog_usec=200_000)
    try:
        with caplog.at_level(logging.WARNING, logger="kron.systemd"):
            assert [notifier.ready(), notifier.watchdog(), notifier.stopping()] == [
                False,
                False,
                False,
            ]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [f"cannot notify systemd at {gone}: [Errno 2] No such file or directory"]
        back = Listener(str(gone))
        try:
            assert notifier.status("back") is True
            assert back.drain() == ["STATUS=back"]
        finally:
            back.close()
    finally:
        notifier.close()


def test_a_manager_that_does_not_read_never_stalls_the_sender(
    listener: Listener, notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    # Fill the listener's queue, as a manager that stopped reading would let it fill.
    with caplog.at_level(logging.WARNING, logger="kron.systemd"):
        sent = 0
        while notifier.status("x" * 1000):
            sent += 1
            assert sent < 100_000, "the queue never filled"
        started = time.monotonic()
        assert [notifier.ready(), notifier.reloading(), notifier.ready()] == [False] * 3
        # A blocking send would wait for room: any wait at all would be a second or more.
        assert time.monotonic() - started < 0.5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Resource temporarily unavailable" in warnings[0]
    listener.drain()
    assert notifier.status("back") is True


# -- the watchdog -----------------------------------------------------------------------------


def test_the_watchdog_pings_every_half_of_watchdog_usec(listener: Listener) -> None:
    # WatchdogSec=200ms: systemd sets WATCHDOG_USEC=200000; a ping is due every 100 ms.
    notifier = RecordingNotifier(listener.sock.getsockname(), watchdog_usec=200_000)
    assert notifier.ping_interval_s == 0.1

    async def main() -> None:
        stop = asyncio.Event()
        pinging = asyncio.ensure_future(watchdog_loop(notifier, stop))
        await listener.until(lambda got: got.count("WATCHDOG=1") >= 5)
        stop.set()
        await asyncio.wait_for(pinging, DEADLINE_S)

    try:
        asyncio.run(main())
    finally:
        notifier.close()
    assert set(listener.drain()) == {"WATCHDOG=1"}
    assert len(listener.messages) == len(notifier.pings)
    gaps = [b - a for a, b in zip(notifier.pings, notifier.pings[1:], strict=False)]
    # Never faster than the interval (the loop's timers do not fire early); a loaded machine
    # may make them later, which the watchdog's other half absorbs.
    assert min(gaps) >= 0.1


def test_stopping_ends_the_watchdog_loop_at_once(listener: Listener, notifier: Notifier) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        pinging = asyncio.ensure_future(watchdog_loop(notifier, stop))
        await listener.until(lambda got: got.count("WATCHDOG=1") == 1)
        stop.set()
        await asyncio.wait_for(pinging, DEADLINE_S)

    asyncio.run(main())
    assert listener.drain() == ["WATCHDOG=1"]


def test_no_pings_when_watchdog_pid_names_another_process(listener: Listener) -> None:
    notifier = Notifier.from_environment(
        {
            "NOTIFY_SOCKET": listener.sock.getsockname(),
            "WATCHDOG_USEC": "200000",
            "WATCHDOG_PID": str(os.getpid() + 1),
        }
    )

    async def main() -> None:
        # Returns at once instead of pinging; a marker sent afterwards arrives first.
        await asyncio.wait_for(watchdog_loop(notifier, asyncio.Event()), DEADLINE_S)
        assert notifier.watchdog() is False
        notifier.status("marker")

    try:
        assert notifier.ping_interval_s is None
        asyncio.run(main())
    finally:
        notifier.close()
    assert listener.drain() == ["STATUS=marker"]


def test_a_blocked_event_loop_stops_the_watchdog_pings(listener: Listener) -> None:
    notifier = RecordingNotifier(listener.sock.getsockname(), watchdog_usec=200_000)
    blocked: dict[str, float] = {}

    def block() -> None:
        # A callback that never yields, as a blocking call on the loop would.
        notifier.status("blocking")
        blocked["start"] = time.monotonic()
        time.sleep(0.5)
        blocked["end"] = time.monotonic()
        notifier.status("unblocked")

    def pings_after_unblocked(got: Listener) -> int:
        fields = got.fields
        if "STATUS=unblocked" not in fields:
            return 0
        return fields[fields.index("STATUS=unblocked") :].count("WATCHDOG=1")

    async def main() -> None:
        stop = asyncio.Event()
        pinging = asyncio.ensure_future(watchdog_loop(notifier, stop))
        await listener.until(lambda got: got.count("WATCHDOG=1") >= 2)
        asyncio.get_running_loop().call_soon(block)
        await listener.until(lambda got: pings_after_unblocked(got) >= 2)
        stop.set()
        await asyncio.wait_for(pinging, DEADLINE_S)

    try:
        asyncio.run(main())
    finally:
        notifier.close()
    fields = listener.fields
    between = fields[fields.index("STATUS=blocking") + 1 : fields.index("STATUS=unblocked")]
    assert between == []
    block_s = blocked["end"] - blocked["start"]
    last_before = max(t for t in notifier.pings if t <= blocked["start"])
    first_after = min(t for t in notifier.pings if t >= blocked["end"])
    assert first_after - last_before >= block_s
    assert block_s >= 0.5  # five ping intervals without a ping


# -- the daemon, as systemd runs it -----------------------------------------------------------

wired = pytest.mark.skipif(
    not hasattr(kron.service.daemon, "Notifier"),
    reason="sd_notify is not wired into kron.service.daemon yet (see kron/systemd.py)",
)


@wired
def test_the_daemon_reports_ready_reloading_and_stopping_to_systemd(
    jobs_dir: Path, listener: Listener, tmp_path: Path
) -> None:
    env_dump = tmp_path / "job-env"
    write_job(jobs_dir, "boot.toml", f'schedule = "@reboot"\nshell = "env > {env_dump}"\n')
    write_job(jobs_dir, "later.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')
    env = dict(os.environ)
    env |= {"NOTIFY_SOCKET": listener.sock.getsockname(), "WATCHDOG_USEC": "200000"}
    log = tmp_path / "daemon.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(jobs_dir)],
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env=env,
        )
    try:
        listener.wait(lambda got: got.count("READY=1") == 1, "READY=1")
        listener.wait(lambda got: got.count("WATCHDOG=1") >= 3, "watchdog pings")
        listener.wait(lambda _: env_dump.exists() and env_dump.stat().st_size > 0, "the job")
        proc.send_signal(signal.SIGHUP)
        listener.wait(lambda got: got.count("READY=1") == 2, "READY=1 after the reload")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE_S) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(DEADLINE_S)
    listener.drain()
    states = [
        f
        for f in listener.fields
        if f in ("READY=1", "RELOADING=1", "STOPPING=1") or f.startswith("MONOTONIC_USEC=")
    ]
    assert [s.split("=")[0] for s in states] == [
        "READY",
        "RELOADING",
        "MONOTONIC_USEC",
        "READY",
        "STOPPING",
    ]
    assert any(f.startswith("STATUS=") for f in listener.fields)
    job_env = env_dump.read_text()
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        assert f"\n{name}=" not in f"\n{job_env}"


# -- the unit files ---------------------------------------------------------------------------


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "systemd" / name)
    return parser


def test_the_service_is_type_notify_with_a_watchdog_reload_and_restart() -> None:
    service = unit("kron.service")["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30s"
    assert service["Restart"] == "on-failure"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["ExecStart"] == (
        "/usr/local/bin/kron daemon --jobs-dir /etc/kron/jobs.d --records-dir /var/lib/kron"
    )
    assert (service["StateDirectory"], service["RuntimeDirectory"]) == ("kron", "kron")


def test_systemd_waits_longer_for_a_stop_than_the_daemons_shutdown_grace() -> None:
    # shutdown_grace (30 s by default) and then up to 10 s more to reap what SIGKILL left.
    from kron.model.settings import Settings

    timeout_stop = unit("kron.service")["Service"]["TimeoutStopSec"]
    assert timeout_stop.endswith("s")
    assert int(timeout_stop[:-1]) > Settings().shutdown_grace.total_seconds() + 10


def test_the_user_drop_in_runs_the_daemon_as_kron() -> None:
    service = unit("kron.service.d/user.conf")["Service"]
    assert (service["User"], service["Group"]) == ("kron", "kron")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_unit_files_pass_systemd_analyze_verify() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "verify-systemd.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
