"""Reading rule files: safe YAML, bounded, with the line and column of every value.

Rule files are data, never code. On top of PyYAML's safe loader this refuses anchors, aliases
(so an alias bomb cannot expand), explicit tags (`!!str`, `!!int`, `!foo`) and duplicate keys, bounds
the file size and the nesting depth, and keeps ISO dates as text so that the engine, not YAML,
decides what a valid time is. YAML 1.1's surprising numbers are refused with what to write instead:
`010` (octal 8), `0x1F`, `0b11`, `1_000`, `1:30` (base 60: 90), and numbers of more than
`text.MAX_NUMBER_DIGITS` digits. `load()` returns the plain data and a `Positions` map from JSON path
to (line, column). Messages echo at most a shortened form of what the file holds.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from functools import lru_cache
import pathlib
from typing import Any

import yaml
import yaml.composer
import yaml.constructor
import yaml.resolver
if getattr(yaml, "__with_libyaml__", False):
    import yaml.cyaml
from yaml.events import (AliasEvent, DocumentStartEvent, MappingEndEvent, ScalarEvent, SequenceEndEvent,
                         SequenceStartEvent, StreamEndEvent)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Problem
from .text import MAX_NUMBER_DIGITS, shorten

MAX_FILE_BYTES = 64 * 1024
MAX_DEPTH = 24

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
}
_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
# YAML 1.1 reads these bare words as booleans; a country code "NO" silently becoming False is the
# classic trap, so a type error on such a value tells the author to quote it.
YAML11_BOOL_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false"}

Path = tuple  # of str | int


@dataclass(frozen=True)
class Spot:
    line: int
    column: int
    source: str | None  # the scalar as written, when the value is a scalar


def _spot(line: int, column: int, source: str | None) -> Spot:
    """`Spot(line, column, source)`, built without the frozen __init__'s three object.__setattr__ calls:
    10,000 rule files hold about half a million positions."""
    spot = _new_spot(Spot)
    fields = spot.__dict__
    fields["line"], fields["column"], fields["source"] = line, column, source
    return spot


_new_spot = object.__new__


class Positions(dict):
    """JSON path tuple -> Spot. `locate()` falls back to the nearest enclosing value."""

    def locate(self, path: Path) -> Spot:
        path = tuple(path)
        while path not in self and path:
            path = path[:-1]
        return self.get(path, Spot(1, 1, None))

    def only(self, *paths: Path) -> Positions:
        """The positions `locate()` reads for `paths` and for anything inside them (each path, its
        ancestors and everything under it), as a smaller map to keep once the rest is no longer needed."""
        if not all(paths):
            return Positions(self)
        kept = Positions()
        for path in paths:
            for end in range(len(path) + 1):
                if path[:end] in self:
                    kept[path[:end]] = self[path[:end]]
        firsts = {path[0] for path in paths}
        for key, spot in self.items():
            if key and key[0] in firsts:
                for path in paths:
                    if key[:len(path)] == path:
                        kept[key] = spot
                        break
        return kept


# libyaml's C parser when PyYAML has it (it parses a rule file several times faster). Its events go
# straight to plain data and positions (`_CLoader`); anything that path would have to refuse or report
# sends the file through our own Python composer below (`_ComposerLoader`), which words every problem,
# so the refusals and positions are the same whichever path read a file.
_Parser = yaml.cyaml.CParser if getattr(yaml, "__with_libyaml__", False) else None


class _Checks:
    """What the composer refuses, whichever parser feeds it events."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):  # type: ignore[attr-defined]
            mark = self.peek_event().start_mark
            raise _Refused("YAML aliases (*name) are not allowed in rule files; write the value out", mark)
        event = self.peek_event()
        if getattr(event, "tag", None) is not None:
            tag = event.tag.replace("tag:yaml.org,2002:", "!!")
            raise _Refused(f"YAML tags ({shorten(tag)[1:-1]}) are not allowed in rule files; write the plain value,"
                           " in quotes if it is text (for example \"010\")", event.start_mark)
        if getattr(event, "anchor", None):
            raise _Refused("YAML anchors (&name) are not allowed in rule files; write the value out",
                           event.start_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self._depth -= 1

    def read(self, filename: str) -> tuple[Any, Positions]:
        """The document as plain data: composed into nodes (refusing what `compose_node` refuses), then
        walked into data and positions, collecting every problem."""
        node = self.get_single_node()  # type: ignore[attr-defined]
        if node is None:
            raise YamlProblems([Problem(filename, 1, 1, "$", "file is empty")])
        positions = Positions()
        problems: list[Problem] = []
        data = _build(self, node, (), positions, problems, filename)  # type: ignore[arg-type]
        if problems:
            raise YamlProblems(problems)
        return data, positions


class _PyLoader(_Checks, yaml.SafeLoader):
    """Without libyaml: PyYAML's Python parser under the checking composer."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0


if _Parser is not None:
    class _ComposerLoader(_Checks, yaml.composer.Composer, _Parser,  # type: ignore
                          yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """libyaml's parser under the checking composer: what `_CLoader` hands a file to when it has
        something to refuse or report, and the reference tests/test_yamlsafe_events.py holds it to."""

        def __init__(self, stream: str):
            _Parser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._depth = 0

    class _CLoader(_Parser):  # type: ignore
        """libyaml's events straight to plain data and positions, in one pass: no nodes, no second walk.
        It reads a well-formed rule file; at the first thing the composer would refuse or report (an
        alias, an anchor, a tag, a merge key, a key that is not text, a duplicate key, nesting deeper than
        MAX_DEPTH, a number `_number_problem` refuses, a tag other than text, number, boolean or null, an
        empty stream, a second document) it stops and `_ComposerLoader` reads the file again, so every
        problem is the composer's, word for word. A parser error is raised as it comes: the composer
        would meet the same one first."""

        def __init__(self, stream: str):
            _Parser.__init__(self, stream)
            self._stream = stream

        def read(self, filename: str) -> tuple[Any, Positions]:
            try:
                return _from_events(self.get_event)
            except _Irregular:
                pass
            loader = _ComposerLoader(self._stream)
            try:
                return loader.read(filename)
            finally:
                loader.dispose()

    _Loader: type = _CLoader
else:
    _Loader = _PyLoader


class _Irregular(Exception):
    """`_from_events` met something the composer path refuses or reports."""


class _Refused(Exception):
    def __init__(self, message: str, mark: Any):
        super().__init__(message)
        self.message = message
        self.mark = mark


def read_capped(path: pathlib.Path, limit: int, follow_links: bool = True) -> bytes | None:
    """The bytes of the regular file `path`, or None if it holds more than `limit` bytes. The size is
    checked before reading (stat), and at most limit + 1 bytes are read, so a file that grows in the
    meantime is caught too. Without `follow_links` a symbolic link is refused (OSError), never
    followed. Anything but a regular file (a directory, a FIFO, a device) is an OSError."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow_links else getattr(os, "O_NOFOLLOW", 0))
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "not a regular file")
        if info.st_size > limit:
            return None
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return None if size > limit else b"".join(chunks)


