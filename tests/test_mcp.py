"""`kron mcp` as an agent meets it: a subprocess driven by the MCP SDK's own stdio client,
against real job files and, where the tool needs one, a real `kron daemon` process."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from kron.config.schema import SCHEMA_DIR

from .conftest import run_cli
from .harness import DEADLINE_S, write_job
from .servers import Answer, HttpRecorder, json_answer
from .test_control import Daemon

READS = ["list_jobs", "describe_job", "next_fires", "validate_job", "job_history", "show_run"]
CHANGES = ["create_job", "run_job", "pause_job", "resume_job"]
HELLO = 'schedule = "@manual"\nshell = "echo hello $TOKEN"\n\n[env]\nTOKEN = { value = "s3cret-value", secret = true }\n'
HELLO_MASKED = HELLO.replace("s3cret-value", "***")


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="kron-") as folder:
        monkeypatch.setenv("XDG_RUNTIME_DIR", folder)
        yield Path(folder)


@pytest.fixture
def daemon(jobs_dir: Path, runtime: Path) -> Iterator[Daemon]:
    d = Daemon(jobs_dir, runtime)
    yield d
    if d.proc and d.proc.poll() is None:
        assert d.stop() == 0


@contextlib.asynccontextmanager
async def mcp_session(jobs_dir: Path, runtime: Path, *flags: str) -> AsyncIterator[ClientSession]:
    """`kron mcp` in a subprocess, initialized; its stderr goes beside the jobs directory."""
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kron", "mcp", "--jobs-dir", str(jobs_dir), *flags],
        env={"XDG_RUNTIME_DIR": str(runtime)},
    )
    log = jobs_dir.parent / "mcp.log"
    with (
        open(log, "a") as errlog,  # noqa: ASYNC230 - a local file, opened once per session
    ):
        async with (
            stdio_client(server, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            with anyio.fail_after(DEADLINE_S):
                await session.initialize()
            yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool's structured result; the test fails on a tool error."""
    with anyio.fail_after(DEADLINE_S):
        result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    return result.structured_content


async def refused(session: ClientSession, tool: str, **arguments: Any) -> str:
    """The message of a tool error (the test fails if the call succeeds)."""
    with anyio.fail_after(DEADLINE_S):
        result = await session.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    assert result.structured_content is None
    return result.content[0].text  # type: ignore[union-attr]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    anyio.run(scenario)


def audit_lines(jobs_dir: Path) -> list[dict[str, Any]]:
    path = jobs_dir / ".kron" / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".kron" not in p.parts)


async def until(predicate: Callable[[], bool], what: str) -> None:
    with anyio.fail_after(DEADLINE_S):
        while not predicate():
            await anyio.sleep(0.02)


def test_mcp_offers_every_tool_with_its_schemas_and_read_only_offers_only_reads(
    jobs_dir: Path, runtime: Path
) -> None:
    async def scenario() -> None:
        async with mcp_session(jobs_dir, runtime) as session:
            tools = (await session.list_tools()).tools
            assert [t.name for t in tools] == [
                "list_jobs", "describe_job", "next_fires", "validate_job", "create_job",
                "run_job", "job_history", "show_run", "pause_job", "resume_job",
            ]  # fmt: skip
            for tool in tools:
                assert tool.input_schema["type"] == "object"
                assert tool.output_schema is not None
                assert tool.output_schema["type"] == "object"
                assert tool.annotations is not None
                assert tool.annotations.read_only_hint is (tool.name in READS)
        async with mcp_session(jobs_dir, runtime, "--read-only") as session:
            assert [t.name for t in (await session.list_tools()).tools] == READS
            for tool in CHANGES:
                assert await refused(session, tool, job="x") == (
                    f"no tool {tool!r} (kron mcp runs --read-only); tools: {', '.join(READS)}"
                )

    run(scenario)


