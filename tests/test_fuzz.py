"""Fuzzing the loader: generated job files and byte-mutated examples never make it raise.

Two generators: job tables built from the JSON Schema's own fields (each field a plausible
value, a hostile one, or one of the wrong type), and the example files of `jobs.d/` with
bytes flipped, inserted, deleted and spliced. For each file, `kron validate` (the CLI,
in-process) and the daemon's loader (a Catalog, read in a worker thread and adopted, as a
reload does) must not raise and must reach the same verdict; and a job that loads must not
make the computations the runner does with it at fire time raise.

CI runs a fixed, modest number of examples (the `ci` profile, derandomized, so every run is
the same run); `scripts/fuzz.sh` runs the `long` profile with random examples.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import string
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import tomli_w
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kron.cli.main import main
from kron.config.catalog import Catalog
from kron.config.schema import load_schema
from kron.model.conditions import TcpProbe, parse_condition
from kron.model.job import HttpAction, Job
from kron.model.schedule import jitter_offset
from kron.model.times import format_time
from kron.notify.healthcheck import ping_url

EXAMPLES = Path(__file__).parent.parent / "jobs.d"

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=timedelta(seconds=5),  # one example loads a file twice; a loaded CI box is slow
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("KRON_FUZZ_EXAMPLES", "20000")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile(os.environ.get("KRON_FUZZ_PROFILE", "ci"))

# -- values ------------------------------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud7ff",
    "\u2028",
    "\x1b[31m",
    "=",
    "A=B",
    "../../etc/passwd",
    "/",
    "America",
    "UTC",
    "Europe/Berlin",
    "x" * 300,
    "http://[::1",
    "http://xn--a.example/",
    "http://127.0.0.1:9/",
    "http://a\x7f/",
    "https://user@host:99999/",
    "tcp://[::1:80",
    "tcp://127.0.0.1:9",
    "file:/tmp",
    "cmd:true",
    "docker:x:healthy",
    "not(" * 20 + "file:/x" + ")" * 20,
    "(" * 600,
    "a{99999999999}",
    "@every 0s",
    "@every 99999999999999d",
    "@at 0001-01-01T00:00",
    "@at 9999-12-31T23:59",
    "@at 2027-06-07T09:00",
    "@at 2027-06-07T09:00+14:00",
    "* * * * *",
    "*/0 * * * *",
    "0 0 31 2 *",
    "0 0 * * 5#9",
    "1-59/99999999999999999999 * * * *",
    "@reboot",
    "@manual",
    "0s",
    "1" + "0" * 400 + "s",
    "99999999999999d",
    "3650d",
    "100ms",
    "99999999999999999999GiB",
    "1MiB",
    "64KiB",
    "027",
]
SPECIAL_INTS = [0, -1, 1, 255, 256, 65535, 65536, 2**31, 2**63 - 1, 10**30]
SPECIAL_FLOATS = [0.0, 1.0, 1.5, -0.0, float("nan"), float("inf"), 1e308]

texts = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=40),
    st.text(alphabet=string.digits + "msdhw.", max_size=12),  # near-durations
)
scalars = st.one_of(
    texts,
    st.sampled_from(SPECIAL_INTS),
    st.integers(),
    st.sampled_from(SPECIAL_FLOATS),
    st.booleans(),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


def _for(node: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values for one schema node: what it allows, near misses, and anything at all."""
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    options: list[st.SearchStrategy[Any]] = [json_values]
    if "enum" in node:
        options.append(st.sampled_from(node["enum"]))
    for branch in node.get("oneOf", []) + node.get("anyOf", []):
        options.append(_for(branch, defs, depth + 1))
    kind = node.get("type")
    if kind == "string":
        options += [texts, texts]
    elif kind == "integer":
        low = node.get("minimum", -(2**63))
        options += [st.sampled_from(SPECIAL_INTS), st.integers(low - 2, low + 1000)]
    elif kind == "array":
        item = _for(node.get("items", {}), defs, depth + 1)
        options.append(st.lists(item, max_size=6))
    elif kind == "object" and depth < 3:
        props = node.get("properties", {})
        if props:
            options.append(
                st.fixed_dictionaries(
                    {}, optional={k: _for(v, defs, depth + 1) for k, v in props.items()}
                )
            )
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            options.append(st.dictionaries(texts, _for(extra, defs, depth + 1), max_size=4))
    return st.one_of(options)


