"""kron.toml (or kron.yaml): runner settings and the [defaults] merged under every job."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from kron.config.build import Builder, check_kubeconfig, zone_named
from kron.config.builder import integer
from kron.config.discovery import SETTINGS_NAMES
from kron.config.documents import NUL_MESSAGE, Document, nul_pointers, read_document
from kron.config.schema import problems_from_schema
from kron.config.tables import misplaced_keys
from kron.model.errors import Problem, Severity, SpecError, ValueProblem, excerpt, shorten
from kron.model.job import ACTION_KEYS
from kron.model.policy import Policy
from kron.model.secrets import Secrets
from kron.model.settings import (
    DEFAULT_MAX_FILE_SIZE,
    AgentSettings,
    ClusterSettings,
    Settings,
    WebSettings,
)
from kron.model.trust import Trust, refusals, secret_refusals
from kron.model.units import format_size, parse_size

__all__ = ["load_settings"]


def load_settings(jobs_dir: Path) -> tuple[Settings, list[Problem]]:
    """Read kron.toml (or kron.yaml); defaults apply when there is none."""
    for name in SETTINGS_NAMES:
        path = jobs_dir / name
        if path.exists():
            break
    else:
        return Settings(), []
    real, root = os.path.realpath(path), os.path.realpath(jobs_dir)
    if not real.startswith(root.rstrip(os.sep) + os.sep):  # not read, not quoted: see loader
        message = f"refused: a symlink to {shorten(real, 200)}, outside the jobs directory"
        return Settings(path=path), [Problem(path=str(path), message=message)]
    refused = refusals(path, root=jobs_dir)
    if refused:
        return Settings(path=path), [Problem(path=str(path), message=m) for m in refused]
    try:
        doc = read_document(path, max_size=DEFAULT_MAX_FILE_SIZE)
    except SpecError as exc:
        return Settings(path=path), exc.problems
    data = doc.data
    secrets = _database_secrets(doc, data.get("cluster"))
    said = {p.pointer for p in secrets}
    problems = secrets + [
        p for p in problems_from_schema(doc, "kron", data) if p.pointer not in said
    ]
    # A NUL character cannot be in a path or a name: records_dir, [defaults] env, anything.
    problems += [doc.problem(pointer, NUL_MESSAGE) for pointer in nul_pointers(data)]
    if problems:
        return Settings(path=path), problems
    defaults = data.get("defaults", {})
    problems += problems_from_schema(doc, "job", defaults, at=["defaults"])
    problems += [
        doc.problem(["defaults", key], f"`{key}` belongs in each job file, not in [defaults]")
        for key in ("schedule", *ACTION_KEYS)
        if key in defaults
    ]
    problems += [
        doc.problem(pointer, message, Severity.WARNING)
        for pointer, message in misplaced_keys("kron", data)
    ]
    b = Builder(doc)
    zone = b.convert(["timezone"], zone_named, data.get("timezone", "UTC"), ZoneInfo("UTC"))
    policy = data.get("policy", {})
    records_dir = data.get("records_dir")
    wait = data.get("wait", {})
    kubeconfig = (
        (jobs_dir / Path(wait["kubeconfig"]).expanduser()) if "kubeconfig" in wait else None
    )
    if kubeconfig is not None:
        check_kubeconfig(b, ["wait", "kubeconfig"], kubeconfig)
    socket = data.get("control_socket")
    settings = Settings(
        path=path,
        timezone=zone,
        timezone_explicit="timezone" in data,
        max_concurrent=integer(data.get("max_concurrent")),
        records_dir=(jobs_dir / records_dir) if records_dir else None,
        control_socket=(jobs_dir / socket) if socket else None,
        metrics=data.get("metrics"),
        shutdown_grace=b.duration(data, "shutdown_grace", timedelta(seconds=30)),
        max_file_size=b.convert(
            ["max_file_size"], _file_size, data.get("max_file_size", "1MiB"), DEFAULT_MAX_FILE_SIZE
        ),
        max_runs_per_day=integer(data.get("max_runs_per_day")),
        max_tokens_per_day=integer(data.get("max_tokens_per_day")),
        defaults=defaults,
        defaults_origin={key: _where(doc, ["defaults", key]) for key in defaults},
        kubeconfig=kubeconfig,
        kube_context=wait.get("context"),
        policy=Policy(
            deny=tuple(policy.get("deny", ())),
            allow=tuple(policy["allow"]) if "allow" in policy else None,
        ),
        agents=_agents(b, data.get("agents", {})),
        web=_web(b, jobs_dir, data),
        cluster=_cluster(b, jobs_dir, data["cluster"]) if "cluster" in data else None,
    )
    return settings, Secrets.in_tables(defaults).mask_problems(problems + b.problems)


# A job file is read whole into memory, and parsed there, by every load: 64 MiB is far above
# any hand-written job and below what a loader thread should ever hold.
MAX_FILE_SIZE = 64 * 1024 * 1024


def _file_size(value: str) -> int:
    size = parse_size(value)
    if size > MAX_FILE_SIZE:
        raise ValueProblem(f"{excerpt(value)} is over {format_size(MAX_FILE_SIZE)}")
    return size


def _where(doc: Document, pointer: list[str | int]) -> str:
    line, _ = doc.locate(pointer)
    return f"{doc.path}:{line}" if line is not None else str(doc.path)


def _agents(b: Builder, table: Mapping[str, Any]) -> AgentSettings:
    """`[agents]`; a folder that leaves the jobs directory is an error, and creation stays off."""
    folder = table.get("folder")
    if folder is not None:
        parts = PurePosixPath(folder).parts
        if folder.startswith("/") or ".." in parts or "\x00" in folder:
            b.problem(
                ["agents", "folder"],
                f"{folder!r} is not a folder inside the jobs directory; "
                "write a relative path such as 'agents'",
            )
            folder = None
        elif any(part.startswith(".") for part in parts if part != "."):
            b.problem(["agents", "folder"], f"{folder!r}: kron never reads hidden folders")
            folder = None
        else:
            folder = str(PurePosixPath(folder))  # `agents/` and `./agents` are `agents`
    return AgentSettings(
        folder=folder,
        max_files_per_day=table.get("max_files_per_day", 10),
        allow_run=table.get("allow_run", False),
        allow_pause=table.get("allow_pause", False),
    )


def _web(b: Builder, jobs_dir: Path, data: Mapping[str, Any]) -> WebSettings:
    """`[web]`; actions without a listener or a token are an error, so they never come on half."""
    table = data.get("web", {})
    actions = table.get("actions", False)
    token = table.get("token_file")
    token_file = jobs_dir / Path(token).expanduser() if token else None
    if actions and not data.get("metrics"):
        b.problem(
            ["web", "actions"],
            'the status page\'s actions need its listener: set metrics = "127.0.0.1:9108" '
            "at the top of kron.toml",
        )
    if actions and token_file is None:
        b.problem(
            ["web", "actions"],
            "actions need token_file: a 0600 file holding the token operators log in with",
        )
    if actions and token_file is not None:
        _check_token_file(b, token_file)
    return WebSettings(
        actions=actions,
        token_file=token_file,
        token_file_at=_where(b.doc, ["web", "token_file"]) if token else "",
    )


def _check_token_file(b: Builder, path: Path) -> None:
    """Say what is wrong with the token file. A missing one is only a warning: `kron validate`
    often runs where the host's secrets are not (CI); the daemon will not start without it."""
    pointer: list[str | int] = ["web", "token_file"]
    try:
        st = path.stat()
    except FileNotFoundError:
        b.problem(
            pointer,
            f"{str(path)!r} does not exist: the daemon will not start until it does",
            Severity.WARNING,
        )
        return
    except OSError as exc:  # a folder kron may not enter
        b.problem(pointer, f"{str(path)!r} cannot be read: {exc.strerror}")
        return
    for refusal in secret_refusals(st, path, trust=Trust.current(), label=f"token file {path}"):
        b.problem(pointer, refusal)


