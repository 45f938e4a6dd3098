"""`kron new`: one job file from a few fields, checked by the daemon's loader, never over another.

`kron new` and the MCP server's `create_job` both come here, so a file an agent writes is held
to exactly what a person's is: the job schema, `[policy]`, file trust, a schedule that fires.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kron.config.discovery import SETTINGS_NAMES
from kron.config.documents import JOB_SUFFIXES, Document, parse_document
from kron.config.fmt import canonical_data, directive_line, dump
from kron.config.loader import job_of, load_job
from kron.model.errors import KronError, Problem, SpecError, UsageError
from kron.model.job import Job
from kron.model.schedule import Schedule, ScheduleKind
from kron.model.settings import Settings

__all__ = [
    "FORMATS",
    "Created",
    "Draft",
    "check_draft",
    "job_path",
    "next_fires",
    "render",
    "write_new",
]

FORMATS = {"toml": ".toml", "yaml": ".yaml"}
MAX_ID_LENGTH = 200
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True, kw_only=True, slots=True)
class Draft:
    """What `kron new` was asked for: the common fields of a job; the rest is edited by hand.

    Exactly one action: `shell`, `command`, `http_url` (with `method`), or `agent_prompt`
    (with `agent_command`, or `agent_endpoint` and `agent_model`).
    """

    id: str
    schedule: str
    shell: str | None = None
    command: tuple[str, ...] | None = None
    http_url: str | None = None
    method: str | None = None
    agent_prompt: str | None = None
    agent_command: tuple[str, ...] | None = None
    agent_endpoint: str | None = None
    agent_model: str | None = None
    agent_key_env: str | None = None
    timezone: str | None = None
    timeout: str | None = None
    retry: int | None = None
    wait: str | None = None
    notify_webhook: tuple[str, ...] = ()
    notify_telegram: tuple[str, ...] = ()
    telegram_token_env: str | None = None
    telegram_base_url: str | None = None
    notify_on: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None
    format: str = "toml"

    def data(self, spell: Callable[[str], str] = _flag) -> dict[str, Any]:
        """The job's table; KronError when the fields do not make one job.

        `spell` names a field in messages: `--http-url` for the command line, `http_url` for
        a tool's argument.
        """
        actions = [
            name
            for name in ("shell", "command", "http_url", "agent_prompt")
            if getattr(self, name) is not None
        ]
        if len(actions) != 1:
            names = ", ".join(spell(a) for a in ("shell", "command", "http_url", "agent_prompt"))
            given = f" (got {' and '.join(spell(a) for a in actions)})" if actions else ""
            raise UsageError(f"give exactly one action: {names}{given}")
        for name, needs in (
            ("method", "http_url"),
            ("agent_command", "agent_prompt"),
            ("agent_endpoint", "agent_prompt"),
            ("agent_model", "agent_prompt"),
            ("agent_key_env", "agent_prompt"),
            ("telegram_token_env", "notify_telegram"),
            ("telegram_base_url", "notify_telegram"),
        ):
            if getattr(self, name) and not getattr(self, needs):
                raise UsageError(f"{spell(name)} goes with {spell(needs)}")
        if self.notify_on and not (self.notify_webhook or self.notify_telegram):
            raise UsageError(
                f"{spell('notify_on')} goes with {spell('notify_webhook')} "
                f"or {spell('notify_telegram')}"
            )
        if self.format not in FORMATS:
            raise UsageError(f"{spell('format')} is toml or yaml, not {self.format!r}")
        data: dict[str, Any] = {"schedule": self.schedule}
        if self.description:
            data["description"] = self.description
        if self.timezone:
            data["timezone"] = self.timezone
        data.update(self._action())
        if self.timeout:
            data["timeout"] = self.timeout
        if self.retry is not None:
            data["retry"] = {"attempts": self.retry}
        if self.wait:
            data["wait"] = {"until": self.wait}
        notify = self._deliveries()
        if notify:
            data["notify"] = notify
        if self.tags:
            data["tags"] = dict(self.tags)
        return data

    def _action(self) -> dict[str, Any]:
        if self.shell is not None:
            return {"shell": self.shell}
        if self.command is not None:
            return {"command": list(self.command)}
        if self.http_url is not None:
            http = {"url": self.http_url}
            if self.method:
                http["method"] = self.method.upper()
            return {"http": http}
        agent: dict[str, Any] = {"prompt": self.agent_prompt}
        if self.agent_command is not None:
            agent["command"] = list(self.agent_command)
        if self.agent_endpoint:
            agent["endpoint"] = self.agent_endpoint
        if self.agent_model:
            agent["model"] = self.agent_model
        if self.agent_key_env:
            agent["api_key_env"] = self.agent_key_env
        return {"agent": agent}

    def _deliveries(self) -> list[dict[str, Any]]:
        on: dict[str, Any] = {}
        if self.notify_on:
            on["on"] = self.notify_on[0] if len(self.notify_on) == 1 else list(self.notify_on)
        found: list[dict[str, Any]] = [{**on, "webhook": url} for url in self.notify_webhook]
        for chat in self.notify_telegram:
            # A token never goes in the file: it is read from the daemon's environment.
            telegram: dict[str, Any] = {
                "chat_id": chat,
                "bot_token_env": self.telegram_token_env or "TELEGRAM_BOT_TOKEN",
            }
            if self.telegram_base_url:
                telegram["base_url"] = self.telegram_base_url
            found.append({**on, "telegram": telegram})
        return found


def job_path(job_id: str, jobs_dir: Path, fmt: str, *, within: str | None = None) -> Path:
    """The file a new job's id names (`a/b` -> `jobs.d/a/b.toml`); KronError for an id that
    leaves the jobs directory, or `within` (a folder of it, `.` for all), or hides its file.
    """
    if not job_id:
        raise UsageError("the job id is empty")
    if len(job_id) > MAX_ID_LENGTH:
        raise UsageError(f"the job id is {len(job_id)} characters long; at most {MAX_ID_LENGTH}")
    if job_id.startswith("/") or "\\" in job_id:
        raise UsageError(f"job id {job_id!r}: an id is a path relative to the jobs directory")
    parts = job_id.split("/")
    if ".." in parts:
        raise UsageError(f"job id {job_id!r}: `..` would leave the jobs directory")
    for part in parts:
        if not _PART.fullmatch(part):
            raise UsageError(
                f"job id {job_id!r}: {part!r} is not a file name kron reads; use letters, "
                "digits and `_ . @ + -`, not starting with `.` or `-`, parts separated by `/`"
            )
    if job_id.endswith(JOB_SUFFIXES):
        raise UsageError(f"job id {job_id!r}: give the id without its extension")
    path = jobs_dir / (job_id + FORMATS.get(fmt, ".toml"))
    if len(parts) == 1 and path.name in SETTINGS_NAMES:
        raise UsageError(f"job id {job_id!r}: {path.name} is kron's settings file")
    if within is not None:
        if within != "." and not job_id.startswith(within + "/"):
            suggestion = f"{within}/{parts[-1]}"
            raise UsageError(
                f"job id {job_id!r} is outside the folder agents may write ({within}/ in "
                f"kron.toml [agents]); use an id such as {suggestion!r}"
            )
        # A folder on the way may be a symlink out of the allowed one: judge where it leads.
        allowed = (jobs_dir / within).resolve()
        if not path.parent.resolve().is_relative_to(allowed):
            raise UsageError(f"job id {job_id!r}: {path.parent} leads outside {jobs_dir / within}")
    return path


def render(
    data: Mapping[str, Any], fmt: str, *, path: Path | None = None, schema_at: str | None = None
) -> str:
    """The job's file text, as `kron fmt` writes it; with `schema_at` (a folder or URL of the
    schemas), the editor's schema line for the file at `path` first."""
    text = dump(canonical_data(data, "job"), fmt)
    if schema_at is None or path is None:
        return text
    return directive_line(path, schema_at, yaml_syntax=fmt == "yaml") + "\n" + text


