"""kron export kubernetes, field by field: each job field and what its CronJob says of it.

Every exported object is checked against Kubernetes' schemas (tests/kube.py) on the way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kron.config.kubernetes.manifests import Mode

from .kube import CONTAINER, IMAGE, MISSING, POD, cron_job, dig, export

BERLIN = 'schedule = "0 3 * * *"\ntimezone = "Europe/Berlin"\n'
TRUE = 'command = ["true"]\n'
KRON_ARGS = [
    "run",
    "j",
    "--here",
    "--jobs-dir",
    "/etc/kron/jobs.d",
    "--cronjob",
    "j",
    "--k8s-job",
    "$(KRON_K8S_JOB)",
]

# (what the job file says, where in its CronJob, what is there)
MAPPING: list[tuple[str, str, Any]] = [
    # schedule and zone
    (BERLIN + TRUE, "spec.schedule", "0 3 * * *"),
    (BERLIN + TRUE, "spec.timeZone", "Europe/Berlin"),
    ('schedule = "0 3 * * *"\n' + TRUE, "spec.timeZone", "UTC"),
    ('schedule = "@daily"\n' + TRUE, "spec.schedule", "@daily"),
    ('schedule = "@Hourly"\n' + TRUE, "spec.schedule", "@hourly"),
    ('schedule = "0 15 3 * * MON-FRI"\n' + TRUE, "spec.schedule", "15 3 * * MON-FRI"),
    ('schedule = "0 3 * * 7"\n' + TRUE, "spec.schedule", "0 3 * * 0"),
    ('schedule = "0 3 * * 5-7"\n' + TRUE, "spec.schedule", "0 3 * * 5-6,0"),
    ('schedule = "0 0 1 * MON"\n' + TRUE, "spec.schedule", "0 0 1 * MON"),
    ('schedule = "0 0 */2 * *"\n' + TRUE, "spec.schedule", "0 0 */2 * *"),
    ('schedule = "@every 1m"\n' + TRUE, "spec.schedule", "* * * * *"),
    ('schedule = "@every 15m"\n' + TRUE, "spec.schedule", "*/15 * * * *"),
    ('schedule = "@every 15m"\ntimezone = "Asia/Kolkata"\n' + TRUE, "spec.timeZone", "UTC"),
    ('schedule = "@every 1h"\n' + TRUE, "spec.schedule", "0 * * * *"),
    ('schedule = "@every 6h"\n' + TRUE, "spec.schedule", "0 */6 * * *"),
    ('schedule = "@every 1d"\n' + TRUE, "spec.schedule", "0 0 * * *"),
    ('schedule = "@manual"\n' + TRUE, "spec.schedule", "0 0 31 2 *"),
    ('schedule = "@manual"\n' + TRUE, "spec.suspend", True),
    (BERLIN + TRUE, "spec.suspend", False),
    (BERLIN + TRUE + "enabled = false\n", "spec.suspend", True),
    (
        'schedule = "@at 2026-12-07T09:00"\ntimezone = "Europe/Berlin"\n' + TRUE,
        "spec.schedule",
        "0 9 7 12 *",
    ),
    (
        'schedule = "@at 2026-12-07T09:00:00Z"\ntimezone = "Europe/Berlin"\n' + TRUE,
        "spec.schedule",
        "0 10 7 12 *",
    ),
    # overlap and catch-up
    (BERLIN + TRUE, "spec.concurrencyPolicy", "Forbid"),
    (BERLIN + TRUE + 'concurrency = "allow"\n', "spec.concurrencyPolicy", "Allow"),
    (BERLIN + TRUE + 'concurrency = "replace"\n', "spec.concurrencyPolicy", "Replace"),
    (BERLIN + TRUE, "spec.startingDeadlineSeconds", 60),
    (
        BERLIN + TRUE + 'catchup = "last"\nstarting_deadline = "6h"\n',
        "spec.startingDeadlineSeconds",
        21600,
    ),
    (BERLIN + TRUE + 'catchup = "last"\n', "spec.startingDeadlineSeconds", MISSING),
    # history
    (BERLIN + TRUE, "spec.successfulJobsHistoryLimit", 10),
    (BERLIN + TRUE, "spec.failedJobsHistoryLimit", 10),
    (BERLIN + TRUE + "[records]\nkeep = 3\n", "spec.successfulJobsHistoryLimit", 3),
    (BERLIN + TRUE + "[records]\nkeep = 3\n", "spec.failedJobsHistoryLimit", 3),
    (BERLIN + TRUE, "spec.jobTemplate.spec.ttlSecondsAfterFinished", MISSING),
    (
        BERLIN + TRUE + '[records]\nmax_age = "2d"\n',
        "spec.jobTemplate.spec.ttlSecondsAfterFinished",
        172800,
    ),
    # deadlines and retries (native)
    (BERLIN + TRUE + 'timeout = "20m"\n', "spec.jobTemplate.spec.activeDeadlineSeconds", 1200),
    (BERLIN + TRUE, "spec.jobTemplate.spec.activeDeadlineSeconds", MISSING),
    (BERLIN + TRUE, "spec.jobTemplate.spec.backoffLimit", 0),
    (BERLIN + TRUE + "[retry]\nattempts = 3\n", "spec.jobTemplate.spec.backoffLimit", 2),
    (
        BERLIN + TRUE + 'timeout = "1m"\n[retry]\nattempts = 3\non = ["failed", "timeout"]\n',
        f"{POD}.activeDeadlineSeconds",
        60,
    ),
    (
        BERLIN + TRUE + 'timeout = "1m"\n[retry]\nattempts = 3\non = ["failed", "timeout"]\n',
        "spec.jobTemplate.spec.activeDeadlineSeconds",
        MISSING,
    ),
    (BERLIN + TRUE, f"{POD}.terminationGracePeriodSeconds", 10),
    (BERLIN + TRUE + 'kill_grace = "45s"\n', f"{POD}.terminationGracePeriodSeconds", 45),
    (BERLIN + TRUE, f"{POD}.restartPolicy", "Never"),
    # the container
    (BERLIN + TRUE, f"{CONTAINER}.image", IMAGE),
    (BERLIN + TRUE, f"{CONTAINER}.command", ["true"]),
    (
        BERLIN + 'command = ["echo", "$HOME", "$(date)"]\n',
        f"{CONTAINER}.command",
        ["echo", "$$HOME", "$$(date)"],
    ),
    (BERLIN + 'shell = "echo $$ hi"\n', f"{CONTAINER}.command", ["/bin/sh", "-c", "echo $$$$ hi"]),
    (BERLIN + TRUE + 'cwd = "/srv/app"\n', f"{CONTAINER}.workingDir", "/srv/app"),
    (
        BERLIN + TRUE + '[env]\nB = "2"\nA = "$(HOME)"\n',
        f"{CONTAINER}.env",
        [
            {"name": "A", "value": "$$(HOME)"},
            {"name": "B", "value": "2"},
            {"name": "KRON_JOB", "value": "j"},
        ],
    ),
    (
        BERLIN + TRUE + '[env]\nTOKEN = { value = "s3cret", secret = true }\n',
        f"{CONTAINER}.env",
        [
            {"name": "KRON_JOB", "value": "j"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "j-env", "key": "TOKEN"}}},
        ],
    ),
    (BERLIN + TRUE, f"{CONTAINER}.securityContext", {"allowPrivilegeEscalation": False}),
    (BERLIN + TRUE, f"{POD}.securityContext", MISSING),
    (
        BERLIN + TRUE + 'user = "1000"\ngroup = "100"\n',
        f"{POD}.securityContext",
        {"runAsUser": 1000, "runAsGroup": 100},
    ),
    # docker jobs run their own image
    (
        BERLIN
        + '[docker]\nimage = "alpine:3.20"\ncommand = ["echo", "hi"]\nentrypoint = ["/bin/busybox"]\n'
        + 'env = { X = "1" }\nworkdir = "/w"\nuser = "1000:1000"\npull = "never"\n',
        CONTAINER,
        {
            "name": "job",
            "image": "alpine:3.20",
            "command": ["/bin/busybox"],
            "args": ["echo", "hi"],
            "imagePullPolicy": "Never",
            "env": [{"name": "KRON_JOB", "value": "j"}, {"name": "X", "value": "1"}],
            "workingDir": "/w",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "runAsUser": 1000,
                "runAsGroup": 1000,
            },
        },
    ),
    (
        BERLIN + '[docker]\nimage = "alpine:3.20"\ncommand = "echo $HOME"\n',
        f"{CONTAINER}.args",
        ["/bin/sh", "-c", "echo $$HOME"],
    ),
    (BERLIN + '[docker]\nimage = "alpine:3.20"\n', f"{CONTAINER}.imagePullPolicy", "IfNotPresent"),
    # the escape hatch
    (
        BERLIN + TRUE + '[x-kubernetes.resources]\nrequests = { cpu = "100m", memory = "64Mi" }\n',
        f"{CONTAINER}.resources",
        {"requests": {"cpu": "100m", "memory": "64Mi"}},
    ),
    (
        BERLIN + TRUE + '[x-kubernetes]\nserviceAccountName = "backup"\n',
        f"{POD}.serviceAccountName",
        "backup",
    ),
    (
        BERLIN + TRUE + '[x-kubernetes]\nnodeSelector = { "kubernetes.io/arch" = "amd64" }\n',
        f"{POD}.nodeSelector",
        {"kubernetes.io/arch": "amd64"},
    ),
    (
        BERLIN + TRUE + '[[x-kubernetes.tolerations]]\nkey = "batch"\noperator = "Exists"\n',
        f"{POD}.tolerations",
        [{"key": "batch", "operator": "Exists"}],
    ),
    # labels and annotations
    (
        BERLIN + TRUE,
        "metadata.labels",
        {
            "app.kubernetes.io/managed-by": "kron",
            "kron/job": "j",
            "kron/config-sha": "<sha>",
        },
    ),
    (
        BERLIN + TRUE + '[tags]\nteam = "ops"\n',
        "metadata.labels",
        {
            "app.kubernetes.io/managed-by": "kron",
            "kron/job": "j",
            "kron/config-sha": "<sha>",
            "tag.kron/team": "ops",
        },
    ),
    (
        BERLIN + TRUE + 'description = "Nightly"\n',
        "metadata.annotations",
        {
            "kron/job": "j",
            "kron/source": "j.toml",
            "kron/mode": "native",
            "kron/description": "Nightly",
        },
    ),
    # kron mode: what needs it, and what it looks like
    (BERLIN + TRUE + '[wait]\nuntil = "tcp://127.0.0.1:5432"\n', f"{CONTAINER}.args", KRON_ARGS),
    (BERLIN + TRUE + 'healthcheck = "https://hc.example/x"\n', f"{CONTAINER}.args", KRON_ARGS),
    (BERLIN + TRUE + "success_codes = [0, 3]\n", f"{CONTAINER}.args", KRON_ARGS),
    (BERLIN + TRUE + 'umask = "027"\n', f"{CONTAINER}.args", KRON_ARGS),
    (BERLIN + TRUE + 'cwd = "work"\n', f"{CONTAINER}.args", KRON_ARGS),
    (BERLIN + TRUE + 'jitter = "5m"\n', f"{CONTAINER}.args", KRON_ARGS),
    (BERLIN + '[http]\nurl = "http://127.0.0.1:9/"\n', f"{CONTAINER}.args", KRON_ARGS),
    (BERLIN + TRUE + '[retry]\nattempts = 3\ndelay = "1m"\n', f"{CONTAINER}.args", KRON_ARGS),
    (BERLIN + TRUE + '[retry]\nattempts = 2\njitter = "1s"\n', f"{CONTAINER}.args", KRON_ARGS),
    (BERLIN + TRUE + '[retry]\nattempts = 2\non = ["timeout"]\n', f"{CONTAINER}.args", KRON_ARGS),
    (BERLIN + TRUE + 'timeout = "1m"\n[retry]\nattempts = 2\n', f"{CONTAINER}.args", KRON_ARGS),
    (
        'schedule = "30 2 * * *"\ntimezone = "Europe/Berlin"\n' + TRUE,
        f"{CONTAINER}.args",
        KRON_ARGS,
    ),
    (BERLIN + TRUE + 'jitter = "5m"\n', "spec.jobTemplate.spec.backoffLimit", 0),
    (BERLIN + TRUE + 'jitter = "5m"\n', f"{CONTAINER}.image", IMAGE),
    (BERLIN + TRUE + 'jitter = "5m"\n', f"{CONTAINER}.command", MISSING),
    (BERLIN + TRUE + 'jitter = "5m"\n', f"{POD}.terminationGracePeriodSeconds", 20),
    (BERLIN + TRUE + 'jitter = "5m"\n', f"{POD}.securityContext", {"runAsNonRoot": True}),
    (
        BERLIN + TRUE + 'jitter = "5m"\nuser = "1000"\n',
        f"{POD}.securityContext",
        {"runAsUser": 1000, "runAsNonRoot": True},
    ),
    (
        BERLIN + TRUE + 'jitter = "5m"\n',
        f"{CONTAINER}.env",
        [
            {
                "name": "KRON_K8S_JOB",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}
                },
            }
        ],
    ),
    (
        BERLIN + TRUE + 'jitter = "5m"\n',
        f"{CONTAINER}.volumeMounts",
        [{"name": "jobs", "mountPath": "/etc/kron/jobs.d", "readOnly": True}],
    ),
    (
        BERLIN + TRUE + 'jitter = "5m"\n',
        f"{POD}.volumes",
        [
            {
                "name": "jobs",
                "projected": {
                    "defaultMode": 0o444,
                    "sources": [
                        {"configMap": {"name": "j", "items": [{"key": "j.toml", "path": "j.toml"}]}}
                    ],
                },
            }
        ],
    ),
    # no timeout: kron in the pod runs as long as the job does
    (BERLIN + TRUE + 'jitter = "5m"\n', "spec.jobTemplate.spec.activeDeadlineSeconds", MISSING),
    # 5m jitter + 2 x (1m timeout + 10s grace) + 10s retry delay + 60s for notifications
    (
        BERLIN + TRUE + 'jitter = "5m"\ntimeout = "1m"\n[retry]\nattempts = 2\n',
        "spec.jobTemplate.spec.activeDeadlineSeconds",
        300 + 2 * 70 + 10 + 60,
    ),
]


@pytest.mark.parametrize(("job", "path", "expected"), MAPPING)
def test_a_job_field_maps_to_its_cronjob_field(
    jobs_dir: Path, write: Callable[[str, str], Path], job: str, path: str, expected: Any
) -> None:
    write("j.toml", job)
    exported = export(jobs_dir)
    assert exported.refused == [], [str(p) for p in exported.problems]
    body = cron_job(exported, "j")
    got = dig(body, path)
    if isinstance(expected, dict) and expected.get("kron/config-sha") == "<sha>":
        expected = {**expected, "kron/config-sha": body["metadata"]["labels"]["kron/config-sha"]}
    assert got == expected


def test_the_config_sha_label_is_the_one_the_job_s_records_carry(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    from kron.config.catalog import load_dir

    write("j.toml", BERLIN + TRUE)
    sha = load_dir(jobs_dir).jobs["j"].config_sha
    body = cron_job(export(jobs_dir), "j")
    assert body["metadata"]["labels"]["kron/config-sha"] == sha
    assert dig(body, "spec.jobTemplate.metadata.labels")["kron/config-sha"] == sha
    assert dig(body, "spec.jobTemplate.spec.template.metadata.labels")["kron/config-sha"] == sha


def test_kron_toml_defaults_and_zone_reach_the_cronjob(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write(
        "kron.toml",
        """
        timezone = "America/New_York"
        [defaults]
        timeout = "5m"
        [defaults.x-kubernetes.resources]
        limits = { memory = "128Mi" }
        """,
    )
    write("j.toml", 'schedule = "0 3 * * *"\n' + TRUE)
    body = cron_job(export(jobs_dir), "j")
    assert body["spec"]["timeZone"] == "America/New_York"
    assert dig(body, "spec.jobTemplate.spec.activeDeadlineSeconds") == 300
    assert dig(body, f"{CONTAINER}.resources") == {"limits": {"memory": "128Mi"}}


def test_an_at_job_is_suspended_by_an_export_after_its_time(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    from datetime import UTC, datetime

    write("j.toml", 'schedule = "@at 2026-12-07T09:00"\ntimezone = "Europe/Berlin"\n' + TRUE)
    # 09:00 in Berlin on 7 December 2026 is 08:00 UTC (CET, +01:00).
    before = datetime(2026, 12, 7, 7, 59, tzinfo=UTC)
    after = datetime(2026, 12, 7, 8, 1, tzinfo=UTC)
    assert cron_job(export(jobs_dir, now=before), "j")["spec"]["suspend"] is False
    assert cron_job(export(jobs_dir, now=after), "j")["spec"]["suspend"] is True


def test_a_namespace_goes_on_every_object(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    from .kube import objects

    write("a.toml", BERLIN + TRUE)
    write("b.toml", BERLIN + TRUE + 'jitter = "1m"\n')
    bodies = objects(export(jobs_dir, namespace="batch"))
    assert [(b["kind"], b["metadata"]["name"], b["metadata"]["namespace"]) for b in bodies] == [
        ("CronJob", "a", "batch"),
        ("CronJob", "b", "batch"),
        ("ConfigMap", "b", "batch"),
    ]


def test_mode_native_and_mode_kron_apply_to_every_job(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("j.toml", BERLIN + TRUE)
    assert dig(cron_job(export(jobs_dir), "j"), f"{CONTAINER}.command") == ["true"]
    forced = cron_job(export(jobs_dir, mode=Mode.KRON), "j")
    assert dig(forced, f"{CONTAINER}.args") == KRON_ARGS
    assert forced["metadata"]["annotations"]["kron/mode"] == "kron"


def _problems(jobs_dir: Path, mode: Mode | None = None) -> list[str]:
    exported = export(jobs_dir, mode=mode)
    return [str(p).removeprefix(str(jobs_dir) + "/") for p in exported.problems]


# (the job file, what the export says of it): refused, with the field and its line
REFUSALS = [
    (
        'schedule = "*/10 * * * * *"\n' + TRUE,
        "j.toml:1:1: schedule: refused: a seconds field: a CronJob fires at most once a minute",
    ),
    (
        'schedule = "@every 90s"\n' + TRUE,
        "j.toml:1:1: schedule: refused: @every 90s: a CronJob fires on whole minutes",
    ),
    (
        'schedule = "@every 7m"\n' + TRUE,
        "j.toml:1:1: schedule: refused: @every 7m: no cron expression fires every 7 minutes "
        "counted from the epoch, as @every does; use a divisor of an hour or of a day",
    ),
    (
        'schedule = "@reboot"\n' + TRUE,
        "j.toml:1:1: schedule: refused: @reboot: a cluster has no boot of its own to run it at",
    ),
    (
        'schedule = "@at 2026-12-07T09:00:30"\n' + TRUE,
        "j.toml:1:1: schedule: refused: @at 2026-12-07T09:00:30: a CronJob fires on whole minutes",
    ),
    (
        'schedule = "0 3 L * *"\n' + TRUE,
        "j.toml:1:1: schedule: refused: day-of-month 'L': the CronJob controller knows neither "
        "`L` nor `#`",
    ),
    (
        'schedule = "0 3 * * MON#2"\n' + TRUE,
        "j.toml:1:1: schedule: refused: day-of-week 'MON#2': the CronJob controller knows neither "
        "`L` nor `#`",
    ),
    (
        'schedule = "0 3 * * 5-7/2"\n' + TRUE,
        "j.toml:1:1: schedule: refused: day-of-week '5-7/2': the CronJob controller counts "
        "Sunday as 0 only",
    ),
    (
        'schedule = "0 0 */2 * MON"\n' + TRUE,
        "j.toml:1:1: schedule: refused: day-of-month '*/2' beside a restricted day-of-week: the "
        "CronJob controller fires on days matching either field, kron (as Vixie cron) only on "
        "days matching both",
    ),
    (
        BERLIN + TRUE + 'catchup = "all"\n',
        'j.toml:4:1: catchup: refused: catchup = "all": a CronJob starts at most the latest '
        "missed slot",
    ),
    (
        BERLIN + TRUE + 'user = "backup"\n',
        "j.toml:4:1: user: refused: 'backup': a pod's securityContext takes a numeric id; write "
        "the id the image knows",
    ),
    (
        BERLIN + '[docker]\nimage = "alpine"\nvolumes = ["/srv:/srv"]\n',
        "j.toml:5:1: docker.volumes: refused: host bind mounts have no CronJob equivalent",
    ),
    (
        BERLIN + '[docker]\nimage = "alpine"\nuser = "nobody"\n',
        "j.toml:5:1: docker.user: refused: 'nobody': a pod's securityContext takes numeric ids "
        '("1000" or "1000:1000")',
    ),
    (
        BERLIN + TRUE + "[x-kubernetes]\nresource = {}\n",
        "j.toml:5:1: x-kubernetes.resource: unknown field 'resource'; did you mean 'resources'?",
    ),
]


@pytest.mark.parametrize(("job", "problem"), REFUSALS)
def test_what_a_cronjob_cannot_carry_is_refused_with_the_field_and_line(
    jobs_dir: Path, write: Callable[[str, str], Path], job: str, problem: str
) -> None:
    write("j.toml", job)
    write("ok.toml", BERLIN + TRUE)
    exported = export(jobs_dir)
    assert _problems(jobs_dir) == [problem]
    assert exported.refused == ["j"]
    assert sorted(exported.files) == ["kustomization.yaml", "ok.cronjob.yaml"]


def test_max_concurrent_in_kron_toml_refuses_every_job(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("kron.toml", "max_concurrent = 4\n")
    write("a.toml", BERLIN + TRUE)
    message = (
        "refused: kron.toml sets max_concurrent = 4: a limit across jobs has no CronJob "
        "equivalent (a ResourceQuota on pods comes closest)"
    )
    assert _problems(jobs_dir) == [f"a.toml: {message}"]


# (the job file, what --mode native says of it): carried only by kron in the pod
NEEDS_KRON = [
    (
        BERLIN + '[http]\nurl = "http://127.0.0.1:9/"\n',
        "j.toml:3:1: http: refused in --mode native: only kron in the pod carries an HTTP request "
        "with its expected status and body",
    ),
    (
        BERLIN + '[agent]\nprompt = "hi"\ncommand = ["llm"]\n',
        "j.toml:3:1: agent: refused in --mode native: only kron in the pod carries an agent run "
        "(its prompt, answer and token count)",
    ),
    (
        BERLIN + TRUE + '[wait]\nuntil = "tcp://127.0.0.1:9"\n',
        "j.toml:4:1: wait: refused in --mode native: only kron in the pod carries a wait condition",
    ),
    (
        BERLIN + TRUE + 'triggers = ["k"]\n',
        "j.toml:4:1: triggers: refused in --mode native: only kron in the pod carries triggers "
        "(run in the same pod)",
    ),
    (
        BERLIN + TRUE + '[[notify]]\nwebhook = "http://127.0.0.1:9/"\n',
        "j.toml:4:1: notify.0: refused in --mode native: only kron in the pod carries "
        "notifications",
    ),
    (
        BERLIN + TRUE + 'healthcheck = "https://hc.example/x"\n',
        "j.toml:4:1: healthcheck: refused in --mode native: only kron in the pod carries "
        "healthcheck pings",
    ),
    (
        BERLIN + TRUE + "success_codes = [0, 3]\n",
        "j.toml:4:1: success_codes: refused in --mode native: only kron in the pod carries exit "
        "codes other than 0 counted as success",
    ),
    (
        BERLIN + TRUE + 'env_file = "secrets.env"\n',
        "j.toml:4:1: env_file: refused in --mode native: only kron in the pod carries an env_file "
        "(mounted from a Secret)",
    ),
    (
        BERLIN + TRUE + 'umask = "027"\n',
        "j.toml:4:1: umask: refused in --mode native: only kron in the pod carries a umask (a pod "
        "has no such field)",
    ),
    (
        BERLIN + TRUE + 'cwd = "work"\n',
        "j.toml:4:1: cwd: refused in --mode native: only kron in the pod carries a cwd relative to "
        "the job file",
    ),
    (
        BERLIN + TRUE + '[retry]\nattempts = 3\ndelay = "1m"\n',
        "j.toml:4:1: retry: refused in --mode native: only kron in the pod carries this retry: "
        "its delays are not the Job controller's (10 s, doubling, at most 6 min)",
    ),
    (
        BERLIN + TRUE + '[retry]\nattempts = 2\non = ["timeout"]\n',
        "j.toml:4:1: retry: refused in --mode native: only kron in the pod carries this retry: a "
        "CronJob retries every failed pod",
    ),
    (
        BERLIN + TRUE + 'timeout = "1m"\n[retry]\nattempts = 2\n',
        "j.toml:5:1: retry: refused in --mode native: only kron in the pod carries this retry: a "
        "CronJob retries a pod past its deadline too",
    ),
]


@pytest.mark.parametrize(("job", "problem"), NEEDS_KRON)
def test_mode_native_refuses_what_only_kron_in_the_pod_carries(
    jobs_dir: Path, write: Callable[[str, str], Path], job: str, problem: str
) -> None:
    write("j.toml", job)
    write("k.toml", 'schedule = "@manual"\n' + TRUE)
    (jobs_dir / "secrets.env").write_text("TOKEN=x\n", encoding="utf-8")
    assert _problems(jobs_dir, Mode.NATIVE) == [problem]
    assert export(jobs_dir, mode=Mode.NATIVE).refused == ["j"]
    cron_job(export(jobs_dir), "j")  # without --mode: kron mode carries it


def test_a_docker_job_that_needs_kron_is_refused(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("j.toml", BERLIN + '[docker]\nimage = "alpine"\n[wait]\nuntil = "tcp://127.0.0.1:9"\n')
    assert _problems(jobs_dir) == [
        "j.toml:3:1: docker: refused: a docker job runs its image as the pod's container; kron "
        "in a pod has no Docker engine to run it",
        "j.toml:5:1: wait: refused: only kron in the pod carries a wait condition",
    ]
    write("j.toml", BERLIN + '[docker]\nimage = "alpine"\n')
    assert _problems(jobs_dir, Mode.KRON) == [
        "j.toml:3:1: docker: refused in --mode kron: a docker job runs its image as the pod's "
        "container; kron in a pod has no Docker engine to run it"
    ]


def test_a_secret_env_value_never_goes_into_a_config_map(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write(
        "j.toml",
        BERLIN + TRUE + 'jitter = "1m"\n[env]\nTOKEN = { value = "s3cret", secret = true }\n',
    )
    exported = export(jobs_dir)
    assert _problems(jobs_dir) == [
        "j.toml:6:1: env.TOKEN: refused in kron mode: the value is marked secret and the job "
        "file goes into a ConfigMap; move it to env_file, which is mounted from a Secret"
    ]
    assert "s3cret" not in "".join(exported.files.values())


# (the job file, the mode asked for, the warnings): carried, but not as kron carries it
WARNINGS = [
    (
        'schedule = "@at 2026-12-07T09:00"\ntimezone = "Europe/Berlin"\n' + TRUE,
        None,
        [
            "j.toml:1:1: warning: schedule: @at 2026-12-07T09:00: a CronJob has no year; exported "
            "as '0 9 7 12 *' in Europe/Berlin; kron in the pod runs only the slot of 2026, and an "
            "export after that time suspends it"
        ],
    ),
    (
        'schedule = "@at 2026-12-07T09:00"\ntimezone = "Europe/Berlin"\n' + TRUE,
        Mode.NATIVE,
        [
            "j.toml:1:1: warning: schedule: @at 2026-12-07T09:00: a CronJob has no year; exported "
            "as '0 9 7 12 *' in Europe/Berlin, which fires every year until an export after that "
            "time suspends it"
        ],
    ),
    # Europe/Berlin: clocks go back from 03:00 CEST to 02:00 CET on the last Sunday of October,
    # and forward from 02:00 CET to 03:00 CEST on the last Sunday of March.
    (
        'schedule = "30 2 * * *"\ntimezone = "Europe/Berlin"\n' + TRUE,
        Mode.NATIVE,
        [
            "j.toml:1:1: warning: schedule: 02:30 in Europe/Berlin falls in the hour repeated "
            "when daylight saving time ends: a CronJob runs it twice that night (kubernetes "
            "#121594); kron in the pod skips the second run",
            "j.toml:1:1: warning: schedule: 02:30 in Europe/Berlin falls in the hour skipped when "
            "daylight saving time begins: a CronJob does not run it that day, where kron runs it "
            "as the hour ends",
        ],
    ),
    (
        'schedule = "30 2 * * *"\ntimezone = "Europe/Berlin"\n' + TRUE,
        None,
        [
            "j.toml:1:1: warning: schedule: 02:30 in Europe/Berlin falls in the hour skipped when "
            "daylight saving time begins: a CronJob does not run it that day, where kron runs it "
            "as the hour ends"
        ],
    ),
    ('schedule = "30 3 * * *"\ntimezone = "Europe/Berlin"\n' + TRUE, Mode.NATIVE, []),
    ('schedule = "*/30 * * * *"\ntimezone = "Europe/Berlin"\n' + TRUE, Mode.NATIVE, []),
    ('schedule = "30 2 * * *"\ntimezone = "Asia/Tokyo"\n' + TRUE, Mode.NATIVE, []),
    (
        BERLIN + TRUE + 'jitter = "5m"\n',
        Mode.NATIVE,
        [
            "j.toml:4:1: warning: jitter: a CronJob has no jitter; kron in the pod waits the job's "
            "offset"
        ],
    ),
    (
        BERLIN + TRUE + '[[notify]]\non = ["recovery"]\nwebhook = "http://127.0.0.1:9/"\n',
        None,
        [
            'j.toml:5:1: warning: notify.0.on: on = "recovery" needs the previous run\'s record, '
            "which a new pod does not have: it is sent only after a failure in the same pod"
        ],
    ),
    (
        BERLIN + '[agent]\nprompt = "hi"\ncommand = ["llm"]\nmax_runs_per_day = 2\n',
        None,
        [
            "j.toml:3:1: warning: agent: agent budgets count the runs of one pod only: each pod "
            "starts with a full day's budget"
        ],
    ),
    (
        BERLIN + '[docker]\nimage = "alpine"\nnetwork = "host"\n',
        None,
        [
            "j.toml:5:1: warning: docker.network: 'host' is not carried: a pod is on the "
            "cluster's network"
        ],
    ),
    (
        BERLIN + TRUE + '[tags]\nowner = "Jane Doe"\n',
        None,
        [
            "j.toml:5:1: warning: tags.owner: not a Kubernetes label (letters, digits, `-`, `_` "
            "and `.`, at most 63 characters); left out of the labels"
        ],
    ),
]


@pytest.mark.parametrize(("job", "mode", "warnings"), WARNINGS)
def test_what_a_cronjob_carries_differently_is_a_warning(
    jobs_dir: Path,
    write: Callable[[str, str], Path],
    job: str,
    mode: Mode | None,
    warnings: list[str],
) -> None:
    write("j.toml", job)
    exported = export(jobs_dir, mode=mode)
    assert exported.refused == []
    assert _problems(jobs_dir, mode) == warnings
    cron_job(exported, "j")


def test_a_job_name_taken_twice_is_resolved_and_reported(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("a-b.toml", BERLIN + TRUE)
    write("a_b.toml", BERLIN + TRUE)
    write("A/B.toml", BERLIN + TRUE)
    exported = export(jobs_dir)
    assert sorted(exported.files) == [
        "a-b-648fa9b3.cronjob.yaml",
        "a-b-998d3ed8.cronjob.yaml",
        "a-b.cronjob.yaml",
        "kustomization.yaml",
    ]
    assert _problems(jobs_dir) == [
        "A/B.toml: warning: 'A/B', 'a-b', 'a_b' all make the name 'a-b': this job's CronJob is "
        "'a-b-998d3ed8'",
        "a_b.toml: warning: 'A/B', 'a-b', 'a_b' all make the name 'a-b': this job's CronJob is "
        "'a-b-648fa9b3'",
    ]
    assert cron_job(exported, "a-b")["metadata"]["annotations"]["kron/job"] == "a-b"


def test_a_long_job_id_gets_a_short_stable_name(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    long_id = "reports/quarterly-revenue-by-region-and-product-line-weekly"
    write(f"{long_id}.toml", BERLIN + TRUE)
    exported = export(jobs_dir)
    name = "reports-quarterly-revenue-by-region-and-pro-8ccc93fc"
    assert sorted(exported.files) == ["kustomization.yaml", f"{name}.cronjob.yaml"]
    assert len(name) == 52
    assert _problems(jobs_dir) == [
        f"{long_id}.toml: warning: 'reports-quarterly-revenue-by-region-and-product-line-weekly' "
        f"is not a usable name (at most 52 characters): this job's CronJob is '{name}'"
    ]
    body = cron_job(exported, name)
    assert body["metadata"]["labels"]["kron/job"] == (
        "reports.quarterly-revenue-by-region-and-product-line-weekly"
    )