# Keys an operator may reach for to give the database URL in [cluster]; it is a secret.
_URL_KEYS = ("url", "uri", "dsn", "conninfo", "database_url", "password")
_LOOKS_LIKE_URL = re.compile(
    r"^\s*postgres(?:ql)?://|(?:^|\s)(?:password|host|dbname|user)\s*=", re.I
)


def _database_secrets(doc: Document, table: Any) -> list[Problem]:
    """A database URL (or password) written in [cluster]: refused, since kron.toml is committed
    and secrets do not go in the repository."""
    if not isinstance(table, Mapping):
        return []
    where = (
        "put it in the environment variable named by `url_env` (default KRON_DATABASE_URL) or "
        "in a file readable by the daemon's user only (mode 0600) named by `url_file`"
    )
    found = []
    for key, value in table.items():
        if key in _URL_KEYS:
            found.append(
                doc.problem(
                    ["cluster", key],
                    f"the database URL is a secret and kron.toml is committed: {where}",
                )
            )
        elif isinstance(value, str) and _LOOKS_LIKE_URL.search(value):
            found.append(
                doc.problem(
                    ["cluster", key],
                    f"this looks like a database URL; `{key}` names where the URL is, it does not "
                    f"hold it (secrets do not go in the repository): {where}",
                )
            )
    return found


def _cluster(b: Builder, jobs_dir: Path, table: Mapping[str, Any]) -> ClusterSettings:
    """`[cluster]`; dead_after must leave room for a few heartbeats."""
    heartbeat = b.duration(table, "heartbeat", timedelta(seconds=2), "cluster")
    dead_after = b.duration(table, "dead_after", timedelta(seconds=10), "cluster")
    if heartbeat <= timedelta(0):
        b.problem(["cluster", "heartbeat"], "must be longer than 0s")
        heartbeat = timedelta(seconds=2)
    if dead_after < heartbeat * 2:
        b.problem(
            ["cluster", "dead_after"],
            f"must be at least two heartbeats ({_seconds(heartbeat * 2)}); a node that misses "
            "one heartbeat is not dead",
        )
        dead_after = max(dead_after, heartbeat * 2)
    url_file = table.get("url_file")
    return ClusterSettings(
        url_env=table.get("url_env", "KRON_DATABASE_URL"),
        url_file=(jobs_dir / Path(url_file).expanduser()) if url_file else None,
        node=table.get("node"),
        heartbeat=heartbeat,
        dead_after=dead_after,
    )


def _seconds(span: timedelta) -> str:
    return f"{span.total_seconds():g}s"