def test_reads_runs_and_pauses_go_through_the_running_daemon_and_are_audited_via_mcp(
    jobs_dir: Path, runtime: Path, daemon: Daemon
) -> None:
    (jobs_dir / "kron.toml").write_text("[agents]\nallow_run = true\nallow_pause = true\n")
    write_job(jobs_dir, "hello.toml", HELLO)
    write_job(
        jobs_dir,
        "nightly.toml",
        'schedule = "0 3 * * *"\ntimezone = "UTC"\ncommand = ["true"]\n[tags]\nteam = "ops"\n',
    )
    daemon.start()

    async def scenario() -> None:
        async with mcp_session(jobs_dir, runtime) as session:
            listed = await call(session, "list_jobs")
            assert listed["daemon"] is True
            assert [(j["id"], j["paused"]) for j in listed["jobs"]] == [
                ("hello", False),
                ("nightly", False),
            ]
            ops = await call(session, "list_jobs", tags={"team": "ops"})
            assert [j["id"] for j in ops["jobs"]] == ["nightly"]

            ran = await call(session, "run_job", job="hello", wait=True)
            assert (ran["daemon"], ran["waited"]) == (True, True)
            record = ran["record"]
            assert (record["job"], record["trigger"], record["outcome"]) == (
                "hello",
                "manual",
                "succeeded",
            )
            assert record["stdout"] == "hello ***\n"  # the secret was masked when recorded
            started = await call(session, "run_job", job="hello")
            assert (started["waited"], started["record"]["job"]) == (False, "hello")

            history = await call(session, "job_history", job="hello")
            assert record["run_id"] in [r["run_id"] for r in history["runs"]]
            assert all("stdout" not in r for r in history["runs"])
            shown = await call(session, "show_run", run_id=record["run_id"][:12])
            assert (shown["run_id"], shown["stdout"], shown["deliveries"]) == (
                record["run_id"],
                "hello ***\n",
                [],
            )
            described = await call(session, "describe_job", job="hello")
            assert described["text"] == HELLO_MASKED
            assert described["daemon"]["paused"] is False
            assert record["run_id"] in [r["run_id"] for r in described["last_runs"]]

            paused = await call(session, "pause_job", job="nightly")
            assert (paused["id"], paused["paused"]) == ("nightly", True)
            assert daemon.cli("list", "--json").out.count('"paused": true') == 1
            resumed = await call(session, "resume_job", job="nightly")
            assert resumed["paused"] is False
            assert await refused(session, "pause_job", job="nightlyy") == (
                "no job 'nightlyy'; did you mean 'nightly'?"
            )

        # The daemon wrote these lines, on the MCP server's request.
        by_mcp = [
            (line["event"], line["job"])
            for line in audit_lines(jobs_dir)
            if line.get("via") == "mcp"
        ]
        assert by_mcp == [
            ("run", "hello"),
            ("run", "hello"),
            ("pause", "nightly"),
            ("resume", "nightly"),
        ]

    run(scenario)
    # A CLI pause is written as before: no `via`.
    assert daemon.cli("pause", "nightly").code == 0
    assert audit_lines(jobs_dir)[-1] == {
        **audit_lines(jobs_dir)[-1],
        "event": "pause",
        "job": "nightly",
    }
    assert "via" not in audit_lines(jobs_dir)[-1]
    from kron.service.control import ControlClient

    status, body = ControlClient(daemon.socket).post("/v1/jobs/nightly/resume", via="Robert');")
    assert (status, body) == (
        400,
        {"error": 'via names a front end (such as mcp), not "Robert\');"'},
    )


def test_run_and_pause_are_refused_until_kron_toml_allows_them(
    jobs_dir: Path, runtime: Path, daemon: Daemon
) -> None:
    write_job(jobs_dir, "hello.toml", HELLO)
    daemon.start()

    async def scenario() -> None:
        async with mcp_session(jobs_dir, runtime) as session:
            assert await refused(session, "run_job", job="hello") == (
                "run_job is off: kron.toml [agents] allow_run is not true; "
                "an operator turns it on with [agents] allow_run = true"
            )
            for verb in ("pause", "resume"):
                assert await refused(session, f"{verb}_job", job="hello") == (
                    f"{verb}_job is off: kron.toml [agents] allow_pause is not true; "
                    "an operator turns it on with [agents] allow_pause = true"
                )
            assert await refused(
                session, "create_job", id="agents/x", schedule="@daily", shell="true"
            ) == (
                "create_job is off: kron.toml has no [agents] folder; an operator turns it on "
                'with [agents] folder = "agents" (the folder of the jobs directory it may write)'
            )
            # kron.toml is read at each call: the operator's change applies at once.
            (jobs_dir / "kron.toml").write_text("[agents]\nallow_run = true\n")
            ran = await call(session, "run_job", job="hello", wait=True)
            assert ran["record"]["outcome"] == "succeeded"

    run(scenario)
    assert [
        (line["event"], line.get("via"))
        for line in audit_lines(jobs_dir)
        if line["event"] != "load"
    ] == [
        ("settings", None),
        ("run", "mcp"),
    ]
    assert listing(jobs_dir) == ["hello.runs.jsonl", "hello.toml", "kron.toml"]


