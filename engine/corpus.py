"""The cart corpus: JSON Lines, one cart a line, read as a stream for backtesting (`promo diff`).

A line is one JSON object `{"cart", "account", "codes"?, "now", "id"?}`: exactly what `evaluate()`
takes, plus an optional id for reports. Lines are read one at a time and never more than
MAX_LINE_BYTES of a line is held: a longer line is an error for that line, and the rest of it is
skipped in small pieces. Each line is decoded with the engine's strict JSON rules (`decode_json`:
duplicate keys, NaN, depth, digits). A bad line is a `CorpusError` naming its line number and field,
yielded as data: whoever reads the corpus decides whether to stop or to count it and go on.
Blank lines are ignored (a trailing newline, or lines spaced for reading).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

from .errors import PromoError
from .inputs import decode_json
from .text import text_problem

MAX_LINE_BYTES = 1024 * 1024        # a 1,000-line cart is about 250 KiB
KEYS = ("cart", "account", "codes", "now", "id")
REQUIRED = ("cart", "account", "now")
MAX_ID_LENGTH = 128
ON_ERROR = ("stop", "skip")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class CorpusEntry:
    """One cart to replay: `line` is its line number in the corpus (from 1), `id` its id or None.
    `cart` and `account` are decoded JSON, handed to evaluate() as they are (and never mutated)."""

    line: int
    id: str | None
    cart: Mapping[str, Any]
    account: Mapping[str, Any]
    codes: tuple[str, ...]
    now: str

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
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            size = len(raw) + _skip_rest(stream)
            yield CorpusError(source, number, "$", f"line is {size} bytes; at most {MAX_LINE_BYTES} "
                                                   f"(1 MiB) are read")
            continue
        if not raw.strip():
            continue
        yield number, raw


def _skip_rest(stream: IO[bytes]) -> int:
    """Reads past the rest of an over-long line in bounded pieces; returns how many bytes it skipped."""
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
    return CorpusEntry(line=number, id=entry_id, cart=doc["cart"], account=doc["account"], codes=tuple(codes),
                       now=doc["now"])


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
