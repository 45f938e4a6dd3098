"""What a CronJob carries of a kron job: its schedule as the controller reads it, and every
feature it cannot carry at all, carries only with kron in the pod, or carries differently.

The controller parses schedules with robfig/cron's standard parser: five fields, names, ranges,
steps, lists, `?` and the @-macros, day-of-week 0-6, no `L` or `#`, and the day fields ORed when
neither starts with `*` or `?`; a step such as `*/2` clears that star, where Vixie cron (and
kron) still ANDs them. A Job's pods are retried after 10 s, 20 s, 40 s ... at most 6 min.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kron.model.dst import Shift, slots_in_shifts
from kron.model.job import (
    AgentAction,
    Backoff,
    Catchup,
    DockerAction,
    HttpAction,
    Job,
)
from kron.model.run import Outcome
from kron.model.schedule import AtSchedule, CronSchedule, EverySchedule, Schedule, ScheduleKind
from kron.model.settings import Settings

__all__ = [
    "Carry",
    "Finding",
    "Kind",
    "carry",
    "k8s_retry_delays",
    "kron_retry_delays",
    "never_schedule",
    "numeric_ids",
]

# A schedule the controller accepts and never fires (February has no 31st): @manual jobs are
# suspended CronJobs that `kubectl create job --from=cronjob/NAME` runs by hand.
never_schedule = "0 0 31 2 *"
_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_POD_BACKOFF = timedelta(seconds=10)  # the Job controller's first pod retry delay, doubling
_POD_BACKOFF_MAX = timedelta(minutes=6)
# Fixed-time jobs are checked against 28 years of offset changes from a fixed date: weekdays and
# dates repeat over 28 years, and a fixed start keeps the export the same from day to day.
_DST_FROM = datetime(2025, 1, 1, tzinfo=UTC)
_DST_TO = datetime(2053, 1, 1, tzinfo=UTC)


class Kind(enum.Enum):
    """How a finding weighs on the export of a job."""

    REFUSED = "refused"  # a CronJob cannot carry it at all
    NEEDS_KRON = "needs kron"  # only kron in the pod carries it; --mode native refuses the job
    NATIVE_DIFFERS = "native differs"  # native carries it differently; the default picks kron
    KRON_CANNOT = "kron cannot"  # kron in a pod cannot run it; --mode kron refuses the job
    POD_DIFFERS = "pod differs"  # kron in the pod carries it differently than a daemon
    DIFFERS = "differs"  # carried differently in either mode


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    kind: Kind
    pointer: tuple[str | int, ...]
    message: str


@dataclass(kw_only=True, slots=True)
class Carry:
    """A job as a CronJob would carry it."""

    schedule: str | None  # the CronJob's `schedule`; None when the job's cannot be carried
    time_zone: str
    suspend_after: datetime | None = None  # an @at job: suspended by exports after this
    findings: list[Finding] = field(default_factory=list)

    def of(self, *kinds: Kind) -> list[Finding]:
        return [f for f in self.findings if f.kind in kinds]


def carry(job: Job, settings: Settings) -> Carry:
    """Judge what a CronJob carries of `job` (the same answer on every day it is asked)."""
    result = _schedule(job.schedule)
    found = result.findings
    if settings.max_concurrent is not None:
        found.append(
            Finding(
                kind=Kind.REFUSED,
                pointer=(),
                message=f"kron.toml sets max_concurrent = {settings.max_concurrent}: a limit "
                "across jobs has no CronJob equivalent (a ResourceQuota on pods comes closest)",
            )
        )
    if job.catchup is Catchup.ALL:
        found.append(
            Finding(
                kind=Kind.REFUSED,
                pointer=("catchup",),
                message='catchup = "all": a CronJob starts at most the latest missed slot',
            )
        )
    found.extend(_action(job))
    found.extend(_kron_features(job))
    found.extend(_retry(job))
    found.extend(_identity(job))
    return result


def _schedule(schedule: Schedule) -> Carry:
    zone = schedule.zone.key
    if isinstance(schedule, EverySchedule):
        return _every(schedule)
    if isinstance(schedule, AtSchedule):
        return _at(schedule)
    if schedule.kind is ScheduleKind.MANUAL:
        return Carry(schedule=never_schedule, time_zone=zone)
    if not isinstance(schedule, CronSchedule):  # @reboot
        return _refused(zone, "@reboot: a cluster has no boot of its own to run it at")
    text = schedule.expr.strip()
    if text.lower() in _MACROS:
        return Carry(schedule=text.lower(), time_zone=zone, findings=_dst(schedule))
    fields = text.split()
    if schedule.with_seconds:
        if fields[0] != "0":
            return _refused(zone, "a seconds field: a CronJob fires at most once a minute")
        fields = fields[1:]
    dom, dow = fields[2], fields[4]
    for name, value in (("day-of-month", dom), ("day-of-week", dow)):
        if "l" in value.lower() or "#" in value:
            return _refused(
                zone, f"{name} {value!r}: the CronJob controller knows neither `L` nor `#`"
            )
    try:
        fields[4] = _sunday_as_zero(dow)
    except ValueError:
        return _refused(
            zone, f"day-of-week {dow!r}: the CronJob controller counts Sunday as 0 only"
        )
    for name, value, other, other_name in (
        ("day-of-month", dom, dow, "day-of-week"),
        ("day-of-week", dow, dom, "day-of-month"),
    ):
        if _starred_step(value) and not other.startswith(("*", "?")):
            return _refused(
                zone,
                f"{name} {value!r} beside a restricted {other_name}: the CronJob controller "
                "fires on days matching either field, kron (as Vixie cron) only on days "
                "matching both",
            )
    return Carry(schedule=" ".join(fields), time_zone=zone, findings=_dst(schedule))


def _refused(zone: str, message: str) -> Carry:
    finding = Finding(kind=Kind.REFUSED, pointer=("schedule",), message=message)
    return Carry(schedule=None, time_zone=zone, findings=[finding])


def _starred_step(value: str) -> bool:
    """`*/2`: a step over a star, which robfig/cron no longer counts as a star."""
    return value.startswith(("*", "?")) and any(
        int(part.partition("/")[2] or 1) > 1 for part in value.split(",") if "/" in part
    )


def _sunday_as_zero(dow: str) -> str:
    """Rewrite day-of-week 7 (Sunday, as cron allows) as 0; ValueError where a range ends on 7
    with a step, which has no plain rewrite."""
    parts = []
    for part in dow.split(","):
        span, slash, _ = part.partition("/")
        low, dash, high = span.partition("-")
        if low == "7" and not dash and not slash:
            parts.append("0")
        elif dash and high == "7":
            if slash:
                raise ValueError(part)
            parts.append(f"{low}-6,0" if low != "7" else "0")
        elif low == "7":
            raise ValueError(part)
        else:
            parts.append(part)
    return ",".join(parts)


def _every(schedule: EverySchedule) -> Carry:
    seconds = int(schedule.interval.total_seconds())
    minutes, rest = divmod(seconds, 60)
    text = schedule.expr.strip()
    if rest:
        return _refused("UTC", f"{text}: a CronJob fires on whole minutes")
    # @every counts from the epoch, which is midnight UTC: a divisor of an hour or of a day is a
    # cron step in UTC.
    hours, rest_minutes = divmod(minutes, 60)
    if minutes < 60 and 60 % minutes == 0:
        cron = "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    elif hours == 24 and not rest_minutes:
        cron = "0 0 * * *"
    elif not rest_minutes and 24 % hours == 0:
        cron = "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    else:
        cron = ""
    if cron:
        return Carry(schedule=cron, time_zone="UTC")
    return _refused(
        "UTC",
        f"{text}: no cron expression fires every {minutes} minutes counted from the epoch, as "
        "@every does; use a divisor of an hour or of a day",
    )


def _at(schedule: AtSchedule) -> Carry:
    wall = schedule.at.astimezone(schedule.zone)
    zone = schedule.zone.key
    if wall.second:
        return _refused(zone, f"{schedule.expr.strip()}: a CronJob fires on whole minutes")
    cron = f"{wall.minute} {wall.hour} {wall.day} {wall.month} *"
    when = f"{schedule.expr.strip()}: a CronJob has no year; exported as {cron!r} in {zone}"
    return Carry(
        schedule=cron,
        time_zone=zone,
        suspend_after=schedule.at,
        findings=[
            Finding(
                kind=Kind.NATIVE_DIFFERS,
                pointer=("schedule",),
                message=f"{when}, which fires every year until an export after that time "
                "suspends it",
            ),
            Finding(
                kind=Kind.POD_DIFFERS,
                pointer=("schedule",),
                message=f"{when}; kron in the pod runs only the slot of {wall.year}, and an "
                "export after that time suspends it",
            ),
        ],
    )


def _dst(schedule: CronSchedule) -> list[Finding]:
    hits = _dst_hits(schedule)
    found = []
    repeated = next((wall for shift, wall in hits if shift.repeated), None)
    if repeated is not None:
        when = repeated.strftime("%H:%M")
        found.append(
            Finding(
                kind=Kind.NATIVE_DIFFERS,
                pointer=("schedule",),
                message=f"{when} in {schedule.zone.key} falls in the hour repeated when "
                "daylight saving time ends: a CronJob runs it twice that night "
                "(kubernetes #121594); kron in the pod skips the second run",
            )
        )
    skipped = next((wall for shift, wall in hits if not shift.repeated), None)
    if skipped is not None:
        found.append(
            Finding(
                kind=Kind.DIFFERS,
                pointer=("schedule",),
                message=f"{skipped.strftime('%H:%M')} in {schedule.zone.key} falls in the hour "
                "skipped when daylight saving time begins: a CronJob does not run it that day, "
                "where kron runs it as the hour ends",
            )
        )
    return found


@functools.lru_cache(maxsize=1024)
def _dst_hits(schedule: CronSchedule) -> tuple[tuple[Shift, datetime], ...]:
    # Cached per schedule: jobs with the same expression and zone share one parsed schedule.
    return tuple(slots_in_shifts(schedule, _DST_FROM, _DST_TO))


def _action(job: Job) -> list[Finding]:
    action = job.action
    if isinstance(action, HttpAction):
        return [_needs("http", "an HTTP request with its expected status and body")]
    if isinstance(action, AgentAction):
        found = [_needs("agent", "an agent run (its prompt, answer and token count)")]
        if action.max_runs_per_day is not None or action.max_tokens_per_day is not None:
            found.append(
                Finding(
                    kind=Kind.POD_DIFFERS,
                    pointer=("agent",),
                    message="agent budgets count the runs of one pod only: each pod starts "
                    "with a full day's budget",
                )
            )
        return found
    if not isinstance(action, DockerAction):
        return []
    found = [
        Finding(
            kind=Kind.KRON_CANNOT,
            pointer=("docker",),
            message="a docker job runs its image as the pod's container; kron in a pod has no "
            "Docker engine to run it",
        )
    ]
    if action.volumes:
        found.append(
            Finding(
                kind=Kind.REFUSED,
                pointer=("docker", "volumes"),
                message="host bind mounts have no CronJob equivalent",
            )
        )
    if action.user is not None and not _numeric_ids(action.user):
        found.append(
            Finding(
                kind=Kind.REFUSED,
                pointer=("docker", "user"),
                message=f"{action.user!r}: a pod's securityContext takes numeric ids "
                '("1000" or "1000:1000")',
            )
        )
    if action.network is not None:
        found.append(
            Finding(
                kind=Kind.DIFFERS,
                pointer=("docker", "network"),
                message=f"{action.network!r} is not carried: a pod is on the cluster's network",
            )
        )
    return found


def _needs(pointer: str | tuple[str | int, ...], what: str) -> Finding:
    at = (pointer,) if isinstance(pointer, str) else pointer
    return Finding(kind=Kind.NEEDS_KRON, pointer=at, message=f"only kron in the pod carries {what}")


def _kron_features(job: Job) -> list[Finding]:
    found = []
    if job.wait is not None:
        found.append(_needs("wait", "a wait condition"))
    if job.triggers:
        found.append(_needs("triggers", "triggers (run in the same pod)"))
    if job.notify:
        found.append(_needs(("notify", 0), "notifications"))
        recovery = [i for i, d in enumerate(job.notify) if "recovery" in d.on]
        if recovery:
            found.append(
                Finding(
                    kind=Kind.POD_DIFFERS,
                    pointer=("notify", recovery[0], "on"),
                    message='on = "recovery" needs the previous run\'s record, which a new pod '
                    "does not have: it is sent only after a failure in the same pod",
                )
            )
    if job.expected_duration is not None or any("stuck" in d.on for d in job.notify):
        found.append(
            Finding(
                kind=Kind.DIFFERS,
                pointer=("expected_duration",) if job.expected_duration else ("notify",),
                message="stuck runs are not flagged in a cluster: no daemon watches the pod "
                "(`timeout` becomes its activeDeadlineSeconds)",
            )
        )
    if job.healthcheck is not None:
        found.append(_needs("healthcheck", "healthcheck pings"))
    if job.success_codes != frozenset({0}):
        found.append(_needs("success_codes", "exit codes other than 0 counted as success"))
    if job.env_file is not None:
        found.append(_needs("env_file", "an env_file (mounted from a Secret)"))
    if job.umask is not None:
        found.append(_needs("umask", "a umask (a pod has no such field)"))
    if job.cwd is not None and not _absolute_cwd(job):
        found.append(_needs("cwd", "a cwd relative to the job file"))
    if job.jitter:
        found.append(
            Finding(
                kind=Kind.NATIVE_DIFFERS,
                pointer=("jitter",),
                message="a CronJob has no jitter; kron in the pod waits the job's offset",
            )
        )
    return found


def _absolute_cwd(job: Job) -> bool:
    """Whether the job file gave an absolute `cwd` (the loader joined it to the file's folder,
    which keeps an absolute path as it is)."""
    return (
        job.cwd is not None
        and job.cwd.is_absolute()
        and job.path.parent
        not in (
            job.cwd,
            *job.cwd.parents,
        )
    )


def k8s_retry_delays(count: int) -> list[timedelta]:
    """The waits before the Job controller's pod retries: 10 s, doubling, at most 6 min."""
    return [min(_POD_BACKOFF * 2**i, _POD_BACKOFF_MAX) for i in range(count)]


