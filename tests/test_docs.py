"""The docs stay true: the README's job reference is the schema's, and every field is described."""

from __future__ import annotations

import json
import re
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


def test_the_operations_guide_copies_the_whole_jobs_directory_as_written(tmp_path: Path) -> None:
    """Step 2 of docs/operations.md, run as written but under a temporary root, leaves a jobs
    directory the daemon accepts with every job of the repository's, sub-folders and YAML too."""
    import subprocess

    from kron.config.validate import validate

    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    step = text.split("2. **Create the jobs directory**")[1].split("```console")[1].split("```")[0]
    commands = [line.strip().removeprefix("# ") for line in step.strip().splitlines()]
    assert commands[0].startswith("install -d")
    script = "\n".join(
        command.replace("/etc/kron", str(tmp_path / "etc/kron"))
        .replace("/path/to/your/repo", str(ROOT))
        .replace("chown -R root:root", "chown -R $(id -u):$(id -g)")
        for command in commands
    )
    subprocess.run(["bash", "-euc", script], check=True, timeout=30)
    copied = validate([], jobs_dir=tmp_path / "etc/kron/jobs.d")
    shipped = validate([], jobs_dir=ROOT / "jobs.d")
    assert [j.id for j in copied.jobs] == [j.id for j in shipped.jobs]
    assert copied.errors == []


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)


def test_docs_agents_names_every_mcp_tool_and_its_examples_are_what_kron_writes() -> None:
    from kron.config.new import Draft, render
    from kron.service.mcp import load_tools

    text = (ROOT / "docs" / "agents.md").read_text(encoding="utf-8")
    rows = "\n".join(line for line in text.splitlines() if line.startswith("| `"))
    assert [t.name for t in load_tools() if f"`{t.name}`" not in rows] == []
    config, create = (json.loads(block) for block in _blocks(text, "json")[:2])
    assert config["mcpServers"]["kron"]["args"][:1] == ["mcp"]
    # The worked example's file is the one create_job writes for the arguments shown.
    draft = Draft(**{k: tuple(v) if isinstance(v, list) else v for k, v in create.items()})
    written = next(b for b in _blocks(text, "toml") if b.startswith("description = "))
    assert render(draft.data(str), "toml") == written


def test_the_readme_commands_table_has_every_command() -> None:
    import argparse

    from kron.cli.main import build_parser

    parser = build_parser()
    commands = next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| `")]
    listed = {name for cell in first_cells for name in re.findall(r"`kron ([a-z][a-z-]*)", cell)}
    assert listed == set(commands)
