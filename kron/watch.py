"""Follow the jobs directory live: which changes matter, batched as the editor or git makes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import watchfiles
from watchfiles._rust_notify import RustNotify

from kron.documents import is_job_file
from kron.loader import SETTINGS_NAMES

log = logging.getLogger("kron.watch")

# A change is applied once the directory has been quiet for STEP_MS, and at the latest after
# DEBOUNCE_MS of continuous changes (a long `git checkout` is applied in consistent batches).
# watchfiles' defaults (1600 ms) would make every edit wait over a second and a half. Its Rust
# watcher sleeps STEP_MS between checks even when nothing changes: that is the daemon's idle
# CPU (about 0.1 s a minute here), the price of an edit going live within about 60 ms.
STEP_MS = 30
DEBOUNCE_MS = 400
RUST_TIMEOUT_MS = 5000  # the watching thread checks for a stop at least this often


class JobFilesFilter:
    """Keep job files, kron.toml and folders; drop hidden files, editor temporaries and records."""

    def __init__(self, jobs_dir: Path) -> None:
        self.jobs_dir = jobs_dir

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        try:
            relative = Path(path).relative_to(self.jobs_dir)
        except ValueError:
            return False
        if any(part.startswith(".") for part in relative.parts):
            return False
        name = relative.name
        if is_job_file(name) or name in SETTINGS_NAMES:
            return True
        # A folder added, removed or renamed: its files never show up one by one.
        return "." not in name and not name.endswith(("~", "#"))


async def watch(
    jobs_dir: Path, stop: asyncio.Event, on_ready: Callable[[], None] | None = None
) -> AsyncIterator[set[Path]]:
    """Yield the set of changed paths, batch by batch, until `stop` is set.

    `on_ready` is called once the directory is being watched: a change made before that moment
    is not seen here, so the caller re-checks the directory then (watchfiles' own `awatch` does
    not say when it starts watching).
    """
    keep = JobFilesFilter(jobs_dir)
    with RustNotify([str(jobs_dir)], False, False, 300, True, True) as notify:
        if on_ready is not None:
            on_ready()
        while not stop.is_set():
            raw = await asyncio.to_thread(notify.watch, DEBOUNCE_MS, STEP_MS, RUST_TIMEOUT_MS, stop)
            if raw == "stop":
                return
            if isinstance(raw, str):  # "timeout" or "signal"
                continue
            paths = {Path(path) for change, path in raw if keep(watchfiles.Change(change), path)}
            if paths:
                log.debug("changes: %s", sorted(map(str, paths)))
                yield paths