def load(text: str | bytes, filename: str) -> tuple[Any, Positions]:
    """Parse one YAML document. Raises a list of Problems (as `YamlProblems`) on any refusal."""
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise YamlProblems([Problem(filename, 1, 1, "$", f"file is larger than {MAX_FILE_BYTES // 1024} KiB")])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise YamlProblems([Problem(filename, 1, 1, "$", f"file is not UTF-8 text ({exc.reason})")]) from None
    if len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise YamlProblems([Problem(filename, 1, 1, "$", f"file is larger than {MAX_FILE_BYTES // 1024} KiB")])
    loader = _Loader(text)
    try:
        return loader.read(filename)
    except _Refused as exc:
        raise YamlProblems([_at(filename, exc.mark, "$", exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark, message = in_words(exc, text)
        raise YamlProblems([_at(filename, mark, "$", message)]) from None
    except yaml.YAMLError as exc:
        raise YamlProblems([Problem(filename, 1, 1, "$", f"not valid YAML: {_short(str(exc))}")]) from None
    finally:
        loader.dispose()


def in_words(exc: yaml.MarkedYAMLError, text: str) -> tuple[Any, str]:
    """A YAML syntax error as a marketer can act on it, and where: a tab used to indent, a line whose
    indentation does not line up with its block, a list item without its `- `, a `:` inside a value
    that needs quotes, a line with no `key:`, a quote never closed. Anything else keeps the parser's
    own words after "not valid YAML"."""
    problem, context = exc.problem or "", exc.context or ""
    at, opened = exc.problem_mark or exc.context_mark, exc.context_mark
    lines = text.splitlines()
    line = lines[at.line] if at is not None and at.line < len(lines) else ""
    indent = len(line) - len(line.lstrip(" "))
    opened_line = opened.line + 1 if opened is not None else None
    if line[indent:indent + 1] == "\t" or ("cannot start any token" in problem and "\t" in line[:at.column + 1]):
        return at, "a tab: YAML indents with spaces only; replace the tab with spaces"
    unclosed = _unclosed_quote(lines[:at.line + 1] if at is not None else lines)
    if unclosed is not None:
        return _Mark(unclosed[0], unclosed[1]), (f"a quote opened on line {unclosed[0] + 1} is never closed on that "
                                                 f"line: add the closing quote")
    if "expected '-' indicator" in problem:
        return at, (f"this line is not an item of the list that starts on line {opened_line}: begin each item "
                    f"with `- `, lined up with the list's other items")
    if context == "while parsing a block mapping" and "expected key" in problem:
        return at, (f"the indentation does not line up: this line is indented {indent} spaces, which is neither a "
                    f"key of the block that starts on line {opened_line} nor a key inside it; line it up with the "
                    f"keys it belongs with")
    if "mapping values are not allowed" in problem:
        above = next((lines[i] for i in range(at.line - 1, -1, -1) if lines[i].strip()
                      and not lines[i].lstrip().startswith("#")), "")
        above_indent = len(above) - len(above.lstrip(" "))
        if indent > above_indent and not above.rstrip().endswith(":"):
            return at, (f"this line is indented {indent} spaces, more than the line above ({above_indent}): line it "
                        f"up with the key above it, or put it under a key that ends with `:`")
        return at, ('a second ": " on one line: a value that contains ": " must be in quotes, e.g. '
                    'name: "Sale: 10% off"')
    if "could not find expected ':'" in problem and opened is not None:
        return opened, ("this line has no `key:`: write `key: value`, or, if it continues the value above, "
                        "indent it or put the whole value in quotes")
    message = " ".join(str(x) for x in (exc.context, exc.problem) if x)
    return at, f"not valid YAML: {_short(message)}"


@dataclass(frozen=True)
class _Mark:
    line: int      # from 0, as yaml's marks
    column: int


_QUOTED_VALUE = re.compile(r"""^\s*(?:-\s+)?(?:[^\s#'"][^:#]*:\s+|-\s+)?(["'])""")


def _unclosed_quote(lines: list[str]) -> tuple[int, int] | None:
    """The first line (and column) whose value opens a quote that the line does not close: a quoted
    value spanning lines is legal YAML, but in a rule file it is nearly always a missing quote, and the
    parser only notices it lines later."""
    for number, text in enumerate(lines):
        match = _QUOTED_VALUE.match(text)
        if match is None:
            continue
        quote, start = match.group(1), match.end(1)
        rest = text[start:]
        if quote == '"':
            closed = re.search(r'(?<!\\)"', rest.replace("\\\\", "")) is not None
        else:
            closed = "'" in rest.replace("''", "")
        if not closed:
            return number, start - 1
    return None


class YamlProblems(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:200] + "..."


_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_DECIMAL_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")


def _number_problem(tag: str, text: str) -> str | None:
    """Why a bare number (a plain scalar `text` resolved to `tag`) is refused: a YAML 1.1 reading nobody
    means, or too many digits."""
    if tag == _INT and not _DECIMAL_INT.fullmatch(text):
        if ":" in text:
            return (f"YAML 1.1 reads {text} as a base-60 number ({loader_int(text)}); put it in quotes if you mean "
                    f"the text, e.g. \"{text}\"")
        if text.lstrip("+-").startswith(("0x", "0o", "0b")) or "_" in text:
            return (f"YAML 1.1 reads {shorten(text)} as the number {loader_int(text)}; write the number in plain "
                    f"decimals, or put it in quotes if you mean the text")
        return (f"YAML 1.1 reads {text} as the octal number {loader_int(text)}; write it without the leading "
                f"zero ({text.lstrip('+-').lstrip('0') or '0'}), or put it in quotes if you mean the text, "
                f"e.g. \"{text}\"")
    if tag == _FLOAT and ":" in text:
        return f"YAML 1.1 reads {text} as a base-60 number; put it in quotes, e.g. \"{text}\""
    if tag in (_INT, _FLOAT) and sum(c.isdigit() for c in text) > MAX_NUMBER_DIGITS:
        return f"a number of more than {MAX_NUMBER_DIGITS} digits is never valid here"
    return None


def loader_int(text: str) -> str:
    """What YAML 1.1 makes of an int scalar, for the message (bounded: the text is at most a few digits)."""
    if len(text) > 40:
        return "a large number"
    try:
        return str(yaml.constructor.SafeConstructor().construct_yaml_int(ScalarNode(_INT, text)))
    except (ValueError, TypeError):
        return "a number"


def json_path(path: Path) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _at(filename: str, mark: Any, path: str, message: str) -> Problem:
    if mark is None:
        return Problem(filename, 1, 1, path, message)
    return Problem(filename, mark.line + 1, mark.column + 1, path, message)


def _build(loader: _Checks, node: Node, path: Path, positions: Positions,
           problems: list[Problem], filename: str) -> Any:
    mark = node.start_mark
    if isinstance(node, ScalarNode):
        positions[path] = Spot(mark.line + 1, mark.column + 1, node.value)
        if node.tag not in _PLAIN_TAGS:
            problems.append(_at(filename, mark, json_path(path), f"YAML tag {shorten(node.tag)} is not allowed"))
            return None
        problem = _number_problem(node.tag, node.value)
        if problem is not None:
            problems.append(_at(filename, mark, json_path(path), problem))
            return None
        return loader.construct_object(node, deep=True)
    positions[path] = Spot(mark.line + 1, mark.column + 1, None)
    if node.tag not in _COLLECTION_TAGS:
        problems.append(_at(filename, mark, json_path(path), f"YAML tag {node.tag!r} is not allowed"))
        return None
    if isinstance(node, SequenceNode):
        return [_build(loader, item, path + (i,), positions, problems, filename)
                for i, item in enumerate(node.value)]
    assert isinstance(node, MappingNode)
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == "<<":
            problems.append(_at(filename, key_node.start_mark, json_path(path), "YAML merge keys (<<) are not allowed"))
            continue
        if not isinstance(key_node, ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
            problems.append(_at(filename, key_node.start_mark, json_path(path),
                                f"keys must be plain words, not {shorten(key_node.value)}"))
            continue
        key = key_node.value
        if key in out:
            problems.append(_at(filename, key_node.start_mark, json_path(path + (key,)),
                                f"duplicate key {key!r}; each key may appear once"))
            continue
        out[key] = _build(loader, value_node, path + (key,), positions, problems, filename)
        if not isinstance(value_node, ScalarNode):  # a block starts on the next line; point at its key
            mark = key_node.start_mark
            positions[path + (key,)] = Spot(mark.line + 1, mark.column + 1, None)
    return out


_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
# The loader's implicit resolvers (no timestamps) by a plain scalar's first character, with the resolvers
# for any first character appended, as yaml.resolver.Resolver.resolve tries them.
_ANY_FIRST = _Checks.yaml_implicit_resolvers.get(None, [])
_RESOLVERS = {first: tuple(resolvers + _ANY_FIRST) for first, resolvers in _Checks.yaml_implicit_resolvers.items()
              if first is not None}
_SAFE = yaml.constructor.SafeConstructor()


@lru_cache(maxsize=4096)   # keys and enum values repeat in every file: "name", "operator", "true"
def _resolve_plain(value: str) -> str:
    """The tag of a plain scalar without a tag of its own, exactly as the composer's resolver gives it."""
    for tag, regexp in _RESOLVERS.get(value[:1], _ANY_FIRST):
        if regexp.match(value):
            return tag
    return _STR


def _from_events(get_event: Any) -> tuple[Any, Positions]:
    """The single document of a stream of libyaml events as plain data and positions. Raises
    `_Irregular` at the first thing `_Checks.read` would refuse or report; yaml errors as they come."""
    get_event()   # STREAM-START
    if type(get_event()) is not DocumentStartEvent:
        raise _Irregular  # no document: the file is empty
    positions = Positions()
    data = _event_value(get_event, get_event(), 1, (), positions)
    get_event()   # DOCUMENT-END
    if type(get_event()) is not StreamEndEvent:
        raise _Irregular  # a second document
    return data, positions


def _event_value(get_event: Any, event: Any, depth: int, path: Path, positions: Positions) -> Any:
    """The value that starts with `event`, at `depth` (the document is at 1), its events consumed.
    A mapping's scalar values, the most common values by far, are read in its loop."""
    kind = type(event)
    if kind is AliasEvent or event.tag is not None or event.anchor is not None or depth > MAX_DEPTH:
        raise _Irregular
    mark = event.start_mark
    if kind is ScalarEvent:
        value = event.value
        positions[path] = _spot(mark.line + 1, mark.column + 1, value)
        return _plain(value) if event.implicit[0] and value[:1] in _RESOLVERS else value
    positions[path] = _spot(mark.line + 1, mark.column + 1, None)
    depth += 1
    if kind is SequenceStartEvent:
        items: list[Any] = []
        event = get_event()
        while type(event) is not SequenceEndEvent:
            items.append(_event_value(get_event, event, depth, path + (len(items),), positions))
            event = get_event()
        return items
    out: dict[str, Any] = {}
    event = get_event()
    while type(event) is not MappingEndEvent:
        # the key: text, once, at most MAX_DEPTH deep (its value is as deep: a scalar value needs no check)
        if type(event) is not ScalarEvent or event.tag is not None or event.anchor is not None or depth > MAX_DEPTH:
            raise _Irregular   # a key that is a list or a mapping, an alias, tagged, anchored or too deep
        key = event.value
        if key == "<<" or key in out or (event.implicit[0] and key[:1] in _RESOLVERS and
                                         _resolve_plain(key) != _STR):
            raise _Irregular   # a merge key, a duplicate, or a key that is not text (1, true, null)
        key_mark = event.start_mark
        event = get_event()
        at = path + (key,)
        if type(event) is ScalarEvent and event.tag is None and event.anchor is None:
            value = event.value
            mark = event.start_mark
            positions[at] = _spot(mark.line + 1, mark.column + 1, value)
            out[key] = _plain(value) if event.implicit[0] and value[:1] in _RESOLVERS else value
        else:
            out[key] = _event_value(get_event, event, depth, at, positions)
            # a block starts on the next line; point at its key (a flow collection too, as the composer did)
            positions[at] = _spot(key_mark.line + 1, key_mark.column + 1, None)
        event = get_event()
    return out


def _plain(value: str) -> Any:
    """A plain scalar whose first character some implicit resolver takes: text, or a number, a boolean or
    null as SafeConstructor makes them. Raises `_Irregular` for what `_build` reports."""
    tag = _resolve_plain(value)
    if tag == _STR:
        return value
    if tag == _INT or tag == _FLOAT:
        if _number_problem(tag, value) is not None:
            raise _Irregular
        # _number_problem leaves only plain decimals for an int
        return int(value) if tag == _INT else _SAFE.construct_yaml_float(ScalarNode(tag, value))
    if tag == _BOOL:
        return _SAFE.bool_values[value.lower()]
    if tag == _NULL:
        return None
    raise _Irregular   # the merge key's, or another tag no rule file may hold
