"""The cart corpus: JSON Lines, one cart a line, read as a stream for backtesting (`promo diff`).

A line is one JSON object `{"cart", "account", "codes"?, "now", "id"?}`: exactly what `evaluate()`
takes, plus an optional id for reports. Lines are read one at a time and never more than
MAX_LINE_BYTES of a line is held: a longer line is an error for that line, and the rest of it is
skipped in small pieces. Each line is decoded with the engine's strict JSON rules (`decode_json`:
duplicate keys, NaN, depth, digits). A bad line is a `CorpusError` naming its line number and field,
yielded as data: whoever reads the corpus decides whether to stop or to count it and go on.
Blank lines are ignored (a trailing newline, or lines spaced for reading).

A corpus can also be read in byte ranges, each on its own (`promo diff --read-on-workers`: every Dask
worker opens the file and reads its part). A range [start, end) holds the lines that START inside it:
`read_range` skips the partial line it begins in and reads on while a line's first byte is before
`end`, so ranges cut anywhere read every line exactly once, an over-long line included (one
CorpusError, from the range its first byte is in). `count_line_starts` counts a range's lines without
decoding anything (newlines in bounded blocks, at disk speed), so that the first line number of each
range is the sum of the counts before it; read with that number, the ranges give exactly what
`read_lines` gives for the whole file. Both refuse a file whose size is not the size the run began
with (`CorpusChanged`).
"""
from __future__ import annotations

import errno
import json
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generator, Iterator, Mapping

from .errors import PromoError
from .inputs import decode_json
from .text import text_problem

MAX_LINE_BYTES = 1024 * 1024        # a 1,000-line cart is about 250 KiB
KEYS = ("cart", "account", "codes", "now", "id")
REQUIRED = ("cart", "account", "now")
MAX_ID_LENGTH = 128
ON_ERROR = ("stop", "skip")
_CHUNK = 64 * 1024
_COUNT_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class CorpusEntry:
    """One cart to replay: `line` is its line number in the corpus (from 1), `id` its id or None.
    `cart` and `account` are decoded JSON, handed to evaluate() as they are (and never mutated). `raw`
    is the line it was decoded from, already checked (None for an entry built in code): what a Dask
    worker is sent instead of the decoded objects, which cost more to pickle than to decode again."""

    line: int
    id: str | None
    cart: Mapping[str, Any]
    account: Mapping[str, Any]
    codes: tuple[str, ...]
    now: str
    # Set by parse_line only, never by the constructor: dataclasses.replace() of an entry builds a new
    # one through __init__, which drops it, so a line never stands for a cart it no longer holds.
    raw: bytes | None = field(default=None, init=False, compare=False, repr=False)

    def line_bytes(self) -> bytes:
        """The entry as one corpus line: the line it was read from, or written afresh (entry_line)."""
        return self.raw if self.raw is not None else entry_line(self.to_dict())

    @property
    def label(self) -> str:
        """How reports name the cart: its id, or its line number when it has none."""
        return self.id if self.id is not None else f"line {self.line}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cart": self.cart, "account": self.account, "codes": list(self.codes), "now": self.now}
        if self.id is not None:
            out["id"] = self.id
        return out


