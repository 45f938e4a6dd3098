"""The docs stay true: the README's job reference is the schema's, and every field is described."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from kron.config.docgen import replace_section
from kron.config.schema import load_schema

ROOT = Path(__file__).parent.parent


def test_the_readme_job_reference_is_generated_from_the_schema() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert replace_section(readme) == readme, (
        "run `python -m kron.config.docgen` to update README.md"
    )


def _fields(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, child in node.get("properties", {}).items():
        yield f"{path}{name}", child
        yield from _fields(child, f"{path}{name}.")
        items = child.get("items")
        if isinstance(items, dict):
            yield from _fields(items, f"{path}{name}[].")


@pytest.mark.parametrize("name", ["job", "kron", "x-kubernetes"])
def test_every_schema_field_has_a_title_and_a_description(name: str) -> None:
    missing = [
        path
        for path, node in _fields(load_schema(name))
        if not node.get("title") or not node.get("description")
    ]
    assert missing == []


def test_the_schemas_folder_is_the_one_the_package_ships() -> None:
    assert (ROOT / "schemas" / "job.schema.json").read_bytes() == (
        ROOT / "kron" / "schemas" / "job.schema.json"
    ).read_bytes()
