"""The Kubernetes API for `k8s:` waits: which cluster, with whose credentials, and one GET.

The client configuration is found as Kubernetes clients find it: a kubeconfig the job (or
kron.toml) names; else the in-cluster service account when kron runs in a pod; else the first
file of `$KUBECONFIG` that exists, else `~/.kube/config`; its current context unless one is
named. The environment read is the run's (the daemon's, then env_file, then the job's `env`),
so a job that sets KUBECONFIG for its commands probes the same cluster they will use.

Only wait.py imports this module, and only when a job waits on `k8s:`: lightkube (and its
httpx2) costs ~160 ms and ~8 MB to load, which a daemon without such jobs never pays.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import yaml
from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig, SingleConfig
from lightkube.config.models import Cluster as ClusterEntry
from lightkube.config.models import User
from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from kron.actions.base import connection_reason
from kron.model.conditions import KubeProbe
from kron.model.job import WaitSpec
from kron.model.kinds import Kind
from kron.model.trust import refusals
from kron.model.units import format_duration

__all__ = [
    "SERVICE_ACCOUNT",
    "Cluster",
    "NoCluster",
    "Reading",
    "find_cluster",
    "judge",
    "locate",
    "read_condition",
]

log = logging.getLogger("kron.kube")

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_MESSAGE_MAX = 300  # a server's message goes into the record; a proxy's HTML page must not


class NoCluster(Exception):
    """No usable client configuration; the message says why, for the run's record."""


@dataclass(frozen=True, slots=True)
class Cluster:
    """Where the API server is and how to talk to it (lightkube's resolved configuration)."""

    server: str
    config: SingleConfig


@dataclass(frozen=True, slots=True)
class Reading:
    """What one probe found; `reached` is None when no request was made (a config problem)."""

    holds: bool
    reached: bool | None
    reason: str


async def locate(
    wait: WaitSpec | None, *, env: Mapping[str, str], probe_timeout: timedelta
) -> Cluster:
    """find_cluster for a job's `[wait]`, in a thread (a kubeconfig on a hung network mount
    must not stall the daemon), within `probe_timeout`.

    Raises:
        NoCluster: as find_cluster, or the files could not be read in time.
    """
    found = asyncio.to_thread(
        find_cluster,
        kubeconfig=wait.kubeconfig if wait else None,
        context=wait.context if wait else None,
        env=env,
    )
    try:
        return await asyncio.wait_for(found, probe_timeout.total_seconds())
    except TimeoutError:
        within = format_duration(probe_timeout)
        raise NoCluster(f"the client configuration could not be read within {within}") from None
    except OSError as exc:  # a path kron may not enter, a name too long
        raise NoCluster(f"{exc.filename or 'the client configuration'}: {exc.strerror}") from None


