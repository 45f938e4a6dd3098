"""Loading a large jobs directory on every core: forked workers, their results and failures."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from kron.config.catalog import load_dir
from kron.config.parallel import in_parallel, worker_count


def sum_with_pid(chunk: list[int]) -> tuple[int, int]:
    return os.getpid(), sum(chunk)


def test_each_chunk_but_the_first_is_worked_in_its_own_child_and_results_keep_chunk_order() -> None:
    results = in_parallel(sum_with_pid, [[1, 2], [3], [4, 5, 6]])
    assert [total for _, total in results] == [3, 3, 15]
    pids = [pid for pid, _ in results]
    assert pids[0] == os.getpid()
    assert len(set(pids)) == 3


def test_a_worker_that_raises_fails_the_load_with_its_traceback() -> None:
    def work(chunk: list[int]) -> int:
        if chunk == [2]:
            raise ValueError("chunk two is bad")
        return sum(chunk)

    with pytest.raises(RuntimeError, match=r"failed:\n(.|\n)*ValueError: chunk two is bad"):
        in_parallel(work, [[1], [2]])
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left behind


def test_a_worker_that_dies_fails_the_load_instead_of_losing_its_files() -> None:
    def work(chunk: list[int]) -> int:
        if chunk == [2]:
            os._exit(3)
        return sum(chunk)

    with pytest.raises(RuntimeError, match="ended without a result"):
        in_parallel(work, [[1], [2]])


def test_a_failure_here_still_waits_for_every_child() -> None:
    def work(chunk: list[int]) -> int:
        if chunk == [1]:
            raise KeyError("here")
        return sum(chunk)

    with pytest.raises(KeyError):
        in_parallel(work, [[1], [2], [3]])
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_with_another_thread_alive_every_chunk_is_worked_here() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        results = in_parallel(sum_with_pid, [[1], [2]])
    finally:
        stop.set()
        other.join()
    assert results == [(os.getpid(), 1), (os.getpid(), 2)]


def test_only_a_large_load_is_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    assert worker_count(1999) == 1
    assert worker_count(2000) == 4  # MAX_WORKERS
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert worker_count(10_000) == 1


def test_a_load_split_over_workers_finds_what_one_process_finds(
    jobs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kron.config import catalog

    for i in range(30):
        folder = jobs_dir / f"team-{i % 4}"
        folder.mkdir(exist_ok=True)
        schedule = "61 * * * *" if i % 7 == 0 else f"0 {i % 24} * * *"
        (folder / f"j{i:02}.toml").write_text(
            f'schedule = "{schedule}"\ntimezone = "UTC"\ncommand = ["true"]\n'
        )
    (jobs_dir / "team-1.toml").write_text('schedule = "@daily"\ncommand = ["true"]\n')
    alone = load_dir(jobs_dir)
    monkeypatch.setattr(catalog, "worker_count", lambda files: 3)
    split = load_dir(jobs_dir)
    assert split.jobs == alone.jobs
    assert split.problems == alone.problems
    assert split.files == alone.files
    assert len(split.jobs) == 26
