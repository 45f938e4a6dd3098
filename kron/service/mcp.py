"""`kron mcp`: the Model Context Protocol over stdio, on the official `mcp` SDK.

The tools are declared in `schemas/mcp-tools.json` (input and output JSON Schemas); their work
is `service/agents.py`'s. This module checks the arguments, calls the tool in a worker thread
(the control API and the files are read synchronously, as the CLI reads them) and turns every
failure into a tool error with the CLI's message: a bad call never ends the server.

Only `kron mcp` imports this module, and with it the SDK (pydantic, anyio, starlette): no other
command pays for them.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.to_thread
import jsonschema  # type: ignore[import-untyped]
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from kron import __version__
from kron.config.new import Draft
from kron.config.schema import SCHEMA_DIR, load_schema
from kron.model.errors import KronError, SpecError
from kron.service.agents import AgentTools

__all__ = ["Tool", "build_server", "load_tools", "serve_stdio"]

log = logging.getLogger("kron.mcp")

JOB_URI = "kron://jobs/"
SCHEMA_URIS = {"kron://schemas/job.json": "job", "kron://schemas/kron.json": "kron"}
INSTRUCTIONS = """\
kron runs scheduled jobs declared as files (TOML or YAML) in a jobs directory that a daemon
watches; a new file is picked up within a second. To schedule work, check fire times with
next_fires, then call create_job (or draft the file text and check it with validate_job).
The operator decides where you may write ([agents] in kron.toml), which commands may run
([policy]) and whether you may run or pause jobs; a refusal says which setting applies.
Everything you change is in kron's audit log."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Tool:
    """One tool: its declaration (schemas/mcp-tools.json) and whether it changes anything."""

    name: str
    title: str
    description: str
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any]
    changes: bool

    def declaration(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            title=self.title,
            description=self.description,
            input_schema=dict(self.input_schema),
            output_schema=dict(self.output_schema),
            annotations=types.ToolAnnotations(
                title=self.title,
                read_only_hint=not self.changes,
                destructive_hint=False,  # nothing is overwritten or deleted
                open_world_hint=False,
            ),
        )

    def argument_errors(self, arguments: Mapping[str, Any]) -> list[str]:
        """What is wrong with a call's arguments, one sentence each, naming the argument."""
        validator = jsonschema.Draft202012Validator(self.input_schema)
        found = []
        for error in sorted(validator.iter_errors(arguments), key=lambda e: list(e.path)):
            where = ".".join(str(p) for p in error.absolute_path)
            if error.validator == "required":
                missing = error.message.split("'")[1]
                found.append(f"missing argument `{missing}`")
            elif error.validator == "additionalProperties" and not where:
                known = ", ".join(f"`{k}`" for k in self.input_schema["properties"])
                extra = sorted(set(arguments) - set(self.input_schema["properties"]))
                found.append(f"unknown argument `{'`, `'.join(extra)}`; known: {known}")
            else:
                found.append(f"argument `{where}`: {_short(error.message)}")
        return found


def _short(message: str) -> str:
    """jsonschema quotes the whole value; a 10 MB string is not worth repeating."""
    return message if len(message) <= 300 else message[:200] + " ... " + message[-80:]


@functools.cache
def load_tools() -> tuple[Tool, ...]:
    """The tools, as schemas/mcp-tools.json declares them."""
    with open(SCHEMA_DIR / "mcp-tools.json", encoding="utf-8") as handle:
        declared = json.load(handle)["tools"]
    return tuple(
        Tool(
            name=t["name"],
            title=t["title"],
            description=t["description"],
            input_schema=t["inputSchema"],
            output_schema=t["outputSchema"],
            changes=t["changes"],
        )
        for t in declared
    )


def _draft(args: Mapping[str, Any]) -> Draft:
    def strings(name: str) -> tuple[str, ...] | None:
        value = args.get(name)
        return tuple(value) if value is not None else None

    return Draft(
        id=args["id"],
        schedule=args["schedule"],
        shell=args.get("shell"),
        command=strings("command"),
        http_url=args.get("http_url"),
        method=args.get("method"),
        agent_prompt=args.get("agent_prompt"),
        agent_command=strings("agent_command"),
        agent_endpoint=args.get("agent_endpoint"),
        agent_model=args.get("agent_model"),
        agent_key_env=args.get("agent_key_env"),
        timezone=args.get("timezone"),
        timeout=args.get("timeout"),
        retry=args.get("retry"),
        wait=args.get("wait"),
        notify_webhook=strings("notify_webhook") or (),
        notify_telegram=strings("notify_telegram") or (),
        telegram_token_env=args.get("telegram_token_env"),
        telegram_base_url=args.get("telegram_base_url"),
        notify_on=strings("notify_on") or (),
        tags=dict(args.get("tags", {})),
        description=args.get("description"),
        format=args.get("format", "toml"),
    )


