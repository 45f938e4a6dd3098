"""`k8s:` waits at work: the client configuration, and real probes against a fake Kubernetes
API over HTTPS on 127.0.0.1 whose answers are schema-checked; a daemon that waits on one."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from kron.actions.kube import find_cluster, read_condition
from kron.actions.wait import Breakers, WaitResult
from kron.config.catalog import load_dir
from kron.model.conditions import KubeProbe, parse_condition
from kron.model.job import Job

from .harness import DEADLINE_S, make_job, read_records
from .kube_api import (
    AVAILABLE,
    DEPLOYMENT_PATH,
    PROGRESSING,
    TOKEN,
    UNAVAILABLE,
    FakeKubeApi,
    T,
    condition,
    deployment,
)
from .test_wait import FakeTime, closed_port, run, wait_of


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeKubeApi]:
    with FakeKubeApi(tmp_path) as fake:
        yield fake


def kube_job(
    jobs_dir: Path,
    until: str,
    *,
    wait: str = "",
    top: str = "",
    timeout: str = "0s",
    every: str = "1s",
    probe_timeout: str = "5s",
) -> Job:
    """A job that waits on `until`; `wait` adds lines to its [wait] table, `top` before it."""
    return make_job(
        jobs_dir,
        f"k-{uuid.uuid4().hex[:8]}.toml",
        f"""
        schedule = "@manual"
        shell = "echo ran"
        {top}
        [wait]
        until = {json.dumps(until)}
        every = "{every}"
        timeout = "{timeout}"
        probe_timeout = "{probe_timeout}"
        {wait}
        """,
    )


def probe_with(jobs_dir: Path, api: FakeKubeApi, until: str, **kwargs: Any) -> WaitResult:
    """One wait on `until` through a kubeconfig for the fake API, on a fake clock."""
    config = api.kubeconfig(jobs_dir / "kubeconfig")
    job = kube_job(jobs_dir, until, wait=f'kubeconfig = "{config.name}"', **kwargs)
    return wait_of(job, time=FakeTime())


# -- client configuration -----------------------------------------------------------------


def test_a_missing_kubeconfig_is_a_warning_and_one_others_can_write_is_refused(
    jobs_dir: Path, write: Any
) -> None:
    write(
        "a.toml",
        'schedule = "@manual"\nshell = "true"\n[wait]\nuntil = "k8s:no/n1:Ready"\nkubeconfig = "nowhere"\n',
    )
    shared = jobs_dir / "shared"
    shared.write_text("apiVersion: v1\n")
    shared.chmod(0o666)
    write(
        "b.toml",
        'schedule = "@manual"\nshell = "true"\n[wait]\nuntil = "k8s:no/n1:Ready"\nkubeconfig = "shared"\n',
    )
    found = sorted(str(p).replace(str(jobs_dir) + os.sep, "") for p in load_dir(jobs_dir).problems)
    assert found == [
        "a.toml:5:1: warning: wait.kubeconfig: kubeconfig 'nowhere' does not exist: k8s: conditions fail until it does",
        "b.toml:5:1: wait.kubeconfig: refused: kubeconfig shared is writable by group and others (mode 0666); run chmod go-w shared",
    ]


def test_kubeconfig_and_context_from_kron_toml_serve_jobs_that_do_not_name_their_own(
    jobs_dir: Path, api: FakeKubeApi
) -> None:
    api.put(DEPLOYMENT_PATH, deployment(PROGRESSING, AVAILABLE))
    dead = f"https://127.0.0.1:{closed_port()}"
    api.kubeconfig(jobs_dir / "clusters", contexts={"old": dead, "prod": api.server}, current="old")
    (jobs_dir / "kron.toml").write_text('[wait]\nkubeconfig = "clusters"\ncontext = "prod"\n')
    job = kube_job(jobs_dir, "k8s:deployment/prod/api:Available")
    assert job.wait is not None
    assert (job.wait.kubeconfig, job.wait.context) == (jobs_dir / "clusters", "prod")
    assert wait_of(job, time=FakeTime()).record() == {"satisfied": True, "waited_s": 0.0}
    own = kube_job(jobs_dir, "k8s:deployment/prod/api:Available", wait='context = "old"')
    assert wait_of(own, time=FakeTime()).reason == f"k8s: {dead}: connection refused"


def test_without_a_kubeconfig_option_the_first_existing_file_of_kubeconfig_is_read(
    jobs_dir: Path, api: FakeKubeApi, tmp_path: Path
) -> None:
    api.put(DEPLOYMENT_PATH, deployment(PROGRESSING, AVAILABLE))
    config = api.kubeconfig(tmp_path / "second.yaml")
    listed = os.pathsep.join([str(tmp_path / "first.yaml"), str(config)])
    job = kube_job(
        jobs_dir, "k8s:deploy/prod/api:Available", top=f'env = {{ KUBECONFIG = "{listed}" }}'
    )
    assert wait_of(job, time=FakeTime()).satisfied is True
    assert [s.authorization for s in api.seen] == [f"Bearer {TOKEN}"]


def test_without_kubeconfig_the_file_in_home_is_read_and_its_absence_is_said(
    jobs_dir: Path, api: FakeKubeApi, tmp_path: Path
) -> None:
    api.put(DEPLOYMENT_PATH, deployment(PROGRESSING, AVAILABLE))
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    env = f'env = {{ HOME = "{home}", KUBECONFIG = "" }}'
    job = kube_job(jobs_dir, "k8s:deploy/prod/api:Available", top=env)
    assert wait_of(job, time=FakeTime()).reason == (
        "k8s: no cluster configured: not in a pod "
        "(no /var/run/secrets/kubernetes.io/serviceaccount/token), "
        f"no KUBECONFIG, no {home}/.kube/config; set wait.kubeconfig"
    )
    api.kubeconfig(home / ".kube" / "config")
    assert wait_of(job, time=FakeTime()).satisfied is True


@pytest.mark.parametrize(
    ("content", "wait", "reason"),
    [
        (
            "- just\n- a list\n",
            "",
            "k8s: kubeconfig {path} is not a mapping of clusters, contexts and users",
        ),
        (
            "clusters: [\n",
            "",
            "k8s: kubeconfig {path} is not YAML: "
            "expected the node content, but found '<stream end>' (line 2, column 1)",
        ),
        ("contexts: []\n", "", "k8s: kubeconfig {path} is malformed (KeyError: 'clusters')"),
        (None, 'context = "staging"', "k8s: kubeconfig {path}: Context 'staging' not found"),
        ("VALID-NO-CURRENT", "", "k8s: kubeconfig {path} has no current-context; set wait.context"),
    ],
)
def test_a_kubeconfig_that_cannot_be_used_is_a_probe_failure_that_says_why(
    jobs_dir: Path, api: FakeKubeApi, content: str | None, wait: str, reason: str
) -> None:
    path = jobs_dir / "kubeconfig"
    if content == "VALID-NO-CURRENT":
        api.kubeconfig(path, current=None)
    elif content is None:
        api.kubeconfig(path)
    else:
        path.write_text(content)
    job = kube_job(jobs_dir, "k8s:no/n1:Ready", wait=f'kubeconfig = "kubeconfig"\n{wait}')
    assert wait_of(job, time=FakeTime()).reason == reason.format(path=path)
    assert api.seen == []


def test_a_kubeconfig_path_the_system_refuses_is_a_clear_error_at_load_and_at_probe_time(
    jobs_dir: Path, tmp_path: Path, write: Any
) -> None:
    long_name = "k" * 300  # longer than a file name may be: stat fails with ENAMETOOLONG
    write(
        "a.toml",
        f'schedule = "@manual"\nshell = "true"\n[wait]\nuntil = "k8s:no/n1:Ready"\nkubeconfig = "{long_name}"\n',
    )
    assert [str(p).replace(str(jobs_dir) + os.sep, "") for p in load_dir(jobs_dir).problems] == [
        f"a.toml:5:1: wait.kubeconfig: kubeconfig '{long_name}' cannot be read: File name too long"
    ]
    path = tmp_path / long_name
    job = kube_job(jobs_dir, "k8s:no/n1:Ready", top=f'env = {{ KUBECONFIG = "{path}" }}')
    assert wait_of(job, time=FakeTime()).reason == f"k8s: {path}: File name too long"


def test_a_kubeconfig_others_can_write_is_refused_at_probe_time_too(
    jobs_dir: Path, api: FakeKubeApi, tmp_path: Path
) -> None:
    config = api.kubeconfig(tmp_path / "shared.yaml")
    config.chmod(0o664)
    job = kube_job(jobs_dir, "k8s:no/n1:Ready", top=f'env = {{ KUBECONFIG = "{config}" }}')
    assert wait_of(job, time=FakeTime()).reason == (
        f"k8s: refused: kubeconfig {config} is writable by group (mode 0664); "
        f"run chmod g-w {config}"
    )
    assert api.seen == []


def _plugin(tmp_path: Path, script: str) -> dict[str, Any]:
    path = tmp_path / "credential-plugin"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(path)}}


def test_an_exec_credential_plugin_gives_the_token_and_its_failure_is_the_reason(
    jobs_dir: Path, api: FakeKubeApi, tmp_path: Path
) -> None:
    # How EKS, GKE and AKS clusters hand out tokens: kubectl runs a command that prints them.
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": TOKEN},
    }
    api.put(DEPLOYMENT_PATH, deployment(PROGRESSING, AVAILABLE))
    plugin = _plugin(tmp_path, f"echo '{json.dumps(credential)}'")
    api.kubeconfig(jobs_dir / "kubeconfig", user=plugin)
    job = kube_job(jobs_dir, "k8s:deploy/prod/api:Available", wait='kubeconfig = "kubeconfig"')
    assert wait_of(job, time=FakeTime()).satisfied is True
    assert [s.authorization for s in api.seen] == [f"Bearer {TOKEN}"]
    failing = _plugin(tmp_path, "echo 'the SSO session has expired' >&2; exit 1")
    api.kubeconfig(jobs_dir / "kubeconfig", user=failing)
    assert wait_of(job, time=FakeTime()).reason == (
        f"k8s: credentials: Exec {failing['exec']['command']} returned 1: "
        "the SSO session has expired"
    )
    garbled = _plugin(tmp_path, "echo 'please log in'")
    api.kubeconfig(jobs_dir / "kubeconfig", user=garbled)
    assert wait_of(job, time=FakeTime()).reason == (
        "k8s: credentials: the exec plugin printed no JSON "
        "(Expecting value: line 1 column 1 (char 0))"
    )


def test_in_a_pod_the_service_account_token_and_ca_are_used(
    api: FakeKubeApi, tmp_path: Path
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(TOKEN)
    (account / "ca.crt").write_bytes(api.ca.cert_pem.bytes())
    (account / "namespace").write_text("kron")
    api.put(DEPLOYMENT_PATH, deployment(PROGRESSING, AVAILABLE))
    port = api.server.rsplit(":", 1)[1]
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
    cluster = find_cluster(kubeconfig=None, context=None, env=env, service_account=account)
    assert cluster.server == api.server
    probe = parse_condition("k8s:deployment/prod/api:Available")
    assert isinstance(probe, KubeProbe)
    found = run(read_condition(cluster, probe, probe_timeout=timedelta(seconds=5)))
    assert (found.holds, found.reached, found.reason) == (True, True, "k8s: Available is True")
    assert [(s.path, s.authorization) for s in api.seen] == [(DEPLOYMENT_PATH, f"Bearer {TOKEN}")]


# -- probes against the API ---------------------------------------------------------------


def test_a_deployment_wait_holds_once_progressing_turns_available_and_says_what_held_it(
    jobs_dir: Path, api: FakeKubeApi
) -> None:
    # The controller's steps, one per poll: Progressing alone, then Available=False, then True.
    steps = [deployment(PROGRESSING, UNAVAILABLE), deployment(PROGRESSING, AVAILABLE)]
    api.put(DEPLOYMENT_PATH, deployment(PROGRESSING))
    config = api.kubeconfig(jobs_dir / "kubeconfig")
    job = kube_job(
        jobs_dir,
        "k8s:deployment/prod/api:Available",
        wait=f'kubeconfig = "{config.name}"',
        timeout="1m",
        every="2s",
    )
    time = FakeTime(on_sleep=lambda sleeps: api.put(DEPLOYMENT_PATH, steps[sleeps - 1]))
    result = wait_of(job, time=time)
    assert result.record() == {
        "satisfied": True,
        "waited_s": 4.0,
        "blocking": "k8s:deployment/prod/api:Available",
        "reason": "k8s: Available is False (MinimumReplicasUnavailable: Deployment does not have minimum availability.)",
    }
    assert time.sleeps == [2.0, 2.0]
    assert [(s.path, s.authorization) for s in api.seen] == [
        (DEPLOYMENT_PATH, f"Bearer {TOKEN}")
    ] * 3


def test_a_deployment_still_progressing_has_no_available_condition_yet(
    jobs_dir: Path, api: FakeKubeApi
) -> None:
    api.put(DEPLOYMENT_PATH, deployment(PROGRESSING))
    result = probe_with(jobs_dir, api, "k8s:deployment/prod/api:Available")
    assert (result.satisfied, result.blocking, result.reason) == (
        False,
        "k8s:deployment/prod/api:Available",
        "k8s: no Available condition yet (has Progressing=True)",
    )


def test_available_false_waits_for_the_opposite_and_not_inverts(
    jobs_dir: Path, api: FakeKubeApi
) -> None:
    api.put(DEPLOYMENT_PATH, deployment(PROGRESSING, UNAVAILABLE))
    cases = {
        "k8s:deployment/prod/api:Available=False": (True, None),
        "k8s:deployment/prod/api:available=false": (True, None),
        "k8s:deployment/prod/api:Available=Unknown": (
            False,
            "k8s: Available is False (MinimumReplicasUnavailable: Deployment does not have minimum availability.)",
        ),
        "not(k8s:deployment/prod/api:Available)": (True, None),
        "k8s:deployment/prod/api:ReplicaFailure=False": (
            False,
            "k8s: no ReplicaFailure condition yet (has Progressing=True, Available=False)",
        ),
    }
    found = {}
    for until in cases:
        result = probe_with(jobs_dir, api, until)
        found[until] = (result.satisfied, result.reason)
    assert found == cases


def test_a_condition_from_an_older_generation_does_not_count(
    jobs_dir: Path, api: FakeKubeApi
) -> None:
    # Right after `kubectl apply`: the previous rollout's Available=True, generation not seen yet.
    api.put(DEPLOYMENT_PATH, deployment(PROGRESSING, AVAILABLE, generation=3, observed=2))
    result = probe_with(jobs_dir, api, "k8s:deployment/prod/api:Available")
    assert (result.satisfied, result.reason) == (
        False,
        "k8s: Available is True for generation 2; the object is at generation 3",
    )


def test_a_missing_object_is_not_found_and_leaves_the_breaker_closed(
    jobs_dir: Path, api: FakeKubeApi
) -> None:
    config = api.kubeconfig(jobs_dir / "kubeconfig")
    job = kube_job(
        jobs_dir,
        "k8s:deployment/prod/api:Available",
        wait=f'kubeconfig = "{config.name}"',
        timeout="5s",
    )
    time = FakeTime()
    breakers = Breakers(clock=time)
    result = wait_of(job, time=time, breakers=breakers)
    assert result.reason == 'k8s: deployments.apps "api" not found in prod'
    assert api.requests_to(DEPLOYMENT_PATH) == 6  # polled at the wait's pace: 0, 1, ... 5 s
    assert breakers.failures(api.server) == 0
    node = probe_with(jobs_dir, api, "k8s:node/worker-9:Ready")
    assert node.reason == 'k8s: nodes "worker-9" not found'


def test_a_forbidden_read_says_what_the_api_server_said(jobs_dir: Path, api: FakeKubeApi) -> None:
    api.forbidden[DEPLOYMENT_PATH] = (
        'deployments.apps "api" is forbidden: User "system:serviceaccount:kron:kron" cannot get '
        'resource "deployments" in API group "apps" in the namespace "prod"'
    )
    result = probe_with(jobs_dir, api, "k8s:deployment/prod/api:Available")
    assert result.reason == (
        'k8s: status 403: deployments.apps "api" is forbidden: User '
        '"system:serviceaccount:kron:kron" cannot get resource "deployments" in API group "apps" '
        'in the namespace "prod"'
    )


def test_a_wrong_token_is_unauthorized(jobs_dir: Path, api: FakeKubeApi) -> None:
    config = api.kubeconfig(jobs_dir / "stale", token="expired-token")
    job = kube_job(jobs_dir, "k8s:no/n1:Ready", wait=f'kubeconfig = "{config.name}"')
    assert wait_of(job, time=FakeTime()).reason == "k8s: status 401: Unauthorized"
    assert [s.authorization for s in api.seen] == ["Bearer expired-token"]


def test_an_api_server_slower_than_probe_timeout_counts_as_unreachable(
    jobs_dir: Path, api: FakeKubeApi
) -> None:
    api.slow.add(DEPLOYMENT_PATH)
    config = api.kubeconfig(jobs_dir / "kubeconfig")
    job = kube_job(
        jobs_dir,
        "k8s:deployment/prod/api:Available",
        wait=f'kubeconfig = "{config.name}"',
        probe_timeout="300ms",
    )
    time = FakeTime()
    breakers = Breakers(clock=time)
    result = wait_of(job, time=time, breakers=breakers)
    assert result.reason == f"k8s: no answer from {api.server} within 300ms"
    assert breakers.failures(api.server) == 1


def test_a_server_certificate_from_another_ca_is_refused(jobs_dir: Path, api: FakeKubeApi) -> None:
    other = trustme.CA()
    api.ca, real = other, api.ca  # the kubeconfig is written with the wrong CA
    config = api.kubeconfig(jobs_dir / "kubeconfig")
    api.ca = real
    job = kube_job(jobs_dir, "k8s:no/n1:Ready", wait=f'kubeconfig = "{config.name}"')
    reason = wait_of(job, time=FakeTime()).reason
    assert reason is not None
    assert reason.startswith(f"k8s: {api.server}: [SSL: CERTIFICATE_VERIFY_FAILED]")
    assert api.seen == []


def test_the_breaker_is_per_api_server_not_per_object(jobs_dir: Path, api: FakeKubeApi) -> None:
    dead = f"https://127.0.0.1:{closed_port()}"
    config = api.kubeconfig(jobs_dir / "dead", server=dead)
    time = FakeTime()
    breakers = Breakers(clock=time)
    first = kube_job(
        jobs_dir, "k8s:deployment/prod/api:Available", wait='kubeconfig = "dead"', timeout="2s"
    )
    assert wait_of(first, time=time, breakers=breakers).reason == f"k8s: {dead}: connection refused"
    assert breakers.failures(dead) == 3  # probes at 0, 1 and 2 s; the breaker is open now
    other_object = kube_job(
        jobs_dir, "k8s:job/batch/migrate:Complete", wait=f'kubeconfig = "{config.name}"'
    )
    assert wait_of(other_object, time=time, breakers=breakers).reason == (
        "not probed: unreachable 3 times in a row; next probe in 5.0s"
    )
    api.put(DEPLOYMENT_PATH, deployment(PROGRESSING, AVAILABLE))
    live = probe_with(jobs_dir, api, "k8s:deployment/prod/api:Available")
    assert live.satisfied is True


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "api-0", "namespace": "prod"},
    "spec": {"containers": [{"name": "api", "image": "registry.example/api:1.4"}]},
    "status": {
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": T},
            {"type": "Ready", "status": "True", "lastTransitionTime": T},
        ],
    },
}
NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "worker-1"},
    "spec": {},
    "status": {
        "conditions": [
            {
                **condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                "lastHeartbeatTime": T,
            }
        ]
    },
}
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "migrate", "namespace": "batch"},
    "spec": {
        "template": {
            "spec": {
                "containers": [{"name": "migrate", "image": "registry.example/migrate:7"}],
                "restartPolicy": "Never",
            }
        }
    },
    "status": {
        "succeeded": 1,
        "conditions": [
            {
                **condition(
                    "Complete", "True", "Completed", "Reached expected number of succeeded pods"
                ),
                "lastProbeTime": T,
            }
        ],
    },
}
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {
        "group": "stable.example.com",
        "names": {"kind": "CronTab", "plural": "crontabs"},
        "scope": "Namespaced",
        "versions": [{"name": "v1", "served": True, "storage": True}],
    },
    "status": {
        "acceptedNames": {"kind": "CronTab", "plural": "crontabs"},
        "storedVersions": ["v1"],
        "conditions": [
            condition(
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            )
        ],
    },
}


@pytest.mark.parametrize(
    ("until", "path", "obj"),
    [
        ("k8s:pod/prod/api-0:Ready", "/api/v1/namespaces/prod/pods/api-0", POD),
        ("k8s:no/worker-1:Ready", "/api/v1/nodes/worker-1", NODE),
        ("k8s:job/batch/migrate:Complete", "/apis/batch/v1/namespaces/batch/jobs/migrate", JOB),
        (
            "k8s:crd/crontabs.stable.example.com:Established",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/crontabs.stable.example.com",
            CRD,
        ),
    ],
)
def test_each_kind_is_read_at_its_own_api_path(
    jobs_dir: Path, api: FakeKubeApi, until: str, path: str, obj: dict[str, Any]
) -> None:
    api.put(path, obj)
    assert probe_with(jobs_dir, api, until).record() == {"satisfied": True, "waited_s": 0.0}
    assert [s.path for s in api.seen] == [path]


# -- in a daemon --------------------------------------------------------------------------


def test_a_daemon_without_k8s_waits_never_imports_lightkube_and_validate_never_does(
    jobs_dir: Path, write: Any, api: FakeKubeApi
) -> None:
    api.put(DEPLOYMENT_PATH, deployment(PROGRESSING, AVAILABLE))
    api.kubeconfig(jobs_dir / "kubeconfig")
    (jobs_dir / "ready").write_text("")
    write("plain.toml", 'schedule = "@manual"\nshell = "true"\n[wait]\nuntil = "file:ready"\n')
    write(
        "kube.toml",
        'schedule = "@manual"\nshell = "true"\n[wait]\nuntil = "k8s:deploy/prod/api:Available"\nkubeconfig = "kubeconfig"\n',
    )
    probe = (
        "import asyncio, sys\n"
        "from kron.cli.main import main\n"
        "from kron.config.catalog import load_dir\n"
        "from kron.actions.dispatch import execute\n"
        f"main(['validate', '-q', '--jobs-dir', {str(jobs_dir)!r}])\n"
        "print('after validate', 'lightkube' in sys.modules)\n"
        f"jobs = load_dir(__import__('pathlib').Path({str(jobs_dir)!r})).jobs\n"
        "for name in ('plain', 'kube'):\n"
        "    result = asyncio.run(execute(jobs[name], run_env={}, stop=asyncio.Event()))\n"
        "    print(name, result.extra['wait']['satisfied'], 'lightkube' in sys.modules)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=True,
    )
    assert ran.stdout.splitlines() == [
        "2 files: 2 valid, 0 with errors, 0 warnings",
        "after validate False",
        "plain True False",
        "kube True True",
    ]


def test_a_daemon_runs_a_job_only_once_its_deployment_is_available_and_records_why_it_waited(
    jobs_dir: Path, api: FakeKubeApi, tmp_path: Path
) -> None:
    api.put(DEPLOYMENT_PATH, deployment(PROGRESSING, UNAVAILABLE))
    api.kubeconfig(jobs_dir / "kubeconfig")
    ran = tmp_path / "smoke-tests-ran"
    (jobs_dir / "smoke.toml").write_text(
        f'schedule = "@reboot"\nshell = "touch {ran}"\n'
        '[wait]\nuntil = "k8s:deployment/prod/api:Available"\nkubeconfig = "kubeconfig"\n'
        'every = "100ms"\ntimeout = "1m"\n'
    )
    records = jobs_dir / "smoke.runs.jsonl"
    runtime = tmp_path / "run"
    runtime.mkdir(exist_ok=True)
    log = tmp_path / "daemon.log"
    with log.open("wb") as handle:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(jobs_dir)],
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        )
    try:

        async def until(predicate: Any, what: str) -> None:
            async def poll() -> None:
                while not predicate():
                    assert daemon.poll() is None, log.read_text()
                    await asyncio.sleep(0.02)

            try:
                await asyncio.wait_for(poll(), DEADLINE_S)
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {what}: {log.read_text()}") from None

        run(until(lambda: api.requests_to(DEPLOYMENT_PATH) >= 3, "the daemon to poll"))
        outcomes = [r["outcome"] for r in read_records(records)]
        assert (outcomes, ran.exists()) == (["started"], False)
        api.put(DEPLOYMENT_PATH, deployment(PROGRESSING, AVAILABLE))
        run(until(lambda: len(read_records(records)) == 2, "the run to end"))
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(DEADLINE_S) == 0
    ended = read_records(records)[-1]
    wait = ended["wait"]
    assert wait.pop("waited_s") > 0
    assert (ended["outcome"], ran.exists(), wait) == (
        "succeeded",
        True,
        {
            "satisfied": True,
            "blocking": "k8s:deployment/prod/api:Available",
            "reason": "k8s: Available is False (MinimumReplicasUnavailable: Deployment does not have minimum availability.)",
        },
    )
