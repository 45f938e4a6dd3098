"""kron check-records: each broken promise is found, named with its file and line, and the
records a healthy kron writes (retries, pauses, changes, long outages) pass."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kron.engine import records
from kron.engine.slots import RANGE_NOTE
from kron.model.job import Job
from kron.model.run import Outcome, RunEnded, RunRecord, RunStarted, Trigger

from .conftest import run_cli
from .harness import make_job

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MINUTELY = 'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n'


def started(job: Job, run_id: str, slot: datetime, **kw: object) -> RunStarted:
    fields: dict[str, object] = {
        "trigger": Trigger.SCHEDULE,
        "attempt": 1,
        "started_at": slot,
        "config_sha": job.config_sha,
    }
    fields.update(kw)
    return RunStarted(run_id=run_id, job=job.id, slot=slot, **fields)  # type: ignore[arg-type]


def ended(
    job: Job, run_id: str, slot: datetime, outcome: Outcome = Outcome.SUCCEEDED, **kw: object
) -> RunEnded:
    fields: dict[str, object] = {
        "trigger": Trigger.SCHEDULE,
        "attempt": 1,
        "started_at": slot,
        "ended_at": slot + timedelta(seconds=1),
        "config_sha": job.config_sha,
        "exit_code": 0,
    }
    fields.update(kw)
    return RunEnded(
        run_id=run_id,
        job=job.id,
        slot=slot,
        outcome=outcome,
        **fields,  # type: ignore[arg-type]
    )


def ran(job: Job, run_id: str, slot: datetime, **kw: object) -> list[RunRecord]:
    return [started(job, run_id, slot, **kw), ended(job, run_id, slot, **kw)]


def write(jobs_dir: Path, job: Job, lines: list[RunRecord]) -> Path:
    path = records.records_path(job.id, jobs_dir=jobs_dir, records_dir=None)
    for line in lines:
        records.append(path, line.to_json())
    return path


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def check(jobs_dir: Path) -> tuple[int, dict[str, object]]:
    result = run_cli("check-records", "--json", "--jobs-dir", jobs_dir)
    return result.code, json.loads(result.out)


def test_healthy_records_of_every_kind_pass(jobs_dir: Path) -> None:
    job = make_job(jobs_dir, "tick.toml", MINUTELY)
    write(
        jobs_dir,
        job,
        [
            *ran(job, "r0", minute(0)),
            ended(job, "r1", minute(1), Outcome.SKIPPED, started_at=None),
            # Attempt 2 of the same slot is not a double.
            *ran(job, "r2", minute(2)),
            *ran(job, "r3", minute(2), attempt=2),
            ended(job, "r4", minute(3), Outcome.MISSED, started_at=None),
            *ran(job, "r5", minute(4), trigger=Trigger.CATCHUP),
            # Manual runs have their own slots, any number of them.
            *ran(job, "r6", minute(4), trigger=Trigger.MANUAL),
            *ran(job, "r7", minute(4), trigger=Trigger.MANUAL),
            *ran(job, "r8", minute(5)),
        ],
    )
    code, report = check(jobs_dir)
    assert (code, report) == (0, {"files": 1, "runs": 9, "ok": True, "findings": []})
    text = run_cli("check-records", "--jobs-dir", jobs_dir)
    assert text.out == "1 records file, 9 runs: all whole, none twice, none lost\n"


def test_a_torn_line_a_cut_off_end_and_a_run_without_its_end_are_found(jobs_dir: Path) -> None:
    job = make_job(jobs_dir, "tick.toml", MINUTELY)
    path = write(jobs_dir, job, ran(job, "r0", minute(0)))
    with path.open("ab") as f:
        f.write(b'{"v":1,"run_id":"r1","job":"ti\n')  # a write cut short, then a newline
    write(jobs_dir, job, [started(job, "r2", minute(1))])
    with path.open("ab") as f:
        f.write(b'{"v":1,"run_id":"r3"')  # the last write of a crash
    code, report = check(jobs_dir)
    assert code == 1
    assert [(f["kind"], f["line"], f["run_ids"]) for f in report["findings"]] == [  # type: ignore[index, union-attr]
        ("torn", 3, []),
        ("torn", 5, []),
        ("unfinished", 4, ["r2"]),
    ]
    text = run_cli("check-records", "--jobs-dir", jobs_dir).out.splitlines()
    assert text == [
        f"{path}:3: torn line: 30 bytes that are not one whole record",
        f"{path}:5: the last line is cut off (no newline): 20 bytes that are not one whole record",
        f"{path}:4: run r2 (slot 2026-03-02T10:01:00Z) started at 2026-03-02T10:01:00Z and has no "
        "terminal record",
        "1 records file, 2 runs: 3 problems",
    ]


def test_a_slot_run_twice_and_a_trigger_followed_twice_are_found(jobs_dir: Path) -> None:
    job = make_job(jobs_dir, "tick.toml", MINUTELY)
    path = write(
        jobs_dir,
        job,
        [
            *ran(job, "r0", minute(0)),
            *ran(job, "r1", minute(0), trigger=Trigger.CATCHUP),
            ended(job, "r2", minute(1), Outcome.SKIPPED, started_at=None),
            *ran(job, "r3", minute(1)),
            *ran(job, "d1", minute(1), trigger=Trigger.DEPENDENCY, upstream="up1"),
            *ran(job, "d2", minute(1), trigger=Trigger.DEPENDENCY, upstream="up1"),
        ],
    )
    code, report = check(jobs_dir)
    assert code == 1
    findings = report["findings"]
    assert [(f["kind"], f["line"], f["run_ids"]) for f in findings] == [  # type: ignore[index, union-attr]
        ("twice", 3, ["r0", "r1"]),
        ("twice", 6, ["r2", "r3"]),
        ("twice", 10, ["d1", "d2"]),
    ]
    assert findings[0]["message"] == (  # type: ignore[index]
        "slot 2026-03-02T10:00:00Z, attempt 1, recorded twice: run r0 (line 1) and run r1"
    )
    assert findings[2]["message"] == (  # type: ignore[index]
        "upstream run up1, attempt 1, recorded twice: run d1 (line 8) and run d2"
    )
    assert str(path) == findings[0]["path"]  # type: ignore[index]


def test_slots_lost_between_two_records_are_found_and_listed(jobs_dir: Path) -> None:
    job = make_job(jobs_dir, "tick.toml", MINUTELY)
    write(jobs_dir, job, [*ran(job, "r0", minute(0)), *ran(job, "r4", minute(4))])
    code, report = check(jobs_dir)
    assert code == 1
    [gap] = report["findings"]  # type: ignore[misc]
    assert gap == {
        "kind": "gap",
        "path": str(jobs_dir / "tick.runs.jsonl"),
        "line": 3,
        "job": "tick",
        "slot": "2026-03-02T10:01:00Z",
        "run_ids": ["r0", "r4"],
        "message": "3 slots between 2026-03-02T10:00:00Z and 2026-03-02T10:04:00Z have no "
        "record: 2026-03-02T10:01:00Z, 2026-03-02T10:02:00Z, 2026-03-02T10:03:00Z",
    }


def test_a_gap_over_a_pause_a_change_or_a_long_outage_summary_is_no_loss(jobs_dir: Path) -> None:
    job = make_job(jobs_dir, "tick.toml", MINUTELY)
    audit = jobs_dir / ".kron" / "audit.jsonl"
    records.append_many(
        audit,
        [
            {"time": "2026-03-02T10:00:30Z", "event": "pause", "job": "tick"},
            {"time": "2026-03-02T10:02:30Z", "event": "resume", "job": "tick"},
        ],
    )
    old = RunEnded(
        run_id="o1",
        job=job.id,
        slot=minute(10),
        trigger=Trigger.SCHEDULE,
        attempt=1,
        outcome=Outcome.MISSED,
        started_at=None,
        ended_at=minute(40),
        config_sha=job.config_sha,
        error=f"not run: the daemon was down; {RANGE_NOTE} 2026-03-02T10:30:00Z",
    )
    write(
        jobs_dir,
        job,
        [
            *ran(job, "r0", minute(0)),
            *ran(job, "r3", minute(3)),  # 10:01 and 10:02 passed while paused
            *ran(job, "x5", minute(5), config_sha="another"),  # under another definition
            *ran(job, "r9", minute(9)),
            old,  # stands for 10:11 to 10:29 too
            *ran(job, "r30", minute(30)),
        ],
    )
    code, report = check(jobs_dir)
    assert (code, report["findings"]) == (0, [])
    # Without the pause the same records lose two slots.
    audit.unlink()
    code, report = check(jobs_dir)
    assert [f["slot"] for f in report["findings"]] == ["2026-03-02T10:01:00Z"]  # type: ignore[index, union-attr]


def test_a_run_the_daemon_is_running_is_not_unfinished(jobs_dir: Path) -> None:
    """Run in-process: a started line of a live run, as `kron check-records` sees it while a
    daemon runs it, and the same line once no daemon knows it."""
    from kron.engine.consistency import check_records

    job = make_job(jobs_dir, "tick.toml", MINUTELY)
    write(jobs_dir, job, [*ran(job, "r0", minute(0)), started(job, "r1", minute(1))])
    alive = check_records(jobs_dir, jobs={job.id: job}, running={"r1"})
    assert alive.findings == []
    began_later = check_records(jobs_dir, jobs={job.id: job}, since_check=minute(0))
    assert began_later.findings == []
    dead = check_records(jobs_dir, jobs={job.id: job})
    assert [f.kind for f in dead.findings] == ["unfinished"]
