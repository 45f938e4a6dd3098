"""asyncio without OpenSSL until something needs TLS: 4.5 MB less for a daemon that runs commands.

`import asyncio` imports `ssl` for TLS transports, and `ssl` loads and initialises OpenSSL
(libssl, libcrypto, their tables): about 4.5 MB of a daemon's resident memory, most of what a
thousand jobs cost. A daemon whose jobs run commands never opens a TLS connection; one whose
jobs speak HTTPS loads `ssl` through httpx when the first such job runs.

`import_asyncio()` imports asyncio as a Python without `ssl` would (asyncio supports that: it
sets its `ssl` to None), and leaves an import hook behind: the moment anything imports `ssl`,
asyncio's modules get it, and what they computed from it at their import, exactly as if it had
been there from the start. TLS through asyncio then works as always, a little later.

Only the Python versions whose asyncio this was checked against are treated so (their modules
that hold `ssl`, and `SSLAgainErrors`); any other imports asyncio as it is.
"""

from __future__ import annotations

import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["import_asyncio"]

# The asyncio modules that import ssl at their own import, as of CPython 3.11 to 3.13.
_HOLDERS = ("asyncio.base_events", "asyncio.selector_events", "asyncio.sslproto")
_CHECKED = ((3, 11), (3, 12), (3, 13))


def import_asyncio() -> None:
    """Import asyncio, deferring `ssl` (and OpenSSL) to its first import by anyone."""
    if "asyncio" in sys.modules or "ssl" in sys.modules or sys.version_info[:2] not in _CHECKED:
        import asyncio

        return
    sys.modules["ssl"] = None  # type: ignore[assignment] # `import ssl` raises ImportError
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]
    if any(getattr(sys.modules.get(name), "ssl", None) is not None for name in _HOLDERS):
        return  # not the asyncio this was written for: it found an ssl anyway
    sys.meta_path.insert(0, _GiveAsyncioTLS())


def _give_asyncio(ssl: ModuleType) -> None:
    """What asyncio's modules would hold had `ssl` been there at their import."""
    for name in _HOLDERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "ssl", None) is None:
            module.ssl = ssl  # type: ignore[attr-defined]
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None:
        sslproto.SSLAgainErrors = (ssl.SSLWantReadError, ssl.SSLSyscallError)  # type: ignore[attr-defined]


class _GiveAsyncioTLS:
    """Finds `ssl` as the standard finders do, and hands it to asyncio once executed.

    A finder and a loader by protocol, not by subclassing `importlib.abc`: that module imports
    `importlib.resources`, 50 ms and half a megabyte for a daemon that never uses them."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "ssl":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Handing(spec.loader)  # type: ignore[assignment]  # a loader by protocol
        return spec


class _Handing:
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _give_asyncio(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ...: the finder's own
        return getattr(self._loader, name)
