"""A job file's mapping -> a typed Job: every field converted, every problem kept with its line.

The schema has checked the shapes already; what is left are the checks a schema cannot make
(a duration's units, a time zone, a cron expression, a condition, a regular expression, the
policy) and the defaults merged from kron.toml.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kron.config.build_action import action_of, deliveries, healthcheck, variables
from kron.config.builder import (
    MIN_KILL_GRACE,
    MIN_TIMEOUT,
    MIN_WAIT_EVERY,
    Builder,
    integer,
    zone_named,
)
from kron.config.documents import Document
from kron.model.errors import Problem, Severity, ValueProblem, excerpt
from kron.model.job import (
    ACTION_KEYS,
    Backoff,
    Catchup,
    Concurrency,
    Job,
    Retention,
    RetryPolicy,
    WaitSpec,
    WaitTimeoutAction,
)
from kron.model.policy import policy_violation
from kron.model.run import Outcome
from kron.model.schedule import ScheduleKind, parse_schedule
from kron.model.secrets import Secrets
from kron.model.settings import Settings
from kron.model.trust import refusals
from kron.model.units import SIZE_PATTERN, format_duration, format_size, parse_size

# Builder and zone_named live in builder.py; they are named here too, where callers found them.
__all__ = ["MAX_OUTPUT", "Builder", "build_job", "check_kubeconfig", "merge_defaults", "zone_named"]

_ZERO = timedelta(0)
# Output kept per stream and run: the record line holds it, and every running run holds up to
# this much of each stream in memory.
MAX_OUTPUT = 1024 * 1024


def merge_defaults(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge tables; the job's own value wins, lists are replaced whole."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_defaults(merged[key], value)
        else:
            merged[key] = value
    return merged


def check_kubeconfig(b: Builder, pointer: list[str | int], path: Path) -> None:
    """Say what is wrong with a kubeconfig named in `[wait]`.

    A missing one is only a warning: `kron validate` often runs where the cluster's credentials
    are not (CI). One that others can change is refused as an env_file is: its `exec` plugins
    run commands as the daemon's user.
    """
    try:
        path.stat()
    except FileNotFoundError:
        b.problem(
            pointer,
            f"kubeconfig {str(path)!r} does not exist: k8s: conditions fail until it does",
            Severity.WARNING,
        )
        return
    except OSError as exc:  # a name too long, a folder kron may not enter
        b.problem(pointer, f"kubeconfig {str(path)!r} cannot be read: {exc.strerror}")
        return
    for refusal in refusals(path, label=f"kubeconfig {path}"):
        b.problem(pointer, refusal)


def _timezone_of(
    builder: Builder, data: Mapping[str, Any], settings: Settings
) -> tuple[ZoneInfo, bool]:
    if "timezone" in data:
        return builder.convert(["timezone"], zone_named, data["timezone"], settings.timezone), True
    return settings.timezone, settings.timezone_explicit


def _env(b: Builder, data: Mapping[str, Any]) -> tuple[dict[str, str], frozenset[str]]:
    env: dict[str, str] = {}
    secret: set[str] = set()
    for name, value in variables(b, ["env"], data.get("env", {})).items():
        if isinstance(value, dict):
            env[name] = value["value"]
            if value.get("secret"):
                secret.add(name)
        else:
            env[name] = value
    # Shared when empty, as the defaults below: most jobs set no environment.
    return env or _NO_ENV, frozenset(secret) if secret else _NO_NAMES


# Defaults as shared constants: 10,000 jobs that leave a field out share one value for it.
_KILL_GRACE = timedelta(seconds=10)
_RETRY_DELAY = timedelta(seconds=10)
_RETRY_MAX_DELAY = timedelta(minutes=5)
_ZERO_EXIT = frozenset({0})
_NO_ENV: dict[str, str] = {}  # never changed: Job.env and Job.tags are read-only Mappings
_NO_NAMES: frozenset[str] = frozenset()
_KEEP_DEFAULT = Retention(keep=1000, max_age=None)
_NO_RETRY = RetryPolicy(
    attempts=1,
    backoff=Backoff.EXPONENTIAL,
    delay=_RETRY_DELAY,
    max_delay=_RETRY_MAX_DELAY,
    jitter=_ZERO,
    on=frozenset({Outcome.FAILED}),
)


def _retry(b: Builder, table: Mapping[str, Any]) -> RetryPolicy:
    """The [retry] table; each field it leaves out takes `_NO_RETRY`'s value."""
    return RetryPolicy(
        attempts=integer(table.get("attempts", _NO_RETRY.attempts)),
        backoff=Backoff(table.get("backoff", _NO_RETRY.backoff.value)),
        delay=b.duration(table, "delay", _NO_RETRY.delay, "retry"),
        max_delay=b.duration(table, "max_delay", _NO_RETRY.max_delay, "retry"),
        jitter=b.duration(table, "jitter", _NO_RETRY.jitter, "retry"),
        on=frozenset(Outcome(o) for o in table["on"]) if "on" in table else _NO_RETRY.on,
    )