def _handlers(tools: AgentTools) -> dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]]:
    """Each tool's work, from its checked arguments to its structured result."""
    return {
        "list_jobs": lambda a: tools.list_jobs(a.get("tags")),
        "describe_job": lambda a: tools.describe_job(a["job"]),
        "next_fires": lambda a: tools.next_fires(
            job=a.get("job"),
            expr=a.get("expr"),
            timezone=a.get("timezone"),
            after=a.get("after"),
            n=a.get("n", 5),
        ),
        "validate_job": lambda a: tools.validate_job(a["text"], a["format"], a.get("id")),
        "create_job": lambda a: tools.create_job(_draft(a)),
        "run_job": lambda a: tools.run_job(a["job"], wait=a.get("wait", False)),
        "job_history": lambda a: tools.job_history(
            job=a.get("job"), outcome=a.get("outcome"), since=a.get("since"), n=a.get("n", 20)
        ),
        "show_run": lambda a: tools.show_run(a["run_id"]),
        "pause_job": lambda a: tools.set_paused(a["job"], paused=True),
        "resume_job": lambda a: tools.set_paused(a["job"], paused=False),
    }


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], is_error=True
    )


def build_server(tools: AgentTools, *, read_only: bool) -> Server[Any]:
    """An MCP server for one jobs directory; `read_only` offers no tool that changes anything."""
    offered = {t.name: t for t in load_tools() if not (read_only and t.changes)}
    work = _handlers(tools)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[t.declaration() for t in offered.values()])

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = offered.get(params.name)
        if tool is None:
            why = " (kron mcp runs --read-only)" if read_only else ""
            return _error(f"no tool {params.name!r}{why}; tools: {', '.join(offered)}")
        arguments = params.arguments or {}
        problems = tool.argument_errors(arguments)
        if problems:
            return _error(f"{tool.name}: " + "; ".join(problems))
        try:
            result = await anyio.to_thread.run_sync(work[tool.name], arguments)
        except SpecError as exc:
            return _error("\n".join(str(p) for p in exc.problems))
        except KronError as exc:
            return _error(str(exc))
        except Exception as exc:  # a bug must not end the agent's session; it is logged
            log.exception("tool %s failed", tool.name)
            return _error(f"{tool.name}: internal error: {type(exc).__name__}: {exc}")
        text = json.dumps(result, ensure_ascii=False, indent=1)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content=result
        )

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        files = await anyio.to_thread.run_sync(tools.job_files)
        found = [
            types.Resource(
                name=job_id,
                title=f"job {job_id}",
                uri=JOB_URI + job_id,
                description=f"The job file {path}",
                mime_type=_mime(path.suffix),
            )
            for job_id, path in sorted(files.items())
        ]
        found += [
            types.Resource(
                name=f"{kind}-schema",
                title="JSON Schema of job files" if kind == "job" else "JSON Schema of kron.toml",
                uri=uri,
                mime_type="application/schema+json",
            )
            for uri, kind in SCHEMA_URIS.items()
        ]
        return types.ListResourcesResult(resources=found)

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri in SCHEMA_URIS:
            text = json.dumps(load_schema(SCHEMA_URIS[uri]), indent=2, ensure_ascii=False)
            mime = "application/schema+json"
        elif uri.startswith(JOB_URI):
            try:
                text, mime = await anyio.to_thread.run_sync(_job_text, tools, uri)
            except KronError as exc:
                raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from None
        else:
            raise MCPError(code=types.INVALID_PARAMS, message=f"no resource {uri!r}")
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, text=text, mime_type=mime)]
        )

    return Server(
        "kron",
        version=__version__,
        title="kron",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )


def _mime(suffix: str) -> str:
    return "application/toml" if suffix == ".toml" else "application/yaml"


def _job_text(tools: AgentTools, uri: str) -> tuple[str, str]:
    """A job file's text (secrets masked), found by id, never by a path the caller gives."""
    job_id = unquote(uri.removeprefix(JOB_URI))
    path = tools.job_file(job_id)
    _, text = tools.file_text(path, tools.settings())
    return text, _mime(path.suffix)


def serve_stdio(jobs_dir: Path, *, read_only: bool, records_dir: Path | None = None) -> None:
    """Serve one MCP client on stdin/stdout until it closes them."""
    from kron.service.logs import setup_logging

    setup_logging("text", "warning")  # stderr: stdout carries the protocol
    server = build_server(AgentTools(jobs_dir, records_dir=records_dir), read_only=read_only)

    async def serve() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(serve)
