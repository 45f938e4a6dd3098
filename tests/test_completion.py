"""`kron completion`: the scripts, sourced by the real shells, complete commands, flags and ids."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import run_cli

BIN = Path(sys.executable).parent  # where the `kron` the scripts call is installed

# What bash does on TAB: the line split into COMP_WORDS, the completion function called with
# the command, the word being completed and the one before it; COMPREPLY is what it offers.
BASH_TAB = """\
source "$1"
line="$2"
read -ra COMP_WORDS <<< "$line"
[[ "$line" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="$line"
COMP_POINT=${#line}
_shtab_kron kron "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\\n' "${COMPREPLY[@]}"
"""


@pytest.fixture
def jobs(jobs_dir: Path) -> Path:
    for name in ("backups/nightly.toml", "backups/weekly.yaml", "probes/disk.toml"):
        path = jobs_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("schedule: '@daily'\n" if name.endswith("yaml") else "")
    (jobs_dir / "kron.toml").write_text("")
    return jobs_dir


def _script(shell: str, folder: Path) -> Path:
    result = run_cli("completion", shell)
    assert (result.code, result.err) == (0, "")
    path = folder / f"kron.{shell}"
    path.write_text(result.out)
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KRON_JOBS_DIR"}
    return env | {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"} | extra


def _bash_tab(script: Path, line: str, cwd: Path, **env: str) -> list[str]:
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", BASH_TAB, "bash", str(script), line],
        capture_output=True, text=True, cwd=cwd, env=_env(**env), timeout=30, check=True,
    )  # fmt: skip
    return [word for word in done.stdout.splitlines() if word]


def test_bash_completes_commands_flags_choices_and_job_ids(jobs: Path, tmp_path: Path) -> None:
    script = _script("bash", tmp_path)
    root = jobs.parent  # ./jobs.d is the default jobs directory
    assert _bash_tab(script, "kron va", root) == ["validate"]
    assert _bash_tab(script, "kron fmt --sch", root) == ["--schema-directive"]
    assert _bash_tab(script, "kron validate --format ", root) == [
        "text",
        "json",
        "github",
        "gitlab",
    ]
    assert _bash_tab(script, "kron run ba", root) == ["backups/nightly", "backups/weekly"]
    assert _bash_tab(script, "kron pause ", root) == [
        "backups/nightly",
        "backups/weekly",
        "probes/disk",
    ]


def test_bash_job_ids_come_from_the_jobs_dir_the_line_names(jobs: Path, tmp_path: Path) -> None:
    script = _script("bash", tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _bash_tab(script, f"kron next --jobs-dir {jobs} pro", elsewhere) == ["probes/disk"]
    assert _bash_tab(script, "kron history b", elsewhere, KRON_JOBS_DIR=str(jobs)) == [
        "backups/nightly",
        "backups/weekly",
    ]
    assert _bash_tab(script, "kron run ", elsewhere) == []


@pytest.mark.skipif(
    shutil.which("fish") is None and os.environ.get("CI") is None,
    reason="fish is installed by scripts/test.sh; under CI a missing fish fails",
)
def test_fish_completes_commands_flags_and_job_ids(jobs: Path, tmp_path: Path) -> None:
    script = _script("fish", tmp_path)
    lines = "; ".join(
        f"complete -C '{line}'" for line in ("kron va", "kron fmt --sch", "kron run ba")
    )
    done = subprocess.run(
        ["fish", "--no-config", "-c", f"source {script}; {lines}"],
        capture_output=True, text=True, cwd=jobs.parent, env=_env(), timeout=30, check=True,
    )  # fmt: skip
    offered = [line.split("\t")[0] for line in done.stdout.splitlines()]
    assert offered == ["validate", "--schema-directive", "backups/nightly", "backups/weekly"]


@pytest.mark.skipif(
    shutil.which("zsh") is None and os.environ.get("CI") is None,
    reason="zsh is installed by scripts/test.sh; under CI a missing zsh fails",
)
def test_zsh_finds_the_script_on_its_fpath_and_binds_it_to_kron(jobs: Path, tmp_path: Path) -> None:
    functions = tmp_path / "zfunc"
    functions.mkdir()
    (functions / "_kron").write_text(run_cli("completion", "zsh").out)  # as the epilog says
    check = f"fpath=({functions} $fpath); autoload -U compinit && compinit -u -D; print -r -- $_comps[kron]"
    done = subprocess.run(
        ["zsh", "-f", "-c", check],
        capture_output=True, text=True, env=_env(HOME=str(tmp_path)), timeout=30, check=True,
    )  # fmt: skip
    assert (done.stdout, done.stderr) == ("_kron\n", "")
    evaluated = subprocess.run(
        ["zsh", "-f", "-c", "autoload -U compinit && compinit -u -D; "
         'eval "$(kron completion zsh)"; print -r -- $_comps[kron]; functions _kron_job_ids'],
        capture_output=True, text=True, env=_env(HOME=str(tmp_path)), timeout=30, check=True,
    )  # fmt: skip
    assert evaluated.stdout.splitlines()[0] == "_shtab_kron"
    assert "kron completion --job-ids" in evaluated.stdout


def test_job_ids_helper_lists_the_files_names_without_loading_them(jobs: Path) -> None:
    (jobs / "backups" / "nightly.toml").write_text("not [valid toml")
    result = run_cli("completion", "--job-ids", "kron", "run", "--jobs-dir", jobs)
    assert (result.code, result.out) == (0, "backups/nightly\nbackups/weekly\nprobes/disk\n")


def test_completion_without_a_shell_is_a_usage_error() -> None:
    result = run_cli("completion")
    assert (result.code, result.err) == (2, "kron completion: name a shell: bash, zsh, fish\n")