def _any_tables() -> st.SearchStrategy[dict[str, Any]]:
    schema = load_schema("job")
    defs = schema["$defs"]
    fields = {name: _for(node, defs) for name, node in schema["properties"].items()}
    # Mostly a schedule and an action that load, so the other fields get built and checked.
    required = {
        "schedule": st.one_of(st.just("@daily"), fields.pop("schedule")),
        "shell": st.one_of(st.just("true"), fields.pop("shell")),
    }
    base = st.fixed_dictionaries(required, optional=fields)
    unknown = st.dictionaries(texts, json_values, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, base, unknown)


URLS = ["http://127.0.0.1:9/", "https://example.org/x?y=1", "http://[::1]:8080/", "http://h/"]
ACTIONS = ("command", "shell", "http", "docker", "agent")
_PLAIN = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))


_DURATIONS = st.builds(
    lambda n, u: f"{n}{u}", st.integers(0, 10**4), st.sampled_from(["ms", "s", "m", "h", "d", "w"])
)
_SIZES = st.builds(
    lambda n, u: f"{n}{u}", st.integers(0, 2048), st.sampled_from(["", "B", "KiB", "MiB"])
)
_TEXT = st.text(_PLAIN, max_size=30)
_DELIVERY_TARGETS = {
    "webhook": st.one_of(
        st.sampled_from(URLS),
        st.fixed_dictionaries(
            {"url": st.sampled_from(URLS)},
            optional={"headers": st.dictionaries(st.sampled_from(["X-A", "Authorization"]), _TEXT)},
        ),
    ),
    "slack": st.sampled_from(URLS),
    "telegram": st.fixed_dictionaries(
        {"chat_id": st.one_of(st.integers(), _TEXT)},
        optional={"base_url": st.sampled_from(URLS), "bot_token": _TEXT},
    ),
    "email": st.fixed_dictionaries(
        {"to": st.lists(_TEXT, min_size=1, max_size=2), "host": _TEXT},
        optional={"port": st.integers(1, 65535)},
    ),
    "command": st.lists(_TEXT, min_size=1, max_size=3),
}
# Fields whose valid values a schema type does not describe (a grammar, an existing name, one
# of several tables): drawn from values kron takes, so that the job loads and its fire-time
# computations run.
_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "timezone": st.sampled_from(
        ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
    ),
    "umask": st.sampled_from(["022", "0027", "777"]),
    "env_file": st.nothing(),  # it must exist
    "wait.until": st.sampled_from(
        [
            "file:/tmp",
            "tcp://127.0.0.1:9",
            "http://127.0.0.1:9/health==200",
            "https://[::1]:8443/x==2xx",
            "and(file:/tmp, not(cmd:false), or(docker:web:healthy, tcp://localhost:5432))",
        ]
    ),
    "docker.volumes": st.lists(st.sampled_from(["/a:/b", "./x:/y:ro"]), max_size=2),
    "agent.api_key_env": st.just("API_KEY"),
    "retry.on": st.sampled_from([["failed"], ["timeout"], ["failed", "timeout"]]),
    "notify": st.lists(
        st.sampled_from(sorted(_DELIVERY_TARGETS)).flatmap(
            lambda kind: st.fixed_dictionaries(
                {kind: _DELIVERY_TARGETS[kind]},
                optional={"timeout": _DURATIONS, "retries": st.integers(0, 5)},
            )
        ),
        max_size=3,
    ),
    "agent": st.one_of(
        st.fixed_dictionaries(
            {"prompt": _TEXT.filter(bool), "command": st.just(["llm", "{prompt}"])}
        ),
        st.fixed_dictionaries(
            {
                "prompt": _TEXT.filter(bool),
                "endpoint": st.sampled_from(URLS),
                "model": st.just("m"),
            },
            optional={"max_tokens": st.integers(1, 10**9), "request_timeout": _DURATIONS},
        ),
    ),
}


