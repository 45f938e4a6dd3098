"""Reaching the Docker engine (DOCKER_HOST, else the default socket) with the docker SDK."""

from __future__ import annotations

import os
import socket
from typing import Any

from kron.actions.base import connection_reason
from kron.model.errors import KronError

__all__ = ["API_TIMEOUT_S", "EngineUnreachable", "connect", "engine_address"]

_DEFAULT_ENGINE = "unix:///var/run/docker.sock"
API_TIMEOUT_S = 60.0  # every engine call but the wait for the exit


class EngineUnreachable(KronError):
    """The Docker engine does not answer."""


def engine_address() -> str:
    """The engine the SDK talks to: DOCKER_HOST, else the default socket."""
    return os.environ.get("DOCKER_HOST") or _DEFAULT_ENGINE


def connect(timeout_s: float = API_TIMEOUT_S) -> Any:
    """A DockerClient for DOCKER_HOST (blocking); raise EngineUnreachable when none answers."""
    import docker
    from docker.errors import DockerException

    address = engine_address()
    if address.startswith("unix://"):
        # Checked first, and closed: the SDK leaves the socket of a failed unix connect open.
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(timeout_s)
            try:
                probe.connect(address.removeprefix("unix://"))
            except OSError as exc:
                raise EngineUnreachable(
                    f"docker engine not reachable at {address}: {connection_reason(exc)}"
                ) from None
    try:
        # version negotiation asks the engine, so an engine that does not answer shows up here
        return docker.from_env(timeout=timeout_s)
    except DockerException as exc:
        raise EngineUnreachable(
            f"docker engine not reachable at {address}: {connection_reason(exc)}"
        ) from None
