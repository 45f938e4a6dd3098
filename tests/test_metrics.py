"""Prometheus metrics on the `metrics` listener: exact values after known runs on a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kron import __version__
from kron.engine import records
from kron.model.errors import KronError
from kron.service.daemon import Daemon
from kron.service.metrics import DURATION_BUCKETS_S
from kron.service.web import listen_address

from .clock import FakeClock
from .harness import DEADLINE_S, Events, until_true, write_job

T0 = datetime(2026, 3, 2, 7, 0, 30, tzinfo=UTC)
Body = Callable[[Daemon, Events, httpx.AsyncClient], Awaitable[None]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def with_listener(
    jobs_dir: Path, clock: FakeClock, body: Body, *, port: int | None = None, settings: str = ""
) -> None:
    """Start a Daemon whose kron.toml turns the listener on (`settings`: more of kron.toml),
    run `body` with an HTTP client for it, then stop the daemon as SIGTERM would."""
    port = port or free_port()
    (jobs_dir / "kron.toml").write_text(
        f'metrics = "127.0.0.1:{port}"\n{settings}', encoding="utf-8"
    )

    async def main() -> None:
        daemon = Daemon(jobs_dir, clock=clock, boot_id="boot-1", control=False)
        events = Events()
        await daemon.start()
        assert daemon.scheduler is not None
        daemon.scheduler.subscribe(events)
        serving = asyncio.ensure_future(daemon.serve(watch=False))
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE_S, trust_env=False
            ) as client:
                await body(daemon, events, client)
        finally:
            daemon.request_stop()
            await asyncio.wait_for(serving, DEADLINE_S)

    asyncio.run(asyncio.wait_for(main(), 50))


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> dict[str, Samples]:
    """Every sample of /metrics by family: {(sample name, sorted labels): value}."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families: dict[str, Samples] = {}
    for family in text_string_to_metric_families(response.text):
        samples = families.setdefault(family.name, {})
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return families


def runs(**by_job: dict[str, float]) -> Samples:
    return {
        ("kron_runs_total", (("job", job.replace("__", "/")), ("outcome", outcome))): value
        for job, counts in by_job.items()
        for outcome, value in counts.items()
    }


def per_job(name: str, **values: float) -> Samples:
    return {(name, (("job", job),)): value for job, value in values.items()}


