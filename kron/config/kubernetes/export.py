"""`kron export kubernetes`: a jobs directory as CronJob manifests and the files they need, and a
check that committed manifests are what the job files export now.

The jobs are loaded by the daemon's own loader; one that a CronJob cannot carry is refused with
its reason, and the others are exported. Output is deterministic (sorted, stable names, no
times or paths of the machine that ran it), so a CI job can diff it against the repository.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kron.config.build import merge_defaults
from kron.config.catalog import LoadResult, load_dir
from kron.config.documents import Document, read_document
from kron.config.kubernetes.carry import Carry, Finding, Kind, carry
from kron.config.kubernetes.manifests import (
    Mode,
    Plan,
    config_map,
    cron_job,
    env_file_secret,
)
from kron.config.kubernetes.names import config_map_keys, label_value, unique_names
from kron.config.kubernetes.render import HEADER, kustomization, to_yaml
from kron.config.loader import config_sha
from kron.config.schema import problems_from_schema
from kron.model.errors import Findings, Problem, Severity, SpecError, UsageError
from kron.model.job import DeliveryKind, DockerAction, Job

__all__ = ["CONFIG_MAP_MAX", "Exported", "export_jobs"]

CONFIG_MAP_MAX = 1024 * 1024  # the API server's limit on a ConfigMap's data
_KUSTOMIZATION = "kustomization.yaml"


@dataclass(kw_only=True, slots=True)
class Exported(Findings):
    """The manifests, by file name, and what the export found."""

    files: dict[str, str] = field(default_factory=dict)
    documents: list[str] = field(default_factory=list)  # the objects alone, for a stream
    problems: list[Problem] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # per job: its CronJob, or why it has none
    refused: list[str] = field(default_factory=list)
    modes: dict[str, Mode] = field(default_factory=dict)  # job id -> how its CronJob runs it


def export_jobs(
    paths: Sequence[Path],
    *,
    jobs_dir: Path,
    image: str,
    namespace: str | None,
    mode: Mode | None,
    now: datetime,
) -> Exported:
    """Export the jobs below `paths` (default: all of `jobs_dir`).

    Args:
        paths: job files or folders inside `jobs_dir`.
        jobs_dir: the jobs directory.
        image: the container image: a kron image for kron mode and for native commands.
        namespace: set on every object, when given.
        mode: native or kron for every job; None picks kron where a job needs it.
        now: the time; only an @at job's suspension depends on it.

    Raises:
        SpecError: a job file (or kron.toml) is invalid; nothing is exported.
        UsageError: a path is not a job file or folder in the jobs directory.
    """
    result = load_dir(jobs_dir)
    if result.errors:
        raise SpecError(result.errors)
    selected = _select(paths, jobs_dir, result)
    # Names of every loaded job, so exporting a part renames nothing.
    names, renamed = unique_names(result.jobs)
    job_labels = _job_labels(result.jobs, names)
    exported = Exported()
    reader = _Reader(result)
    for note in renamed:
        for job_id, name in note.names.items():
            if job_id not in selected:
                continue
            why = (
                f"{', '.join(repr(i) for i in note.collided)} all make the name {note.plain!r}"
                if note.collided
                else f"{note.plain!r} is not a usable name (at most 52 characters)"
            )
            exported.problems.append(
                Problem(
                    path=str(result.jobs[job_id].path),
                    message=f"{why}: this job's CronJob is {name!r}",
                    severity=Severity.WARNING,
                )
            )
    resources: list[str] = []
    for job_id in sorted(selected):
        job = result.jobs[job_id]
        plan = _plan(
            job,
            result=result,
            reader=reader,
            names=names,
            job_labels=job_labels,
            requested=mode,
            exported=exported,
        )
        if plan is None:
            continue
        texts: dict[str, str] = {}
        if plan.mode is Mode.KRON:
            texts = {key: reader.text(path) for key, path in plan.files.items()}
            size = sum(len(text.encode()) for text in texts.values())
            if size > CONFIG_MAP_MAX:
                _refuse(
                    exported,
                    reader.doc(job),
                    job.id,
                    f"its job files come to {size} bytes; a ConfigMap holds at most "
                    f"{CONFIG_MAP_MAX}",
                )
                continue
        objects = [("cronjob", cron_job(plan, image=image, namespace=namespace, now=now))]
        if plan.mode is Mode.KRON:
            objects.append(("configmap", config_map(plan, texts, namespace)))
        for kind, body in objects:
            name = f"{plan.name}.{kind}.yaml"
            text = to_yaml(body)
            exported.documents.append(f"{HEADER} from {plan.source}.\n{text}")
            exported.files[name] = (
                f"{HEADER} from {plan.source}: edit the job file and export again.\n{text}"
            )
            resources.append(name)
        exported.lines.append(_line(plan))
        exported.modes[job_id] = plan.mode
    # Each file's problems in line order; the files in the order of their jobs.
    order = {
        path: index for index, path in enumerate(dict.fromkeys(p.path for p in exported.problems))
    }
    exported.problems.sort(key=lambda p: (order[p.path], p.line or 0, p.column or 0))
    exported.files[_KUSTOMIZATION] = kustomization(sorted(resources))
    exported.files = dict(sorted(exported.files.items()))
    return exported


def _select(paths: Sequence[Path], jobs_dir: Path, result: LoadResult) -> set[str]:
    if not paths:
        return set(result.jobs)
    root = jobs_dir.resolve()
    chosen: set[str] = set()
    for path in paths:
        target = path.resolve()
        if target != root and root not in target.parents:
            raise UsageError(f"kron export: {path} is not in the jobs directory {jobs_dir}")
        found = {
            job_id
            for job_id, job in result.jobs.items()
            if job.path.resolve() == target or target in job.path.resolve().parents
        }
        if not found:
            raise UsageError(f"kron export: no job file at {path}")
        chosen |= found
    return chosen


def _job_labels(jobs: Mapping[str, Job], names: Mapping[str, str]) -> dict[str, str]:
    """The `kron/job` label of each job: its id with `.` for `/` when that is a label value no
    other job has, else its CronJob name (the annotation `kron/job` has the id itself)."""
    wanted = {job_id: label_value(job_id.replace("/", ".")) for job_id in jobs}
    counts: dict[str | None, int] = {}
    for value in wanted.values():
        counts[value] = counts.get(value, 0) + 1
    return {
        job_id: value if value is not None and counts[value] == 1 else names[job_id]
        for job_id, value in wanted.items()
    }


class _Reader:
    """The job files' documents and texts, each read once, as they were loaded."""

    def __init__(self, result: LoadResult) -> None:
        self.result = result
        self._docs: dict[Path, Document] = {}

    def doc(self, job: Job) -> Document:
        if job.path not in self._docs:
            doc = read_document(job.path, max_size=self.result.settings.max_file_size)
            if config_sha(doc.text, self.result.settings.defaults) != job.config_sha:
                changed = Problem(path=str(job.path), message="changed while exported; run again")
                raise SpecError([changed])
            self._docs[job.path] = doc
        return self._docs[job.path]

    def text(self, relative: str) -> str:
        path = self.result.jobs_dir / relative
        for job in self.result.jobs.values():
            if job.path == path:
                return self.doc(job).text
        return path.read_text(encoding="utf-8")  # kron.toml


