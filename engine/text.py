"""Text at the trust boundary: which characters a text field may hold, how long it may be, how codes are
normalised, and how much of a hostile value an error message may echo.

Every text field of a rule file, cart, account, code list or ledger call is held to the same rules:
no control characters (C0, DEL, C1: a NUL, a newline or an escape sequence is never part of a
category, a SKU or a name), no lone surrogates (they cannot be stored or printed), and a length bound
that the ledger's columns can hold. Codes and identifiers additionally refuse invisible formatting
characters (zero-width spaces and joiners, bidirectional overrides), so that two codes that look the
same are the same.
"""
from __future__ import annotations

import re
import reprlib
import unicodedata
from datetime import datetime, timezone

# C0 controls, DEL, C1 controls and lone surrogates: never part of any text field.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")   # + bidi overrides
# Invisible formatting characters (Unicode category Cf: zero-width space/joiners, BOM, bidi overrides...).
FORBIDDEN = _FORBIDDEN   # what no text field may hold (the schemas' quick check uses it too)
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")

MAX_ECHO = 120   # characters of a refused value an error message shows

# Numbers: Python refuses to turn an int of more than 4,300 digits into text (and an error message that
# shows such a value would raise instead), and none of our fields needs more than 13. A number of more
# than this many digits is refused wherever a document comes in.
MAX_NUMBER_DIGITS = 30
_BIG = 10 ** MAX_NUMBER_DIGITS

# The instants promo-engine accepts anywhere: `now`, promotion windows, lot dates, a grant's expiry.
# Every conversion the engine and the ledger make (to a customer's local time, ± a UTC offset, plus a
# grant's `after_days`) stays inside Python's datetime range for instants in it.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)    # inclusive
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)      # exclusive


def instant_problem(moment: datetime) -> str | None:
    """Why an aware instant is outside the accepted range, or None."""
    if EARLIEST <= moment < LATEST:
        return None
    return f"{moment.isoformat()} is outside the accepted range (from 1970-01-01T00:00Z up to, not including, 2200-01-01T00:00Z)"


def big_number(value: object) -> bool:
    """An int (not a bool) of more than MAX_NUMBER_DIGITS digits: refused before anything prints it."""
    return isinstance(value, int) and not isinstance(value, bool) and not -_BIG < value < _BIG


class _Repr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        return shorten(x) if big_number(x) else repr(x)


_REPR = _Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 3, 4, 4, 4, 4
_REPR.maxstring = _REPR.maxother = MAX_ECHO


def shorten(value: object, limit: int = MAX_ECHO) -> str:
    """`repr(value)` cut to `limit` characters, so a 10 MB value never ends up in a message whole.
    Containers show their first few items only, and a huge number its size, never its digits."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"a {value.bit_length()}-bit number"   # repr() of a 5,000-digit int raises ValueError
    if big_number(value):
        return f"a number of about {int(abs(value).bit_length() * 0.30103)} digits"
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        text = _REPR.repr(value)
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# A promotion's `description` (notes for marketers, never shown or matched) may hold line breaks and tabs.
_FORBIDDEN_BUT_BREAKS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def forbidden_character(value: str, line_breaks: bool = False) -> str | None:
    """Why `value` may not be any text field (a control character or a lone surrogate), or None.
    With `line_breaks`, a newline or a tab is allowed (schemas mark such fields "x-line-breaks": true)."""
    bad = (_FORBIDDEN_BUT_BREAKS if line_breaks else _FORBIDDEN).search(value)
    if bad is None:
        return None
    return f"must not contain the character U+{ord(bad.group()):04X} (at position {bad.start()})"


def text_problem(value: object, max_length: int, *, identifier: bool = False) -> str | None:
    """What is wrong with `value` as a text field of at most `max_length` characters, or None.
    `identifier` (codes, ids) also refuses invisible formatting characters."""
    if not isinstance(value, str):
        return f"must be text; got {shorten(value)}"
    if len(value) > max_length:
        return f"must be at most {max_length} characters; got {len(value)}"
    problem = forbidden_character(value)
    if problem is None and identifier:
        bad = _INVISIBLE.search(value)
        if bad is not None:
            problem = f"must not contain the invisible character U+{ord(bad.group()):04X} (at position {bad.start()})"
    return problem


def normalise_code(code: str) -> str:
    """The one form codes are compared in: surrounding white space trimmed, Unicode NFKC (full-width
    `ＷＥＬＣＯＭＥ` is `WELCOME`), case-folded (`ß` is `SS`), shown in upper case. Two codes with the same
    normal form are the same code."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", code.strip()).casefold())
    return folded.strip().upper()
