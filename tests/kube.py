"""Exported manifests, checked offline as an API server would: Kubernetes' own OpenAPI schemas
(kubernetes-validate, strict: no field the API does not know) and the name rules it enforces."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from kron.config.kubernetes.export import Exported, export_jobs
from kron.config.kubernetes.files import stream
from kron.config.kubernetes.manifests import Mode

KUBERNETES = "1.33"  # a release clusters run today; CronJob timeZone is GA since 1.27
IMAGE = "registry.example/kron:0.1.0"
NOW = datetime(2026, 1, 1, tzinfo=UTC)  # before every @at in the tests
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def check(body: dict[str, Any]) -> None:
    """Fail unless `body` is an object the API server would accept."""
    kubernetes_validate.validate(body, KUBERNETES, strict=True)
    meta = body["metadata"]
    limit = 52 if body["kind"] == "CronJob" else 63
    assert _DNS_LABEL.fullmatch(meta["name"]), meta["name"]
    assert len(meta["name"]) <= limit, meta["name"]
    for value in meta.get("labels", {}).values():
        assert _LABEL_VALUE.fullmatch(value), value
        assert len(value) <= 63, value
    for key in body.get("data", {}):
        assert _KEY.fullmatch(key), key


def objects(exported: Exported) -> list[dict[str, Any]]:
    """Every object of an export, each checked."""
    found = [body for body in yaml.safe_load_all(stream(exported)) if body]
    for body in found:
        check(body)
    return found


def export(
    jobs_dir: Path,
    paths: Iterable[Path] = (),
    *,
    mode: Mode | None = None,
    namespace: str | None = None,
    now: datetime = NOW,
) -> Exported:
    return export_jobs(
        list(paths), jobs_dir=jobs_dir, image=IMAGE, namespace=namespace, mode=mode, now=now
    )


def cron_job(exported: Exported, name: str) -> dict[str, Any]:
    """The CronJob called `name` in an export (checked)."""
    for body in objects(exported):
        if body["kind"] == "CronJob" and body["metadata"]["name"] == name:
            return body
    raise AssertionError(f"no CronJob {name}: {sorted(exported.files)}")


def dig(body: Any, path: str) -> Any:
    """`dig(cj, "spec.jobTemplate.spec.template.spec.containers.0.image")`; MISSING if absent."""
    for part in path.split("."):
        if isinstance(body, list) and part.isdigit() and int(part) < len(body):
            body = body[int(part)]
        elif isinstance(body, dict) and part in body:
            body = body[part]
        else:
            return MISSING
    return body


MISSING = "<missing>"
POD = "spec.jobTemplate.spec.template.spec"
CONTAINER = f"{POD}.containers.0"
