"""The commands for agents (and people who schedule as one would): `kron new` and `kron mcp`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kron.cli.common import EXIT_OK
from kron.model.errors import KronError, UsageError

if TYPE_CHECKING:
    from kron.model.settings import Settings

__all__ = ["add_parsers", "mcp", "new"]

NEW_EPILOG = """\
exactly one action: --shell LINE, --command ARG..., --http-url URL [--method M], or
--agent-prompt TEXT with --agent-command ARG... or --agent-endpoint URL --agent-model M.
--command and --agent-command take the rest of the line: put them last.
The file is checked by the daemon's own loader ([policy], file trust included) before it is
written; an existing file is never replaced. Rarer fields: edit the file afterwards.

example:
  kron new reports/cert-check --schedule '@at 2026-12-07T09:00' --timezone Europe/Berlin \\
    --wait 'https://example.org/health==200' --notify-telegram 123456 --notify-on always \\
    --shell 'openssl s_client -connect example.org:443 </dev/null | openssl x509 -noout -dates'
"""


def add_parsers(sub: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    """Add `new` and `mcp` to the command line."""
    p = sub.add_parser(
        "new",
        parents=[common],
        help="write a new job file from flags, checked before it is written",
        epilog=NEW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("id", help="the job id; `a/b` is the file jobs.d/a/b.toml")
    p.add_argument(
        "--schedule",
        required=True,
        metavar="EXPR",
        help="cron expression or macro (`@daily`, `@at ISO`, ...)",
    )
    p.add_argument("--shell", metavar="LINE", help="action: a line for /bin/sh -c")
    p.add_argument(
        "--command",
        dest="command_argv",  # `command` names the subcommand
        nargs=argparse.REMAINDER,
        metavar="ARG",
        help="action: an argv (put it last)",
    )
    p.add_argument("--http-url", metavar="URL", help="action: an HTTP request to this URL")
    p.add_argument("--method", help="HTTP method for --http-url (default GET)")
    p.add_argument("--agent-prompt", metavar="TEXT", help="action: run an AI agent on this prompt")
    p.add_argument(
        "--agent-command",
        nargs=argparse.REMAINDER,
        metavar="ARG",
        help="the agent CLI (the prompt on stdin, or in place of {prompt}); put it last",
    )
    p.add_argument("--agent-endpoint", metavar="URL", help="an OpenAI-compatible API instead")
    p.add_argument("--agent-model", metavar="MODEL", help="the model at --agent-endpoint")
    p.add_argument(
        "--agent-key-env", metavar="VAR", help="the variable holding the endpoint's API key"
    )
    p.add_argument("--timezone", metavar="ZONE", help="IANA zone of the schedule")
    p.add_argument("--timeout", metavar="DURATION", help="limit of one attempt (30s, 5m, 1h)")
    p.add_argument("--retry", type=int, metavar="N", help="attempts in all when a run fails")
    p.add_argument("--wait", metavar="COND", help="precondition polled before the action")
    p.add_argument(
        "--notify-webhook", action="append", default=[], metavar="URL", help="POST the outcome"
    )
    p.add_argument(
        "--notify-telegram",
        action="append",
        default=[],
        metavar="CHAT",
        help="send the outcome to this Telegram chat",
    )
    p.add_argument(
        "--telegram-token-env",
        metavar="VAR",
        help="the daemon's variable holding the bot token (default TELEGRAM_BOT_TOKEN)",
    )
    p.add_argument("--telegram-base-url", metavar="URL", help="a Bot API server of your own")
    p.add_argument(
        "--notify-on",
        action="append",
        default=[],
        choices=["success", "failure", "recovery", "always"],
        help="when to notify (default failure); repeat for several",
    )
    p.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="a label (repeat)"
    )
    p.add_argument("--description", metavar="TEXT", help="free text shown by kron list")
    p.add_argument("--format", choices=["toml", "yaml"], default="toml", help="default toml")
    p.add_argument(
        "--schema-directive",
        metavar="DIR_OR_URL",
        help="first line: the editor's schema line, for the schemas that `kron schema --write "
        "DIR` wrote (or a URL serving them)",
    )
    p.add_argument("--stdout", action="store_true", help="print the file instead of writing it")

    p = sub.add_parser(
        "mcp",
        parents=[common],
        help="serve the Model Context Protocol on stdio, for AI agents",
        description="An MCP server over stdio: an agent lists jobs, previews fire times, "
        "validates drafts, creates job files (where kron.toml [agents] allows), runs, pauses "
        "and resumes jobs, reads history. See docs/agents.md.",
    )
    p.add_argument("--read-only", action="store_true", help="offer no tool that changes anything")
    p.add_argument(
        "--records-dir", type=Path, help="where the records are (as given to the daemon)"
    )


def new(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config.settings import load_settings
    from kron.model.errors import SpecError

    if args.command_argv == []:
        raise UsageError("kron new: --command needs the program and its arguments after it")
    if args.agent_command == []:
        raise UsageError("kron new: --agent-command needs the program after it")
    if not args.jobs_dir.is_dir():
        raise UsageError(f"kron new: no jobs directory at {args.jobs_dir} (give --jobs-dir)")
    settings, problems = load_settings(args.jobs_dir)
    if any(p.is_error for p in problems):
        raise SpecError(problems)
    try:
        return _new(args, settings, out, err)
    except UsageError as exc:
        raise UsageError(f"kron new: {exc}") from None


def _new(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from kron.config.new import Draft, check_draft, job_path, next_fires, render, write_new
    from kron.service.control import parse_tags  # as `kron list --tag` and the control API

    draft = Draft(
        id=args.id,
        schedule=args.schedule,
        shell=args.shell,
        command=tuple(args.command_argv) if args.command_argv is not None else None,
        http_url=args.http_url,
        method=args.method,
        agent_prompt=args.agent_prompt,
        agent_command=tuple(args.agent_command) if args.agent_command is not None else None,
        agent_endpoint=args.agent_endpoint,
        agent_model=args.agent_model,
        agent_key_env=args.agent_key_env,
        timezone=args.timezone,
        timeout=args.timeout,
        retry=args.retry,
        wait=args.wait,
        notify_webhook=tuple(args.notify_webhook),
        notify_telegram=tuple(args.notify_telegram),
        telegram_token_env=args.telegram_token_env,
        telegram_base_url=args.telegram_base_url,
        notify_on=tuple(args.notify_on),
        tags=parse_tags(args.tag),
        description=args.description,
        format=args.format,
    )
    if args.stdout:
        path = job_path(draft.id, args.jobs_dir, draft.format)
        text = render(draft.data(), draft.format, path=path, schema_at=args.schema_directive)
        job, warnings = check_draft(
            text, path=path, job_id=draft.id, jobs_dir=args.jobs_dir, settings=settings
        )
        out.write(text)
        summary = err
    else:
        created = write_new(
            draft, jobs_dir=args.jobs_dir, settings=settings, schema_at=args.schema_directive
        )
        job, warnings, path = created.job, created.warnings, created.path
        print(f"created {path} (job {job.id})", file=out)
        summary = out
    for warning in warnings:
        print(warning, file=err)
    zone = job.timezone
    print(f"zone: {zone.key}" + ("" if job.timezone_explicit else " (default)"), file=summary)
    fires = next_fires(job.schedule, datetime.now(UTC), 3)
    if not fires:
        print(f"next: none by schedule ({job.schedule.expr})", file=summary)
    for when in fires:
        print(f"next: {when.astimezone(zone).isoformat()}", file=summary)
    return EXIT_OK


def mcp(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        from kron.service.mcp import serve_stdio
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in ("mcp", "mcp_types", "anyio"):
            raise
        raise KronError(
            "kron mcp needs the MCP SDK, an optional part: pip install 'kron[mcp]'"
        ) from None
    if not args.jobs_dir.is_dir():
        raise UsageError(f"kron mcp: no jobs directory at {args.jobs_dir} (give --jobs-dir)")
    serve_stdio(args.jobs_dir, read_only=args.read_only, records_dir=args.records_dir)
    return EXIT_OK