@dataclass(frozen=True, kw_only=True, slots=True)
class Created:
    """A job file checked (and, unless only printed, written)."""

    path: Path
    job: Job
    text: str
    warnings: list[Problem]


def check_draft(
    text: str, *, path: Path, job_id: str, jobs_dir: Path, settings: Settings
) -> tuple[Job, list[Problem]]:
    """Load a job file's text as the daemon would load the file at `path` (nothing is written);
    SpecError with every problem, which names `path`, its line and field."""
    doc = parse_document(path, text.encode("utf-8"), max_size=settings.max_file_size)
    job, warnings = job_of(doc, jobs_dir=jobs_dir, settings=settings, job_id=job_id)
    _require_a_fire(job, path, text)
    return job, warnings


def write_new(
    draft: Draft,
    *,
    jobs_dir: Path,
    settings: Settings,
    within: str | None = None,
    spell: Callable[[str], str] = _flag,
    schema_at: str | None = None,
) -> Created:
    """Write the draft's job file, checked by the daemon's loader first, atomically, and never
    over an existing file (of either format: `a.toml` and `a.yaml` would be one job).

    Args:
        draft: the fields.
        jobs_dir: the jobs directory.
        settings: its kron.toml ([policy], defaults, the size limit).
        within: the folder of the jobs directory the id must lie in (`.`: anywhere).
        spell: how messages name a field (`--http-url`, or a tool's `http_url`).
        schema_at: put the editor's schema line first, for the schemas in this folder (or
            at this URL).
    """
    data = draft.data(spell)
    path = job_path(draft.id, jobs_dir, draft.format, within=within)
    text = render(data, draft.format, path=path, schema_at=schema_at)
    return _write_text(text, path=path, job_id=draft.id, jobs_dir=jobs_dir, settings=settings)