def histogram(job: str, durations_s: list[float]) -> Samples:
    """The samples prometheus_client writes for these observations."""
    samples: Samples = {}
    for bound in (*DURATION_BUCKETS_S, float("inf")):
        le = "+Inf" if bound == float("inf") else str(float(bound))
        count = sum(1 for d in durations_s if d <= bound)
        samples[("kron_run_duration_seconds_bucket", (("job", job), ("le", le)))] = count
    samples[("kron_run_duration_seconds_count", (("job", job),))] = len(durations_s)
    samples[("kron_run_duration_seconds_sum", (("job", job),))] = sum(durations_s)
    return samples


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_metrics_count_runs_by_outcome_time_them_and_show_the_daemon_state(
    jobs_dir: Path, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    every_minute = 'schedule = "* * * * *"\ntimezone = "UTC"\n'
    write_job(jobs_dir, "ok.toml", every_minute + 'command = ["true"]\n')
    write_job(jobs_dir, "team/fails.toml", every_minute + 'shell = "exit 3"\n')
    write_job(
        jobs_dir,
        "waits.toml",
        every_minute + f'shell = "while [ ! -e {release} ]; do sleep 0.02; done"\n',
    )
    write_job(jobs_dir, "manual.toml", 'schedule = "@manual"\ncommand = ["true"]\n')
    write_job(
        jobs_dir,
        "off.toml",
        'schedule = "@daily"\ntimezone = "UTC"\nenabled = false\ncommand = ["true"]\n',
    )
    write_job(jobs_dir, "broken.toml", 'schedule = "61 * * * *"\ncommand = ["true"]\n')
    clock = FakeClock(T0)
    zeros = {"succeeded": 0.0, "failed": 0.0}

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        before = await scrape(client)
        assert before["kron_runs"] == runs(
            manual=zeros, off=zeros, ok=zeros, team__fails=zeros, waits=zeros
        )
        assert before["kron_run_duration_seconds"] == {}
        assert before["kron_build_info"] == {
            (
                "kron_build_info",
                (("python", platform.python_version()), ("version", __version__)),
            ): 1.0
        }
        assert before["kron_start_time_seconds"] == {
            ("kron_start_time_seconds", ()): T0.timestamp()
        }
        assert before["kron_jobs_loaded"] == {("kron_jobs_loaded", ()): 5.0}
        assert before["kron_invalid_files"] == {("kron_invalid_files", ()): 1.0}
        assert before["kron_running_runs"] == {("kron_running_runs", ()): 0.0}
        assert before["kron_next_fire_timestamp_seconds"] == per_job(
            "kron_next_fire_timestamp_seconds",
            ok=ts(2026, 3, 2, 7, 1),
            waits=ts(2026, 3, 2, 7, 1),
            **{"team/fails": ts(2026, 3, 2, 7, 1)},
        )
        assert before["kron_last_success_timestamp_seconds"] == {}

        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await events.until(
            lambda e: (
                len(e.ended("ok")) == 1
                and len(e.ended("team/fails")) == 1
                and len(e.started("waits")) == 1
            )
        )
        during = await scrape(client)
        assert during["kron_running_runs"] == {("kron_running_runs", ()): 1.0}
        assert during["kron_runs_stuck"] == {("kron_runs_stuck", ()): 0.0}

        await clock.set(datetime(2026, 3, 2, 7, 2, tzinfo=UTC))
        await events.until(
            lambda e: (
                len(e.ended("ok")) == 2
                and len(e.ended("team/fails")) == 2
                and e.outcomes("waits") == ["skipped"]
            )
        )
        release.touch()  # the 07:01 run of waits ends at 07:02 on the fake clock: 60 s
        await events.until(lambda e: e.outcomes("waits") == ["skipped", "succeeded"])

        after = await scrape(client)
        assert after["kron_runs"] == runs(
            manual=zeros,
            off=zeros,
            ok={"succeeded": 2.0, "failed": 0.0},
            team__fails={"succeeded": 0.0, "failed": 2.0},
            waits={"succeeded": 1.0, "failed": 0.0, "skipped": 1.0},
        )
        assert after["kron_run_duration_seconds"] == (
            histogram("ok", [0.0, 0.0])
            | histogram("team/fails", [0.0, 0.0])
            | histogram("waits", [60.0])
        )
        assert after["kron_running_runs"] == {("kron_running_runs", ()): 0.0}
        assert after["kron_next_fire_timestamp_seconds"] == per_job(
            "kron_next_fire_timestamp_seconds",
            ok=ts(2026, 3, 2, 7, 3),
            waits=ts(2026, 3, 2, 7, 3),
            **{"team/fails": ts(2026, 3, 2, 7, 3)},
        )
        assert after["kron_last_success_timestamp_seconds"] == per_job(
            "kron_last_success_timestamp_seconds",
            ok=ts(2026, 3, 2, 7, 2),
            waits=ts(2026, 3, 2, 7, 2),
        )
        assert sorted(after) == [
            "kron_build_info",
            "kron_invalid_files",
            "kron_jobs_loaded",
            "kron_last_success_timestamp_seconds",
            "kron_next_fire_timestamp_seconds",
            "kron_record_write_errors",
            "kron_records_failing",
            "kron_run_duration_seconds",
            "kron_running_runs",
            "kron_runs",
            "kron_runs_stuck",
            "kron_start_time_seconds",
        ]

    with_listener(jobs_dir, clock, body)


def test_each_attempt_of_a_retried_run_counts_once(jobs_dir: Path) -> None:
    write_job(
        jobs_dir,
        "flaky.toml",
        'schedule = "* * * * *"\ntimezone = "UTC"\nshell = "exit 1"\n'
        '[retry]\nattempts = 3\nbackoff = "fixed"\ndelay = "10s"\n',
    )
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        for attempt in (1, 2):
            await events.until(lambda e, n=attempt: len(e.ended("flaky")) == n)
            await until_true(lambda: clock.sleepers >= 2)  # the retry wait and the timer heap
            await clock.advance(10)
        await events.until(lambda e: len(e.ended("flaky")) == 3)
        families = await scrape(client)
        assert families["kron_runs"] == runs(flaky={"succeeded": 0.0, "failed": 3.0})
        assert families["kron_run_duration_seconds"] == histogram("flaky", [0.0, 0.0, 0.0])

    with_listener(jobs_dir, clock, body)


def tcp_listeners_of_this_process() -> set[int]:
    """Ports this process listens on over TCP, from /proc (fds may close while we read)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_nothing_listens_on_tcp_unless_kron_toml_sets_metrics(jobs_dir: Path) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')
    before = tcp_listeners_of_this_process()  # another test's server may still be up

    async def without() -> set[int]:
        daemon = Daemon(jobs_dir, clock=FakeClock(T0), boot_id="boot-1", control=False)
        await daemon.start()
        try:
            return tcp_listeners_of_this_process()
        finally:
            daemon.close()

    assert asyncio.run(asyncio.wait_for(without(), DEADLINE_S)) == before
    port = free_port()
    seen: list[set[int]] = []

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        seen.append(tcp_listeners_of_this_process())

    with_listener(jobs_dir, FakeClock(T0), body, port=port)
    assert seen == [before | {port}]
    assert tcp_listeners_of_this_process() == before


def test_a_metrics_port_in_use_stops_the_start_with_a_clear_message(jobs_dir: Path) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (jobs_dir / "kron.toml").write_text(f'metrics = "127.0.0.1:{port}"\n', encoding="utf-8")

        async def start() -> None:
            await Daemon(jobs_dir, clock=FakeClock(T0), control=False).start()

        with pytest.raises(KronError) as caught:
            asyncio.run(asyncio.wait_for(start(), DEADLINE_S))
    message = str(caught.value)
    assert message.startswith(f"cannot listen on metrics = 127.0.0.1:{port}: [Errno 98] ")
    assert message.endswith("address already in use")

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        assert (await client.get("/metrics")).status_code == 200

    # The failed start let go of the jobs directory: the next daemon starts.
    with_listener(jobs_dir, FakeClock(T0), body, port=port)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("localhost:0", ("localhost", 0)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("[::1]:9108", ("::1", 9108)),
    ],
)
def test_a_listen_address_is_host_colon_port(text: str, address: tuple[str, int]) -> None:
    assert listen_address(text) == address


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:", ":9108", "127.0.0.1:65536", "h:x"])
def test_a_listen_address_without_a_valid_port_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(KronError) as caught:
        listen_address(text)
    assert str(caught.value) == (f"metrics = {text!r}: want HOST:PORT with a port from 0 to 65535")


DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def test_missed_slots_at_start_up_count_and_the_last_success_survives_a_restart(
    jobs_dir: Path,
) -> None:
    # docs/metrics.md says both; the daemon was down from 07:00:01 to 07:03:30.
    write_job(jobs_dir, "m.toml", 'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n')
    records.append(
        jobs_dir / "m.runs.jsonl",
        {
            "v": 1,
            "run_id": "r0",
            "job": "m",
            "slot": "2026-03-02T07:00:00Z",
            "trigger": "schedule",
            "attempt": 1,
            "outcome": "succeeded",
            "started_at": "2026-03-02T07:00:00Z",
            "ended_at": "2026-03-02T07:00:01Z",
        },
    )

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        found = await scrape(client)
        assert found["kron_runs"] == runs(m={"succeeded": 0.0, "failed": 0.0, "missed": 3.0})
        assert found["kron_last_success_timestamp_seconds"] == per_job(
            "kron_last_success_timestamp_seconds", m=ts(2026, 3, 2, 7, 0, 1)
        )

    with_listener(jobs_dir, FakeClock(datetime(2026, 3, 2, 7, 3, 30, tzinfo=UTC)), body)


def test_the_metrics_docs_name_exactly_the_metrics_served_and_show_real_lines(
    jobs_dir: Path,
) -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(kron_\w+)` \|", text, flags=re.MULTILINE))
    alerts = text.split("### Alerts worth having")[1].split("\n## ")[0]  # to the next section
    alerted = set(re.findall(r"\b(kron_\w+)", alerts))
    example = re.search(r"\| grep '\^kron_runs_total'\n((?:kron_.*\n)+)```", text)
    assert example is not None
    write_job(jobs_dir, "backups/nightly.toml", 'schedule = "@manual"\ncommand = ["true"]\n')

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        daemon.runtime.run_now("backups/nightly")
        await events.until(lambda e: len(e.ended("backups/nightly")) == 1)
        served = (await client.get("/metrics")).text
        families = set(re.findall(r"^# TYPE (kron_\w+) \w+$", served, flags=re.MULTILINE))
        assert documented == families
        assert alerted <= families
        shape = re.compile(r'^kron_runs_total\{job="[^"]+",outcome="[a-z_]+"\} \d+\.0$')
        served_lines = [line for line in served.splitlines() if line.startswith("kron_runs_total")]
        assert served_lines
        assert all(shape.match(line) for line in served_lines + example.group(1).splitlines())

    with_listener(jobs_dir, clock=FakeClock(T0), body=body)
