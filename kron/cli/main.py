"""The `kron` command line: `main(argv) -> exit code`; user errors never print a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from kron import __version__
from kron.cli import agents, completion, export, files, ops, records
from kron.cli.colour import COLOUR_CHOICES
from kron.cli.common import EXIT_BAD, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from kron.model.errors import DaemonUnreachable, KronError, SpecError, UsageError

Command = Callable[[argparse.Namespace, TextIO, TextIO], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _jobs_dir_default() -> Path:
    return Path(os.environ.get("KRON_JOBS_DIR", "jobs.d"))


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--jobs-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="the jobs directory (default: $KRON_JOBS_DIR or ./jobs.d)",
    )
    common.add_argument(
        "--color",
        choices=COLOUR_CHOICES,
        default=argparse.SUPPRESS,
        help="colour outcomes: auto (on a terminal, unless NO_COLOR is set; FORCE_COLOR colours "
        "a pipe), always, never",
    )
    parser = _Parser(prog="kron", description="Scheduled work declared as files.", parents=[common])
    parser.add_argument("--version", action="version", version=f"kron {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "validate", parents=[common], help="check job files, as the daemon would load them"
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="files or folders (default: the jobs directory)",
    )
    p.add_argument(
        "--format",
        choices=["text", "json", "github", "gitlab"],
        default="text",
        help="github: workflow annotations; gitlab: a code quality report (JSON)",
    )
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems and the summary")

    p = sub.add_parser(
        "next", parents=[common], help="upcoming fire times of a job or an expression"
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("job", nargs="?", help="a job id or a job file")
    target.add_argument("--expr", help="a schedule expression, e.g. '0 3 * * MON-FRI'")
    p.add_argument("--tz", help="time zone for --expr (default: kron.toml's, else UTC)")
    p.add_argument("--from", dest="start", help="ISO time to start from (default: now)")
    p.add_argument("-n", type=int, default=5, help="how many (default 5)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("daemon", parents=[common], help="run the scheduler in the foreground")
    p.add_argument("--records-dir", type=Path, help="where records go (overrides kron.toml)")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")

    p = sub.add_parser(
        "run", parents=[common], help="fire a job now (trigger manual) and print its record"
    )
    p.add_argument("job", help="a job id or a job file")
    p.add_argument(
        "--wait", action="store_true", help="wait for the run to end (always so without a daemon)"
    )
    p.add_argument("--json", action="store_true")
    ops.add_here_arguments(p)

    p = sub.add_parser(
        "status", parents=[common], help="the daemon's view: jobs, invalid files, runs"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("list", parents=[common], help="jobs with their next fire and last outcome")
    p.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="only these tags"
    )
    p.add_argument("--json", action="store_true")

    for name, text in (
        ("pause", "stop firing a job by its schedule (kept across restarts)"),
        ("resume", "fire a paused job by its schedule again"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("job", nargs="?", help="a job id")
        p.add_argument(
            "--tag", action="append", default=[], metavar="KEY=VALUE", help="every job with it"
        )
        p.add_argument("--json", action="store_true")

    p = sub.add_parser("cancel", parents=[common], help="stop a running run's process tree")
    p.add_argument("run_id", nargs="?", help="a running run's id")
    p.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="runs of these jobs"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "tree", parents=[common], help="the trigger graph, with each job's last outcome"
    )
    p.add_argument("job", nargs="?", help="only the tree below this job")

    p = sub.add_parser("history", parents=[common], help="recent runs, newest first")
    p.add_argument("job", nargs="?", help="only this job")
    p.add_argument("--outcome", help="only runs with this outcome (failed, timeout, skipped, ...)")
    p.add_argument("--since", help="only runs since a duration ago (2h, 7d) or an ISO time")
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")
    p.add_argument(
        "--records-dir", type=Path, help="where the records are (as given to the daemon)"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("show", parents=[common], help="one run's record and output")
    p.add_argument("run_id", help="a run id (a unique prefix is enough)")
    p.add_argument(
        "--records-dir", type=Path, help="where the records are (as given to the daemon)"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "check-records",
        parents=[common],
        help="check every records file: torn lines, runs without an end, slots recorded twice "
        "or not at all (exit 1 when any)",
    )
    p.add_argument(
        "--records-dir", type=Path, help="where the records are (as given to the daemon)"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("schema", parents=[common], help="print the JSON Schema of job files")
    p.add_argument("--settings", action="store_true", help="the schema of kron.toml instead")
    p.add_argument(
        "--write",
        type=Path,
        metavar="DIR",
        help="write job.schema.json and kron.schema.json into DIR instead (for editors)",
    )

    p = sub.add_parser(
        "fmt",
        parents=[common],
        help="put job files' keys in the schema's order, keeping comments and style",
        description="Rewrite job files (and kron.toml) with their keys in the schema's order. "
        "Comments move with their keys; quoting, block scalars and arrays on one line stay as "
        "written; one blank line goes before each TOML [table]. A file that does not parse is "
        "reported with its line and never rewritten; files are replaced atomically.",
    )
    p.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH", help="files or folders (default: jobs dir)"
    )
    p.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a file would change"
    )
    p.add_argument(
        "--schema-directive",
        metavar="DIR_OR_URL",
        help="put the editor's schema line at the top of each file, for the schemas that "
        "`kron schema --write DIR` wrote (or a URL serving them)",
    )

    p = sub.add_parser(
        "convert", parents=[common], help="turn a TOML job file into YAML or back, comments too"
    )
    p.add_argument("file", type=Path)
    p.add_argument("--to", choices=["toml", "yaml"], required=True)
    p.add_argument(
        "--stdout", action="store_true", help="print the result instead of replacing the file"
    )
    agents.add_parsers(sub, common)
    export.add_parser(sub, common)
    completion.add_parser(sub, common, root=parser)
    return parser


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one kron command; return its exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "jobs_dir", None):
            args.jobs_dir = _jobs_dir_default()
        if not getattr(args, "color", None):
            args.color = "auto"
        if args.command is None:
            parser.print_help(out)
            return EXIT_USAGE
        return _COMMANDS[args.command](args, out, err)
    except UsageError as exc:
        # One form for every usage error: `kron COMMAND: what is wrong`.
        said = str(exc)
        if not said.startswith("kron"):
            command = getattr(locals().get("args"), "command", None)
            said = f"kron {command}: {said}" if command else f"kron: {said}"
        print(said, file=err)
        return EXIT_USAGE
    except DaemonUnreachable as exc:
        print(f"kron: {exc}", file=err)
        return EXIT_UNREACHABLE
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return EXIT_BAD
    except KronError as exc:
        print(f"kron: {exc}", file=err)
        return EXIT_BAD
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `kron history | head` closes the pipe; that is not an error.
        sys.stderr.close()
        return EXIT_OK
    except OSError as exc:
        # An unreadable records or jobs location, a full disk: said, never a traceback.
        where = f" {exc.filename}" if exc.filename else ""
        print(f"kron: cannot read or write{where}: {exc.strerror or exc}", file=err)
        return EXIT_BAD


_COMMANDS: dict[str, Command] = {
    "tree": files.tree,
    "daemon": ops.daemon,
    "run": ops.run,
    "status": ops.status,
    "list": ops.jobs,
    "pause": ops.pause_resume,
    "resume": ops.pause_resume,
    "cancel": ops.cancel,
    "history": records.history,
    "show": records.show,
    "check-records": records.check_records,
    "validate": files.validate,
    "next": files.next_fires,
    "schema": files.schema,
    "fmt": files.fmt,
    "convert": files.convert,
    "new": agents.new,
    "mcp": agents.mcp,
    "export": export.export,
    "completion": completion.completion,
}
