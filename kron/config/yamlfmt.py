"""`kron fmt` on YAML: keys in the schema's order, everything else as it was written.

ruamel.yaml's round trip keeps comments, quotes, block scalars and flow sequences; this module
reorders mappings and moves each comment line with the key it sits above. ruamel files a
comment line with the value before it (as the tail of that value's token), so the lines are
taken out of those tokens first, the keys are reordered, and the lines are put back above
their keys. Indentation is written as the file had it (guessed from its first nested mapping
and block sequence).
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Callable, Mapping
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString
from ruamel.yaml.tokens import CommentToken

__all__ = ["arrange", "is_directive"]

_DIRECTIVE = re.compile(r"#\s*yaml-language-server:\s*\$schema=")
_POST = {CommentedMap: 2, CommentedSeq: 0}  # where ruamel keeps the comment after an entry


def is_directive(comment: str) -> bool:
    """A YAML language server modeline (`# yaml-language-server: $schema=...`)."""
    return bool(_DIRECTIVE.match(comment.lstrip()))


def arrange(text: str, schema: Mapping[str, Any]) -> str:
    """The file's text with every mapping's keys in the schema's order."""
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: comments, quotes and styles are kept
    yaml.preserve_quotes = True
    yaml.width = 1 << 20  # never fold a long line (a shell line stays one line)
    mapping, sequence, offset = _guess_indent(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.explicit_start = _first_line(text).startswith("---")
    data = yaml.load(text)
    _Arranger(text.splitlines(keepends=True)).mapping(data, schema, root=True)
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _first_line(text: str) -> str:
    """The first line that is neither blank nor a comment."""
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line
    return ""


def _guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as ruamel.yaml's `indent()` takes them."""
    mapping: int | None = None
    offset: int | None = None
    parent: int | None = None  # indentation of the previous `key:` line that opened a block
    for line in text.splitlines():
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if parent is not None and indent >= parent:
            if body.startswith("- ") or body == "-":
                offset = indent - parent if offset is None else offset
            elif mapping is None and indent > parent:
                mapping = indent - parent
        parent = None
        if re.match(r"(?:- )?[^#]*:$", body.split(" #")[0].rstrip()):
            parent = indent + (2 if body.startswith("- ") else 0)
        if mapping is not None and offset is not None:
            break
    mapping = mapping or 2
    offset = offset or 0
    return mapping, offset + 2, offset  # an item's text starts after its `- `


def _order(props: Mapping[str, Any]) -> Callable[[Any], tuple[Any, ...]]:
    rank = {name: index for index, name in enumerate(props)}

    def key(name: Any) -> tuple[Any, ...]:
        text = str(name)
        return (text.startswith("x-"), rank.get(text, len(rank)), text)

    return key


def _split(lines: list[str]) -> tuple[list[str], list[str]]:
    """Comment lines right above a key belong to it; those before the last blank line do not."""
    blanks = [index for index, line in enumerate(lines) if not line.strip()]
    last = blanks[-1] if blanks else -1
    return lines[: last + 1], lines[last + 1 :]


def _strip_leading_blanks(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    return lines


def _is_block(value: Any) -> bool:
    """A mapping or sequence written as a block (its entries hold their own comments)."""
    return (
        isinstance(value, CommentedMap | CommentedSeq)
        and len(value) > 0
        and not (value.fa.flow_style())
    )


def _tokens(lines: list[str]) -> list[CommentToken]:
    return [CommentToken(line, CommentMark(0)) for line in lines]


class _Arranger:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines  # the original text, to tell an end-of-line comment from a line

    def mapping(
        self,
        cmap: CommentedMap,
        schema: Mapping[str, Any] | None,
        *,
        root: bool = False,
        in_sequence: bool = False,
    ) -> list[str]:
        """Arrange `cmap` and the collections in it; return comment lines that must go above
        the `- ` of the sequence item it is (its new first key's)."""
        keys = list(cmap)
        if not keys:
            return []
        before = {key: self._take_before(cmap, key) for key in keys}
        after: dict[Any, list[str]] = {key: [] for key in keys}
        if root:
            header, before[keys[0]] = self._header(cmap, before[keys[0]])
            cmap.ca.comment = [None, _tokens(header) or None]
        for here, following in itertools.pairwise(keys):
            stay, above = _split(self._take_after(cmap, here))
            after[here] = stay
            before[following] = above + before[following]
        end = self._take_after(cmap, keys[-1])
        props: Mapping[str, Any] = (schema or {}).get("properties") or {}
        for key in keys:
            self._inside(cmap[key], props.get(str(key)))
        order = sorted(keys, key=_order(props)) if props else keys
        for key in order:
            cmap.move_to_end(key)
        lifted: list[str] = []
        for index, key in enumerate(order):
            lines = before[key]
            if index == 0 and not root:
                lines = _strip_leading_blanks(lines)
                if in_sequence:  # nothing can stand between `- ` and the first key
                    lifted = [line[2:] if line.startswith("  ") else line for line in lines]
                    lines = []
            cmap.ca.items.setdefault(key, [None, None, None, None])[1] = _tokens(lines) or None
            if after[key]:
                self._give_after(cmap, key, after[key])
        if end:
            self._give_after(cmap, order[-1], end)
        return lifted

    def _inside(self, value: Any, schema: Mapping[str, Any] | None) -> None:
        if isinstance(value, CommentedMap):
            self.mapping(value, schema)
        elif isinstance(value, CommentedSeq):
            item_schema = (schema or {}).get("items")
            for index, element in enumerate(value):
                if not isinstance(element, CommentedMap):
                    continue
                # An item's closing lines stand above the next `- `: they stay where they are.
                between = self._take_after(value, index) if index < len(value) - 1 else []
                lifted = self.mapping(element, item_schema, in_sequence=True)
                if lifted:
                    slot = value.ca.items.setdefault(index, [None, None, None, None])
                    slot[1] = _tokens(lifted) + list(slot[1] or [])
                if between:
                    self._give_after(value, index, between)

    def _header(self, cmap: CommentedMap, first: list[str]) -> tuple[list[str], list[str]]:
        """The file's leading comment block (set apart by a blank line), and the first key's
        own lines; a language-server modeline always stays in the header."""
        tokens = (cmap.ca.comment or [None, None])[1] or []
        lines = [line for token in tokens for line in self._lines_of(token, full=True)]
        header, above = _split(lines + first)
        while above and is_directive(above[0]):
            header.append(above.pop(0))
        return header, above

    def _take_before(self, cmap: CommentedMap, key: Any) -> list[str]:
        """Comment lines ruamel filed above `key` (it does after a flow collection)."""
        slot = cmap.ca.items.get(key)
        if not slot or not slot[1]:
            return []
        tokens, slot[1] = slot[1], None
        return [line for token in tokens for line in self._lines_of(token, full=True)]

    def _slot(self, container: Any, key: Any) -> tuple[list[Any], int, Any, list[Any]]:
        """Where the comment after entry `key` lives: its last scalar's token; and the block
        collections on the way there, innermost first (ruamel may keep closing lines in
        their `end`)."""
        value = container[key]
        if _is_block(value):
            last = next(reversed(value)) if isinstance(value, CommentedMap) else len(value) - 1
            slot, index, scalar, path = self._slot(value, last)
            return slot, index, scalar, [*path, value]
        slot = container.ca.items.setdefault(key, [None, None, None, None])
        return slot, _POST[type(container)], value, []

    def _take_after(self, container: Any, key: Any) -> list[str]:
        """Take the whole comment lines that follow entry `key`, leaving its end-of-line one."""
        slot, index, value, path = self._slot(container, key)
        ends = [line for block in path for line in self._take_end(block)]
        token = slot[index]
        if token is None:
            return ends
        text: str = token.value
        if text.startswith("\n"):
            eol, rest = "", text[1:]
        elif self._is_end_of_line(token):
            first, _, rest = text.partition("\n")
            eol = first + "\n"
        else:  # after a block scalar, the first line is a comment line of its own
            eol, rest = "", " " * token.start_mark.column + text
        if eol:
            token.value = eol  # in place: a flow collection shares the token with its parent
        else:
            slot[index] = None
            if isinstance(value, CommentedMap | CommentedSeq) and value.ca.comment:
                value.ca.comment[0] = None
        return rest.splitlines(keepends=True) + ends

    def _take_end(self, block: Any) -> list[str]:
        tokens = getattr(block.ca, "end", None) or []
        block.ca.end = []
        return [line for token in tokens for line in self._lines_of(token, full=True)]

    def _give_after(self, container: Any, key: Any, lines: list[str]) -> None:
        slot, index, value, _ = self._slot(container, key)
        token = slot[index]
        if token is not None:
            token.value = token.value + "".join(lines)
            return
        # A block scalar ends its own line; any other value's line is ended by the token.
        ends_line = isinstance(value, LiteralScalarString | FoldedScalarString)
        slot[index] = CommentToken(("" if ends_line else "\n") + "".join(lines), CommentMark(0))

    def _is_end_of_line(self, token: CommentToken) -> bool:
        mark = token.start_mark
        if mark is None or mark.line >= len(self.lines):
            return False
        return bool(self.lines[mark.line][: mark.column].strip())

    def _lines_of(self, token: CommentToken, *, full: bool) -> list[str]:
        """A token's text as lines, the first with its indentation."""
        text = token.value
        column = token.start_mark.column if token.start_mark is not None else 0
        if full and not text.startswith("\n"):
            text = " " * column + text
        return text.splitlines(keepends=True)
