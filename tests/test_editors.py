"""The job schema as editors use it: written to files, checked by independent validators, and
associated the way docs/editors.md says."""

from __future__ import annotations

import glob
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import run_cli

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
EDITORS = (ROOT / "docs" / "editors.md").read_text(encoding="utf-8")

# Files the schema alone refuses (kron's loader refuses them too): a misspelt field, a value
# outside an enum, a wrong type, in both formats.
BAD = {
    "typo.toml": 'schedule = "@daily"\nshell = "true"\ntimout = "5m"\n',
    "enum.yaml": "schedule: '@daily'\nshell: 'true'\nconcurrency: sometimes\n",
    "type.toml": 'schedule = "@daily"\nshell = "true"\n\n[retry]\nattempts = "three"\n',
    "duration.yaml": "schedule: '@daily'\nshell: 'true'\ntimeout: soon\n",
}


def _block(text: str, first_line: str) -> str:
    """The fenced code block of the docs that starts with `first_line`."""
    for body in re.findall(r"```[a-z]*\n(.*?)```", text, re.DOTALL):
        if body.startswith(first_line):
            return str(body)
    raise AssertionError(f"no block starting with {first_line!r}")


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A repository with kron's example jobs and the schemas `kron schema --write` wrote."""
    shutil.copytree(ROOT / "jobs.d", tmp_path / "jobs.d")
    written = run_cli("schema", "--write", tmp_path / "schemas")
    assert written.out == (
        f"wrote {tmp_path}/schemas/job.schema.json\nwrote {tmp_path}/schemas/kron.schema.json\n"
    )
    return tmp_path


def _job_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix in (".toml", ".yaml", ".yml") and p.stem != "kron"
    )


def test_schema_write_puts_what_kron_schema_prints_into_files(project: Path) -> None:
    assert (project / "schemas" / "job.schema.json").read_text() == run_cli("schema").out
    assert (project / "schemas" / "kron.schema.json").read_text() == run_cli(
        "schema", "--settings"
    ).out


def test_check_jsonschema_accepts_the_example_jobs_kron_accepts(project: Path) -> None:
    jobs = _job_files(project / "jobs.d")
    assert {p.suffix for p in jobs} == {".toml", ".yaml"}
    assert run_cli("validate", "-q", "--jobs-dir", project / "jobs.d").code == 0
    schema = str(project / "schemas" / "job.schema.json")
    checked = _run(
        [str(BIN / "check-jsonschema"), "--schemafile", schema, *map(str, jobs)], project
    )
    assert (checked.returncode, checked.stdout.strip()) == (0, "ok -- validation done")
    settings = str(project / "schemas" / "kron.schema.json")
    kron_toml = str(project / "jobs.d" / "kron.toml")
    checked = _run([str(BIN / "check-jsonschema"), "--schemafile", settings, kron_toml], project)
    assert checked.returncode == 0, checked.stdout


@pytest.mark.parametrize("name", sorted(BAD))
def test_check_jsonschema_and_kron_both_refuse_a_file_the_schema_forbids(
    project: Path, name: str
) -> None:
    bad = project / "jobs.d" / name
    bad.write_text(BAD[name])
    schema = str(project / "schemas" / "job.schema.json")
    checked = _run([str(BIN / "check-jsonschema"), "--schemafile", schema, str(bad)], project)
    assert checked.returncode == 1
    assert f"{bad}::" in checked.stdout  # check-jsonschema names the file it refused
    kron = run_cli("validate", "-q", bad, "--jobs-dir", project / "jobs.d")
    assert kron.code == 1
    assert kron.out.startswith(f"{bad}:")


def test_taplo_reads_the_schema_line_kron_fmt_writes(project: Path) -> None:
    taplo = str(BIN / "taplo")
    assert run_cli("fmt", "--schema-directive", project / "schemas", project / "jobs.d").code == 0
    nightly = project / "jobs.d" / "backups" / "nightly.toml"
    assert nightly.read_text().startswith("#:schema ../../schemas/job.schema.json\n")
    toml_files = [str(p) for p in sorted((project / "jobs.d").rglob("*.toml"))]
    assert _run([taplo, "check", *toml_files], project).returncode == 0
    bad = project / "jobs.d" / "typo.toml"
    bad.write_text(BAD["typo.toml"])
    assert run_cli("fmt", "--schema-directive", "schemas", bad).code == 0
    checked = _run([taplo, "check", str(bad)], project)
    assert checked.returncode == 1
    assert "Additional properties are not allowed ('timout' was unexpected)" in checked.stderr


def test_the_taplo_configuration_of_the_docs_picks_each_files_schema(project: Path) -> None:
    (project / ".taplo.toml").write_text(_block(EDITORS, "# .taplo.toml\n"))
    taplo = str(BIN / "taplo")
    assert _run([taplo, "check"], project).returncode == 0
    (project / "jobs.d" / "kron.toml").write_text('timezone = "UTC"\nbogus = 1\n')
    checked = _run([taplo, "check"], project)
    assert checked.returncode == 1
    assert "'bogus' was unexpected" in checked.stderr
    assert "kron.toml" in checked.stderr


def test_the_vscode_associations_of_the_docs_match_the_job_files(project: Path) -> None:
    settings = json.loads(_block(EDITORS, "{\n"))
    yaml_files = {str(p.relative_to(project)) for p in _job_files(project / "jobs.d")} - {
        str(p.relative_to(project)) for p in (project / "jobs.d").rglob("*.toml")
    }
    matched: set[str] = set()
    for schema, patterns in settings["yaml.schemas"].items():
        assert (project / schema).is_file()
        for pattern in patterns:
            matched |= set(glob.glob(pattern, root_dir=project, recursive=True))
    assert matched == yaml_files
    associations = settings["evenBetterToml.schema.associations"]
    for schema in associations.values():
        assert schema.startswith("./")
        assert (project / schema).is_file()

    def schemas_for(path: Path) -> list[str]:
        return [s for pattern, s in associations.items() if re.fullmatch(pattern, path.as_uri())]

    for path in sorted((project / "jobs.d").rglob("*.toml")):
        wanted = "kron" if path.name == "kron.toml" else "job"
        assert f"./schemas/{wanted}.schema.json" in schemas_for(path)
