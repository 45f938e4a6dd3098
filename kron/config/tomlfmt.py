"""`kron fmt` on TOML: keys in the schema's order, everything else as it was written.

tomlkit keeps a file's text to the byte (comments, quoting, arrays on one line or many), so this
module only moves whole entries, each with the comment lines above it. The one layout rule it
adds is TOML's own convention: exactly one blank line before each `[table]` header.

tomlkit files a comment that sits above a `[table]` header inside the table before it; those
lines are moved to the header they describe before anything is reordered, and a comment block
set apart by a blank line stays with the table it follows.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tomlkit.items import AoT, Comment, Item, Key, Table, Whitespace

__all__ = ["arrange", "is_directive"]

Body = list[tuple[Key | None, Item]]
_DIRECTIVE = re.compile(r"#:schema\s")


def is_directive(comment: str) -> bool:
    """A Taplo `#:schema` line: it stays the first line of the file."""
    return bool(_DIRECTIVE.match(comment.lstrip()))


def arrange(text: str, schema: Mapping[str, Any]) -> str:
    """The file's text with every table's keys in the schema's order.

    Raises tomlkit's ParseError when tomlkit cannot read what the loader read.
    """
    import tomlkit

    if not text.endswith("\n"):  # the last entry may move: it must end its line
        text += "\n"
    document = tomlkit.parse(text)
    _arrange_body(document.body, schema, top=True, headed=False)
    return re.sub(r"\n\s*\Z", "\n", document.as_string())


@dataclass(slots=True)
class _Entry:
    key: Key
    item: Item
    before: Body  # comment and blank lines above the entry
    after: Body = field(default_factory=list)  # a section's own closing comment lines

    @property
    def name(self) -> str:
        return str(self.key.key)

    @property
    def section(self) -> bool:
        """A `[table]` or `[[array]]`: it must come after the plain keys of its parent."""
        return _is_section(self.key, self.item)


def _is_section(key: Key, item: Item) -> bool:
    # `a.b = 1` is a dotted key held as a table, but it is written as a plain line.
    return isinstance(item, AoT) or (isinstance(item, Table) and not key.is_dotted())


def _arrange_body(
    body: Body, schema: Mapping[str, Any] | None, *, top: bool, headed: bool, bare: bool = False
) -> Body:
    """Arrange one table's entries. A `bare` table (`[a.b]` with no `[a]`) writes no header:
    anything but a table in its body would make tomlkit write one, so the lines above its first
    table are returned for the caller to put above it, and those above the others go at the end
    of the table before."""
    header = _take_header(body) if top else []
    entries, tail = _entries(body)
    if not entries:
        return []
    # What follows the last entry closes this body: it stays at its end whatever comes last.
    end = tail
    if entries[-1].section:
        end = _pop_tail(entries[-1].item) + tail
    for here, following in itertools.pairwise(entries):
        if here.section:
            stay, above = _split(_pop_tail(here.item))
            here.after = stay
            following.before = above + following.before
    props: Mapping[str, Any] = (schema or {}).get("properties") or {}
    for entry in entries:
        _arrange_inside(entry, props.get(entry.name))
    entries.sort(key=_order(props))
    arranged: Body = list(header)
    hoisted: Body = []
    for index, entry in enumerate(entries):
        before = entry.before
        if entry.section:
            before = _strip(before)
            follows_text = bool(arranged) and not isinstance(arranged[-1][1], Whitespace)
            if follows_text or (headed and not arranged):
                before = [_blank(), *before]
        elif index == 0:
            before = _strip(before, end=False)
        if not bare:
            arranged.extend(before)
        elif index == 0:
            hoisted = before
        else:
            _deepest_body(entries[index - 1].item).extend(before)
        arranged.append((entry.key, entry.item))
        if entry.after:
            _deepest_body(entry.item).extend(_strip(entry.after, start=False))
    if bare:
        _deepest_body(entries[-1].item).extend(end)
    else:
        arranged.extend(_strip(end, start=False) if top else end)
    body[:] = arranged
    return hoisted


def _arrange_inside(entry: _Entry, schema: Mapping[str, Any] | None) -> None:
    """Arrange a section's own keys (each element's, for an array of tables)."""
    item = entry.item
    if isinstance(item, Table) and not entry.key.is_dotted():
        bare = item.is_super_table()
        hoisted = _arrange_body(item.value.body, schema, top=False, headed=not bare, bare=bare)
        entry.before = entry.before + hoisted
    elif isinstance(item, AoT):
        elements = item.body
        item_schema = (schema or {}).get("items")
        for index, table in enumerate(elements):
            # An element's closing lines precede the next `[[...]]`; the order inside the
            # element must not carry them away from it.
            between = _pop_tail(table) if index < len(elements) - 1 else []
            _arrange_body(table.value.body, item_schema, top=False, headed=True)
            if between:
                stay, above = _split(between)
                _deepest_body(table).extend([*_strip(stay, start=False), _blank(), *above])
            elif index < len(elements) - 1:
                _deepest_body(table).append(_blank())


def _order(props: Mapping[str, Any]) -> Callable[[_Entry], tuple[Any, ...]]:
    """Plain keys before sections (TOML needs it), then the schema's order; a free-form table
    (no properties in the schema) keeps the order it was written in."""
    rank = {name: index for index, name in enumerate(props)}

    def key(entry: _Entry) -> tuple[Any, ...]:
        if not rank:
            return (entry.section,)
        name = entry.name
        return (entry.section, name.startswith("x-"), rank.get(name, len(rank)), name)

    return key


def _take_header(body: Body) -> Body:
    """The leading comment block set apart by a blank line (and any directive): it stays on top."""
    count = 0
    while count < len(body) and body[count][0] is None:
        count += 1
    header, above = _split(body[:count])
    while above and _is_directive_item(above[0][1]):
        header.append(above.pop(0))
    del body[: len(header)]
    return header


def _is_directive_item(item: Item) -> bool:
    return isinstance(item, Comment) and is_directive(item.as_string())


def _entries(body: Body) -> tuple[list[_Entry], Body]:
    entries: list[_Entry] = []
    pending: Body = []
    for key, item in body:
        if key is None:
            pending.append((key, item))
        else:
            entries.append(_Entry(key, item, pending))
            pending = []
    return entries, pending


def _deepest_body(item: Item) -> Body:
    """The body whose end is the last text a section renders (its last sub-table's, ...)."""
    if isinstance(item, AoT):
        item = item.body[-1]
    assert isinstance(item, Table)
    body: Body = item.value.body
    while body:
        key, last = body[-1]
        if key is None or not _is_section(key, last):
            break
        if isinstance(last, AoT):
            last = last.body[-1]
        assert isinstance(last, Table)
        body = last.value.body
    return body


def _pop_tail(item: Item) -> Body:
    """Take the comment and blank lines that end a section's text."""
    body = _deepest_body(item)
    count = 0
    while count < len(body) and body[len(body) - 1 - count][0] is None:
        count += 1
    if not count:
        return []
    tail = body[len(body) - count :]
    del body[len(body) - count :]
    return tail


def _split(lines: Body) -> tuple[Body, Body]:
    """Comment lines right above an entry belong to it; those before the last blank line do not."""
    last_blank = max(
        (index for index, (_, item) in enumerate(lines) if isinstance(item, Whitespace)),
        default=-1,
    )
    return lines[: last_blank + 1], lines[last_blank + 1 :]


def _strip(lines: Body, *, start: bool = True, end: bool = True) -> Body:
    """Drop blank lines at the start and/or end of a run of comment lines."""
    first, last = 0, len(lines)
    while start and first < last and isinstance(lines[first][1], Whitespace):
        first += 1
    while end and last > first and isinstance(lines[last - 1][1], Whitespace):
        last -= 1
    return lines[first:last]


def _blank() -> tuple[None, Item]:
    return (None, Whitespace("\n"))
