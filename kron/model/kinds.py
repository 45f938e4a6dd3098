"""The Kubernetes kinds a `k8s:` condition can name, as `kubectl` names them (pure data).

Each kind maps to the API group, version and plural of its REST path, so the probe reads
`/apis/apps/v1/namespaces/prod/deployments/api` for `deployment/prod/api`. A kind is written as
`kubectl` accepts it: singular, plural or short name, in any case, optionally followed by its
group (`deployments.apps`). Only kinds whose status carries `conditions` are listed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from kron.model.errors import ValueProblem

__all__ = ["KINDS", "Kind", "kind_named"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Kind:
    """One Kubernetes kind: where its objects live in the API, and the conditions it knows."""

    kind: str  # Deployment
    group: str  # apps; "" for the core group
    version: str  # v1
    plural: str  # deployments
    namespaced: bool
    short_names: tuple[str, ...] = ()
    # The condition types Kubernetes sets on this kind; None when the set is open (pod readiness
    # gates, node problem detectors and storage drivers add their own).
    conditions: tuple[str, ...] | None = None

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def resource(self) -> str:
        """`deployments.apps`: how Kubernetes names the resource in messages and RBAC rules."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def names(self) -> tuple[str, ...]:
        return (self.singular, self.plural, *self.short_names)


# Groups, versions, plurals and short names as `kubectl api-resources` lists them (Kubernetes
# 1.30+); condition types from the API reference of each kind's status.
KINDS: tuple[Kind, ...] = (
    Kind(
        kind="Deployment",
        group="apps",
        version="v1",
        plural="deployments",
        namespaced=True,
        short_names=("deploy",),
        conditions=("Available", "Progressing", "ReplicaFailure"),
    ),
    # No controller of Kubernetes itself sets conditions on these two (their status has the
    # field for others to use), so a wait on them says so at validation.
    Kind(
        kind="StatefulSet",
        group="apps",
        version="v1",
        plural="statefulsets",
        namespaced=True,
        short_names=("sts",),
        conditions=(),
    ),
    Kind(
        kind="DaemonSet",
        group="apps",
        version="v1",
        plural="daemonsets",
        namespaced=True,
        short_names=("ds",),
        conditions=(),
    ),
    Kind(
        kind="ReplicaSet",
        group="apps",
        version="v1",
        plural="replicasets",
        namespaced=True,
        short_names=("rs",),
        conditions=("ReplicaFailure",),
    ),
    Kind(
        kind="Job",
        group="batch",
        version="v1",
        plural="jobs",
        namespaced=True,
        conditions=("Complete", "Failed", "Suspended", "FailureTarget", "SuccessCriteriaMet"),
    ),
    Kind(kind="Pod", group="", version="v1", plural="pods", namespaced=True, short_names=("po",)),
    Kind(
        kind="Node", group="", version="v1", plural="nodes", namespaced=False, short_names=("no",)
    ),
    Kind(
        kind="PersistentVolumeClaim",
        group="",
        version="v1",
        plural="persistentvolumeclaims",
        namespaced=True,
        short_names=("pvc",),
    ),
    Kind(
        kind="Service",
        group="",
        version="v1",
        plural="services",
        namespaced=True,
        short_names=("svc",),
    ),
    Kind(
        kind="ReplicationController",
        group="",
        version="v1",
        plural="replicationcontrollers",
        namespaced=True,
        short_names=("rc",),
        conditions=("ReplicaFailure",),
    ),
    Kind(
        kind="Namespace",
        group="",
        version="v1",
        plural="namespaces",
        namespaced=False,
        short_names=("ns",),
    ),
    Kind(
        kind="HorizontalPodAutoscaler",
        group="autoscaling",
        version="v2",
        plural="horizontalpodautoscalers",
        namespaced=True,
        short_names=("hpa",),
        conditions=("AbleToScale", "ScalingActive", "ScalingLimited"),
    ),
    Kind(
        kind="PodDisruptionBudget",
        group="policy",
        version="v1",
        plural="poddisruptionbudgets",
        namespaced=True,
        short_names=("pdb",),
        conditions=("DisruptionAllowed",),
    ),
    Kind(
        kind="CustomResourceDefinition",
        group="apiextensions.k8s.io",
        version="v1",
        plural="customresourcedefinitions",
        namespaced=False,
        short_names=("crd", "crds"),
        conditions=(
            "Established",
            "NamesAccepted",
            "NonStructuralSchema",
            "Terminating",
            "KubernetesAPIApprovedPolicyConformant",
        ),
    ),
    Kind(
        kind="APIService",
        group="apiregistration.k8s.io",
        version="v1",
        plural="apiservices",
        namespaced=False,
        conditions=("Available",),
    ),
    Kind(
        kind="CertificateSigningRequest",
        group="certificates.k8s.io",
        version="v1",
        plural="certificatesigningrequests",
        namespaced=False,
        short_names=("csr",),
        conditions=("Approved", "Denied", "Failed"),
    ),
)

_BY_NAME = {name: kind for kind in KINDS for name in kind.names()}

# Kinds users reach for whose status has no conditions to wait on.
_NO_CONDITIONS = {
    name: plural
    for plural, *names in (
        ("cronjobs", "cronjob", "cj"),
        ("configmaps", "configmap", "cm"),
        ("secrets", "secret"),
        ("ingresses", "ingress", "ing"),
        ("persistentvolumes", "persistentvolume", "pv"),
        ("serviceaccounts", "serviceaccount", "sa"),
        ("endpoints", "ep"),
    )
    for name in (plural, *names)
}


def kind_named(written: str, *, within: str) -> Kind:
    """The kind `kubectl` would take `written` for (`deploy`, `Deployment`, `deployments.apps`).

    `within` is the condition it was written in, for the message.

    Raises:
        ValueProblem: no listed kind has that name, with the nearest one if any is close.
    """
    name, _, group = written.lower().partition(".")
    kind = _BY_NAME.get(name)
    if kind is not None and group in ("", kind.group):
        return kind
    if kind is not None:
        raise ValueProblem(
            f"{kind.plural} are in the API group {kind.group or 'core'!r}, not {group!r} "
            f"(in {within!r})"
        )
    if name in _NO_CONDITIONS:
        raise ValueProblem(
            f"{_NO_CONDITIONS[name]} have no status conditions to wait for (in {within!r})"
        )
    close = difflib.get_close_matches(name, list(_BY_NAME), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    known = ", ".join(
        kind.singular + (f" ({', '.join(kind.short_names)})" if kind.short_names else "")
        for kind in KINDS
    )
    raise ValueProblem(
        f"unknown kind {written!r} in {within!r}; {hint}kinds with conditions: {known}"
    )