def build_job(
    doc: Document,
    data: Mapping[str, Any],
    *,
    job_id: str,
    config_sha: str,
    settings: Settings,
    now: datetime | None = None,
) -> tuple[Job | None, list[Problem]]:
    """Build a Job from a schema-valid mapping; return it (None on error) and every problem."""
    b = Builder(doc, settings.defaults_origin)
    zone, zone_explicit = _timezone_of(b, data, settings)
    if "schedule" not in data:
        b.problem(
            [],
            "no schedule: runs only when triggered or by `kron run`; "
            'write schedule = "@manual" to say so',
            severity=Severity.WARNING,
        )
    expr = data.get("schedule", "@manual")
    schedule = b.convert(["schedule"], lambda e: parse_schedule(e, zone), expr, None)
    action = action_of(b, data)
    retry = _retry(b, data["retry"]) if "retry" in data else _NO_RETRY
    wait = None
    if "wait" in data:
        # Only jobs that wait pay for the imports (and httpx's, for an http probe).
        from kron.config.urls import check_condition_urls
        from kron.model.conditions import check_condition, condition_warnings

        w = data["wait"]
        until = b.convert(["wait", "until"], check_condition, w["until"], "")
        if until and "http" in until:
            b.convert(["wait", "until"], check_condition_urls, until, "")
        for warning in condition_warnings(until) if until else ():
            b.problem(["wait", "until"], warning, Severity.WARNING)
        kubeconfig = settings.kubeconfig
        if "kubeconfig" in w:
            kubeconfig = doc.path.parent / Path(w["kubeconfig"]).expanduser()
            check_kubeconfig(b, ["wait", "kubeconfig"], kubeconfig)
        wait = WaitSpec(
            until=until,
            every=b.duration(w, "every", timedelta(seconds=5), "wait", minimum=MIN_WAIT_EVERY),
            timeout=b.duration(w, "timeout", timedelta(minutes=5), "wait"),
            probe_timeout=b.duration(w, "probe_timeout", timedelta(seconds=5), "wait"),
            on_timeout=WaitTimeoutAction(w.get("on_timeout", "fail")),
            kubeconfig=kubeconfig,
            context=w.get("context", settings.kube_context),
        )
    env, secret_env = _env(b, data)
    env_file = None
    if "env_file" in data:
        env_file = doc.path.parent / data["env_file"]
        try:
            found = env_file.is_file()
        except OSError as exc:  # a name too long for the file system, say
            b.problem(["env_file"], f"env_file {excerpt(str(env_file))}: {exc.strerror}")
        else:
            if not found:
                b.problem(["env_file"], f"env_file {excerpt(str(env_file))} does not exist")
            for refusal in refusals(env_file):  # its values reach the job's environment
                b.problem(["env_file"], refusal)
    records = data.get("records")
    max_output = data.get("max_output", "64KiB")
    job_kwargs: dict[str, Any] = {
        "description": data.get("description", ""),
        "jitter": b.duration(data, "jitter", _ZERO),
        "enabled": data.get("enabled", True),
        "cwd": doc.path.parent / data["cwd"] if "cwd" in data else None,
        "env": env,
        "secret_env": secret_env,
        "env_file": env_file,
        "user": _account(b, "user", data.get("user")),
        "group": _account(b, "group", data.get("group")),
        "umask": int(data["umask"], 8) if "umask" in data else None,
        "timeout": b.maybe_duration(data, "timeout", minimum=MIN_TIMEOUT),
        "expected_duration": b.maybe_duration(
            data, "expected_duration", minimum=timedelta(seconds=1)
        ),
        "kill_grace": b.duration(data, "kill_grace", _KILL_GRACE, minimum=MIN_KILL_GRACE),
        "concurrency": Concurrency(data.get("concurrency", "forbid")),
        "catchup": Catchup(data.get("catchup", "none")),
        "starting_deadline": b.maybe_duration(data, "starting_deadline"),
        "catchup_max": integer(data.get("catchup_max", 10)),
        "retry": retry,
        "success_codes": frozenset(map(integer, data["success_codes"]))
        if "success_codes" in data
        else _ZERO_EXIT,
        "max_output": b.convert(["max_output"], _output_size, max_output, 65536),
        "wait": wait,
        "triggers": tuple(data.get("triggers", ())),
        "notify": deliveries(b, data.get("notify", [])),
        "healthcheck": healthcheck(b, data.get("healthcheck")),
        "tags": dict(data["tags"]) if data.get("tags") else _NO_ENV,
        "records": Retention(
            keep=integer(records.get("keep", 1000)),
            max_age=b.maybe_duration(records, "max_age", "records"),
        )
        if records
        else _KEEP_DEFAULT,
    }
    if action is not None and (why := policy_violation(action, settings.policy)):
        b.problem([next(k for k in ACTION_KEYS if k in data)], why)
    if any(p.severity == "error" for p in b.problems) or schedule is None or action is None:
        return None, b.problems
    job = Job(
        id=job_id,
        path=doc.path,
        config_sha=config_sha,
        schedule=schedule,
        timezone=zone,
        timezone_explicit=zone_explicit,
        action=action,
        **job_kwargs,
    )
    return job, _warnings(b, job, now or datetime.now(UTC))