def _valid(node: dict[str, Any], defs: dict[str, Any], at: str = "") -> st.SearchStrategy[Any]:
    """Values the schema accepts, so that the builder's own checks and the fire-time
    computations get exercised, not only the schema's refusals."""
    if at in _FIELDS:
        return _FIELDS[at]
    if "$ref" in node:
        return _DURATIONS if node["$ref"].endswith("/duration") else _SIZES
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "oneOf" in node:
        return st.one_of([_valid(branch, defs, at) for branch in node["oneOf"]])
    kind = node.get("type")
    if node.get("pattern") == "^https?://":
        return st.sampled_from(URLS)
    if kind == "string":
        return st.text(_PLAIN, min_size=node.get("minLength", 0), max_size=30)
    if kind == "integer":
        low = node.get("minimum", 0)
        return st.integers(low, node.get("maximum", low + 10**6))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        items = _valid(node.get("items", {}), defs, at + "[]")
        return st.lists(items, min_size=node.get("minItems", 0), max_size=4)
    if kind == "object" and "properties" in node:
        props = node["properties"]
        fields = {k: _valid(v, defs, f"{at}.{k}".lstrip(".")) for k, v in props.items()}
        required = {k: fields.pop(k) for k in node.get("required", [])}
        return st.fixed_dictionaries(required, optional=fields)
    if kind == "object":
        return st.dictionaries(st.text(min_size=1, max_size=10), _TEXT, max_size=3)
    return json_values


def _mostly_valid_tables() -> st.SearchStrategy[dict[str, Any]]:
    schema = load_schema("job")
    defs, props = schema["$defs"], schema["properties"]
    optional = {k: _valid(v, defs, k) for k, v in props.items() if k not in (*ACTIONS, "schedule")}
    schedules = st.sampled_from(
        ["@daily", "*/10 * * * * *", "@every 90s", "@at 2027-06-07T09:00", "@manual", "@reboot"]
    )
    action = st.sampled_from(ACTIONS).flatmap(
        lambda key: st.fixed_dictionaries({key: _valid(props[key], defs, key)})
    )
    base = st.fixed_dictionaries({"schedule": schedules}, optional=optional)
    return st.builds(lambda a, b: {**a, **b}, base, action)


def _serialised(table: dict[str, Any], as_yaml: bool) -> bytes:
    if as_yaml:
        return yaml.safe_dump(table, allow_unicode=True).encode("utf-8", "surrogatepass")
    try:
        return tomli_w.dumps(table).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):  # TOML has no null, no key that is not a string
        return yaml.safe_dump(table, allow_unicode=True).encode("utf-8", "surrogatepass")


# -- the checks ----------------------------------------------------------------------------------

NOW = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


def _validate(jobs_dir: Path) -> tuple[set[tuple[Any, ...]], list[str]]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["validate", "--jobs-dir", str(jobs_dir), "--format", "json"], out=out, err=err)
    assert code in (0, 1), err.getvalue()
    assert "Traceback" not in err.getvalue()
    report = json.loads(out.getvalue())
    errors = {(e["path"], e["line"], e["field"], e["message"]) for e in report["errors"]}
    return errors, sorted(job["id"] for job in report["jobs"])


def _daemon(jobs_dir: Path) -> tuple[set[tuple[Any, ...]], dict[str, Job]]:
    """What a daemon holds after reloading `jobs_dir`: read in a worker thread, then adopted."""
    catalog = Catalog(jobs_dir)

    async def reload() -> None:
        reading = await asyncio.to_thread(catalog.read, lambda c: c.scan())
        assert catalog.adopt(reading) is not None

    asyncio.run(reload())
    errors = {(p.path, p.line, p.field, p.message) for p in catalog.problems if p.is_error}
    # What it schedules: a fresh catalog has no last good version of an invalid file, and a
    # trigger problem (a check of the whole set) does not unschedule the job that has it.
    return errors, dict(catalog.active)


