"""One job's Kubernetes objects: its CronJob, and in kron mode the ConfigMap of its job files.

Native mode runs the job's own command in the container; kron mode runs `kron run JOB --here`
on the job files mounted from the ConfigMap, with each env_file mounted from a Secret beside
them. Secrets are only ever referenced by name: a job's secret `env` entries come from the
Secret `<name>-env`, its env_file from the Secret `<name>-env-file` (key `env_file`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kron.config.kubernetes.carry import Carry, kron_retry_delays, numeric_ids
from kron.model.job import (
    AgentAction,
    Catchup,
    CommandAction,
    DeliveryKind,
    DockerAction,
    Job,
    ShellAction,
)
from kron.model.schedule import ScheduleKind

__all__ = [
    "CONTAINER",
    "HISTORY_CAP",
    "JOB_NAME_VAR",
    "MOUNT",
    "Mode",
    "Plan",
    "config_map",
    "cron_job",
    "env_file_secret",
    "env_secret",
    "kron_bound",
]

MOUNT = "/etc/kron/jobs.d"
CONTAINER = "job"
JOB_NAME_VAR = "KRON_K8S_JOB"
# The Job controller labels each pod with its Job's name, which carries the scheduled minute.
_JOB_NAME_LABEL = "metadata.labels['batch.kubernetes.io/job-name']"
HISTORY_CAP = 10  # finished Jobs kept: each holds its pod, and its log (kron mode: its records)
# catchup = "none": a slot the controller starts later than kron's daemon would (60 s late,
# kron.engine.slots.LATE_TOLERANCE) is missed, not run.
_CATCHUP_NONE_DEADLINE = timedelta(seconds=60)
_RECORD_GRACE = timedelta(seconds=10)  # kron in the pod: time to write the last records
_DELIVERY_MARGIN = timedelta(seconds=60)  # and to send notifications after the last run
_MANAGED_BY = {"app.kubernetes.io/managed-by": "kron"}


class Mode(enum.StrEnum):
    """How the container runs a job."""

    NATIVE = "native"  # the job's own command
    KRON = "kron"  # `kron run JOB --here` on the job files


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """Everything one job's objects are made from."""

    job: Job
    name: str  # the CronJob's (and the ConfigMap's) name
    mode: Mode
    carry: Carry
    source: str  # the job file, relative to the jobs directory
    job_label: str
    tag_labels: Mapping[str, str]
    extra: Mapping[str, Any]  # the job's `x-kubernetes` table
    chain: tuple[Job, ...]  # kron mode: the job and every job its triggers run in its pod
    files: Mapping[str, str]  # kron mode: ConfigMap key -> path below the jobs directory
    env_files: Mapping[str, str]  # kron mode: Secret name -> env_file path below the jobs dir
    names: Mapping[str, str]  # every job id -> its CronJob name (Secrets are named after it)


def env_secret(name: str) -> str:
    return f"{name}-env"


def env_file_secret(name: str) -> str:
    return f"{name}-env-file"


def _seconds(value: timedelta) -> int:
    return max(1, math.ceil(value.total_seconds()))


def _literal(text: str) -> str:
    """Kubernetes expands `$(VAR)` in command, args and env values, and turns `$$` into `$`:
    doubling every `$` keeps the text as written."""
    return text.replace("$", "$$")


def cron_job(plan: Plan, *, image: str, namespace: str | None, now: datetime) -> dict[str, Any]:
    """The CronJob of `plan`'s job."""
    job, carry = plan.job, plan.carry
    labels = {
        **_MANAGED_BY,
        "kron/job": plan.job_label,
        "kron/config-sha": job.config_sha,
        **plan.tag_labels,
    }
    annotations = {"kron/job": job.id, "kron/source": plan.source, "kron/mode": plan.mode.value}
    if job.description:
        annotations["kron/description"] = job.description
    spec: dict[str, Any] = {
        "schedule": carry.schedule,
        "timeZone": carry.time_zone,
        "concurrencyPolicy": job.concurrency.value.capitalize(),
    }
    if job.catchup is Catchup.NONE:
        spec["startingDeadlineSeconds"] = _seconds(_CATCHUP_NONE_DEADLINE)
    elif job.starting_deadline is not None:
        spec["startingDeadlineSeconds"] = _seconds(job.starting_deadline)
    over = carry.suspend_after is not None and now > carry.suspend_after
    spec["suspend"] = not job.enabled or job.schedule.kind is ScheduleKind.MANUAL or over
    keep = min(job.records.keep, HISTORY_CAP)
    spec["successfulJobsHistoryLimit"] = keep
    spec["failedJobsHistoryLimit"] = keep
    job_spec = _job_spec(plan, image=image, labels=labels)
    spec["jobTemplate"] = {"metadata": {"labels": dict(labels)}, "spec": job_spec}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(plan.name, namespace, labels, annotations),
        "spec": spec,
    }


