"""`kron completion bash|zsh|fish`: tab completion of commands, flags and job ids.

shtab writes the script from the parser itself, so a new command or flag completes without
anyone editing a script. Job ids come from `kron completion --job-ids`, which lists the job
files' names (no file is parsed) of the jobs directory the command line being completed names.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, TextIO

from kron.cli.common import EXIT_OK, job_ids
from kron.model.errors import UsageError

__all__ = ["add_parser", "completion"]

SHELLS = ("bash", "zsh", "fish")

# The helper gets the words typed so far, so that `--jobs-dir` given on the line is honoured.
_JOB_IDS: dict[str, Any] = {
    "bash": "_kron_job_ids",
    "zsh": "_kron_job_ids",
    "fish": "(kron completion --job-ids (commandline -opc) 2>/dev/null)",
    "preamble": {
        "bash": (
            "_kron_job_ids() {\n"
            '  compgen -W "$(kron completion --job-ids "${COMP_WORDS[@]}" 2>/dev/null)"'
            ' -- "$1"\n'
            "}\n"
        ),
        "zsh": (
            "_kron_job_ids() {\n"
            "  local -a ids\n"
            '  ids=(${(f)"$(kron completion --job-ids ${words[@]} 2>/dev/null)"})\n'
            "  compadd -a ids\n"
            "}\n"
        ),
    },
}

EPILOG = """\
install (each shell reads it from where it looks for completions):
  bash: kron completion bash > ~/.local/share/bash-completion/completions/kron
  zsh:  kron completion zsh > "${fpath[1]}/_kron"     (a folder of $fpath, before compinit)
        or, in ~/.zshrc after compinit: eval "$(kron completion zsh)"
  fish: kron completion fish > ~/.config/fish/completions/kron.fish
job ids complete from the jobs directory the line names (--jobs-dir), else $KRON_JOBS_DIR,
else ./jobs.d.
"""


def add_parser(
    sub: argparse._SubParsersAction[Any],
    common: argparse.ArgumentParser,
    *,
    root: argparse.ArgumentParser,
) -> None:
    """Add `completion` to the command line whose parser is `root` (what it completes)."""
    p = sub.add_parser(
        "completion",
        parents=[common],
        help="print a shell's tab completion for kron: commands, flags, job ids",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", nargs="?", choices=SHELLS)
    # The completion scripts call this; it is no command of its own for people.
    p.add_argument("--job-ids", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(root_parser=root)


def completion(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.job_ids is not None:
        for job_id in job_ids(_jobs_dir_in(args.job_ids, args.jobs_dir)):
            print(job_id, file=out)
        return EXIT_OK
    if args.shell is None:
        raise UsageError(f"kron completion: name a shell: {', '.join(SHELLS)}")
    import shtab  # only here: no other command needs it

    parser: argparse.ArgumentParser = args.root_parser
    _annotate(parser, shtab)
    out.write(shtab.complete(parser, shell=args.shell))
    return EXIT_OK


def _jobs_dir_in(words: list[str], default: Path) -> Path:
    """The jobs directory the line being completed names (`--jobs-dir D` or `--jobs-dir=D`)."""
    for index, word in enumerate(words):
        if word == "--jobs-dir" and index + 1 < len(words):
            return Path(os.path.expanduser(words[index + 1]))
        if word.startswith("--jobs-dir="):
            return Path(os.path.expanduser(word.partition("=")[2]))
    return default


def _annotate(parser: argparse.ArgumentParser, shtab: Any) -> None:
    """Say what each argument completes to: job ids, files or folders."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                _annotate_command(name, child, shtab)
        elif action.dest == "jobs_dir":
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]


def _annotate_command(name: str, parser: argparse.ArgumentParser, shtab: Any) -> None:
    for action in parser._actions:
        if action.dest == "job" and name != "new":
            action.complete = _JOB_IDS  # type: ignore[attr-defined]
        elif action.dest in ("jobs_dir", "records_dir", "write", "output", "check") and (
            action.nargs != 0
        ):
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        elif action.dest in ("paths", "file"):
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                _annotate_command(child_name, child, shtab)