def _fire(job: Job) -> list[object]:
    """What the runner computes with a loaded job; none of it may raise."""
    seen: list[object] = []
    for now in (NOW, NOW + timedelta(days=3650), datetime(1970, 1, 2, tzinfo=UTC)):
        slot = job.schedule.next_fire(now)
        if slot is None:
            continue
        due = slot + jitter_offset(job.id, job.jitter)
        seen += [format_time(slot), due + (job.timeout or timedelta(0)) + job.kill_grace]
        seen.append(job.schedule.min_interval())
        seen += list(zip(range(3), job.schedule.slots_between(NOW, slot), strict=False))
    seen += [NOW - h for h in (job.starting_deadline, job.records.max_age) if h is not None]
    retry = job.retry
    first = retry.delay.total_seconds() * 2 ** (retry.attempts - 1)
    seen += [min(first, retry.max_delay.total_seconds()), NOW + retry.jitter]
    if job.wait is not None:
        condition = parse_condition(job.wait.until)
        seen += [NOW + job.wait.timeout + job.wait.every]
        seen += [host.encode("idna") for host in _tcp_hosts(condition)]  # as the resolver does
    if isinstance(job.action, HttpAction):
        content: dict[str, Any] = {}
        if job.action.json is not None:
            content["json"] = job.action.json
        elif job.action.body is not None:
            content["content"] = job.action.body.encode()
        url, headers = job.action.url, job.action.headers
        seen.append(httpx.Request(job.action.method, url, headers=headers, **content))
    if job.healthcheck is not None:
        seen += [httpx.Request("GET", ping_url(job.healthcheck, k)) for k in ("", "start", "fail")]
    for delivery in job.notify:
        target = delivery.target
        if isinstance(target, str):  # a webhook or Slack URL
            seen.append(httpx.Request("POST", target, json={}))
        elif isinstance(target, dict) and "url" in target:
            headers = dict(target.get("headers", {}))
            seen.append(httpx.Request("POST", target["url"], headers=headers, json={}))
        elif isinstance(target, dict) and "chat_id" in target:
            base = target.get("base_url", "https://api.telegram.org").rstrip("/")
            message = {"chat_id": target["chat_id"], "text": "x"}
            seen.append(httpx.Request("POST", f"{base}/bot0:token/sendMessage", json=message))
    return seen


def _tcp_hosts(condition: Any) -> list[str]:
    if isinstance(condition, TcpProbe):
        return [condition.host]
    items = getattr(condition, "items", None) or [getattr(condition, "item", None)]
    return [host for item in items if item is not None for host in _tcp_hosts(item)]


def _check(name: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as top:
        jobs_dir = Path(top) / "jobs.d"
        jobs_dir.mkdir()
        (jobs_dir / name).write_bytes(content)
        validated, valid_ids = _validate(jobs_dir)
        loaded, jobs = _daemon(jobs_dir)
        assert validated == loaded
        assert valid_ids == sorted(jobs)
        event("loads" if jobs else "refused")  # scripts/fuzz.sh prints how many of each
        for job in jobs.values():
            _fire(job)


# -- the fuzz tests ------------------------------------------------------------------------------


@settings(PROFILE)
@given(table=st.one_of(_any_tables(), _mostly_valid_tables()), as_yaml=st.booleans())
def test_generated_job_files_never_make_the_loader_raise_and_both_loaders_agree(
    table: dict[str, Any], as_yaml: bool
) -> None:
    _check("job.yaml" if as_yaml else "job.toml", _serialised(table, as_yaml))


def _examples() -> list[tuple[str, bytes]]:
    return sorted(
        (path.name, path.read_bytes())
        for path in EXAMPLES.rglob("*")
        if path.suffix in (".toml", ".yaml", ".yml") and path.name != "kron.toml"
    )


SPLICES = [s.encode("utf-8", "surrogatepass") for s in HOSTILE_TEXT[:40]] + [
    b"\n[x]\n",
    b"\n? [a]\n: 1\n",
    b"\n1: 2\n",
    b"&a [*a]",
    b"!!binary",
    b"\xff\xfe",
    b'"""',
    b"'",
    b"\n  - ",
    b"= 1e999\n",
]


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name, original = draw(st.sampled_from(_examples()))
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "insert", "delete", "splice", "repeat"]))
        if how == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif how == "splice":
            data[at:at] = draw(st.sampled_from(SPLICES))
        else:  # a line repeated, as a generator gone wrong writes it
            line = bytes(data[at : at + 30])
            data[at:at] = line * draw(st.integers(2, 200))
    return name, bytes(data)


@settings(PROFILE)
@given(example=_mutated())
def test_byte_mutations_of_the_example_files_never_make_the_loader_raise(
    example: tuple[str, bytes],
) -> None:
    _check(*example)


def test_the_example_files_load_as_they_are() -> None:
    for name, content in _examples():
        with tempfile.TemporaryDirectory() as top:
            jobs_dir = Path(top) / "jobs.d"
            jobs_dir.mkdir()
            (jobs_dir / name).write_bytes(content)
            validated, valid_ids = _validate(jobs_dir)
            assert validated == set()
            assert valid_ids == [name.rsplit(".", 1)[0]]
