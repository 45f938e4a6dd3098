"""Job files -> validated, typed Jobs: discovery, defaults, JSON Schema, model building."""

from __future__ import annotations

import difflib
import fnmatch
import functools
import hashlib
import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kron.config.documents import Document, is_job_file, read_document
from kron.model import job as spec
from kron.model.errors import Problem, SpecError, ValueProblem
from kron.model.schedule import ScheduleKind, parse_schedule
from kron.model.trust import Trust, folder_refusals, refusals, stat_refusals
from kron.model.units import DURATION_PATTERN, SIZE_PATTERN, parse_duration, parse_size

SCHEMA_DIR = Path(__file__).parent.parent / "schemas"
SETTINGS_NAMES = ("kron.toml", "kron.yaml", "kron.yml")
DEFAULT_MAX_FILE_SIZE = 1024 * 1024
T = TypeVar("T")


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """Return a schema from schemas/ (`job` or `kron`)."""
    with open(SCHEMA_DIR / f"{name}.schema.json", encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


@functools.cache
def _fast_validator(name: str) -> Callable[[Any], Any]:
    """A compiled validator for the common case: a valid file costs microseconds."""
    import fastjsonschema

    # use_default=False: validation must not write schema defaults into the data, or a
    # job's filled-in default would override a value from kron.toml's [defaults].
    validator: Callable[[Any], Any] = fastjsonschema.compile(load_schema(name), use_default=False)
    return validator


def compile_job_schema() -> None:
    """Compile the job schema's validator now (~50 ms), so that forked loaders inherit it."""
    _fast_validator("job")


@functools.cache
def _full_validator(name: str) -> Any:
    """jsonschema's validator, used only on failure, for complete and precise errors."""
    import jsonschema  # type: ignore[import-untyped]

    return jsonschema.Draft202012Validator(load_schema(name))


def schema_errors(name: str, data: Any) -> list[tuple[list[str | int], str]]:
    """Validate against a schema; return (pointer, message) for every error, [] when valid."""
    try:
        _fast_validator(name)(data)
    except Exception:
        pass
    else:
        return []
    found: list[tuple[list[str | int], str]] = []
    for error in _full_validator(name).iter_errors(data):
        found.extend(_explain(error))
    found.sort(key=lambda item: [str(p) for p in item[0]])
    return found


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a table",
}


def _explain(error: Any) -> list[tuple[list[str | int], str]]:
    """Turn one jsonschema error into friendly (pointer, message) pairs."""
    pointer = list(error.absolute_path)
    kind = error.validator
    value = error.instance
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        out = []
        for key in sorted(set(value) - set(allowed)):
            if any(re.match(p, key) for p in error.schema.get("patternProperties", {})):
                continue
            hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            msg = f"unknown field {key!r}"
            msg += (
                f"; did you mean {hint[0]!r}?" if hint else f"; known fields: {', '.join(allowed)}"
            )
            out.append(([*pointer, key], msg))
        return out
    if kind == "type":
        wanted = error.validator_value
        wanted = [wanted] if isinstance(wanted, str) else wanted
        names = " or ".join(_TYPE_NAMES.get(w, w) for w in wanted)
        return [(pointer, f"expected {names}, got {_short(value)}")]
    if kind == "pattern":
        if error.validator_value == DURATION_PATTERN:
            try:
                parse_duration(str(value))
            except ValueProblem as exc:
                return [(pointer, str(exc))]
        if error.validator_value == SIZE_PATTERN:
            try:
                parse_size(str(value))
            except ValueProblem as exc:
                return [(pointer, str(exc))]
        if error.validator_value == "^https?://":
            return [(pointer, f"{_short(value)} is not an http(s) URL")]
        return [(pointer, f"{_short(value)} does not match {error.validator_value}")]
    if kind == "enum":
        options = ", ".join(json.dumps(v) for v in error.validator_value)
        return [(pointer, f"{_short(value)} is not one of {options}")]
    if kind == "required":
        return [(pointer, error.message.replace("is a required property", "is required"))]
    if kind == "oneOf" and isinstance(value, dict) and "notify" in [str(p) for p in pointer]:
        targets = ("webhook", "slack", "telegram", "email", "command")
        present = [t for t in targets if t in value]
        if len(present) != 1:
            shown = " and ".join(present) if present else "none"
            return [
                (pointer, f"a delivery has exactly one target ({', '.join(targets)}); got {shown}")
            ]
    if kind in ("oneOf", "anyOf") and error.context:
        # Report the branch that got furthest: the deepest sub-error.
        best = max(error.context, key=lambda e: len(list(e.absolute_path)))
        return _explain(best)
    if kind == "not" and isinstance(value, dict) and {"json", "body"} <= set(value):
        return [(pointer, "give `json` or `body`, not both")]
    if kind in ("minimum", "maximum", "minItems", "minLength", "uniqueItems"):
        return [(pointer, error.message.replace(repr(value), _short(value)))]
    return [(pointer, error.message)]


