"""Colour on a terminal: outcomes green, red or yellow; none in a pipe or with NO_COLOR.

`--color auto` (the default) colours only a terminal, and follows the conventions other
tools share: NO_COLOR (no-color.org) turns colour off, FORCE_COLOR turns it on in a pipe
(a CI log that renders ANSI), TERM=dumb turns it off. `--color always|never` overrides all.
"""

from __future__ import annotations

import os
from typing import TextIO

__all__ = ["COLOUR_CHOICES", "colour_enabled", "outcome_style", "paint"]

COLOUR_CHOICES = ("auto", "always", "never")
_CODES = {"green": "32", "red": "31", "yellow": "33"}
# Green: the work was done. Yellow: the slot was let go on purpose or by circumstance (neither
# a success nor a failure). Red: the work was not done.
_OUTCOME_STYLES = {
    "succeeded": "green",
    "skipped": "yellow",
    "missed": "yellow",
    "replaced": "yellow",
    "failed": "red",
    "timeout": "red",
    "wait_timeout": "red",
    "cancelled": "red",
    "abandoned": "red",
    "dependency_failed": "red",
}


def colour_enabled(stream: TextIO, choice: str = "auto") -> bool:
    """Whether to colour what goes to `stream`."""
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR", "") not in ("", "0", "false"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def outcome_style(outcome: str) -> str | None:
    """The colour of an outcome (`green`, `red`, `yellow`), or None for one left plain."""
    return _OUTCOME_STYLES.get(outcome)


def paint(text: str, style: str | None, *, on: bool) -> str:
    """`text` in a colour when colour is on."""
    if not on or style is None:
        return text
    return f"\x1b[{_CODES[style]}m{text}\x1b[0m"
