"""kron in git hooks and CI: the pre-commit hooks run by the real pre-commit, and the workflow
files of docs/ci.md valid for GitHub and GitLab, with kron command lines that do what they say."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
CI_DOC = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
GOOD = 'schedule = "@daily"\ntimezone = "UTC"\nshell = "true"\n'
BAD = 'schedule = "@daily"\nshell = "true"\ntimout = "5m"\n'
ANNOTATION = (
    "::error file=jobs.d/bad.toml,line=3,col=1,title=kron validate::"
    "timout: unknown field 'timout'; did you mean 'timeout'?"
)
# pre-commit builds kron's own virtualenv from the repository (pip, from the package index):
# about a minute on an idle machine, several on a busy one.
INSTALL_TIMEOUT_S = 900


def _block(first_line: str) -> str:
    for body in re.findall(r"```[a-z]*\n(.*?)```", CI_DOC, re.DOTALL):
        if body.startswith(first_line):
            return str(body)
    raise AssertionError(f"docs/ci.md has no block starting with {first_line!r}")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KRON_JOBS_DIR", "NO_COLOR")}
    return env | {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}


def _sh(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, cwd=cwd, env=_env(), timeout=60,
        check=False,
    )  # fmt: skip


def _project(tmp_path: Path, *files: tuple[str, str]) -> Path:
    jobs = tmp_path / "jobs.d"
    jobs.mkdir(parents=True)
    for name, text in files:
        (jobs / name).write_text(text)
    return tmp_path


def _github_commands(workflow: dict[str, Any]) -> list[str]:
    return [
        line
        for job in workflow["jobs"].values()
        for step in job["steps"]
        for line in str(step.get("run", "")).splitlines()
        if line.startswith("kron ")
    ]


def _gitlab_commands(pipeline: dict[str, Any]) -> list[str]:
    return [line for line in pipeline["kron"]["script"] if line.startswith("kron ")]


@pytest.mark.parametrize(
    ("first_line", "schema"),
    [
        ("# .github/workflows/kron.yml\n", "vendor.github-workflows"),
        ("# .gitlab-ci.yml\n", "vendor.gitlab-ci"),
        ("# .pre-commit-config.yaml\n", None),
    ],
)
def test_each_ci_file_of_the_docs_is_valid_where_it_goes(
    tmp_path: Path, first_line: str, schema: str | None
) -> None:
    path = tmp_path / first_line.removeprefix("# ").strip().replace("/", "_")
    path.write_text(_block(first_line))
    if schema is None:  # pre-commit checks its own configuration
        argv = [sys.executable, "-m", "pre_commit", "validate-config", str(path)]
    else:  # the schemas GitHub and GitLab publish, as check-jsonschema ships them
        argv = [str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(path)]
    checked = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_hooks_manifest_is_valid_for_pre_commit() -> None:
    argv = [sys.executable, "-m", "pre_commit", "validate-manifest", ".pre-commit-hooks.yaml"]
    checked = subprocess.run(
        argv, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    hooks = {
        hook["id"]: hook for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    }
    assert sorted(hooks) == ["kron-fmt", "kron-validate"]


def test_the_github_workflow_passes_good_jobs_and_annotates_a_bad_line(tmp_path: Path) -> None:
    commands = _github_commands(yaml.safe_load(_block("# .github/workflows/kron.yml\n")))
    assert commands == ["kron validate --format github --strict", "kron fmt --check"]
    good = _project(tmp_path / "good", ("good.toml", GOOD))
    ran = [_sh(command, good) for command in commands]
    assert [(done.returncode, done.stderr) for done in ran] == [(0, ""), (0, "")]
    bad = _project(tmp_path / "bad", ("good.toml", GOOD), ("bad.toml", BAD))
    annotated = _sh(commands[0], bad)
    assert (annotated.returncode, annotated.stdout) == (
        1,
        f"{ANNOTATION}\n2 files, 1 error, 0 warnings\n",
    )
    # The console example of the docs is what kron prints.
    example = CI_DOC.split("$ kron validate --format github\n", 1)[1].split("```", 1)[0]
    assert example == annotated.stdout


def test_the_gitlab_job_writes_a_code_quality_report_and_fails_on_errors(tmp_path: Path) -> None:
    commands = _gitlab_commands(yaml.safe_load(_block("# .gitlab-ci.yml\n")))
    assert commands == [
        "kron validate --format gitlab > kron-code-quality.json || true",
        "kron validate --strict",
        "kron fmt --check",
    ]
    good = _project(tmp_path / "good", ("good.toml", GOOD))
    assert [_sh(c, good).returncode for c in commands] == [0, 0, 0]
    assert json.loads((good / "kron-code-quality.json").read_text()) == []
    bad = _project(tmp_path / "bad", ("good.toml", GOOD), ("bad.toml", BAD))
    assert [_sh(c, bad).returncode for c in commands] == [0, 1, 0]
    report = json.loads((bad / "kron-code-quality.json").read_text())
    assert [(i["location"], i["severity"], i["description"]) for i in report] == [
        (
            {"path": "jobs.d/bad.toml", "lines": {"begin": 3}},
            "major",
            "timout: unknown field 'timout'; did you mean 'timeout'?",
        )
    ]


# -- pre-commit, for real ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def kron_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kron's source as it is now (uncommitted and new files too), committed in a repository of
    its own: what `pre-commit try-repo` installs the hooks from."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, cwd=ROOT, timeout=60, check=True,
    ).stdout.decode()  # fmt: skip
    repo = tmp_path_factory.mktemp("kron-repo")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_symlink():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).symlink_to(os.readlink(source))
        elif source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "snapshot")
    return repo


def _git(cwd: Path, *args: str) -> None:
    identity = ["-c", "user.name=kron tests", "-c", "user.email=tests@kron.invalid"]
    subprocess.run(["git", *identity, *args], cwd=cwd, check=True, timeout=60)


def _try_repo(kron_repo: Path, user_repo: Path) -> subprocess.CompletedProcess[str]:
    env = _env() | {"PRE_COMMIT_HOME": str(user_repo.parent / "pre-commit-home")}
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(kron_repo), "--all-files"],
        capture_output=True, text=True, cwd=user_repo, env=env, timeout=INSTALL_TIMEOUT_S,
        check=False,
    )  # fmt: skip


def _user_repo(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "ops"
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "jobs")
    return repo


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 60)
def test_pre_commit_passes_a_repository_of_good_job_files(kron_repo: Path, tmp_path: Path) -> None:
    repo = _user_repo(tmp_path, {"jobs.d/good.toml": GOOD, "README.md": "ops\n"})
    result = _try_repo(kron_repo, repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^kron validate\.+Passed$", result.stdout, re.MULTILINE)
    assert re.search(r"^kron fmt\.+Passed$", result.stdout, re.MULTILINE)


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 60)
def test_pre_commit_fails_naming_the_file_and_line_and_formats_a_file(
    kron_repo: Path, tmp_path: Path
) -> None:
    moved = 'shell = "true"\nschedule = "@daily"  # every day\ntimezone = "UTC"\n'
    repo = _user_repo(
        tmp_path, {"jobs.d/good.toml": GOOD, "jobs.d/bad.toml": BAD, "jobs.d/moved.toml": moved}
    )
    result = _try_repo(kron_repo, repo)
    assert result.returncode == 1
    assert re.search(r"^kron validate\.+Failed$", result.stdout, re.MULTILINE)
    assert (
        "jobs.d/bad.toml:3:1: timout: unknown field 'timout'; did you mean 'timeout'?\n"
        "3 files: 2 valid, 1 with errors, 0 warnings\n"
    ) in result.stdout
    assert re.search(r"^kron fmt\.+Failed$", result.stdout, re.MULTILINE)
    assert "jobs.d/moved.toml: formatted" in result.stdout
    assert (repo / "jobs.d" / "moved.toml").read_text() == (
        'schedule = "@daily"  # every day\ntimezone = "UTC"\nshell = "true"\n'
    )