class CorpusError(ValueError):
    """A corpus line that cannot be replayed: its line number, the field ("$" for the line itself,
    a JSON path such as `$.cart.lines[2].unit_price` inside it) and what is wrong."""

    def __init__(self, source: str, line: int, field: str, message: str):
        self.source, self.line, self.field, self.message = source, line, field, message
        super().__init__(f"{source}: line {line}: {field}: {message}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CorpusError) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple:
        return (self.source, self.line, self.field, self.message)

    def __reduce__(self) -> tuple:
        """Pickled (sent to or from a Dask worker) with its four parts, not the one-string args."""
        return (CorpusError, self._key())


class CorpusChanged(Exception):
    """The corpus file is not the one the run began with: another size than the one given, or a range
    holding another number of lines than it did when they were counted. `detail` says which."""

    def __init__(self, path: str, detail: str):
        self.path, self.detail = path, detail
        super().__init__(f"{path}: the corpus changed while it was replayed: {detail}")

    def __reduce__(self) -> tuple:
        return (CorpusChanged, (self.path, self.detail))


def read_corpus(path: str | Path) -> Iterator[CorpusEntry | CorpusError]:
    """Every line of the corpus file, in order: a CorpusEntry, or the CorpusError that says why the
    line is not one. Opening the file is the caller's to check (OSError otherwise)."""
    with open(path, "rb") as stream:
        yield from read_stream(stream, str(path))


def read_stream(stream: IO[bytes], source: str) -> Iterator[CorpusEntry | CorpusError]:
    for item in read_lines(stream, source):
        yield item if isinstance(item, CorpusError) else parse_line(item[1], source, item[0])


def read_lines(stream: IO[bytes], source: str) -> Iterator[tuple[int, bytes] | CorpusError]:
    """The corpus split into lines, not yet decoded: (line number, bytes) for each line that is not
    blank, or the CorpusError of an over-long one. `promo diff --workers` reads this on the client and
    leaves the decoding (parse_line) to the workers, so that lines keep their numbers wherever they are
    decoded."""
    yield from _numbered_lines(stream, source, 1, 0, None)


def read_range(path: str | Path, start: int, end: int, first_line: int, source: str, *, size: int | None = None,
               lines: int | None = None) -> Iterator[tuple[int, bytes] | CorpusError]:
    """What read_lines yields for the lines that start in bytes [start, end) of the file, numbered from
    `first_line` (the number of the first line starting at or after `start`). `size`: the file's size
    when the run began, `lines`: how many lines count_line_starts found in the range; either differing
    now raises CorpusChanged. Opening or reading the file raises OSError."""
    with _opened(path, size) as stream:
        position = start
        if start > 0:                       # the range's lines begin after the first newline at or after start-1
            stream.seek(start - 1)
            position = start - 1 + _skip_rest(stream)
        read = yield from _numbered_lines(stream, source, first_line, position, end)
    if lines is not None and read != lines:
        raise CorpusChanged(str(path), f"bytes {start} to {end} held {lines} lines when counted, {read} when read")


def count_line_starts(path: str | Path, start: int, end: int, *, size: int | None = None) -> int:
    """How many lines start in bytes [start, end) of the file (blank and over-long lines too), read in
    bounded blocks and never decoded: the lines read_range(path, start, end, ...) reads. A line starts at
    byte 0 and after every newline that is not the file's last byte."""
    with _opened(path, size) as stream:
        stop = min(end, os.fstat(stream.fileno()).st_size)
        if start >= stop:
            return 0
        count = 1 if start == 0 else 0
        position = max(start, 1) - 1        # a line starts at p when byte p-1 is a newline: count bytes [start-1, stop-1)
        stream.seek(position)
        while position < stop - 1:
            block = stream.read(min(_COUNT_BLOCK, stop - 1 - position))
            if not block:
                break
            count += block.count(b"\n")
            position += len(block)
        return count


def _numbered_lines(stream: IO[bytes], source: str, number: int, position: int,
                    end: int | None) -> Generator[tuple[int, bytes] | CorpusError, None, int]:
    """The one loop that splits a corpus into lines: from the line starting at byte `position` of the
    stream, numbered `number`, while a line's first byte is before `end` (None: to the end). Returns how
    many lines it read, blank and over-long ones included."""
    read = 0
    while end is None or position < end:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            break
        line = number + read
        read += 1
        position += len(raw)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            rest = _skip_rest(stream)
            position += rest
            yield CorpusError(source, line, "$", f"line is {len(raw) + rest} bytes; at most {MAX_LINE_BYTES} "
                                                 f"(1 MiB) are read")
            continue
        if not raw.strip():
            continue
        yield line, raw
    return read


@contextmanager
def _opened(path: str | Path, size: int | None) -> Iterator[IO[bytes]]:
    """The corpus file opened for reading, when it is a regular file of `size` bytes (if given). Opened
    without blocking, so that a FIFO put in its place is refused rather than waited on."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "is not a regular file", str(path))
        if size is not None and info.st_size != size:
            raise CorpusChanged(str(path), f"it is {info.st_size} bytes, {size} when the run began")
        os.set_blocking(fd, True)
        stream = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with stream:
        yield stream


def _skip_rest(stream: IO[bytes]) -> int:
    """Reads past the rest of a line (an over-long one, or the partial line a range begins in) in bounded
    pieces, its newline included; returns how many bytes it skipped."""
    skipped = 0
    while True:
        piece = stream.readline(_CHUNK)
        skipped += len(piece)
        if not piece or piece.endswith(b"\n"):
            return skipped


def parse_line(raw: bytes, source: str, number: int) -> CorpusEntry | CorpusError:
    """One corpus line's bytes as an entry, or the error naming its field."""
    def error(field: str, message: str) -> CorpusError:
        return CorpusError(source, number, field, message)

    try:
        doc = decode_json(raw, f"{source} line {number}")
    except PromoError as exc:
        first = exc.problems[0] if exc.problems else None
        return error("$", first.message if first else str(exc))
    if not isinstance(doc, dict):
        return error("$", f"must be a JSON object {{\"cart\", \"account\", \"now\", ...}}; got {_kind(doc)}")
    unknown = sorted(set(doc) - set(KEYS))
    if unknown:
        return error(f"$.{_key(unknown[0])}", f"unknown key; a line has only {', '.join(KEYS)}")
    for key in REQUIRED:
        if key not in doc:
            return error(f"$.{key}", "missing; every line gives cart, account and now")
    for key in ("cart", "account"):
        if not isinstance(doc[key], dict):
            return error(f"$.{key}", f"must be a JSON object; got {_kind(doc[key])}")
    if not isinstance(doc["now"], str):
        return error("$.now", f"must be an ISO 8601 time with offset as a string; got {_kind(doc['now'])}")
    codes = doc.get("codes", [])
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        return error("$.codes", "must be a list of code strings")
    entry_id = doc.get("id")
    if entry_id is not None:
        problem = text_problem(entry_id, MAX_ID_LENGTH) if isinstance(entry_id, str) else "must be a string"
        if problem is None and not entry_id:
            problem = "must not be empty"
        if problem is not None:
            return error("$.id", problem)
    entry = CorpusEntry(line=number, id=entry_id, cart=doc["cart"], account=doc["account"], codes=tuple(codes),
                        now=doc["now"])
    object.__setattr__(entry, "raw", raw)
    return entry


def _key(key: str) -> str:
    """An unknown key as it is shown in a path: cleaned of control characters, at most 40 characters."""
    text = "".join(c if c.isprintable() else "?" for c in key)
    return text if len(text) <= 40 else text[:39] + "…"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}.get(
        type(value), "a number")


def entry_line(entry: Mapping[str, Any]) -> bytes:
    """One corpus line as written: compact JSON, sorted keys, UTF-8, newline-terminated, so that the same
    entries always give the same bytes."""

    return (json.dumps(entry, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