def test_create_job_writes_what_kron_new_writes_and_the_daemon_loads_it_within_a_second(
    jobs_dir: Path, runtime: Path, daemon: Daemon
) -> None:
    (jobs_dir / "kron.toml").write_text('[agents]\nfolder = "agents"\n')
    daemon.start()
    fields = {
        "schedule": "0 9 * * MON",
        "timezone": "Europe/Berlin",
        "shell": "curl -sf https://example.org/ | sha256sum",
        "timeout": "2m",
        "retry": 2,
        "wait": "tcp://127.0.0.1:9",
        "notify_webhook": ["https://hooks.example.org/x"],
        "notify_on": ["always"],
        "tags": {"requested_by": "alice"},
        "description": "Weekly page check",
    }

    async def scenario() -> None:
        async with mcp_session(jobs_dir, runtime) as session:
            created = await call(session, "create_job", id="agents/page-check", **fields)
            path = jobs_dir / "agents" / "page-check.toml"
            assert (created["id"], created["path"], created["timezone"]) == (
                "agents/page-check",
                str(path),
                "Europe/Berlin",
            )
            assert (created["created_today"], created["limit_per_day"], created["warnings"]) == (
                1,
                10,
                [],
            )
            assert path.read_text() == created["text"]
            await until(
                lambda: any(line["event"] == "add" for line in audit_lines(jobs_dir)),
                "the daemon to load the new file",
            )
            listed = await call(session, "list_jobs")
            assert [j["id"] for j in listed["jobs"]] == ["agents/page-check"]
            fires = await call(session, "next_fires", job="agents/page-check", n=3)
            assert created["next_fires"] == fires["fires"]

    run(scenario)
    # The same flags through `kron new` give the same bytes: one code path.
    same = run_cli(
        "new", "agents/page-check", "--jobs-dir", jobs_dir, "--stdout", "--schedule", "0 9 * * MON",
        "--timezone", "Europe/Berlin", "--shell", "curl -sf https://example.org/ | sha256sum",
        "--timeout", "2m", "--retry", "2", "--wait", "tcp://127.0.0.1:9",
        "--notify-webhook", "https://hooks.example.org/x", "--notify-on", "always",
        "--tag", "requested_by=alice", "--description", "Weekly page check",
    )  # fmt: skip
    assert same.out == (jobs_dir / "agents" / "page-check.toml").read_text()
    lines = audit_lines(jobs_dir)
    create = next(line for line in lines if line["event"] == "create")
    add = next(line for line in lines if line["event"] == "add")
    assert (create["via"], create["job"], create["path"]) == (
        "mcp",
        "agents/page-check",
        str(jobs_dir / "agents" / "page-check.toml"),
    )
    assert (add["job"], add["config_sha"]) == ("agents/page-check", create["config_sha"])
    delay = datetime.fromisoformat(add["time"]) - datetime.fromisoformat(create["time"])
    assert timedelta(0) <= delay < timedelta(seconds=1)


