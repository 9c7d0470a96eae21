"""What every `promo` command shares at its edge: the refusal it prints as one line, reading a JSON input
file named by an option, and the `--now` option."""
from __future__ import annotations

import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import PromoError
from .inputs import read_json
from .render import clean_text

NOW_EXAMPLE = "2026-11-21T10:00:00+09:00"


class Refused(Exception):
    """A command refused its input: `message` is what to fix, printed as is; `code` the exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def input_file(path: str | Path, what: str, give: str = "a JSON file", empty: str | None = None) -> Path:
    """An input file named by option `what`, or `Refused` saying what it is instead: missing, not a
    usable name, a directory, not a regular file (a FIFO that would block forever, a device), empty."""
    p = Path(path)
    shown = f"{what} {clean_text(p)}"
    try:
        info = p.stat()
    except OSError as exc:
        raise Refused(f"promo: {shown}: cannot read: {exc.strerror or type(exc).__name__}") from None
    except ValueError:   # an embedded NUL in the path
        raise Refused(f"promo: {shown}: not a usable file name") from None
    if stat.S_ISDIR(info.st_mode):
        raise Refused(f"promo: {shown}: is a directory; give {give}")
    if not stat.S_ISREG(info.st_mode):
        raise Refused(f"promo: {shown}: is not a regular file; give {give}")
    if info.st_size == 0:
        raise Refused(f"promo: {shown}: is empty; give {empty or give}")
    return p


def read_input(path: str | Path, what: str) -> Any:
    """A JSON input file, decoded, or `Refused` naming the option and the file (`input_file`), too
    large, not UTF-8, nested too deeply. Decoding itself (strict JSON) is `read_json`'s."""
    p = input_file(path, what)
    shown = f"{what} {clean_text(p)}"
    try:
        return read_json(p)   # size, encoding, duplicate keys, digits and depth: bounded before and while reading
    except PromoError as exc:
        first = exc.problems[0] if exc.problems else None
        where = f" (line {first.line})" if first is not None and first.line else ""
        raise Refused(f"promo: {shown}{where}: {clean_text(first.message if first else str(exc))}") from None


def now_option(text: str | None) -> str:
    """--now, checked here so that every command refuses it the same way: an ISO 8601 time with a UTC
    offset, far enough from the ends of the calendar that local times and day counts stay in it.
    Without --now, the current time."""
    if text is None:
        return datetime.now(timezone.utc).isoformat(timespec="seconds")
    shown = clean_text(repr(text))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Refused(f"promo: --now {shown} is not an ISO 8601 date and time; e.g. {NOW_EXAMPLE}") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise Refused(f"promo: --now {shown} has no UTC offset; e.g. {NOW_EXAMPLE}")
    try:
        utc = when.astimezone(timezone.utc)
        ok = 1900 <= utc.year <= 9000
    except OverflowError:
        ok = False
    if not ok:
        raise Refused(f"promo: --now {shown} is out of range; give a time between the years 1900 and 9000")
    return text


