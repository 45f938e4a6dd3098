"""Shared fixtures: a jobs directory in a temp folder and a way to run the CLI in-process."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from kron.cli.main import main

if TYPE_CHECKING:
    from tests.browser import DevTools
    from tests.pg import TempPostgres


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def run_cli(*argv: str | os.PathLike[str]) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], out=out, err=err)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    return run_cli


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs.d"
    folder.mkdir()
    return folder


@pytest.fixture
def write(jobs_dir: Path) -> Callable[[str, str], Path]:
    """Write a file below the jobs directory, dedenting the text; return its path."""

    def _write(name: str, text: str) -> Path:
        path = jobs_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


@pytest.fixture(autouse=True)
def _no_real_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never let a test talk to a kron daemon running on this machine."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    """One real PostgreSQL for the session (tests/pg.py); each test takes a fresh database."""
    from tests.pg import TempPostgres, require_postgres

    server = TempPostgres(require_postgres())
    server.start()
    server.wait_ready()
    yield server
    server.destroy()


@pytest.fixture
def database(postgres: TempPostgres, request: pytest.FixtureRequest) -> str:
    """The URL of an empty database of its own for this test."""
    postgres.wait_ready()  # a test that stopped the server started it again
    name = "t_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    return postgres.fresh_database(name)


# -- a real browser (the status page's tests) ---------------------------------------------------


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short folder under /tmp: a unix socket path must fit in 108 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="kron-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def browser(short_tmp: Path) -> Iterator[DevTools]:
    """Headless Chromium driven over the DevTools protocol."""
    from .browser import headless_chromium

    with headless_chromium(short_tmp) as devtools:
        yield devtools
