"""SHA-256 from CPython's own implementation, the one `hashlib` falls back on without OpenSSL.

`import hashlib` loads OpenSSL's libcrypto (3.5 MB of a daemon's resident memory) to offer its
sha256; kron hashes a job file's text, a job id or a socket path now and then, a few hundred
bytes each, for which CPython's built-in module is as good. Where it is missing, hashlib's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["Hash", "sha256"]


class Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


def _builtin() -> Callable[..., Hash]:
    import importlib

    for name in ("_sha256", "_sha2"):  # CPython 3.11; 3.12 and later
        try:
            found: Callable[..., Hash] = importlib.import_module(name).sha256
        except (ImportError, AttributeError):
            continue
        return found
    import hashlib  # pragma: no cover - a Python without them

    return hashlib.sha256  # pragma: no cover


sha256 = _builtin()