def find_cluster(
    *,
    kubeconfig: Path | None,
    context: str | None,
    env: Mapping[str, str],
    service_account: Path = SERVICE_ACCOUNT,
) -> Cluster:
    """Resolve the client configuration (blocking: it reads files).

    Args:
        kubeconfig: the file `[wait]` or kron.toml names, if any.
        context: the context they name, if any (a context means a kubeconfig, never in-cluster).
        env: the run's environment: KUBECONFIG, HOME, KUBERNETES_SERVICE_HOST/PORT.
        service_account: where a pod's service account is mounted.

    Raises:
        NoCluster: nothing found, or what was found cannot be used.
    """
    if kubeconfig is None and context is None and _in_cluster(env, service_account):
        return _from_service_account(env, service_account)
    path = kubeconfig or _default_kubeconfig(env, service_account)
    if not path.is_file():
        raise NoCluster(f"kubeconfig {path} does not exist")
    refused = refusals(path, label=f"kubeconfig {path}")
    if refused:
        raise NoCluster("; ".join(refused))
    try:
        data = yaml.safe_load(path.read_bytes())
    except OSError as exc:
        raise NoCluster(f"kubeconfig {path} cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise NoCluster(f"kubeconfig {path} is not YAML: {_yaml_error(exc)}") from None
    if not isinstance(data, dict):
        raise NoCluster(f"kubeconfig {path} is not a mapping of clusters, contexts and users")
    try:
        single = KubeConfig.from_dict(data, fname=path).get(context)
    except ConfigError as exc:
        if context is None and "No current context" in str(exc):
            raise NoCluster(f"kubeconfig {path} has no current-context; set wait.context") from None
        raise NoCluster(f"kubeconfig {path}: {exc}") from None
    # lightkube reports a malformed entry with whatever its parsing raises (KeyError for a
    # missing key, msgspec's errors for a wrong type...): each is a bad file, never a crash.
    except Exception as exc:
        raise NoCluster(f"kubeconfig {path} is malformed ({type(exc).__name__}: {exc})") from None
    assert single is not None  # get() returns the default only when one is given
    if single.user is None:  # a context without a user: anonymous, as kubectl without a prompt
        single = single._replace(user=User())
    return Cluster(server=single.cluster.server.rstrip("/"), config=single)


def _yaml_error(exc: yaml.YAMLError) -> str:
    """PyYAML's message on one line: the problem and where (its own spans several lines)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


def _in_cluster(env: Mapping[str, str], service_account: Path) -> bool:
    # client-go's rule: both variables set and the token mounted.
    return bool(
        env.get("KUBERNETES_SERVICE_HOST")
        and env.get("KUBERNETES_SERVICE_PORT")
        and (service_account / "token").is_file()
    )


def _from_service_account(env: Mapping[str, str], service_account: Path) -> Cluster:
    host, port = env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    ca = service_account / "ca.crt"
    entry = ClusterEntry(server=server, certificate_auth=str(ca) if ca.is_file() else None)
    # A token file, not the token: the kubelet rotates it, and lightkube reads it again on a 401.
    user = User(token_file=str(service_account / "token"))
    config = KubeConfig.from_one(cluster=entry, user=user).get()
    assert config is not None
    return Cluster(server=server, config=config)


def _default_kubeconfig(env: Mapping[str, str], service_account: Path) -> Path:
    listed = [Path(p) for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        # kubectl merges the files; kron reads the first that exists (documented).
        found = next((p for p in listed if p.is_file()), None)
        if found is None:
            shown = os.pathsep.join(str(p) for p in listed)
            raise NoCluster(f"no file of KUBECONFIG={shown} exists")
        return found
    home = env.get("HOME") or os.path.expanduser("~")
    path = Path(home) / ".kube" / "config"
    if not path.is_file():
        raise NoCluster(
            f"no cluster configured: not in a pod (no {service_account / 'token'}), "
            f"no KUBECONFIG, no {path}; set wait.kubeconfig"
        )
    return path


@functools.cache
def _resource(kind: Kind) -> Any:
    """lightkube's generic resource for `kind`: the object comes back as a plain mapping.

    Made once per process (lightkube registers it globally and refuses a second class).
    """
    make = create_namespaced_resource if kind.namespaced else create_global_resource
    return make(kind.group, kind.version, kind.kind, kind.plural)


async def read_condition(
    cluster: Cluster, probe: KubeProbe, *, probe_timeout: timedelta
) -> Reading:
    """GET the object and judge its condition, within `probe_timeout` all told."""
    limit_s = probe_timeout.total_seconds()
    try:
        # The client's own timeout bounds each phase; wait_for bounds them together.
        return await asyncio.wait_for(_get_and_judge(cluster, probe, limit_s), limit_s)
    except (TimeoutError, httpx2.TimeoutException):
        within = format_duration(probe_timeout)
        reason = f"k8s: no answer from {cluster.server} within {within}"
        return Reading(False, False, reason)
    # A kubeconfig's exec credential plugin runs inside lightkube's request and can fail in
    # ways it does not wrap (its output is not the JSON it expects); a probe reports, never
    # raises into the run.
    except Exception as exc:
        log.warning("k8s: probe of %s failed", probe.text, exc_info=True)
        return Reading(False, None, f"k8s: {type(exc).__name__}: {exc}")


async def _get_and_judge(cluster: Cluster, probe: KubeProbe, limit_s: float) -> Reading:
    try:
        client = AsyncClient(cluster.config, timeout=httpx2.Timeout(limit_s))
    except (ConfigError, OSError) as exc:  # exec plugin, auth provider, CA file
        return Reading(False, None, f"k8s: {cluster.server}: {exc}")
    try:
        async with client:
            found = await client.get(_resource(probe.kind), probe.name, namespace=probe.namespace)
    except ApiError as exc:
        code = exc.status.code or exc.response.status_code
        return Reading(False, True, _api_error(probe, code, exc.status.message))
    except httpx2.HTTPStatusError as exc:  # an answer that is not the API's JSON (a proxy's)
        response = exc.response
        return Reading(False, True, f"k8s: status {response.status_code} {response.reason_phrase}")
    except httpx2.TimeoutException:
        raise
    except httpx2.HTTPError as exc:
        return Reading(False, False, f"k8s: {cluster.server}: {connection_reason(exc)}")
    except (ConfigError, OSError) as exc:  # an exec credential plugin that failed to run
        return Reading(False, None, f"k8s: credentials: {str(exc).strip()}")
    except json.JSONDecodeError as exc:  # lightkube reads only an exec plugin's output with json
        return Reading(False, None, f"k8s: credentials: the exec plugin printed no JSON ({exc})")
    except (msgspec.DecodeError, TypeError, ValueError) as exc:  # a 200 that is not an object
        return Reading(False, True, f"k8s: the answer is not a Kubernetes object ({exc})")
    return judge(probe, dict(found))


def _api_error(probe: KubeProbe, code: int, message: str | None) -> str:
    if code == 404:
        where = f" in {probe.namespace}" if probe.namespace else ""
        return f"k8s: {probe.object} not found{where}"
    text = (message or "").strip() or "no message"
    return f"k8s: status {code}: {text[:_MESSAGE_MAX]}"


def judge(probe: KubeProbe, found: Mapping[str, Any]) -> Reading:
    """Whether the object's condition has the wanted status, as `kubectl wait` decides it.

    The condition type and status compare ignoring case. A condition whose observedGeneration
    (its own, else the status's) is older than the object's generation describes a spec that
    was since changed: it does not count, so a wait right after `kubectl apply` is not
    satisfied by the previous rollout's Available=True.
    """
    status = found.get("status")
    status = status if isinstance(status, Mapping) else {}
    metadata = found.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    listed = status.get("conditions")
    listed = listed if isinstance(listed, list) else []
    conditions = [c for c in listed if isinstance(c, Mapping)]
    for condition in conditions:
        kind, value = condition.get("type"), condition.get("status")
        if not isinstance(kind, str) or kind.lower() != probe.condition.lower():
            continue
        if not isinstance(value, str):
            continue
        generation = metadata.get("generation")
        observed = condition.get("observedGeneration", status.get("observedGeneration"))
        if isinstance(generation, int) and isinstance(observed, int) and observed < generation:
            return Reading(
                False,
                True,
                f"k8s: {kind} is {value} for generation {observed}; "
                f"the object is at generation {generation}",
            )
        if value.lower() == probe.status.lower():
            return Reading(True, True, f"k8s: {kind} is {value}")
        why = ": ".join(
            str(part)[:_MESSAGE_MAX]
            for part in (condition.get("reason"), condition.get("message"))
            if part
        )
        return Reading(False, True, f"k8s: {kind} is {value}" + (f" ({why})" if why else ""))
    others = ", ".join(f"{c.get('type')}={c.get('status')}" for c in conditions)
    return Reading(
        False,
        True,
        f"k8s: no {probe.condition} condition yet" + (f" (has {others})" if others else ""),
    )
