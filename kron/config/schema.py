"""The JSON Schemas of job files and kron.toml: compiled validators and error wording.

A valid file is checked by a compiled validator in microseconds; only a file with errors pays for
jsonschema, which finds every error, and each is worded for a person (`unknown field 'timout';
did you mean 'timeout'?`).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kron.config.documents import Document
from kron.model.errors import EXCERPT_CHARS, Problem, ValueProblem, did_you_mean, excerpt, shorten
from kron.model.job import DeliveryKind
from kron.model.units import DURATION_PATTERN, SIZE_PATTERN, parse_duration, parse_size

__all__ = [
    "SCHEMA_DIR",
    "compile_job_schema",
    "load_schema",
    "problems_from_schema",
    "schema_errors",
    "write_schemas",
]

SCHEMA_DIR = Path(__file__).parent.parent / "schemas"


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """Return a schema from schemas/ (`job` or `kron`)."""
    with open(SCHEMA_DIR / f"{name}.schema.json", encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


@functools.cache
def _fast_validator(name: str) -> Callable[[Any], Any]:
    """A compiled validator for the common case: a valid file costs microseconds."""
    import fastjsonschema

    # use_default=False: validation must not write schema defaults into the data, or a
    # job's filled-in default would override a value from kron.toml's [defaults].
    # detailed_exceptions=False: a failure is explained by jsonschema (schema_errors), so the
    # generated code need not quote each part of the schema it checks; that makes it 40 % the
    # size, twice as fast to compile, and 7 MB lighter on a daemon's memory.
    # A copy: fastjsonschema rewrites each `$ref` in place, and load_schema's dict is shared
    # with `kron schema` and the MCP server's schema resource.
    validator: Callable[[Any], Any] = fastjsonschema.compile(
        copy.deepcopy(load_schema(name)), use_default=False, detailed_exceptions=False
    )
    return validator


def compile_job_schema() -> None:
    """Compile the job schema's validator now (~50 ms), so that forked loaders inherit it."""
    _fast_validator("job")


@functools.cache
def _full_validator(name: str) -> Any:
    """jsonschema's validator, used only on failure, for complete and precise errors."""
    import jsonschema  # type: ignore[import-untyped]

    return jsonschema.Draft202012Validator(load_schema(name))


# Errors examined per file: a report shows fifty (loader.MAX_PROBLEMS) and counts the rest up
# to here, so a 1 MiB file of a hundred thousand bad list items costs some 50 ms, not a minute
# (jsonschema takes ~0.2 ms an error).
MAX_ERRORS = 200
_HINTED = 100  # unknown fields given a did-you-mean, per table


def schema_errors(name: str, data: Any) -> list[tuple[list[str | int], str]]:
    """Validate against a schema; return (pointer, message) for every error, [] when valid.

    At most MAX_ERRORS are returned: the first ones jsonschema finds.
    """
    try:
        _fast_validator(name)(data)
    except Exception:
        pass
    else:
        return []
    found: list[tuple[list[str | int], str]] = []
    for error in _full_validator(name).iter_errors(data):
        found.extend(_explain(error))
        if len(found) >= MAX_ERRORS:
            break
    found.sort(key=lambda item: [str(p) for p in item[0]])
    return found[:MAX_ERRORS]


def _short(value: Any) -> str:
    if isinstance(value, dict | list) and len(value) > 20:  # spare dumping a huge table
        value = dict(list(value.items())[:20]) if isinstance(value, dict) else value[:20]
    text = json.dumps(value, ensure_ascii=False, default=str)
    return shorten(text, EXCERPT_CHARS)


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a table",
}


def _explain(error: Any) -> list[tuple[list[str | int], str]]:
    """Turn one jsonschema error into friendly (pointer, message) pairs."""
    pointer = list(error.absolute_path)
    kind = error.validator
    value = error.instance
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        out: list[tuple[list[str | int], str]] = []
        for key in sorted(set(value) - set(allowed))[:MAX_ERRORS]:
            if any(re.match(p, key) for p in error.schema.get("patternProperties", {})):
                continue
            msg = f"unknown field {excerpt(key)}"
            if len(out) < _HINTED:  # difflib costs ~0.4 ms a key: hint what a report shows
                msg += did_you_mean(key, allowed) or f"; known fields: {', '.join(allowed)}"
            out.append(([*pointer, key], msg))
        return out
    if kind == "type":
        wanted = error.validator_value
        wanted = [wanted] if isinstance(wanted, str) else wanted
        names = " or ".join(_TYPE_NAMES.get(w, w) for w in wanted)
        return [(pointer, f"expected {names}, got {_short(value)}")]
    if kind == "pattern":
        if error.validator_value == DURATION_PATTERN:
            try:
                parse_duration(str(value))
            except ValueProblem as exc:
                return [(pointer, str(exc))]
        if error.validator_value == SIZE_PATTERN:
            try:
                parse_size(str(value))
            except ValueProblem as exc:
                return [(pointer, str(exc))]
        if error.validator_value == "^https?://":
            return [(pointer, f"{_short(value)} is not an http(s) URL")]
        return [(pointer, f"{_short(value)} does not match {error.validator_value}")]
    if kind == "enum":
        choices = error.validator_value
        listed = ", ".join(json.dumps(v) for v in choices)
        near = did_you_mean(value, [c for c in choices if isinstance(c, str)])
        return [(pointer, f"{_short(value)} is not one of {listed}{near}")]
    if kind == "required":
        return [(pointer, error.message.replace("is a required property", "is required"))]
    if kind == "oneOf" and isinstance(value, dict) and "notify" in [str(p) for p in pointer]:
        targets = tuple(DeliveryKind)
        present = [t for t in targets if t in value]
        if len(present) != 1:
            shown = " and ".join(present) if present else "none"
            return [
                (pointer, f"a delivery has exactly one target ({', '.join(targets)}); got {shown}")
            ]
    if kind in ("oneOf", "anyOf") and error.context:
        types = [
            e.validator_value
            for e in error.context
            if e.validator == "type" and not e.relative_path  # about the value itself
        ]
        if len(types) == len(error.context) and all(isinstance(t, str) for t in types):
            # `max_output = 1.5`: neither branch's type; name both, not the last tried.
            names = " or ".join(_TYPE_NAMES.get(t, t) for t in dict.fromkeys(types))
            return [(pointer, f"expected {names}, got {_short(value)}")]
        # Report the branch that got furthest: the deepest sub-error.
        best = max(error.context, key=lambda e: len(list(e.absolute_path)))
        return _explain(best)
    if kind == "not" and isinstance(value, dict) and {"json", "body"} <= set(value):
        return [(pointer, "give `json` or `body`, not both")]
    if kind in ("minimum", "maximum", "minItems", "minLength", "uniqueItems"):
        return [(pointer, error.message.replace(repr(value), _short(value)))]
    return [(pointer, error.message.replace(repr(value), _short(value)))]


def problems_from_schema(
    doc: Document, name: str, data: Any, *, at: Sequence[str | int] = ()
) -> list[Problem]:
    """Every error the schema `name` finds in `data`, the part of `doc` found at `at`."""
    return [doc.problem([*at, *pointer], message) for pointer, message in schema_errors(name, data)]


def write_schemas(folder: Path) -> list[Path]:
    """Write the job and kron.toml schemas into `folder` (made if missing), as `kron schema`
    prints them, for editors that read a schema from a file; return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("job", "kron"):
        path = folder / f"{name}.schema.json"
        text = json.dumps(load_schema(name), indent=2, ensure_ascii=False) + "\n"
        tmp = path.with_name(f".{path.name}.kron-tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
