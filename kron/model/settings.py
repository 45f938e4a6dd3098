"""Runner settings: what kron.toml (or kron.yaml) says, typed; defaults when there is none."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kron.model.policy import Policy

__all__ = ["DEFAULT_MAX_FILE_SIZE", "AgentSettings", "ClusterSettings", "Settings", "WebSettings"]

DEFAULT_MAX_FILE_SIZE = 1024 * 1024
_NO_POLICY = Policy()  # shared: every Settings without [policy] holds the same one


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentSettings:
    """`[agents]`: what `kron mcp` lets an agent change; nothing until an operator opts in."""

    folder: str | None = None  # below the jobs directory, `/`-separated; None: no creation
    max_files_per_day: int = 10  # job files created through MCP per UTC day
    allow_run: bool = False
    allow_pause: bool = False  # pause_job and resume_job


_NO_AGENTS = AgentSettings()


@dataclass(frozen=True, kw_only=True, slots=True)
class WebSettings:
    """`[web]`: what the status page lets an operator do; read-only until an operator opts in."""

    actions: bool = False  # run now, pause, resume, cancel, for whoever holds the token
    token_file: Path | None = None
    token_file_at: str = ""  # where kron.toml names it (`kron.toml:12`), for messages


_READ_ONLY_WEB = WebSettings()


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterSettings:
    """`[cluster]`: several nodes run one job set, coordinated by a PostgreSQL database.

    The database URL itself is never here (kron.toml is committed): it is read from the
    environment variable `url_env`, or from the file `url_file` (mode 0600).
    """

    url_env: str = "KRON_DATABASE_URL"
    url_file: Path | None = None
    node: str | None = None  # None: $KRON_NODE, else the host name
    heartbeat: timedelta = timedelta(seconds=2)
    dead_after: timedelta = timedelta(seconds=10)


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Runner settings from kron.toml; defaults apply when the file is absent."""

    path: Path | None = None
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    timezone_explicit: bool = False
    max_concurrent: int | None = None
    records_dir: Path | None = None
    control_socket: Path | None = None
    metrics: str | None = None
    shutdown_grace: timedelta = timedelta(seconds=30)
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    max_runs_per_day: int | None = None
    max_tokens_per_day: int | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # Where each [defaults] field is written (`kron.toml:7`), for messages about a job that
    # takes it: the job file does not show the value.
    defaults_origin: Mapping[str, str] = field(default_factory=dict)
    kubeconfig: Path | None = None  # [wait] kubeconfig: for k8s: probes of jobs without their own
    kube_context: str | None = None  # [wait] context
    policy: Policy = _NO_POLICY
    agents: AgentSettings = _NO_AGENTS
    web: WebSettings = _READ_ONLY_WEB
    cluster: ClusterSettings | None = None  # None: one host, files only