def _write_text(
    text: str, *, path: Path, job_id: str, jobs_dir: Path, settings: Settings
) -> Created:
    """Write a job file's text to `path` once the loader accepts it there; never overwrite."""
    size = len(text.encode("utf-8"))
    if size > settings.max_file_size:  # refused before a byte reaches the disk
        message = f"file is {size} bytes, over the {settings.max_file_size}-byte limit"
        raise SpecError([Problem(path=str(path), message=message)])
    stem = path.with_suffix("")
    for suffix in JOB_SUFFIXES:
        twin = stem.with_name(stem.name + suffix)
        if os.path.lexists(twin):
            raise KronError(f"{twin} already exists (job {job_id!r}); nothing written")
    made = _make_folders(path.parent, jobs_dir)
    # Hidden, so never read as a job; the suffix kept, so parsed as the format it is.
    tmp = path.with_name(f".{path.stem}.kron-new-{secrets.token_hex(4)}{path.suffix}")
    linked = False
    try:
        _write_private(tmp, text)
        # The loader reads the bytes on disk, so trust (owner, mode, folders) is judged on the
        # very file that will be linked into place; a hidden name is never read as a job.
        try:
            job, warnings = load_job(tmp, jobs_dir=jobs_dir, settings=settings, job_id=job_id)
        except SpecError as exc:
            raise SpecError([_renamed(p, path) for p in exc.problems]) from None
        job = dataclasses.replace(job, path=path)
        _require_a_fire(job, path, text)
        _link_new(tmp, path, job_id)
        linked = True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if not linked:  # leave the tree as it was
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    folder.rmdir()
    _sync_folder(path.parent)
    return Created(path=path, job=job, text=text, warnings=[_renamed(p, path) for p in warnings])


def next_fires(schedule: Schedule, after: datetime, n: int) -> list[datetime]:
    """The next `n` fire times after `after` (fewer when the schedule stops), in UTC."""
    times: list[datetime] = []
    when = after
    while len(times) < n:
        nxt = schedule.next_fire(when)
        if nxt is None:
            break
        times.append(nxt)
        when = nxt
    return times


def _require_a_fire(job: Job, path: Path, text: str) -> None:
    """A new job whose schedule never fires again is a mistake (an `@at` in the past)."""
    if job.schedule.kind in (ScheduleKind.MANUAL, ScheduleKind.REBOOT):
        return
    if job.schedule.next_fire(datetime.now(job.timezone)) is None:
        doc = Document(path, {}, text)
        message = f"{job.schedule.expr!r} never fires after now; nothing written"
        raise SpecError([doc.problem(["schedule"], message)])


def _renamed(problem: Problem, path: Path) -> Problem:
    return dataclasses.replace(problem, path=str(path))


def _make_folders(folder: Path, jobs_dir: Path) -> list[Path]:
    """Create the missing folders down to `folder`; return those made (to undo on failure)."""
    missing = []
    here = folder
    while not here.exists() and here != jobs_dir:
        missing.append(here)
        here = here.parent
    if not jobs_dir.is_dir():
        raise KronError(f"no jobs directory at {jobs_dir} (give --jobs-dir)")
    made: list[Path] = []
    for new in reversed(missing):
        try:
            new.mkdir(mode=0o755)  # never group- or world-writable: kron would refuse it
        except OSError as exc:
            for undo in reversed(made):
                with contextlib.suppress(OSError):
                    undo.rmdir()
            raise KronError(f"cannot create folder {new}: {exc.strerror or exc}") from None
        made.append(new)
    return made


def _write_private(tmp: Path, text: str) -> None:
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise KronError(f"cannot write in {tmp.parent}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _link_new(tmp: Path, path: Path, job_id: str) -> None:
    """Give the written file its name only if nobody has taken it meanwhile."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise KronError(f"{path} already exists (job {job_id!r}); nothing written") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
            raise KronError(f"cannot create {path}: {exc.strerror or exc}") from None
        # No hard links here (some network and FUSE file systems): O_EXCL still never
        # overwrites, though a reader may catch the file half-written and reload it after.
        text = tmp.read_text(encoding="utf-8")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            raise KronError(f"{path} already exists (job {job_id!r}); nothing written") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
