"""The warm-start cache (kron.config.cache): an optimisation only, never trusted over the file."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from kron.config.cache import CACHE_NAME, JobCache
from kron.config.catalog import Catalog
from kron.model.job import Job

N = 12


def _write_jobs(jobs_dir: Path, count: int = N) -> None:
    for i in range(count):
        folder = jobs_dir / ("team" if i % 2 else "")
        folder.mkdir(exist_ok=True)
        (folder / f"job{i:02d}.toml").write_text(
            f'schedule = "{i} 3 * * *"\ntimezone = "UTC"\nshell = "echo {i:02d}"\n'
        )


def _catalog(jobs_dir: Path, cache_path: Path | None) -> Catalog:
    if cache_path is None:
        return Catalog(jobs_dir)
    return Catalog(jobs_dir, cache=lambda _settings: JobCache(cache_path, jobs_dir=jobs_dir))


def _load(jobs_dir: Path, cache_path: Path | None) -> Catalog:
    catalog = _catalog(jobs_dir, cache_path)
    catalog.scan()
    return catalog


def _load_and_save(jobs_dir: Path, cache_path: Path) -> Catalog:
    catalog = _load(jobs_dir, cache_path)
    write = catalog.cache_writer()
    assert write is not None
    write()
    return catalog


def _jobs(catalog: Catalog) -> dict[str, Job]:
    return dict(sorted(catalog.active.items()))


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs.d"
    folder.mkdir()
    _write_jobs(folder)
    return folder


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "records" / ".kron" / CACHE_NAME


def test_a_warm_load_takes_every_unchanged_file_from_the_cache_and_builds_the_same_jobs(
    jobs_dir: Path, cache_path: Path
) -> None:
    cold = _load_and_save(jobs_dir, cache_path)
    assert cold.from_cache == 0
    warm = _load(jobs_dir, cache_path)
    assert warm.from_cache == N
    assert _jobs(warm) == _jobs(cold) == _jobs(_load(jobs_dir, None))
    assert len(_jobs(warm)) == N
    assert warm.problems == []
    assert warm.cache_writer() is None  # nothing changed: the cache is not written again


def test_the_cache_file_is_private_to_the_daemon_s_user(jobs_dir: Path, cache_path: Path) -> None:
    _load_and_save(jobs_dir, cache_path)
    assert cache_path.stat().st_mode & 0o777 == 0o600


def test_an_edit_is_read_even_with_the_size_and_the_modified_time_put_back(
    jobs_dir: Path, cache_path: Path
) -> None:
    _load_and_save(jobs_dir, cache_path)
    path = jobs_dir / "job00.toml"
    before = path.stat()
    path.write_text(path.read_text().replace("echo 00", "echo 99"))  # same length
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    warm = _load(jobs_dir, cache_path)
    assert warm.from_cache == N - 1
    assert warm.active["job00"].action.argv == ("/bin/sh", "-c", "echo 99")  # type: ignore[union-attr]


def test_a_file_replaced_by_an_identical_copy_is_read_again(
    jobs_dir: Path, cache_path: Path
) -> None:
    _load_and_save(jobs_dir, cache_path)
    path = jobs_dir / "team" / "job01.toml"
    copy = path.with_name(".job01.toml.new")
    copy.write_bytes(path.read_bytes())
    stat = path.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(copy, path)  # a checkout: another inode
    warm = _load(jobs_dir, cache_path)
    assert warm.from_cache == N - 1
    assert _jobs(warm) == _jobs(_load(jobs_dir, None))


@pytest.mark.skipif(os.geteuid() != 0, reason="kron checks the trust of job files as root")
def test_a_file_made_writable_by_others_is_refused_as_a_cold_load_refuses_it(
    jobs_dir: Path, cache_path: Path
) -> None:
    _load_and_save(jobs_dir, cache_path)
    (jobs_dir / "job02.toml").chmod(0o666)
    warm = _load(jobs_dir, cache_path)
    cold = _load(jobs_dir, None)
    assert "job02" not in warm.active
    assert [str(p) for p in warm.problems] == [str(p) for p in cold.problems] != []
    assert warm.from_cache == N - 1


def test_a_new_and_a_deleted_file_are_seen(jobs_dir: Path, cache_path: Path) -> None:
    _load_and_save(jobs_dir, cache_path)
    (jobs_dir / "job04.toml").unlink()
    (jobs_dir / "fresh.toml").write_text('schedule = "@daily"\nshell = "true"\n')
    warm = _load(jobs_dir, cache_path)
    assert warm.from_cache == N - 1
    assert "job04" not in warm.active
    assert "fresh" in warm.active


def test_deleting_the_cache_changes_nothing_but_the_time_a_load_takes(
    jobs_dir: Path, cache_path: Path
) -> None:
    cold = _load_and_save(jobs_dir, cache_path)
    cache_path.unlink()
    again = _load(jobs_dir, cache_path)
    assert again.from_cache == 0
    assert _jobs(again) == _jobs(cold)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # torn by a crash
        lambda data: b"",
        lambda data: b"not a cache\n" + data,
        lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]),  # one bit of rot in the body
    ],
    ids=["torn", "empty", "garbage", "rotten"],
)
def test_a_damaged_cache_is_ignored_and_written_anew(
    jobs_dir: Path, cache_path: Path, damage: object
) -> None:
    cold = _load_and_save(jobs_dir, cache_path)
    cache_path.write_bytes(damage(cache_path.read_bytes()))  # type: ignore[operator]
    warm = _load(jobs_dir, cache_path)
    assert warm.from_cache == 0
    assert _jobs(warm) == _jobs(cold)
    write = warm.cache_writer()
    assert write is not None
    assert write() == N
    assert _load(jobs_dir, cache_path).from_cache == N


def test_a_cache_that_others_may_read_is_not_read(
    jobs_dir: Path, cache_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _load_and_save(jobs_dir, cache_path)
    cache_path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="kron.catalog"):
        warm = _load(jobs_dir, cache_path)
    assert warm.from_cache == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"ignoring the job cache {cache_path}: not a file of this user's alone (mode 0644, "
        f"uid {os.geteuid()}); it is written again"
    ]


class _Planted:
    """What a hostile cache would hold: unpickled, it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_cache_naming_anything_but_kron_s_job_model_runs_nothing(
    jobs_dir: Path, cache_path: Path, tmp_path: Path
) -> None:
    _load_and_save(jobs_dir, cache_path)
    header_line, _, _ = cache_path.read_bytes().partition(b"\n")
    header = json.loads(header_line)
    marker = tmp_path / "planted"
    body = pickle.dumps([(str(jobs_dir / "job00.toml"), b"", _Planted(marker), [])])
    header.update(size=len(body), crc32=zlib.crc32(body))  # a body that passes every check
    cache_path.write_bytes(json.dumps(header).encode() + b"\n" + body)
    warm = _load(jobs_dir, cache_path)
    assert not marker.exists()
    assert warm.from_cache == 0
    assert len(warm.active) == N