def test_create_job_stays_in_its_folder_within_policy_and_its_daily_limit(
    jobs_dir: Path, runtime: Path, tmp_path: Path
) -> None:
    (jobs_dir / "kron.toml").write_text(
        '[agents]\nfolder = "agents"\nmax_files_per_day = 2\n\n[policy]\ndeny = ["rm *"]\n'
    )
    (jobs_dir / "agents").mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (jobs_dir / "agents" / "out").symlink_to(outside)
    (jobs_dir / "agents" / "taken.yaml").write_text("keep: me\n")
    shell = {"schedule": "@daily", "timezone": "UTC", "shell": "true"}

    async def scenario() -> None:
        async with mcp_session(jobs_dir, runtime) as session:
            assert await refused(session, "create_job", id="backups/x", **shell) == (
                "job id 'backups/x' is outside the folder agents may write (agents/ in "
                "kron.toml [agents]); use an id such as 'agents/x'"
            )
            assert await refused(session, "create_job", id="agents/../x", **shell) == (
                "job id 'agents/../x': `..` would leave the jobs directory"
            )
            assert await refused(session, "create_job", id="/etc/cron.d/x", **shell) == (
                "job id '/etc/cron.d/x': an id is a path relative to the jobs directory"
            )
            assert await refused(session, "create_job", id="agents/out/x", **shell) == (
                f"job id 'agents/out/x': {jobs_dir / 'agents' / 'out'} leads outside "
                f"{jobs_dir / 'agents'}"
            )
            assert await refused(session, "create_job", id="agents/taken", **shell) == (
                f"{jobs_dir / 'agents' / 'taken.yaml'} already exists (job 'agents/taken'); "
                "nothing written"
            )
            assert await refused(
                session, "create_job", id="agents/wipe", schedule="@daily", timezone="UTC",
                command=["rm", "-rf", "/srv"],
            ) == (
                f"{jobs_dir / 'agents' / 'wipe.toml'}:3:1: command: command 'rm -rf /srv' is "
                "denied by policy pattern 'rm *'"
            )  # fmt: skip
            assert await refused(
                session, "create_job", id="agents/late", schedule="@at 2001-01-01T00:00",
                timezone="UTC", shell="true",
            ) == (
                f"{jobs_dir / 'agents' / 'late.toml'}:1:1: schedule: '@at 2001-01-01T00:00' "
                "never fires after now; nothing written"
            )  # fmt: skip
            assert await refused(
                session,
                "create_job",
                id="agents/two",
                schedule="@daily",
                shell="a",
                http_url="http://x/",
            ) == (
                "give exactly one action: shell, command, http_url, agent_prompt "
                "(got shell and http_url)"
            )
            first = await call(session, "create_job", id="agents/one", **shell)
            second = await call(session, "create_job", id="agents/deep/two", **shell)
            assert (first["created_today"], second["created_today"]) == (1, 2)
            assert await refused(session, "create_job", id="agents/three", **shell) == (
                "create_job: 2 job files were created through MCP today, the limit of kron.toml "
                "[agents] max_files_per_day = 2; try again after 00:00 UTC"
            )

    run(scenario)
    assert listing(jobs_dir) == [
        "agents", "agents/deep", "agents/deep/two.toml", "agents/one.toml", "agents/out",
        "agents/taken.yaml", "kron.toml",
    ]  # fmt: skip
    assert list(outside.iterdir()) == []
    assert [(a["event"], a["job"], a["via"]) for a in audit_lines(jobs_dir)] == [
        ("create", "agents/one", "mcp"),
        ("create", "agents/deep/two", "mcp"),
    ]


