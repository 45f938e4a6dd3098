"""A job file's mapping -> a typed Job: every field converted, every problem kept with its line.

The schema has checked the shapes already; what is left are the checks a schema cannot make
(a duration's units, a time zone, a cron expression, a condition, a regular expression, the
policy) and the defaults merged from kron.toml.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kron.config.documents import Document
from kron.model.errors import Problem, Severity, ValueProblem, did_you_mean
from kron.model.job import (
    ACTION_KEYS,
    Action,
    AgentAction,
    Backoff,
    Catchup,
    CommandAction,
    Concurrency,
    Delivery,
    DeliveryKind,
    DockerAction,
    HttpAction,
    Job,
    Retention,
    RetryPolicy,
    ShellAction,
    WaitSpec,
    WaitTimeoutAction,
)
from kron.model.policy import policy_violation
from kron.model.run import Outcome
from kron.model.schedule import ScheduleKind, parse_schedule
from kron.model.secrets import Secrets
from kron.model.settings import Settings
from kron.model.trust import refusals
from kron.model.units import format_duration, parse_duration, parse_size

__all__ = ["Builder", "build_job", "check_kubeconfig", "merge_defaults", "zone_named"]

T = TypeVar("T")


def merge_defaults(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge tables; the job's own value wins, lists are replaced whole."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_defaults(merged[key], value)
        else:
            merged[key] = value
    return merged


@functools.cache
def zone_named(key: str) -> ZoneInfo:
    """The zone of an IANA name; ValueProblem with the nearest names when there is none."""
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        advice = did_you_mean(key, _zone_names(), cutoff=0.7)
        advice = advice or "; use an IANA name like 'Europe/Berlin'"
        raise ValueProblem(f"unknown time zone {key!r}{advice}") from None


@functools.cache
def _zone_names() -> list[str]:
    return sorted(zoneinfo.available_timezones())


class Builder:
    """Turn a validated mapping into model values, collecting every problem with its field."""

    def __init__(self, doc: Document, defaults_origin: Mapping[str, str] | None = None) -> None:
        self.doc = doc
        self.defaults_origin = defaults_origin or {}
        self.problems: list[Problem] = []

    def problem(
        self, pointer: list[str | int], message: str, severity: Severity = Severity.ERROR
    ) -> None:
        field = pointer[0] if pointer else None
        if isinstance(field, str) and field not in self.doc.data:
            origin = self.defaults_origin.get(field)
            if origin is not None:  # the job file does not show it: say where it is written
                message += f" (the value comes from [defaults] in {origin})"
        self.problems.append(self.doc.problem(pointer, message, severity))

    def convert(
        self, pointer: list[str | int], fn: Callable[[Any], T], value: Any, fallback: T
    ) -> T:
        try:
            return fn(value)
        except ValueProblem as exc:
            self.problem(pointer, str(exc))
            return fallback

    def duration(
        self, data: Mapping[str, Any], key: str, default: timedelta, *at: str | int
    ) -> timedelta:
        value = data.get(key)
        if value is None:
            return default
        return self.convert([*at, key], parse_duration, value, default)

    def maybe_duration(self, data: Mapping[str, Any], key: str, *at: str | int) -> timedelta | None:
        value = data.get(key)
        if value is None:
            return None
        return self.convert([*at, key], parse_duration, value, None)


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


def _action(b: Builder, data: Mapping[str, Any]) -> Action | None:
    present = [key for key in ACTION_KEYS if key in data]
    if not present:
        b.problem([], "no action; add one of command, shell, http, docker, agent")
        return None
    if len(present) > 1:
        b.problem([present[1]], f"two actions ({' and '.join(present)}); a job has exactly one")
        return None
    key = present[0]
    value = data[key]
    if key == "command":
        return CommandAction(argv=tuple(value))
    if key == "shell":
        return ShellAction(script=value)
    if key == "http":
        from kron.model.conditions import check_http_url  # only jobs that use it pay for the import

        return HttpAction(
            method=value.get("method", "GET"),
            url=b.convert(["http", "url"], check_http_url, value["url"], value["url"]),
            headers=dict(value.get("headers", {})),
            json=value.get("json"),
            body=value.get("body"),
            expect_status=tuple(value["expect_status"]) if "expect_status" in value else None,
            expect_body=_regex(b, ["http", "expect_body"], value.get("expect_body")),
            timeout=b.duration(value, "timeout", timedelta(seconds=30), "http"),
        )
    if key == "docker":
        command = value.get("command")
        return DockerAction(
            image=value["image"],
            command=command if isinstance(command, str) or command is None else tuple(command),
            entrypoint=tuple(value["entrypoint"]) if "entrypoint" in value else None,
            env=dict(value.get("env", {})),
            volumes=tuple(value.get("volumes", ())),
            network=value.get("network"),
            user=value.get("user"),
            workdir=value.get("workdir"),
            pull=value.get("pull", "missing"),
        )
    from kron.model.conditions import check_http_url  # only agent jobs with an endpoint pay

    if "command" not in value and not ("endpoint" in value and "model" in value):
        b.problem(["agent"], "an agent needs `command` (an agent CLI) or `endpoint` and `model`")
    elif "command" in value and "endpoint" in value:
        b.problem(["agent", "endpoint"], "give `command` or `endpoint`, not both")
    return AgentAction(
        prompt=value["prompt"],
        command=tuple(value["command"]) if "command" in value else None,
        endpoint=b.convert(["agent", "endpoint"], check_http_url, value["endpoint"], None)
        if "endpoint" in value
        else None,
        model=value.get("model"),
        api_key_env=value.get("api_key_env"),
        system=value.get("system"),
        max_tokens=value.get("max_tokens"),
        request_timeout=b.duration(value, "request_timeout", timedelta(minutes=5), "agent"),
        max_runs_per_day=value.get("max_runs_per_day"),
        max_tokens_per_day=value.get("max_tokens_per_day"),
    )


def _regex(b: Builder, pointer: list[str | int], text: str | None) -> str | None:
    if text is None:
        return None
    try:
        re.compile(text)
    except re.error as exc:
        b.problem(pointer, f"bad regular expression: {exc}")
    return text


def _deliveries(b: Builder, entries: list[dict[str, Any]]) -> tuple[Delivery, ...]:
    out = []
    for index, entry in enumerate(entries):
        kinds = [kind for kind in DeliveryKind if kind in entry]
        if len(kinds) != 1:
            continue  # the schema reported it
        on = entry.get("on", ["failure"])
        out.append(
            Delivery(
                on=frozenset([on] if isinstance(on, str) else on),
                kind=kinds[0],
                target=entry[kinds[0]],
                timeout=b.duration(entry, "timeout", timedelta(seconds=10), "notify", index),
                retries=entry.get("retries", 2),
            )
        )
    return tuple(out)


def _env(b: Builder, data: Mapping[str, Any]) -> tuple[dict[str, str], frozenset[str]]:
    env: dict[str, str] = {}
    secret: set[str] = set()
    for name, value in data.get("env", {}).items():
        if isinstance(value, dict):
            env[name] = value["value"]
            if value.get("secret"):
                secret.add(name)
        else:
            env[name] = value
    return env, frozenset(secret)


# Defaults as shared constants: 10,000 jobs that leave a field out share one value for it.
_ZERO = timedelta(0)
_KILL_GRACE = timedelta(seconds=10)
_RETRY_DELAY = timedelta(seconds=10)
_RETRY_MAX_DELAY = timedelta(minutes=5)
_ZERO_EXIT = frozenset({0})
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
        attempts=table.get("attempts", _NO_RETRY.attempts),
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
    action = _action(b, data)
    retry = _retry(b, data["retry"]) if "retry" in data else _NO_RETRY
    wait = None
    if "wait" in data:
        # Only jobs that wait pay for the import.
        from kron.model.conditions import check_condition, condition_warnings

        w = data["wait"]
        until = b.convert(["wait", "until"], check_condition, w["until"], "")
        for warning in condition_warnings(until) if until else ():
            b.problem(["wait", "until"], warning, Severity.WARNING)
        kubeconfig = settings.kubeconfig
        if "kubeconfig" in w:
            kubeconfig = doc.path.parent / Path(w["kubeconfig"]).expanduser()
            check_kubeconfig(b, ["wait", "kubeconfig"], kubeconfig)
        wait = WaitSpec(
            until=until,
            every=b.duration(w, "every", timedelta(seconds=5), "wait"),
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
        if not env_file.is_file():
            b.problem(["env_file"], f"env_file {str(env_file)!r} does not exist")
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
        "user": data.get("user"),
        "group": data.get("group"),
        "umask": int(data["umask"], 8) if "umask" in data else None,
        "timeout": b.maybe_duration(data, "timeout"),
        "expected_duration": b.maybe_duration(data, "expected_duration"),
        "kill_grace": b.duration(data, "kill_grace", _KILL_GRACE),
        "concurrency": Concurrency(data.get("concurrency", "forbid")),
        "catchup": Catchup(data.get("catchup", "none")),
        "starting_deadline": b.maybe_duration(data, "starting_deadline"),
        "catchup_max": data.get("catchup_max", 10),
        "retry": retry,
        "success_codes": frozenset(data["success_codes"])
        if "success_codes" in data
        else _ZERO_EXIT,
        "max_output": b.convert(["max_output"], parse_size, max_output, 65536),
        "wait": wait,
        "triggers": tuple(data.get("triggers", ())),
        "notify": _deliveries(b, data.get("notify", [])),
        "healthcheck": data.get("healthcheck"),
        "tags": dict(data.get("tags", {})),
        "records": Retention(
            keep=records.get("keep", 1000), max_age=b.maybe_duration(records, "max_age", "records")
        )
        if records
        else _KEEP_DEFAULT,
    }
    expected = job_kwargs["expected_duration"]
    if expected is not None and expected < timedelta(seconds=1):
        b.problem(["expected_duration"], "must be at least 1s")
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
