"""`k8s:` conditions as written: the language, the kinds table (checked against the OpenAPI
schemas kubernetes-validate ships), how an object's status is judged, and the docs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version, schema_contents

from kron.actions.kube import judge
from kron.config.catalog import load_dir
from kron.model.conditions import AllOf, KubeProbe, Not, parse_condition
from kron.model.errors import ValueProblem
from kron.model.kinds import KINDS, kind_named

from .harness import make_job

# -- the language -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("k8s:deployment/prod/api:Available", ("Deployment", "prod", "api", "Available", "True")),
        (
            "k8s:deploy/prod/api:Available=False",
            ("Deployment", "prod", "api", "Available", "False"),
        ),
        (
            "k8s:Deployments.apps/prod/api:available=true",
            ("Deployment", "prod", "api", "available", "True"),
        ),
        ("k8s:job/batch/migrate:Complete", ("Job", "batch", "migrate", "Complete", "True")),
        ("k8s:po/prod/api-0:Ready=unknown", ("Pod", "prod", "api-0", "Ready", "Unknown")),
        (
            "k8s:pod/prod/api-0:example.com/gate-1",
            ("Pod", "prod", "api-0", "example.com/gate-1", "True"),
        ),
        ("k8s:no/worker-1.example:Ready", ("Node", None, "worker-1.example", "Ready", "True")),
        (
            "k8s:crd/crontabs.stable.example.com:Established",
            (
                "CustomResourceDefinition",
                None,
                "crontabs.stable.example.com",
                "Established",
                "True",
            ),
        ),
        (" k8s: sts / data / db-0 : Ready ", ("StatefulSet", "data", "db-0", "Ready", "True")),
    ],
)
def test_a_k8s_condition_names_a_kind_as_kubectl_does_an_object_and_a_condition_status(
    text: str, expected: tuple[str, str | None, str, str, str]
) -> None:
    probe = parse_condition(text)
    assert isinstance(probe, KubeProbe)
    found = (probe.kind.kind, probe.namespace, probe.name, probe.condition, probe.status)
    assert found == expected


def test_k8s_conditions_combine_with_the_others() -> None:
    parsed = parse_condition("and(k8s:job/batch/migrate:Complete, not(k8s:no/n1:DiskPressure))")
    assert isinstance(parsed, AllOf)
    first, second = parsed.items
    assert isinstance(first, KubeProbe)
    assert isinstance(second, Not)
    assert isinstance(second.item, KubeProbe)
    assert (first.text, second.item.text) == (
        "k8s:job/batch/migrate:Complete",
        "k8s:no/n1:DiskPressure",
    )


KINDS_LIST = (
    "kinds with conditions: deployment (deploy), statefulset (sts), daemonset (ds), "
    "replicaset (rs), job, pod (po), node (no), persistentvolumeclaim (pvc), service (svc), "
    "replicationcontroller (rc), namespace (ns), horizontalpodautoscaler (hpa), "
    "poddisruptionbudget (pdb), customresourcedefinition (crd, crds), apiservice, "
    "certificatesigningrequest (csr)"
)
USAGE = "write k8s:KIND/NAMESPACE/NAME:CONDITION, or k8s:KIND/NAME:CONDITION for cluster-wide kinds"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "k8s:deploymnet/prod/api:Available",
            f"unknown kind 'deploymnet' in 'k8s:deploymnet/prod/api:Available'; did you mean 'deployment'? {KINDS_LIST}",
        ),
        (
            "k8s:gadget/prod/api:Ready",
            f"unknown kind 'gadget' in 'k8s:gadget/prod/api:Ready'; {KINDS_LIST}",
        ),
        (
            "k8s:cronjob/batch/nightly:Complete",
            "cronjobs have no status conditions to wait for (in 'k8s:cronjob/batch/nightly:Complete')",
        ),
        (
            "k8s:deployments.batch/prod/api:Available",
            "deployments are in the API group 'apps', not 'batch' (in 'k8s:deployments.batch/prod/api:Available')",
        ),
        (
            "k8s:deployment/api:Available",
            "deployments live in a namespace: write k8s:deployment/NAMESPACE/NAME:Available (not 'k8s:deployment/api:Available')",
        ),
        (
            "k8s:node/default/worker-1:Ready",
            "nodes are cluster-wide: write k8s:node/NAME:Ready (not 'k8s:node/default/worker-1:Ready')",
        ),
        (
            "k8s:deployment//api:Available",
            "deployments live in a namespace: write k8s:deployment/NAMESPACE/NAME:Available (not 'k8s:deployment//api:Available')",
        ),
        ("k8s:deployment/prod/api", f"'k8s:deployment/prod/api' names no condition; {USAGE}"),
        ("k8s:deployment/prod/api:", f"'k8s:deployment/prod/api:' names no condition; {USAGE}"),
        (
            "k8s:deployment/Prod/api:Available",
            "bad namespace 'Prod' in 'k8s:deployment/Prod/api:Available': lowercase letters, digits and '-', at most 63 characters",
        ),
        (
            "k8s:deployment/prod/API_v2:Available",
            "bad object name 'API_v2' in 'k8s:deployment/prod/API_v2:Available': lowercase letters, digits, '-' and '.', at most 253 characters",
        ),
        (
            "k8s:deployment/prod/api:Avail able",
            f"bad condition type 'Avail able' in 'k8s:deployment/prod/api:Avail able'; {USAGE}",
        ),
        (
            "k8s:deployment/prod/api:Available=yes",
            "bad status 'yes' in 'k8s:deployment/prod/api:Available=yes'; write Available=True, =False or =Unknown",
        ),
    ],
)
def test_a_bad_k8s_condition_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueProblem) as caught:
        parse_condition(text)
    assert str(caught.value) == message


def test_kron_validate_reports_bad_and_doubtful_k8s_conditions_with_their_lines(
    jobs_dir: Path, write: Any
) -> None:
    write(
        "a.toml",
        'schedule = "@manual"\nshell = "true"\n[wait]\nuntil = "k8s:deply/prod/api:Available"\n',
    )
    write(
        "b.toml",
        'schedule = "@manual"\nshell = "true"\n[wait]\nuntil = "k8s:deploy/prod/api:Availble"\n',
    )
    write(
        "c.yaml",
        "schedule: '@manual'\nshell: 'true'\nwait:\n  until: 'and(file:/x, k8s:sts/data/db:Ready)'\n",
    )
    found = sorted(str(p).replace(str(jobs_dir) + os.sep, "") for p in load_dir(jobs_dir).problems)
    assert found == [
        f"a.toml:4:1: wait.until: unknown kind 'deply' in 'k8s:deply/prod/api:Available'; did you mean 'deploy'? {KINDS_LIST}",
        "b.toml:4:1: warning: wait.until: deployments have the conditions Available, Progressing, ReplicaFailure: 'Availble' is none of them; did you mean 'Available'?",
        "c.yaml:4:3: warning: wait.until: Kubernetes sets no conditions on statefulsets: 'k8s:sts/data/db:Ready' holds only if another controller sets 'Ready'",
    ]


def _status_properties(kind: Any) -> dict[str, Any]:
    """The properties of `kind`'s status, from kubernetes-validate's OpenAPI schemas."""
    version = latest_version()
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    prefix = kind.group.split(".")[0] + "-" if kind.group else ""
    schema = schema_contents(f"{folder}/{kind.kind.lower()}-{prefix}{kind.version}.json", version)
    definitions = schema_contents(f"{folder}/_definitions.json", version)
    assert schema["properties"]["apiVersion"]["enum"] == [kind.api_version]
    ref = schema["properties"]["status"]["$ref"].rsplit("/", 1)[1]
    return dict(definitions["$defs"][ref]["properties"])


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_listed_kind_is_served_at_its_api_version_and_has_status_conditions(
    kind: Any,
) -> None:
    properties = _status_properties(kind)
    assert properties["conditions"]["type"] == ["array", "null"]
    assert kind_named(kind.kind, within="") is kind
    assert kind_named(kind.plural, within="") is kind


# -- judging a status ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        ({}, (False, "k8s: no Available condition yet")),
        ({"status": None}, (False, "k8s: no Available condition yet")),
        ({"status": {"conditions": 5}}, (False, "k8s: no Available condition yet")),
        (
            {"status": {"conditions": ["Available", {"type": "Available"}]}},
            (False, "k8s: no Available condition yet (has Available=None)"),
        ),
        (
            {"status": {"conditions": [{"type": "AVAILABLE", "status": "TRUE"}]}},
            (True, "k8s: AVAILABLE is TRUE"),
        ),
        (
            {
                "metadata": {"generation": 2},
                "status": {
                    "observedGeneration": 2,
                    "conditions": [
                        {"type": "Available", "status": "True", "observedGeneration": 1}
                    ],
                },
            },
            (False, "k8s: Available is True for generation 1; the object is at generation 2"),
        ),
        (
            {
                "metadata": {"generation": 2},
                "status": {"conditions": [{"type": "Available", "status": "True"}]},
            },
            (True, "k8s: Available is True"),  # no observedGeneration anywhere: nothing to compare
        ),
    ],
)
def test_judging_an_object_takes_any_shape_without_raising(
    found: dict[str, Any], expected: tuple[bool, str]
) -> None:
    probe = parse_condition("k8s:deployment/prod/api:Available")
    assert isinstance(probe, KubeProbe)
    reading = judge(probe, found)
    assert (reading.holds, reading.reason) == expected


# -- the docs -----------------------------------------------------------------------------

DOC = Path(__file__).parent.parent / "docs" / "kubernetes-wait.md"


def _blocks(language: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_the_docs_list_every_kind_with_its_api_version_resource_and_scope() -> None:
    text = DOC.read_text(encoding="utf-8")
    for kind in KINDS:
        short = ", ".join(f"`{name}`" for name in kind.short_names)
        scope = "namespaced" if kind.namespaced else "cluster-wide"
        row = f"| `{kind.singular}` | {short} | `{kind.api_version}` | `{kind.plural}` | {scope} |"
        assert row in text


def test_the_rbac_examples_in_the_docs_are_valid_kubernetes_objects() -> None:
    documents = [doc for block in _blocks("yaml") for doc in yaml.safe_load_all(block)]
    assert [d["kind"] for d in documents] == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
    ]
    for document in documents:
        kubernetes_validate.validate(document, latest_version(), strict=True)
    role = documents[1]
    assert [(r["apiGroups"], r["resources"], r["verbs"]) for r in role["rules"]] == [
        ([kind_named("deployment", within="").group], ["deployments"], ["get"]),
        ([kind_named("job", within="").group], ["jobs"], ["get"]),
    ]


def test_the_job_in_the_docs_loads(jobs_dir: Path) -> None:
    job = make_job(jobs_dir, "smoke-tests.toml", _blocks("toml")[0])
    assert job.wait is not None
    assert parse_condition(job.wait.until).text == (
        "and(k8s:deployment/prod/api:Available, k8s:job/prod/migrate:Complete)"
    )