def test_jobs_that_depend_on_another_file_or_on_the_date_are_read_every_time(
    jobs_dir: Path, cache_path: Path
) -> None:
    (jobs_dir / "secrets.env").write_text("TOKEN=abc\n")
    (jobs_dir / "with-env.toml").write_text(
        'schedule = "@daily"\nshell = "true"\nenv_file = "secrets.env"\n'
    )
    (jobs_dir / "once.toml").write_text('schedule = "@at 2099-01-01T00:00:00Z"\nshell = "true"\n')
    _load_and_save(jobs_dir, cache_path)
    warm = _load(jobs_dir, cache_path)
    assert warm.from_cache == N
    assert {"with-env", "once"} <= set(warm.active)


def test_a_changed_kron_toml_makes_the_cache_unusable(jobs_dir: Path, cache_path: Path) -> None:
    _load_and_save(jobs_dir, cache_path)
    (jobs_dir / "kron.toml").write_text('[defaults]\ntimeout = "5m"\n')
    warm = _load(jobs_dir, cache_path)
    assert warm.from_cache == 0  # the defaults reach every job: all are built again
    assert {job.timeout.total_seconds() for job in warm.active.values()} == {300.0}


@pytest.mark.timeout(120)
def test_a_daemon_writes_the_cache_and_its_next_start_uses_it(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs.d"
    jobs_dir.mkdir()
    _write_jobs(jobs_dir)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    cache = jobs_dir / ".kron" / CACHE_NAME

    def start(log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as stderr:  # the daemon writes to its own copy
            return subprocess.Popen(
                [sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(jobs_dir)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def until(what: str, condition: object) -> None:
        deadline = time.monotonic() + 60
        while not condition():  # type: ignore[operator]
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start(first_log)
    until("the first daemon to write the cache", cache.exists)
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    assert b"taken from the warm-start cache" not in first_log.read_bytes()

    second = start(second_log)
    until("the second daemon to start", lambda: b"kron daemon started" in second_log.read_bytes())
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    started = next(
        line for line in second_log.read_text().splitlines() if "kron daemon started" in line
    )
    assert started.endswith(
        f"kron daemon started: {N} jobs loaded from {jobs_dir}, 0 invalid files "
        f"({N} unchanged files taken from the warm-start cache)"
    )
