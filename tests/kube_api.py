"""A fake Kubernetes API server for `k8s:` wait tests: real HTTPS on 127.0.0.1, honest answers.

No cluster can run here, so this answers the paths a `k8s:` probe reads (`GET
/apis/GROUP/VERSION/namespaces/NS/PLURAL/NAME`, `/api/v1/...` for the core group) as the API
server does: TLS with a certificate from a throwaway CA (trustme), a bearer token, the object as
JSON, or a `Status` object for 401, 403 and 404. Every body it sends is first checked against the
OpenAPI schema that kubernetes-validate ships (strict: no field the API does not have), so the
fake cannot drift from what a real API server answers.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import trustme
import yaml
from kubernetes_validate.utils import latest_version, schema_contents
from referencing import Registry, Resource

from .harness import DEADLINE_S

TOKEN = "kron-test-token"
_PATH = re.compile(
    r"/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)/(?P<name>[^/?]+)"
)


@functools.cache
def _status_validator() -> jsonschema.Draft202012Validator:
    """The schema of `Status` (meta/v1): kubernetes_validate.validate() finds schemas by kind
    and apiVersion, and Status's file is named for its Go package (`status-meta-v1.json`)."""
    version = latest_version()
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = schema_contents(f"{folder}/status-meta-v1.json", version)
    definitions = schema_contents(f"{folder}/_definitions.json", version)
    registry: Registry[Any] = Resource.from_contents(definitions) @ (
        Resource.from_contents(schema) @ Registry()
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def check_schema(body: Mapping[str, Any]) -> None:
    """Raise unless `body` is what the Kubernetes API could send, by its OpenAPI schema."""
    if body.get("kind") == "Status":
        _status_validator().validate(body)
    else:
        kubernetes_validate.validate(dict(body), latest_version(), strict=True)


def status(code: int, reason: str, message: str, **details: str) -> dict[str, Any]:
    """A `Status` object, as the API server answers a failed request."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    check_schema(body)
    return body


@dataclass
class Seen:
    path: str
    authorization: str | None


class FakeKubeApi:
    """The API server: objects by path, paths that are forbidden or slow, requests seen."""

    def __init__(self, tmp: Path, *, token: str = TOKEN) -> None:
        self.ca = trustme.CA()
        self.token = token
        self.folder = tmp
        self.objects: dict[str, dict[str, Any]] = {}
        self.forbidden: dict[str, str] = {}  # path -> the API server's message
        self.slow: set[str] = set()  # paths answered only when the server closes
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with outer._lock:
                    outer.seen.append(Seen(path, self.headers.get("Authorization")))
                if path in outer.slow:
                    outer._release.wait(DEADLINE_S)
                    self.close_connection = True
                    return
                code, body = outer._answer(path, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakeKubeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(DEADLINE_S)

    def put(self, path: str, obj: Mapping[str, Any]) -> None:
        """Serve `obj` at `path` from now on (checked against its schema first)."""
        check_schema(obj)
        with self._lock:
            self.objects[path] = copy.deepcopy(dict(obj))

    def requests_to(self, path: str) -> int:
        with self._lock:
            return sum(1 for s in self.seen if s.path == path)

    def _answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        if authorization != f"Bearer {self.token}":
            return 401, status(401, "Unauthorized", "Unauthorized")
        if path in self.forbidden:
            return 403, status(403, "Forbidden", self.forbidden[path])
        with self._lock:
            found = self.objects.get(path)
        if found is not None:
            return 200, found
        match = _PATH.fullmatch(path)
        if match is None:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        group = match["group"] or ""
        resource = f"{match['plural']}.{group}" if group else match["plural"]
        return 404, status(
            404,
            "NotFound",
            f'{resource} "{match["name"]}" not found',
            name=match["name"],
            group=group,
            kind=match["plural"],
        )

    # -- what a client needs ---------------------------------------------------------------

    def ca_file(self) -> Path:
        path = self.folder / "kube-ca.pem"
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def kubeconfig(
        self,
        path: Path,
        *,
        token: str | None = None,
        server: str | None = None,
        contexts: Mapping[str, str] | None = None,
        current: str | None = "test",
        user: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write a kubeconfig as kubectl does: the CA inline, a token user, one context per
        server in `contexts` (name -> server; default: `test` -> this server)."""
        ca = base64.b64encode(self.ca.cert_pem.bytes()).decode()
        contexts = contexts or {"test": server or self.server}
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": name, "cluster": {"server": url, "certificate-authority-data": ca}}
                for name, url in contexts.items()
            ],
            "users": [{"name": "kron", "user": user or {"token": token or self.token}}],
            "contexts": [
                {"name": name, "context": {"cluster": name, "user": "kron"}} for name in contexts
            ],
        }
        if current is not None:
            config["current-context"] = current
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        path.chmod(0o600)
        return path


# -- objects as the API server returns them -------------------------------------------------

T = "2026-03-02T10:00:00Z"


def condition(kind: str, value: str, reason: str, message: str) -> dict[str, str]:
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": T,
    }


def deployment(
    *conditions: dict[str, str], generation: int = 1, observed: int = 1
) -> dict[str, Any]:
    """Deployment prod/api with these status conditions (apps/v1, as `kubectl get -o json`)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "prod", "generation": generation, "uid": "0d5e"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "api", "image": "registry.example/api:1.4"}]},
            },
        },
        "status": {
            "observedGeneration": observed,
            "replicas": 2,
            "conditions": [{**c, "lastUpdateTime": T} for c in conditions],
        },
    }


PROGRESSING = condition(
    "Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "api-7d4b9" is progressing.'
)
UNAVAILABLE = condition(
    "Available",
    "False",
    "MinimumReplicasUnavailable",
    "Deployment does not have minimum availability.",
)
AVAILABLE = condition(
    "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
)
DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/prod/deployments/api"
