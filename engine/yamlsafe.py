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
from pathlib import Path
from typing import Any

import yaml
import yaml.composer
import yaml.constructor
import yaml.resolver
if getattr(yaml, "__with_libyaml__", False):
    import yaml.cyaml
from yaml.events import AliasEvent
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


class Positions(dict):
    """JSON path tuple -> Spot. `locate()` falls back to the nearest enclosing value."""

    def locate(self, path: Path) -> Spot:
        path = tuple(path)
        while path not in self and path:
            path = path[:-1]
        return self.get(path, Spot(1, 1, None))


# libyaml's C parser when PyYAML has it (it parses a rule file several times faster), under our own
# Python composer below either way, so the refusals and positions are the same.
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


class _PyLoader(_Checks, yaml.SafeLoader):
    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0


if _Parser is not None:
    class _CLoader(_Checks, yaml.composer.Composer, _Parser, yaml.constructor.SafeConstructor,  # type: ignore
                   yaml.resolver.Resolver):
        def __init__(self, stream: str):
            _Parser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._depth = 0

    _Loader: type = _CLoader
else:
    _Loader = _PyLoader


class _Refused(Exception):
    def __init__(self, message: str, mark: Any):
        super().__init__(message)
        self.message = message
        self.mark = mark


def read_capped(path: Path, limit: int, follow_links: bool = True) -> bytes | None:
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
        node = loader.get_single_node()
        if node is None:
            raise YamlProblems([Problem(filename, 1, 1, "$", "file is empty")])
        positions = Positions()
        problems: list[Problem] = []
        data = _build(loader, node, (), positions, problems, filename)
        if problems:
            raise YamlProblems(problems)
        return data, positions
    except _Refused as exc:
        raise YamlProblems([_at(filename, exc.mark, "$", exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise YamlProblems([_at(filename, mark, "$", f"not valid YAML: {_short(message)}")]) from None
    except yaml.YAMLError as exc:
        raise YamlProblems([Problem(filename, 1, 1, "$", f"not valid YAML: {_short(str(exc))}")]) from None
    finally:
        loader.dispose()


class YamlProblems(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:200] + "..."


_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_DECIMAL_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")


def _number_problem(node: ScalarNode) -> str | None:
    """Why a bare number is refused: a YAML 1.1 reading nobody means, or too many digits."""
    text = node.value
    if node.tag == _INT and not _DECIMAL_INT.fullmatch(text):
        if ":" in text:
            return (f"YAML 1.1 reads {text} as a base-60 number ({loader_int(text)}); put it in quotes if you mean "
                    f"the text, e.g. \"{text}\"")
        if text.lstrip("+-").startswith(("0x", "0o", "0b")) or "_" in text:
            return (f"YAML 1.1 reads {shorten(text)} as the number {loader_int(text)}; write the number in plain "
                    f"decimals, or put it in quotes if you mean the text")
        return (f"YAML 1.1 reads {text} as the octal number {loader_int(text)}; write it without the leading "
                f"zero ({text.lstrip('+-').lstrip('0') or '0'}), or put it in quotes if you mean the text, "
                f"e.g. \"{text}\"")
    if node.tag == _FLOAT and ":" in text:
        return f"YAML 1.1 reads {text} as a base-60 number; put it in quotes, e.g. \"{text}\""
    if node.tag in (_INT, _FLOAT) and sum(c.isdigit() for c in text) > MAX_NUMBER_DIGITS:
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


def _build(loader: _Loader, node: Node, path: Path, positions: Positions,
           problems: list[Problem], filename: str) -> Any:
    mark = node.start_mark
    if isinstance(node, ScalarNode):
        positions[path] = Spot(mark.line + 1, mark.column + 1, node.value)
        if node.tag not in _PLAIN_TAGS:
            problems.append(_at(filename, mark, json_path(path), f"YAML tag {shorten(node.tag)} is not allowed"))
            return None
        problem = _number_problem(node)
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
