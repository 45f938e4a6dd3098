"""A full records disk: no torn line, a bounded log, runs go on, and writing resumes.

A real daemon writes its records to a small tmpfs that the test fills up and then frees.
Mounting needs root (CI runs as root).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import run_cli
from .harness import DEADLINE_S, write_job

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "records"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _wait(predicate: object, what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _lines(folder: Path) -> list[bytes]:
    return [
        line
        for path in sorted(folder.rglob("*.runs.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


def test_a_full_records_disk_tears_no_line_logs_once_and_writing_resumes(
    jobs_dir: Path, small_disk: Path, tmp_path: Path
) -> None:
    # Every second, a run whose record carries 2 KiB of output: the disk fills in seconds.
    write_job(
        jobs_dir,
        "chatty.toml",
        'schedule = "* * * * * *"\ntimezone = "UTC"\n'
        "shell = \"head -c 2048 /dev/zero | tr '\\\\0' x\"\n",
    )
    log = tmp_path / "daemon.log"
    with open(log, "wb") as handle:
        daemon = subprocess.Popen(
            [
                *(sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(jobs_dir)),
                *("--records-dir", str(small_disk)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=handle,
        )
    filler = small_disk / "filler"
    try:
        _wait(lambda: len(_lines(small_disk)) >= 4, "the first records")
        fill = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:  # take every block that is left
            while os.write(fill, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fill)
        _wait(lambda: "cannot write records to" in log.read_text(), "the first failure")
        failing_since = time.monotonic()
        # Keep the disk full for several seconds of runs, each a failed write or two.
        _wait(lambda: time.monotonic() - failing_since > 4, "runs on a full disk", 10)
        assert daemon.poll() is None  # runs go on; the daemon does not stop
        said = log.read_text().count("cannot write records to")
        assert said == 1  # once per file per minute, not once per write
        status = json.loads(run_cli("status", "--json", "--jobs-dir", jobs_dir).out)
        [failing] = status["records_failing"]
        assert (failing["path"], failing["error"]) == (
            str(small_disk / "chatty.runs.jsonl"),
            "No space left on device",
        )
        assert failing["failed_writes"] >= 4
        filler.unlink()
        _wait(lambda: "records are written to" in log.read_text(), "writing to resume")
        written_again = len(_lines(small_disk))
        _wait(lambda: len(_lines(small_disk)) > written_again + 2, "new records")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(DEADLINE_S) == 0
    for line in _lines(small_disk):
        json.loads(line)  # no torn or glued line anywhere
    leftovers = [p.name for p in small_disk.rglob("*.tmp")]
    assert leftovers == []