def test_bad_arguments_are_tool_errors_and_the_server_keeps_serving(
    jobs_dir: Path, runtime: Path
) -> None:
    write_job(jobs_dir, "hello.toml", HELLO)

    async def scenario() -> None:
        async with mcp_session(jobs_dir, runtime) as session:
            assert await refused(session, "describe_job") == "describe_job: missing argument `job`"
            assert await refused(session, "describe_job", job=42) == (
                "describe_job: argument `job`: 42 is not of type 'string'"
            )
            assert await refused(session, "show_run", run_id="x", verbose=True) == (
                "show_run: unknown argument `verbose`; known: `run_id`"
            )
            assert await refused(
                session, "create_job", id="agents/x", schedule="@daily", retry="3", tags={"a": 1}
            ) == (
                "create_job: argument `retry`: '3' is not of type 'integer'; "
                "argument `tags.a`: 1 is not of type 'string'"
            )
            assert await refused(session, "next_fires", n=0, expr="@daily") == (
                "next_fires: argument `n`: 0 is less than the minimum of 1"
            )
            assert await refused(session, "next_fires", job="hello", expr="@daily") == (
                "give `job` (a job id) or `expr` (a schedule expression), not both"
            )
            assert await refused(session, "next_fires", expr="0 0 30 2 *") == (
                "never fires: no date matches '0 0 30 2 *'"
            )
            assert await refused(session, "next_fires", expr="@daily", timezone="Mars/Base") == (
                "unknown time zone 'Mars/Base'; use an IANA name like 'Europe/Berlin'"
            )
            assert await refused(session, "describe_job", job="../kron") == (
                "job id '../kron': `..` would leave the jobs directory"
            )
            assert await refused(session, "describe_job", job="nope") == (
                f"no job 'nope' in {jobs_dir}"
            )
            assert await refused(session, "show_run", run_id="feed") == "no run 'feed'"
            assert await refused(session, "job_history", job="../../etc/x") == (
                "job id '../../etc/x': `..` would leave the jobs directory"
            )
            assert await refused(session, "job_history", since="last tuesday") == (
                "since: 'last tuesday' is neither a duration (2h, 7d) nor an ISO time"
            )
            assert await refused(session, "frobnicate") == (
                f"no tool 'frobnicate'; tools: {', '.join(READS[:4] + CHANGES[:2] + READS[4:] + CHANGES[2:])}"
            )
            # A 10 MB draft is refused before it is parsed, and the next call is served.
            draft = 'schedule = "@daily"\nshell = "' + "x" * (10 * 1024 * 1024) + '"\n'
            assert await refused(session, "validate_job", text=draft, format="toml") == (
                f"the draft is {len(draft)} bytes, over the 1048576-byte limit (max_file_size "
                "in kron.toml); nothing was parsed"
            )
            listed = await call(session, "list_jobs")
            assert (listed["daemon"], [j["id"] for j in listed["jobs"]]) == (False, ["hello"])

    run(scenario)
    assert listing(jobs_dir) == ["hello.toml"]


def test_validate_job_reports_each_problem_with_its_line_and_field(
    jobs_dir: Path, runtime: Path
) -> None:
    (jobs_dir / "kron.toml").write_text('[policy]\nallow = ["echo *"]\n')

    async def scenario() -> None:
        async with mcp_session(jobs_dir, runtime) as session:
            bad = await call(
                session, "validate_job", format="yaml", id="agents/check",
                text="schedule: '@daily'\ntimezone: UTC\nshel: echo hi\nretry:\n  attempts: 0\n",
            )  # fmt: skip
            path = str(jobs_dir / "agents" / "check.yaml")
            assert bad == {
                "valid": False,
                "errors": [
                    {"path": path, "line": 3, "column": 1, "field": "shel", "severity": "error",
                     "message": "unknown field 'shel'; did you mean 'shell'?"},
                    {"path": path, "line": 5, "column": 3, "field": "retry.attempts",
                     "severity": "error", "message": "0 is less than the minimum of 1"},
                ],
                "warnings": [],
            }  # fmt: skip
            denied = await call(
                session,
                "validate_job",
                format="toml",
                text='schedule = "@daily"\ntimezone = "UTC"\nshell = "rm -rf /"\n',
            )
            assert denied["errors"] == [
                {"path": str(jobs_dir / "draft.toml"), "line": 3, "column": 1, "field": "shell",
                 "severity": "error", "message": "command 'rm -rf /' matches no policy allow pattern"},
            ]  # fmt: skip
            good = await call(
                session, "validate_job", format="toml",
                text='schedule = "@at 2099-06-01T10:00"\ntimezone = "Europe/Berlin"\nshell = "echo ok"\n',
            )  # fmt: skip
            assert good == {
                "valid": True,
                "errors": [],
                "warnings": [],
                "timezone": "Europe/Berlin",
                "next_fires": ["2099-06-01T10:00:00+02:00"],
            }

    run(scenario)
    assert listing(jobs_dir) == ["kron.toml"]


