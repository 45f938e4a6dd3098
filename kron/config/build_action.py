"""A job's action and its deliveries -> typed model values, URLs checked as they will be sent."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from kron.config.builder import Builder, integer
from kron.model.errors import excerpt
from kron.model.job import (
    ACTION_KEYS,
    Action,
    AgentAction,
    CommandAction,
    Delivery,
    DeliveryKind,
    DockerAction,
    HttpAction,
    ShellAction,
)

__all__ = ["action_of", "deliveries", "healthcheck", "variables"]


def action_of(b: Builder, data: Mapping[str, Any]) -> Action | None:
    present = [key for key in ACTION_KEYS if key in data]
    if not present:
        b.problem([], "no action; add one of command, shell, http, docker, agent")
        return None
    if len(present) > 1:
        b.problem([present[1]], f"two actions ({' and '.join(present)}); a job has exactly one")
        return None
    key = present[0]
    value = data[key]
    if key == "command":
        return CommandAction(argv=tuple(value))
    if key == "shell":
        return ShellAction(script=value)
    if key == "http":
        # Only jobs that call a URL pay for these imports (and httpx's, in urls.py).
        from kron.config.urls import check_headers, check_json, check_url

        headers = dict(value.get("headers", {}))
        b.convert(["http", "headers"], check_headers, headers, None)
        if value.get("json") is not None:
            b.convert(["http", "json"], check_json, value["json"], None)
        return HttpAction(
            method=value.get("method", "GET"),
            url=b.convert(["http", "url"], check_url, value["url"], value["url"]),
            headers=headers,
            json=value.get("json"),
            body=value.get("body"),
            expect_status=tuple(map(integer, value["expect_status"]))
            if "expect_status" in value
            else None,
            expect_body=_regex(b, ["http", "expect_body"], value.get("expect_body")),
            timeout=b.duration(value, "timeout", timedelta(seconds=30), "http"),
        )
    if key == "docker":
        command = value.get("command")
        return DockerAction(
            image=value["image"],
            command=command if isinstance(command, str) or command is None else tuple(command),
            entrypoint=tuple(value["entrypoint"]) if "entrypoint" in value else None,
            env=variables(b, ["docker", "env"], value.get("env", {})),
            volumes=tuple(value.get("volumes", ())),
            network=value.get("network"),
            user=value.get("user"),
            workdir=value.get("workdir"),
            pull=value.get("pull", "missing"),
        )
    from kron.config.urls import check_url  # only agent jobs pay for the import

    if "command" not in value and not ("endpoint" in value and "model" in value):
        b.problem(["agent"], "an agent needs `command` (an agent CLI) or `endpoint` and `model`")
    elif "command" in value and "endpoint" in value:
        b.problem(["agent", "endpoint"], "give `command` or `endpoint`, not both")
    return AgentAction(
        prompt=value["prompt"],
        command=tuple(value["command"]) if "command" in value else None,
        endpoint=b.convert(
            ["agent", "endpoint"],
            lambda url: check_url(url, sent_as=[url.rstrip("/") + "/chat/completions"]),
            value["endpoint"],
            None,
        )
        if "endpoint" in value
        else None,
        model=value.get("model"),
        api_key_env=value.get("api_key_env"),
        system=value.get("system"),
        max_tokens=integer(value.get("max_tokens")),
        request_timeout=b.duration(value, "request_timeout", timedelta(minutes=5), "agent"),
        max_runs_per_day=integer(value.get("max_runs_per_day")),
        max_tokens_per_day=integer(value.get("max_tokens_per_day")),
    )


def _regex(b: Builder, pointer: list[str | int], text: str | None) -> str | None:
    if text is None:
        return None
    try:
        re.compile(text)
    except re.error as exc:
        b.problem(pointer, f"bad regular expression: {exc}")
    except (RecursionError, OverflowError, MemoryError):  # nesting or repeats beyond `re`'s means
        b.problem(pointer, "regular expression too large or too deeply nested")
    return text


def variables(b: Builder, pointer: list[str | int], table: Mapping[str, Any]) -> dict[str, Any]:
    """An environment table, its names checked: the kernel takes no `=` or empty name."""
    for name in table:
        if not name or "=" in name:
            b.problem([*pointer, name], f"{excerpt(name)} is not a variable name (empty, or has =)")
    return dict(table)


def deliveries(b: Builder, entries: list[dict[str, Any]]) -> tuple[Delivery, ...]:
    out = []
    for index, entry in enumerate(entries):
        kinds = [kind for kind in DeliveryKind if kind in entry]
        if len(kinds) != 1:
            continue  # the schema reported it
        on = entry.get("on", ["failure"])
        kind = kinds[0]
        out.append(
            Delivery(
                on=frozenset([on] if isinstance(on, str) else on),
                kind=kind,
                target=_target(b, ["notify", index, kind], kind, entry[kind]),
                timeout=b.duration(entry, "timeout", timedelta(seconds=10), "notify", index),
                retries=integer(entry.get("retries", 2)),
            )
        )
    return tuple(out)


def _target(b: Builder, pointer: list[str | int], kind: DeliveryKind, target: Any) -> Any:
    """A delivery's target, its URLs and headers checked as they will be sent."""
    if kind in (DeliveryKind.WEBHOOK, DeliveryKind.SLACK, DeliveryKind.TELEGRAM):
        # Only jobs that notify over HTTP pay for the imports (httpx's, in urls.py).
        from kron.config.urls import check_headers, check_url

        if isinstance(target, str):
            b.convert(pointer, check_url, target, None)
        elif kind is DeliveryKind.TELEGRAM:
            base = target.get("base_url", "https://api.telegram.org")
            sent = f"{base.rstrip('/')}/bot0:token/sendMessage"
            b.convert([*pointer, "base_url"], lambda u: check_url(u, sent_as=[sent]), base, None)
            target = {**target, "chat_id": integer(target["chat_id"])}
        else:
            b.convert([*pointer, "url"], check_url, target["url"], None)
            b.convert([*pointer, "headers"], check_headers, target.get("headers", {}), None)
    elif kind is DeliveryKind.EMAIL and "port" in target:
        target = {**target, "port": integer(target["port"])}
    return target


def healthcheck(b: Builder, url: str | None) -> str | None:
    if url is None:
        return None
    from kron.config.urls import check_healthcheck  # only jobs with a healthcheck pay for it

    return b.convert(["healthcheck"], check_healthcheck, url, None)