def job_id_for(path: Path, jobs_dir: Path) -> str:
    """`jobs.d/backups/nightly.toml` -> `backups/nightly`."""
    text, root = str(path), str(jobs_dir).rstrip(os.sep)
    if text.startswith(root + os.sep):  # the common case, without pathlib's cost
        relative = text[len(root) + 1 :]
    else:
        relative = str(path.relative_to(jobs_dir))
    stem, _ = os.path.splitext(relative)
    return stem.replace(os.sep, "/")


def discover(jobs_dir: Path) -> tuple[list[Path], list[Problem]]:
    """Every job file below jobs_dir (following folder symlinks once), and unreadable entries."""
    files: list[Path] = []
    problems: list[Problem] = []
    seen_dirs: set[tuple[int, int]] = set()
    top = os.path.realpath(jobs_dir)

    def walk(folder: Path) -> None:
        try:
            st = folder.stat()
        except OSError as exc:
            problems.append(
                Problem(path=str(folder), message=f"cannot read folder: {exc.strerror}")
            )
            return
        if (st.st_dev, st.st_ino) in seen_dirs:
            problems.append(Problem(path=str(folder), message="symlink loop: folder already read"))
            return
        seen_dirs.add((st.st_dev, st.st_ino))
        if folder != jobs_dir and os.path.islink(folder):
            target = os.path.realpath(folder)
            if top == target or top.startswith(target.rstrip(os.sep) + os.sep):
                # A link to `/` or to `..` would have kron read a whole tree that is not jobs.
                problems.append(
                    Problem(
                        path=str(folder),
                        message=f"symlink loop: {target} holds the jobs directory; not read",
                    )
                )
                return
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            problems.append(
                Problem(path=str(folder), message=f"cannot list folder: {exc.strerror}")
            )
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError as exc:
                problems.append(Problem(path=entry.path, message=f"cannot read: {exc.strerror}"))
                continue
            if is_dir:
                walk(Path(entry.path))
            elif is_job_file(entry.name) and not (
                entry.name in SETTINGS_NAMES and folder == jobs_dir
            ):
                files.append(Path(entry.path))

    walk(jobs_dir)
    return files, problems


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge tables; the job's own value wins, lists are replaced whole."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@functools.cache
def _zone(key: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueProblem(
            f"unknown time zone {key!r}; use an IANA name like 'Europe/Berlin'"
        ) from None


class _Builder:
    """Turn a validated mapping into model values, collecting every problem with its field."""

    def __init__(self, doc: Document, display: str) -> None:
        self.doc = doc
        self.display = display
        self.problems: list[Problem] = []

    def problem(self, pointer: list[str | int], message: str, severity: str = "error") -> None:
        line, column = self.doc.locate(pointer)
        self.problems.append(
            Problem(
                path=self.display,
                pointer="/" + "/".join(str(p) for p in pointer),
                message=message,
                line=line,
                column=column,
                severity=severity,
            )
        )

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


def _timezone_of(
    builder: _Builder, data: Mapping[str, Any], settings: spec.Settings
) -> tuple[ZoneInfo, bool]:
    if "timezone" in data:
        return builder.convert(["timezone"], _zone, data["timezone"], settings.timezone), True
    return settings.timezone, settings.timezone_explicit


def command_line(action: spec.Action) -> str | None:
    """The command line a [policy] pattern is matched against, or None for http."""
    if isinstance(action, spec.CommandAction):
        return shlex.join(action.argv)
    if isinstance(action, spec.ShellAction):
        return action.script
    if isinstance(action, spec.DockerAction):
        cmd = action.command
        shown = cmd if isinstance(cmd, str) else shlex.join(cmd or ())
        return f"docker:{action.image} {shown}".rstrip()
    if isinstance(action, spec.AgentAction) and action.command:
        return shlex.join(action.command)
    return None


def policy_violation(action: spec.Action, policy: spec.Policy) -> str | None:
    """Why [policy] refuses this action, or None when it may run."""
    line = command_line(action)
    if line is None:
        return None
    for pattern in policy.deny:
        if fnmatch.fnmatchcase(line, pattern):
            return f"command {line!r} is denied by policy pattern {pattern!r}"
    if policy.allow is not None and not any(fnmatch.fnmatchcase(line, p) for p in policy.allow):
        return f"command {line!r} matches no policy allow pattern"
    return None


def _action(b: _Builder, data: Mapping[str, Any]) -> spec.Action | None:
    present = [key for key in spec.ACTION_KEYS if key in data]
    if not present:
        b.problem([], "no action; add one of command, shell, http, docker, agent")
        return None
    if len(present) > 1:
        b.problem([present[1]], f"two actions ({' and '.join(present)}); a job has exactly one")
        return None
    key = present[0]
    value = data[key]
    if key == "command":
        return spec.CommandAction(argv=tuple(value))
    if key == "shell":
        return spec.ShellAction(script=value)
    if key == "http":
        from kron.model.conditions import check_http_url  # only jobs that use it pay for the import

        return spec.HttpAction(
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
        return spec.DockerAction(
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
    from kron.model.conditions import check_http_url

    if "command" not in value and not ("endpoint" in value and "model" in value):
        b.problem(["agent"], "an agent needs `command` (an agent CLI) or `endpoint` and `model`")
    elif "command" in value and "endpoint" in value:
        b.problem(["agent", "endpoint"], "give `command` or `endpoint`, not both")
    return spec.AgentAction(
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


def _regex(b: _Builder, pointer: list[str | int], text: str | None) -> str | None:
    if text is None:
        return None
    try:
        re.compile(text)
    except re.error as exc:
        b.problem(pointer, f"bad regular expression: {exc}")
    return text


def _deliveries(b: _Builder, entries: list[dict[str, Any]]) -> tuple[spec.Delivery, ...]:
    out = []
    for index, entry in enumerate(entries):
        kinds = [k for k in ("webhook", "slack", "telegram", "email", "command") if k in entry]
        if len(kinds) != 1:
            continue  # the schema reported it
        on = entry.get("on", ["failure"])
        out.append(
            spec.Delivery(
                on=frozenset([on] if isinstance(on, str) else on),
                kind=kinds[0],
                target=entry[kinds[0]],
                timeout=b.duration(entry, "timeout", timedelta(seconds=10), "notify", index),
                retries=entry.get("retries", 2),
            )
        )
    return tuple(out)


def _env(b: _Builder, data: Mapping[str, Any]) -> tuple[dict[str, str], frozenset[str]]:
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
_KEEP_DEFAULT = spec.Retention(keep=1000, max_age=None)
_NO_RETRY = spec.RetryPolicy(
    attempts=1,
    backoff=spec.Backoff.EXPONENTIAL,
    delay=_RETRY_DELAY,
    max_delay=_RETRY_MAX_DELAY,
    jitter=_ZERO,
    on=frozenset({spec.Outcome.FAILED}),
)


def _retry(b: _Builder, table: Mapping[str, Any]) -> spec.RetryPolicy:
    """The [retry] table; each field it leaves out takes `_NO_RETRY`'s value."""
    return spec.RetryPolicy(
        attempts=table.get("attempts", _NO_RETRY.attempts),
        backoff=spec.Backoff(table.get("backoff", _NO_RETRY.backoff.value)),
        delay=b.duration(table, "delay", _NO_RETRY.delay, "retry"),
        max_delay=b.duration(table, "max_delay", _NO_RETRY.max_delay, "retry"),
        jitter=b.duration(table, "jitter", _NO_RETRY.jitter, "retry"),
        on=frozenset(spec.Outcome(o) for o in table["on"]) if "on" in table else _NO_RETRY.on,
    )


def build_job(
    doc: Document, data: Mapping[str, Any], *, job_id: str, settings: spec.Settings, display: str
) -> tuple[spec.Job | None, list[Problem]]:
    """Build a Job from a schema-valid mapping; return it (None on error) and every problem."""
    b = _Builder(doc, display)
    zone, zone_explicit = _timezone_of(b, data, settings)
    if "schedule" not in data:
        b.problem(
            [],
            "no schedule: runs only when triggered or by `kron run`; "
            'write schedule = "@manual" to say so',
            severity="warning",
        )
    expr = data.get("schedule", "@manual")
    schedule = b.convert(["schedule"], lambda e: parse_schedule(e, zone), expr, None)
    action = _action(b, data)
    retry = _retry(b, data["retry"]) if "retry" in data else _NO_RETRY
    wait = None
    if "wait" in data:
        from kron.model.conditions import check_condition  # only jobs that wait pay for the import

        w = data["wait"]
        wait = spec.WaitSpec(
            until=b.convert(["wait", "until"], check_condition, w["until"], ""),
            every=b.duration(w, "every", timedelta(seconds=5), "wait"),
            timeout=b.duration(w, "timeout", timedelta(minutes=5), "wait"),
            probe_timeout=b.duration(w, "probe_timeout", timedelta(seconds=5), "wait"),
            on_timeout=spec.WaitTimeoutAction(w.get("on_timeout", "fail")),
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
        "kill_grace": b.duration(data, "kill_grace", _KILL_GRACE),
        "concurrency": spec.Concurrency(data.get("concurrency", "forbid")),
        "catchup": spec.Catchup(data.get("catchup", "none")),
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
        "records": spec.Retention(
            keep=records.get("keep", 1000), max_age=b.maybe_duration(records, "max_age", "records")
        )
        if records
        else _KEEP_DEFAULT,
    }
    if action is not None and (why := policy_violation(action, settings.policy)):
        b.problem([next(k for k in spec.ACTION_KEYS if k in data)], why)
    if any(p.severity == "error" for p in b.problems) or schedule is None or action is None:
        return None, b.problems
    job = spec.Job(
        id=job_id,
        path=doc.path,
        config_sha=config_sha(doc.text, settings.defaults),
        schedule=schedule,
        timezone=zone,
        timezone_explicit=zone_explicit,
        action=action,
        **job_kwargs,
    )
    return job, _warnings(b, job, data)


def _warnings(b: _Builder, job: spec.Job, data: Mapping[str, Any]) -> list[Problem]:
    kind = job.schedule.kind
    if kind in (ScheduleKind.CRON, ScheduleKind.AT) and not job.timezone_explicit:
        b.problem(
            ["schedule"],
            "no timezone; read in UTC (set `timezone` here or in kron.toml)",
            severity="warning",
        )
    interval = job.schedule.min_interval()
    if (
        job.timeout
        and interval
        and job.timeout > interval
        and job.concurrency is spec.Concurrency.FORBID
    ):
        b.problem(
            ["timeout"],
            f"timeout is longer than the {interval} between slots; slots will be skipped",
            severity="warning",
        )
    if kind is ScheduleKind.AT and job.schedule.next_fire(datetime.now(UTC)) is None:
        b.problem(["schedule"], "this @at time is in the past; the job will never fire", "warning")
    if job.secret_env:
        # Secrets must not leak through messages built from values.
        secrets = [job.env[name] for name in job.secret_env if job.env[name]]
        b.problems = [_mask(p, secrets) for p in b.problems]
    return b.problems


def _mask(problem: Problem, secrets: Iterable[str]) -> Problem:
    message = problem.message
    for value in secrets:
        message = message.replace(value, "***")
    return Problem(
        path=problem.path,
        pointer=problem.pointer,
        message=message,
        line=problem.line,
        column=problem.column,
        severity=problem.severity,
    )


def config_sha(text: str, defaults: Mapping[str, Any]) -> str:
    """A short hash of a job definition, carried by its run records: the file as committed
    (so it matches what a reviewer saw) and the kron.toml defaults merged under it."""
    digest = hashlib.sha256(text.encode())
    digest.update(_defaults_digest(defaults))
    return digest.hexdigest()[:16]


_DEFAULTS_DIGESTS: dict[int, tuple[Mapping[str, Any], bytes]] = {}


def _defaults_digest(defaults: Mapping[str, Any]) -> bytes:
    """The defaults' digest, computed once per settings object, not once per job file."""
    known = _DEFAULTS_DIGESTS.get(id(defaults))
    if known is not None and known[0] is defaults:
        return known[1]
    canonical = json.dumps(defaults, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).digest()
    _DEFAULTS_DIGESTS.clear()
    _DEFAULTS_DIGESTS[id(defaults)] = (defaults, digest)
    return digest


def _problems_from_schema(doc: Document, display: str, name: str, data: Any) -> list[Problem]:
    problems = []
    for pointer, message in schema_errors(name, data):
        line, column = doc.locate(pointer)
        problems.append(
            Problem(
                path=display,
                pointer="/" + "/".join(str(p) for p in pointer),
                message=message,
                line=line,
                column=column,
            )
        )
    return problems


def load_settings(jobs_dir: Path) -> tuple[spec.Settings, list[Problem]]:
    """Read kron.toml (or kron.yaml); defaults apply when there is none."""
    for name in SETTINGS_NAMES:
        path = jobs_dir / name
        if path.exists():
            break
    else:
        return spec.Settings(), []
    refused = refusals(path, root=jobs_dir)
    if refused:
        return spec.Settings(path=path), [Problem(path=str(path), message=m) for m in refused]
    try:
        doc = read_document(path, max_size=DEFAULT_MAX_FILE_SIZE)
    except SpecError as exc:
        return spec.Settings(path=path), exc.problems
    display = str(path)
    problems = _problems_from_schema(doc, display, "kron", doc.data)
    data = doc.data
    if problems:
        return spec.Settings(path=path), problems
    defaults = data.get("defaults", {})
    for pointer, message in schema_errors("job", defaults):
        line, column = doc.locate(["defaults", *pointer])
        problems.append(
            Problem(
                path=display,
                pointer="/defaults/" + "/".join(str(p) for p in pointer),
                message=message,
                line=line,
                column=column,
            )
        )
    for key in ("schedule", *spec.ACTION_KEYS):
        if key in defaults:
            line, column = doc.locate(["defaults", key])
            problems.append(
                Problem(
                    path=display,
                    pointer=f"/defaults/{key}",
                    message=f"`{key}` belongs in each job file, not in [defaults]",
                    line=line,
                    column=column,
                )
            )
    b = _Builder(doc, display)
    zone = b.convert(["timezone"], _zone, data.get("timezone", "UTC"), ZoneInfo("UTC"))
    policy = data.get("policy", {})
    records_dir = data.get("records_dir")
    socket = data.get("control_socket")
    settings = spec.Settings(
        path=path,
        timezone=zone,
        timezone_explicit="timezone" in data,
        max_concurrent=data.get("max_concurrent"),
        records_dir=(jobs_dir / records_dir) if records_dir else None,
        control_socket=(jobs_dir / socket) if socket else None,
        metrics=data.get("metrics"),
        shutdown_grace=b.duration(data, "shutdown_grace", timedelta(seconds=30)),
        max_file_size=b.convert(
            ["max_file_size"], parse_size, data.get("max_file_size", "1MiB"), DEFAULT_MAX_FILE_SIZE
        ),
        max_runs_per_day=data.get("max_runs_per_day"),
        max_tokens_per_day=data.get("max_tokens_per_day"),
        defaults=defaults,
        policy=spec.Policy(
            deny=tuple(policy.get("deny", ())),
            allow=tuple(policy["allow"]) if "allow" in policy else None,
        ),
    )
    secrets = _secrets_in(defaults)
    return settings, [_mask(p, secrets) for p in problems + b.problems]


def load_job(
    path: Path,
    *,
    jobs_dir: Path,
    settings: spec.Settings,
    job_id: str | None = None,
    folders_seen: dict[str, list[str]] | None = None,
    trust: Trust | None = None,
) -> tuple[spec.Job, list[Problem]]:
    """Load one job file; return the Job and its warnings, or raise SpecError with every error.

    `job_id`, `folders_seen` and `trust` let a caller loading many files share work between
    them.
    """
    display = str(path)
    trust = trust or Trust.current()
    vet = None
    if trust.enabled:
        in_folders = folder_refusals(path, root=jobs_dir, trust=trust, folders_seen=folders_seen)
        if in_folders:  # not even opened: whoever can write the folder may have swapped it
            refused = refusals(path, trust=trust) + in_folders
            raise SpecError([Problem(path=display, message=m) for m in refused])
        vet = functools.partial(_vet, path, trust)
    doc = read_document(path, max_size=settings.max_file_size, vet=vet)
    # Errors quote values too (`expected a string, got 12345`): mask secrets in every message.
    secrets = _secrets_in(doc.data, settings.defaults)
    problems = _problems_from_schema(doc, display, "job", doc.data)
    if problems:
        raise SpecError([_mask(p, secrets) for p in problems])
    data = _merge(settings.defaults, doc.data) if settings.defaults else doc.data
    job, found = build_job(
        doc, data, job_id=job_id or job_id_for(path, jobs_dir), settings=settings, display=display
    )
    if secrets:
        found = [_mask(p, secrets) for p in found]
    if job is None:
        raise SpecError([p for p in found if p.severity == "error"] or found)
    return job, found


def _vet(path: Path, trust: Trust, st: os.stat_result) -> None:
    """Refuse a job file by the stat of the open file (one stat per file, and the file read)."""
    refused = stat_refusals(st, path, trust=trust)
    if refused:
        raise SpecError([Problem(path=str(path), message=m) for m in refused])


def _secrets_in(*tables: Mapping[str, Any]) -> list[str]:
    """The values of `env` entries marked secret, as messages quote them; longest first."""
    found = []
    for table in tables:
        env = table.get("env")
        for entry in env.values() if isinstance(env, dict) else ():
            if not isinstance(entry, dict) or not entry.get("secret"):
                continue
            value = entry.get("value")
            if value is not None and value != "":
                found.append(
                    value
                    if isinstance(value, str)
                    else json.dumps(value, ensure_ascii=False, default=str)
                )
    return sorted(set(found), key=len, reverse=True)


class _Linked(Protocol):
    """What the trigger graph needs of a job (a Job, or validate's summary of one)."""

    @property
    def path(self) -> Path: ...
    @property
    def triggers(self) -> tuple[str, ...]: ...


def check_graph(jobs: Mapping[str, _Linked], *, files_by_id: Mapping[str, Path]) -> list[Problem]:
    """Triggers must name known jobs and form no cycle; an unscheduled job must be triggered."""
    problems = []
    triggered: set[str] = set()
    for job in jobs.values():
        for index, target in enumerate(job.triggers):
            triggered.add(target)
            if target not in files_by_id:
                hint = difflib.get_close_matches(target, list(files_by_id), n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else ""
                problems.append(
                    Problem(
                        path=str(job.path),
                        pointer=f"/triggers/{index}",
                        message=f"unknown job {target!r}{extra}",
                    )
                )
    # Depth-first search for cycles, reported once per cycle on its first member.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in jobs[node].triggers if node in jobs else ():
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                problems.append(
                    Problem(
                        path=str(jobs[nxt].path),
                        pointer="/triggers",
                        message="trigger cycle: " + " -> ".join(cycle),
                    )
                )
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(k for k, job in jobs.items() if job.triggers):  # others end no cycle
        if node not in state:
            visit(node)
    return problems