def _account(b: Builder, key: str, name: str | None) -> str | None:
    """A user or group: a name, or a number the system can take (what `isdigit` admits, such
    as `²` or a 20-digit id, made pwd and grp raise at fire time)."""
    if name is not None and name.isdigit() and not (name.isascii() and int(name) < _NO_ID):
        b.problem([key], f"{excerpt(name)} is not a {key} id; ids are 0 to {_NO_ID - 1}")
    return name


_NO_ID = 2**32 - 1  # (uid_t) -1 means "no change" to the kernel


def _output_size(value: str | int) -> int:
    try:
        size = parse_size(value)
    except ValueProblem:
        if isinstance(value, int) or re.fullmatch(SIZE_PATTERN, value):
            size = MAX_OUTPUT + 1  # a size, too large even to compute: over the limit
        else:
            raise
    if size > MAX_OUTPUT:
        raise ValueProblem(
            f"{excerpt(value)} is over {format_size(MAX_OUTPUT)}, the most output kron keeps"
        )
    return size


def _warnings(b: Builder, job: Job, now: datetime) -> list[Problem]:
    kind = job.schedule.kind
    if kind in (ScheduleKind.CRON, ScheduleKind.AT) and not job.timezone_explicit:
        b.problem(
            ["schedule"],
            "no timezone; read in UTC (set `timezone` here or in kron.toml)",
            severity=Severity.WARNING,
        )
    interval = job.schedule.min_interval()
    if (
        job.timeout
        and interval
        and job.timeout > interval
        and job.concurrency is Concurrency.FORBID
    ):
        b.problem(
            ["timeout"],
            f"timeout {format_duration(job.timeout)} is longer than the "
            f"{format_duration(interval)} between slots; slots will be skipped",
            severity=Severity.WARNING,
        )
    if job.timeout and job.expected_duration and job.expected_duration >= job.timeout:
        b.problem(
            ["expected_duration"],
            f"expected_duration {format_duration(job.expected_duration)} is not shorter than "
            f"timeout {format_duration(job.timeout)}: a run is stopped before it could be "
            "called stuck",
            severity=Severity.WARNING,
        )
    if kind is ScheduleKind.AT and job.schedule.next_fire(now) is None:
        b.problem(
            ["schedule"], "this @at time is in the past; the job will never fire", Severity.WARNING
        )
    # Secrets must not leak through messages built from values.
    return Secrets.of_job(job).mask_problems(b.problems)