def _metadata(
    name: str, namespace: str | None, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _job_spec(plan: Plan, *, image: str, labels: Mapping[str, str]) -> dict[str, Any]:
    job = plan.job
    spec: dict[str, Any] = {}
    pod: dict[str, Any] = {"restartPolicy": "Never"}
    grace = job.kill_grace
    if plan.mode is Mode.NATIVE:
        spec["backoffLimit"] = job.retry.attempts - 1
        if job.timeout is not None and job.retry.attempts == 1:
            spec["activeDeadlineSeconds"] = _seconds(job.timeout)
        elif job.timeout is not None:
            pod["activeDeadlineSeconds"] = _seconds(job.timeout)  # per attempt, as kron's
        container = _native_container(plan, image=image)
    else:
        spec["backoffLimit"] = 0  # kron retries inside the pod, with the job's own delays
        bound = kron_bound(plan.chain)
        if bound is not None:
            spec["activeDeadlineSeconds"] = _seconds(bound)
        grace += _RECORD_GRACE
        container = _kron_container(plan, image=image)
        pod["volumes"] = [_jobs_volume(plan)]
    if job.records.max_age is not None:
        spec["ttlSecondsAfterFinished"] = _seconds(job.records.max_age)
    pod["terminationGracePeriodSeconds"] = _seconds(grace)
    extra = plan.extra
    for key in ("serviceAccountName", "nodeSelector", "tolerations"):
        if key in extra:
            pod[key] = extra[key]
    security = _pod_security(job, plan.mode)
    if security:
        pod["securityContext"] = security
    pod["containers"] = [container]
    spec["template"] = {"metadata": {"labels": dict(labels)}, "spec": _ordered(pod)}
    return spec


_POD_ORDER = (
    "restartPolicy",
    "activeDeadlineSeconds",
    "terminationGracePeriodSeconds",
    "serviceAccountName",
    "nodeSelector",
    "tolerations",
    "securityContext",
    "containers",
    "volumes",
)


def _ordered(pod: dict[str, Any]) -> dict[str, Any]:
    return {key: pod[key] for key in _POD_ORDER if key in pod}


def _pod_security(job: Job, mode: Mode) -> dict[str, Any]:
    security: dict[str, Any] = {}
    user = numeric_ids(job.user)
    group = numeric_ids(job.group)
    if user:
        security["runAsUser"] = user[0]
    if group:
        security["runAsGroup"] = group[0]
    if mode is Mode.KRON and not (user and user[0] == 0):
        security["runAsNonRoot"] = True
    return security


def _native_container(plan: Plan, *, image: str) -> dict[str, Any]:
    job = plan.job
    action = job.action
    container: dict[str, Any] = {"name": CONTAINER}
    env: dict[str, dict[str, Any]] = {}
    for name, value in job.env.items():
        if name in job.secret_env:
            ref = {"name": env_secret(plan.name), "key": name}
            env[name] = {"name": name, "valueFrom": {"secretKeyRef": ref}}
        else:
            env[name] = {"name": name, "value": _literal(value)}
    # What kron sets for every run that a pod knows too (KRON_RUN_ID, KRON_SLOT: kron mode).
    env["KRON_JOB"] = {"name": "KRON_JOB", "value": _literal(job.id)}
    security: dict[str, Any] = {"allowPrivilegeEscalation": False}
    if isinstance(action, DockerAction):
        container["image"] = action.image
        if action.entrypoint is not None:
            container["command"] = [_literal(a) for a in action.entrypoint]
        command = action.command
        if isinstance(command, str):
            container["args"] = ["/bin/sh", "-c", _literal(command)]
        elif command is not None:
            container["args"] = [_literal(a) for a in command]
        container["imagePullPolicy"] = "Never" if action.pull == "never" else "IfNotPresent"
        for name, value in action.env.items():
            env[name] = {"name": name, "value": _literal(value)}
        if action.workdir is not None:
            container["workingDir"] = action.workdir
        ids = numeric_ids(action.user)
        if ids:
            security["runAsUser"] = ids[0]
        if len(ids) > 1:
            security["runAsGroup"] = ids[1]
    elif isinstance(action, CommandAction | ShellAction):
        container["image"] = image
        container["command"] = [_literal(a) for a in action.argv]
        if job.cwd is not None:
            container["workingDir"] = str(job.cwd)
    else:  # kron.config.kubernetes.carry sends every other action to kron mode
        raise ValueError(f"job {job.id}: {type(action).__name__} has no native container")
    container["env"] = [env[name] for name in sorted(env)]
    if "resources" in plan.extra:
        container["resources"] = plan.extra["resources"]
    container["securityContext"] = security
    return container


def _kron_container(plan: Plan, *, image: str) -> dict[str, Any]:
    job = plan.job
    args = [
        "run",
        _literal(job.id),
        "--here",
        "--jobs-dir",
        MOUNT,
        "--cronjob",
        plan.name,
        "--k8s-job",
        f"$({JOB_NAME_VAR})",
    ]
    env: list[dict[str, Any]] = [
        {"name": JOB_NAME_VAR, "valueFrom": {"fieldRef": {"fieldPath": _JOB_NAME_LABEL}}}
    ]
    seen = {JOB_NAME_VAR}
    for member in plan.chain:
        for variable in sorted(_named_variables(member)):
            if variable in seen:
                continue
            seen.add(variable)
            # Optional: the job's env_file may hold it instead; kron says so when it is missing.
            ref = {"name": env_secret(plan.names[member.id]), "key": variable, "optional": True}
            env.append({"name": variable, "valueFrom": {"secretKeyRef": ref}})
    container: dict[str, Any] = {"name": CONTAINER, "image": image, "args": args, "env": env}
    if "resources" in plan.extra:
        container["resources"] = plan.extra["resources"]
    container["securityContext"] = {"allowPrivilegeEscalation": False}
    container["volumeMounts"] = [{"name": "jobs", "mountPath": MOUNT, "readOnly": True}]
    return container


def _named_variables(job: Job) -> set[str]:
    """Variables a job names for kron to read a token from (`bot_token_env`, `password_env`,
    `api_key_env`): the pod gets them from the job's Secret."""
    found = set()
    action = job.action
    if isinstance(action, AgentAction) and action.api_key_env:
        found.add(action.api_key_env)
    for delivery in job.notify:
        target = delivery.target
        if not isinstance(target, Mapping):
            continue
        key = {DeliveryKind.TELEGRAM: "bot_token_env", DeliveryKind.EMAIL: "password_env"}.get(
            delivery.kind
        )
        if key and isinstance(target.get(key), str):
            found.add(target[key])
    return found


def _jobs_volume(plan: Plan) -> dict[str, Any]:
    items = [{"key": key, "path": path} for key, path in sorted(plan.files.items())]
    sources: list[dict[str, Any]] = [{"configMap": {"name": plan.name, "items": items}}]
    for secret, path in sorted(plan.env_files.items()):
        sources.append({"secret": {"name": secret, "items": [{"key": "env_file", "path": path}]}})
    # Read-only for everyone: kron trusts files nobody but root can change, and the volume is
    # mounted read-only whatever its modes say.
    return {"name": "jobs", "projected": {"defaultMode": 0o444, "sources": sources}}


def kron_bound(chain: tuple[Job, ...]) -> timedelta | None:
    """The longest kron in a pod can take to run a chain of jobs, one after another, each with
    its jitter, wait, attempts, retry delays and kill grace; None when one has no timeout."""
    total = _DELIVERY_MARGIN
    for job in chain:
        if job.timeout is None:
            return None
        retry = job.retry
        total += job.jitter + retry.attempts * (job.timeout + job.kill_grace)
        total += sum(kron_retry_delays(job), timedelta(0)) + retry.jitter * (retry.attempts - 1)
        if job.wait is not None:
            total += job.wait.timeout + job.wait.every
    return total


def config_map(plan: Plan, texts: Mapping[str, str], namespace: str | None) -> dict[str, Any]:
    """The ConfigMap of the job files kron in `plan`'s pod reads; `texts` by ConfigMap key."""
    labels = {**_MANAGED_BY, "kron/job": plan.job_label}
    annotations = {"kron/job": plan.job.id}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(plan.name, namespace, labels, annotations),
        "data": {key: texts[key] for key in sorted(texts)},
    }
