"""An export as files: one YAML stream, a folder written, or a folder checked against it.

The folder is the export's own: files an earlier export wrote (they start with its header) and
that are gone from this one are removed; other files are left alone.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from kron.config.kubernetes.export import Exported
from kron.config.kubernetes.render import HEADER

__all__ = ["check_dir", "stream", "write_dir"]


def stream(exported: Exported) -> str:
    """Every object as one YAML stream (`kron export kubernetes -o - | kubectl apply -f -`)."""
    return "---\n".join(exported.documents)


def _generated(folder: Path) -> dict[str, str]:
    """The files an earlier export wrote in `folder`, by name."""
    found = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix == ".yaml" and path.is_file():
                text = path.read_text(encoding="utf-8")
                if text.startswith(HEADER):
                    found[path.name] = text
    return found


def write_dir(exported: Exported, folder: Path) -> tuple[list[str], list[str]]:
    """Write the manifests into `folder`; remove those an earlier export wrote that are gone.

    Returns:
        The names written (changed or new) and the names removed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    before = _generated(folder)
    written = []
    for name, text in exported.files.items():
        if before.get(name) == text:
            continue
        temporary = folder / f".{name}.tmp"
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(folder / name)  # whole or not at all, for a GitOps agent reading it
        written.append(name)
    removed = sorted(set(before) - set(exported.files))
    for name in removed:
        (folder / name).unlink()
    return written, removed


def check_dir(exported: Exported, folder: Path) -> str:
    """A unified diff from the manifests in `folder` to what the job files export; "" when
    they are the same."""
    committed = _generated(folder)
    diff: list[str] = []
    for name in sorted(set(committed) | set(exported.files)):
        old, new = committed.get(name, ""), exported.files.get(name, "")
        if old == new:
            continue
        diff.extend(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"{folder / name} (committed)" if name in committed else "/dev/null",
                tofile=f"{folder / name} (exported)" if name in exported.files else "/dev/null",
            )
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)