def _refuse(exported: Exported, doc: Document, job_id: str, message: str) -> None:
    exported.problems.append(doc.problem([], f"refused: {message}"))
    exported.refused.append(job_id)
    exported.lines.append(f"{job_id}: refused")


def _problem(doc: Document, finding: Finding, prefix: str, severity: Severity) -> Problem:
    return doc.problem(list(finding.pointer), f"{prefix}{finding.message}", severity)


def _plan(
    job: Job,
    *,
    result: LoadResult,
    reader: _Reader,
    names: Mapping[str, str],
    job_labels: Mapping[str, str],
    requested: Mode | None,
    exported: Exported,
) -> Plan | None:
    doc = reader.doc(job)
    settings = result.settings
    data = merge_defaults(settings.defaults, doc.data) if settings.defaults else doc.data
    extra: Mapping[str, Any] = data.get("x-kubernetes", {})
    bad = problems_from_schema(doc, "x-kubernetes", extra, at=["x-kubernetes"])
    if bad:
        exported.problems.extend(bad)
        exported.refused.append(job.id)
        exported.lines.append(f"{job.id}: refused")
        return None
    if extra.get("export") is False:
        exported.lines.append(f"{job.id}: left out (x-kubernetes.export = false)")
        return None
    judged = carry(job, settings)
    mode, errors, warnings = _decide(judged, requested)
    chain = _chain(job, result.jobs) if mode is Mode.KRON else (job,)
    if mode is Mode.KRON:
        for member in chain:
            member_errors, member_warnings = _pod_checks(member, job, result.jobs_dir)
            member_doc = reader.doc(member)
            exported.problems.extend(member_doc.problem(list(p), m) for p, m in member_errors)
            exported.problems.extend(
                member_doc.problem(list(p), m, Severity.WARNING) for p, m in member_warnings
            )
            if member_errors and job.id not in exported.refused:
                exported.refused.append(job.id)
    exported.problems.extend(_problem(doc, f, p, Severity.ERROR) for p, f in errors)
    if errors or mode is None or job.id in exported.refused:
        if job.id not in exported.refused:
            exported.refused.append(job.id)
        exported.lines.append(f"{job.id}: refused")
        return None
    exported.problems.extend(_problem(doc, f, "", Severity.WARNING) for f in warnings)
    tag_labels = _tag_labels(job, doc, exported)
    files: dict[str, str] = {}
    env_files: dict[str, str] = {}
    if mode is Mode.KRON:
        relative = [_relative(m.path, result.jobs_dir) for m in chain]
        if settings.path is not None:
            relative.append(_relative(settings.path, result.jobs_dir))
        files = {key: path for path, key in config_map_keys(relative).items()}
        for member in chain:
            if member.env_file is not None:
                secret = env_file_secret(names[member.id])
                env_files[secret] = _relative(member.env_file, result.jobs_dir)
    return Plan(
        job=job,
        name=names[job.id],
        mode=mode,
        carry=judged,
        source=_relative(job.path, result.jobs_dir),
        job_label=job_labels[job.id],
        tag_labels=tag_labels,
        extra=extra,
        chain=chain,
        files=files,
        env_files=env_files,
        names=names,
    )


