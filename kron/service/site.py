"""The daemon's web listener: /metrics, the status page, and its actions when `[web]` turns
them on. Imported only by a daemon whose kron.toml sets `metrics`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kron.model.clock import Clock
from kron.model.errors import KronError
from kron.model.settings import Settings
from kron.service.httpd import serve_tcp
from kron.service.metrics import Metrics
from kron.service.runtime import Runtime
from kron.service.view import DaemonView
from kron.service.web import StatusSite, listen_address
from kron.service.webactions import Console
from kron.service.webauth import Sessions, read_token

__all__ = ["Site"]

log = logging.getLogger("kron.daemon")


class Site:
    """What listens on `metrics = HOST:PORT`, and follows `[web] actions` across reloads."""

    def __init__(
        self,
        view: DaemonView,
        runtime: Runtime,
        metrics: Metrics,
        *,
        settings: Callable[[], Settings],
        clock: Clock,
    ) -> None:
        self._view = view
        self._runtime = runtime
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._console: Console | None = None  # the page's actions, when on at start
        self._actions = False  # `[web] actions` as last applied

    async def start(self, address: str) -> asyncio.Server:
        """Serve on `address` (HOST:PORT); raises KronError when it cannot."""
        host, port = listen_address(address)
        shown = f"[{host}]" if ":" in host else host
        web = self._settings().web
        if web.actions:
            # Read once, at start: a new token takes a restart, which also ends every session.
            sessions = Sessions(read_token(web), now=self._clock.now)
            self._actions = True
            self._console = Console(
                self._view, self._runtime, sessions, enabled=lambda: self._settings().web.actions
            )
        try:
            server = await serve_tcp(
                host, port, StatusSite(self._view, self._metrics, self._console)
            )
        except OSError as exc:
            raise KronError(f"cannot listen on metrics = {shown}:{port}: {exc}") from None
        bound_port = server.sockets[0].getsockname()[1]
        log.info(
            "metrics and status page: http://%s:%d/%s",
            shown,
            bound_port,
            " (actions on: log in with the token in [web] token_file)" if self._console else "",
        )
        return server

    def settings_changed(self) -> None:
        """`[web] actions` turned off applies now, and ends every session, so that turning them
        on again asks for the token again; turned on, it takes a restart (the token is read at
        start)."""
        wanted = self._settings().web.actions
        if wanted == self._actions:
            return
        self._actions = wanted
        if self._console is not None and not wanted:
            ended = self._console.sessions.end_all()
            log.info("status page: actions turned off; %d sessions ended", ended)
        elif self._console is not None:
            log.info("status page: actions turned on again; log in with the token")
        else:
            log.warning("status page: [web] actions takes a restart of the daemon to turn on")