def kron_retry_delays(job: Job) -> list[timedelta]:
    """The waits before kron's retries of the job (jitter left out), as kron.engine.attempts
    computes them: `delay`, or `delay` doubling, each at most `max_delay`."""
    retry = job.retry
    if retry.backoff is Backoff.FIXED:
        return [min(retry.delay, retry.max_delay)] * (retry.attempts - 1)
    return [min(retry.delay * 2**i, retry.max_delay) for i in range(retry.attempts - 1)]


def _retry(job: Job) -> list[Finding]:
    retry = job.retry
    if retry.attempts == 1:
        return []
    why = []
    if retry.jitter or kron_retry_delays(job) != k8s_retry_delays(retry.attempts - 1):
        why.append("its delays are not the Job controller's (10 s, doubling, at most 6 min)")
    if Outcome.FAILED not in retry.on:
        why.append("a CronJob retries every failed pod")
    if job.timeout is not None and Outcome.TIMEOUT not in retry.on:
        why.append("a CronJob retries a pod past its deadline too")
    if not why:
        return []
    return [_needs("retry", f"this retry: {'; '.join(why)}")]


def _numeric_ids(text: str) -> bool:
    return all(part.isascii() and part.isdigit() for part in text.split(":", 1))


def _identity(job: Job) -> list[Finding]:
    found = []
    for name, value in (("user", job.user), ("group", job.group)):
        if value is not None and not _numeric_ids(value):
            found.append(
                Finding(
                    kind=Kind.REFUSED,
                    pointer=(name,),
                    message=f"{value!r}: a pod's securityContext takes a numeric id; write the "
                    "id the image knows",
                )
            )
    return found


def numeric_ids(text: str | None) -> Sequence[int]:
    """`"1000"` -> (1000,), `"1000:100"` -> (1000, 100); () for None."""
    return tuple(int(part) for part in text.split(":", 1)) if text else ()