def test_next_fires_previews_an_expression_across_a_dst_change(
    jobs_dir: Path, runtime: Path
) -> None:
    async def scenario() -> None:
        async with mcp_session(jobs_dir, runtime) as session:
            # Europe/Berlin springs forward on 2026-03-29 at 02:00 -> 03:00: the 02:30 slot of
            # that day falls in the gap and fires once, at 03:00 CEST (ISC cron).
            fires = await call(
                session, "next_fires", expr="30 2 * * *", timezone="Europe/Berlin",
                after="2026-03-28T00:00", n=3,
            )  # fmt: skip
            assert fires == {
                "schedule": "30 2 * * *",
                "timezone": "Europe/Berlin",
                "fires": [
                    "2026-03-28T02:30:00+01:00",
                    "2026-03-29T03:00:00+02:00",
                    "2026-03-30T02:30:00+02:00",
                ],
                "fires_utc": [
                    "2026-03-28T01:30:00Z",
                    "2026-03-29T01:00:00Z",
                    "2026-03-30T00:30:00Z",
                ],
            }

    run(scenario)


def test_resources_are_the_job_files_with_secrets_masked_and_the_schemas(
    jobs_dir: Path, runtime: Path
) -> None:
    write_job(jobs_dir, "hello.toml", HELLO)
    write_job(jobs_dir, "team/probe.yaml", "schedule: '@hourly'\ncommand: ['true']\n")

    async def scenario() -> None:
        async with mcp_session(jobs_dir, runtime, "--read-only") as session:
            listed = (await session.list_resources()).resources
            assert [(str(r.uri), r.mime_type) for r in listed] == [
                ("kron://jobs/hello", "application/toml"),
                ("kron://jobs/team/probe", "application/yaml"),
                ("kron://schemas/job.json", "application/schema+json"),
                ("kron://schemas/kron.json", "application/schema+json"),
            ]
            hello = (await session.read_resource("kron://jobs/hello")).contents[0]
            assert hello.text == HELLO_MASKED  # type: ignore[union-attr]
            # After a validation too: the validator compiled from the schema leaves it alone.
            await call(session, "validate_job", text='schedule = "@daily"\n', format="toml")
            schema = (await session.read_resource("kron://schemas/job.json")).contents[0]
            shipped = (SCHEMA_DIR / "job.schema.json").read_text()
            assert json.loads(schema.text) == json.loads(shipped)  # type: ignore[union-attr]
            for uri, message in (
                (
                    "kron://jobs/../../etc/passwd",
                    "job id '../../etc/passwd': `..` would leave the jobs directory",
                ),
                ("kron://jobs/nope", f"no job 'nope' in {jobs_dir}"),
                ("file:///etc/passwd", "no resource 'file:///etc/passwd'"),
            ):
                with pytest.raises(MCPError) as caught:
                    await session.read_resource(uri)
                assert caught.value.message == message

    run(scenario)


def test_kron_mcp_without_the_sdk_says_how_to_install_it(jobs_dir: Path) -> None:
    probe = (
        "import sys\n"
        "sys.modules['mcp'] = None  # as if the optional part were not installed\n"
        "from kron.cli.main import main\n"
        f"sys.exit(main(['mcp', '--jobs-dir', {str(jobs_dir)!r}]))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert (ran.returncode, ran.stdout, ran.stderr) == (
        1,
        "",
        "kron: kron mcp needs the MCP SDK, an optional part: pip install 'kron[mcp]'\n",
    )