def _decide(
    judged: Carry, requested: Mode | None
) -> tuple[Mode | None, list[tuple[str, Finding]], list[Finding]]:
    """The mode a job runs in, the findings that refuse it (with their prefix), and the
    findings that are warnings in that mode."""
    refused = [("refused: ", f) for f in judged.of(Kind.REFUSED)]
    needs = judged.of(Kind.NEEDS_KRON)
    cannot = judged.of(Kind.KRON_CANNOT)
    if requested is Mode.NATIVE:
        mode: Mode | None = Mode.NATIVE
        refused += [("refused in --mode native: ", f) for f in needs]
    elif requested is Mode.KRON:
        mode = Mode.KRON
        refused += [("refused in --mode kron: ", f) for f in cannot]
    elif needs:
        mode = Mode.KRON
        if cannot:
            refused += [("refused: ", f) for f in cannot]
            refused += [("refused: ", f) for f in needs]
    elif judged.of(Kind.NATIVE_DIFFERS) and not cannot:
        mode = Mode.KRON
    else:
        mode = Mode.NATIVE
    if refused:
        return None, refused, []
    differs = Kind.NATIVE_DIFFERS if mode is Mode.NATIVE else Kind.POD_DIFFERS
    return mode, [], judged.of(differs, Kind.DIFFERS)


def _chain(job: Job, jobs: Mapping[str, Job]) -> tuple[Job, ...]:
    """The job and every job its triggers fire, breadth first: kron runs them in its pod."""
    order = [job]
    seen = {job.id}
    index = 0
    while index < len(order):
        for target in order[index].triggers:
            if target not in seen and target in jobs:
                seen.add(target)
                order.append(jobs[target])
        index += 1
    return tuple(order)


def _pod_checks(
    member: Job, job: Job, jobs_dir: Path
) -> tuple[list[tuple[tuple[str | int, ...], str]], list[tuple[tuple[str | int, ...], str]]]:
    """What stops kron in `job`'s pod from running `member` (the job or one it triggers)."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    warnings: list[tuple[tuple[str | int, ...], str]] = []
    whose = "" if member is job else f" (run in the pod of {job.id})"
    for name in sorted(member.secret_env):
        errors.append(
            (
                ("env", name),
                f"refused in kron mode{whose}: the value is marked secret and the job file goes "
                "into a ConfigMap; move it to env_file, which is mounted from a Secret",
            )
        )
    for index, delivery in enumerate(member.notify):
        target = delivery.target if isinstance(delivery.target, Mapping) else {}
        if delivery.kind is DeliveryKind.TELEGRAM and target.get("bot_token"):
            errors.append(
                (
                    ("notify", index, "telegram", "bot_token"),
                    f"refused in kron mode{whose}: the token would go into a ConfigMap with the "
                    "job file; use bot_token_env, which the pod reads from a Secret",
                )
            )
        if delivery.kind is DeliveryKind.WEBHOOK and target.get("headers"):
            warnings.append(
                (
                    ("notify", index, "webhook", "headers"),
                    "these headers go into a ConfigMap with the job file: whoever may read "
                    "ConfigMaps in the namespace reads them",
                )
            )
    if member.env_file is not None and _relative(member.env_file, jobs_dir).startswith("../"):
        errors.append(
            (
                ("env_file",),
                f"refused in kron mode{whose}: the pod mounts only the jobs directory, and "
                "this env_file is outside it",
            )
        )
    if member is not job and isinstance(member.action, DockerAction):
        warnings.append(
            (
                (),
                f"a docker job triggered by {job.id}: it runs in that job's pod, which has no "
                "Docker engine",
            )
        )
    return errors, warnings


def _relative(path: Path, jobs_dir: Path) -> str:
    return Path(os.path.relpath(os.path.normpath(path), os.path.normpath(jobs_dir))).as_posix()


def _tag_labels(job: Job, doc: Document, exported: Exported) -> dict[str, str]:
    labels = {}
    for key, value in sorted(job.tags.items()):
        if label_value(key) is None or label_value(value) is None:
            exported.problems.append(
                doc.problem(
                    ["tags", key],
                    "not a Kubernetes label (letters, digits, `-`, `_` and `.`, at most 63 "
                    "characters); left out of the labels",
                    Severity.WARNING,
                )
            )
            continue
        labels[f"tag.kron/{key}"] = value
    return labels


def _line(plan: Plan) -> str:
    line = f"{plan.job.id} -> cronjob/{plan.name} ({plan.mode.value})"
    if plan.mode is Mode.KRON:
        why = sorted(
            {".".join(str(p) for p in f.pointer) for f in plan.carry.of(Kind.NEEDS_KRON)}
            | {".".join(str(p) for p in f.pointer) for f in plan.carry.of(Kind.NATIVE_DIFFERS)}
        )
        if why:
            line += f": {', '.join(why)}"
    return line
