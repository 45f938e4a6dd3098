"""A daemon whose jobs run commands loads no library they do not need (issue: memory)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# What a daemon of command jobs never needs: the HTTP, Docker, retry, watcher, YAML, cluster,
# metrics and mail libraries, the schema validator (the first load is read by forked workers,
# a warm start by the cache), and OpenSSL (ssl, hashlib).
NOT_NEEDED = (
    "httpx",
    "docker",
    "tenacity",
    "watchfiles",
    "yaml",
    "psycopg",
    "prometheus_client",
    "smtplib",
    "jsonschema",
    "ssl",
    "hashlib",
)

PROBE = f"""
import atexit, sys
atexit.register(
    lambda: print(*[m for m in {NOT_NEEDED!r} if m in sys.modules], sep="\\n", flush=True)
)
from kron.cli.main import main
sys.exit(main(["daemon", "--jobs-dir", sys.argv[1]]))
"""


def _run_daemon_until_a_run_ended(jobs_dir: Path, tmp_path: Path) -> tuple[list[str], str]:
    """Start a daemon, wait until the every-second job ran once more and the warm-start cache
    is there, stop it; return the modules of NOT_NEEDED it had loaded, and its log."""
    records = jobs_dir / "tick.runs.jsonl"
    ended_before = _ended(records)
    cache = jobs_dir / ".kron" / "jobs.cache"
    log = tmp_path / f"daemon-{time.monotonic_ns()}.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(jobs_dir)],
            env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while _ended(records) <= ended_before or not cache.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "a run of the every-second job and the cache"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()
    return out.split(), log.read_text()


def _ended(records: Path) -> int:
    if not records.exists():
        return 0
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    return sum(1 for line in lines if line.get("outcome") == "succeeded")


@pytest.mark.timeout(150)
def test_a_daemon_of_command_jobs_loads_none_of_the_libraries_they_do_not_need(
    tmp_path: Path,
) -> None:
    jobs_dir = tmp_path / "jobs.d"
    (jobs_dir / "nightly").mkdir(parents=True)
    (jobs_dir / "tick.toml").write_text('schedule = "* * * * * *"\nshell = "echo tick"\n')
    for i in range(20):
        (jobs_dir / "nightly" / f"job{i}.toml").write_text(
            f'schedule = "{i} 3 * * *"\ncommand = ["echo", "{i}"]\ntimeout = "5m"\n'
        )
    cold, cold_log = _run_daemon_until_a_run_ended(jobs_dir, tmp_path)
    assert cold == []
    warm, warm_log = _run_daemon_until_a_run_ended(jobs_dir, tmp_path)
    assert warm == []
    assert "taken from the warm-start cache" not in cold_log
    assert "(21 unchanged files taken from the warm-start cache)" in warm_log