def test_no_other_command_loads_the_mcp_sdk(jobs_dir: Path) -> None:
    probe = (
        "import sys, io\n"
        "from kron.cli.main import main\n"
        f"jobs = {str(jobs_dir)!r}\n"
        "main(['new', 'x', '--jobs-dir', jobs, '--schedule', '@daily', '--shell', 'true'], out=io.StringIO())\n"
        "main(['validate', '--jobs-dir', jobs], out=io.StringIO())\n"
        "main(['history', '--jobs-dir', jobs], out=io.StringIO())\n"
        "heavy = ('mcp', 'mcp_types', 'pydantic', 'kron.service.mcp', 'kron.service.agents')\n"
        "print([name for name in heavy if name in sys.modules])\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert (ran.returncode, ran.stdout) == (0, "[]\n"), ran.stderr


def test_an_agent_schedules_a_follow_up_that_the_daemon_fires_and_delivers(
    jobs_dir: Path, runtime: Path, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scenario of docs/agents.md: "check again in a moment and tell me"."""
    token = "4242:AAE-follow-up"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)  # the daemon's, never the file's
    (jobs_dir / "kron.toml").write_text(
        '[agents]\nfolder = "agents"\nallow_run = true\n\n[policy]\nallow = ["echo *"]\n'
    )
    daemon.start()

    async def scenario() -> None:
        async with HttpRecorder() as server:
            server.answer("/health", Answer(status=200, body=b"up"))
            server.answer(f"/bot{token}/sendMessage", json_answer({"ok": True, "result": {}}))
            async with mcp_session(jobs_dir, runtime) as session:
                # A few seconds ahead, in whole seconds: @at takes no fractions.
                at = (datetime.now(UTC) + timedelta(seconds=5)).replace(microsecond=0)
                created = await call(
                    session,
                    "create_job",
                    id="agents/cert-follow-up",
                    schedule=f"@at {at:%Y-%m-%dT%H:%M:%S}",
                    timezone="UTC",
                    wait=f"{server.url('/health')}==200",
                    shell="echo certificate unchanged",
                    notify_telegram=["-100777"],
                    telegram_base_url=server.url(""),
                    notify_on=["always"],
                    tags={"requested_by": "alice"},
                )
                assert created["next_fires"] == [at.isoformat()]
                sent = f"/bot{token}/sendMessage"
                await until(lambda: sent in server.paths(), "the Telegram message")
                message = next(r for r in server.requests if r.path == sent).json()
                assert (message["chat_id"], message["disable_web_page_preview"]) == (
                    "-100777",
                    True,
                )
                assert "agents/cert-follow-up" in message["text"]
                assert "certificate unchanged" in message["text"]
                # The wait's probe came first, then the message.
                assert server.paths().index("/health") < server.paths().index(sent)
                records = jobs_dir / "agents" / "cert-follow-up.runs.jsonl"
                await until(lambda: '"delivery"' in records.read_text(), "the delivery's note")
                history = await call(session, "job_history", job="agents/cert-follow-up")
                assert [r["outcome"] for r in history["runs"]] == ["succeeded"]
                run_id = history["runs"][0]["run_id"]
                shown = await call(session, "show_run", run_id=run_id)
                assert (shown["trigger"], shown["outcome"], shown["slot"]) == (
                    "schedule",
                    "succeeded",
                    at.isoformat().replace("+00:00", "Z"),
                )
                assert shown["stdout"] == "certificate unchanged\n"
                assert [(d["target"], d["ok"]) for d in shown["deliveries"]] == [("telegram", True)]

    run(scenario)
    lines = audit_lines(jobs_dir)
    create = next(line for line in lines if line["event"] == "create")
    add = next(line for line in lines if line["event"] == "add")
    assert (create["job"], create["via"], add["job"]) == (
        "agents/cert-follow-up",
        "mcp",
        "agents/cert-follow-up",
    )
    delay = datetime.fromisoformat(add["time"]) - datetime.fromisoformat(create["time"])
    assert timedelta(0) <= delay < timedelta(seconds=1)


def test_the_daily_count_reads_the_rotated_log_and_skips_yesterday_others_and_a_torn_line(
    tmp_path: Path,
) -> None:
    from kron.engine.audit import AuditLog, count_events

    from .clock import FakeClock

    path = tmp_path / ".kron" / "audit.jsonl"
    clock = FakeClock(datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC))
    AuditLog(path, clock).write("create", job="agents/old", via="mcp")  # yesterday
    anyio.run(clock.set, datetime(2026, 12, 2, 0, 0, 0, tzinfo=UTC))
    AuditLog(path, clock).write("create", job="agents/a", via="mcp")
    path.replace(path.with_name("audit.jsonl.1"))  # rotated at a daemon start
    log = AuditLog(path, clock)
    log.write("create", job="agents/b", via="mcp")
    log.write("create", job="by-hand")  # not through MCP
    log.write("pause", job="agents/b", via="mcp")  # not a creation
    with path.open("a") as handle:
        handle.write('{"time":"2026-12-02T00:00:01Z","event":"create","via":"mcp","jo')  # torn
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    assert count_events(path, event="create", via="mcp", since=midnight) == 2
    assert count_events(path, event="create", via="mcp", since=midnight - timedelta(days=1)) == 3
    assert count_events(tmp_path / "none.jsonl", event="create", via="mcp", since=midnight) == 0
