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
import unicodedata

# C0 controls, DEL, C1 controls and lone surrogates: never part of any text field.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Invisible formatting characters (Unicode category Cf: zero-width space/joiners, BOM, bidi overrides...).
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")

MAX_ECHO = 120   # characters of a refused value an error message shows


def shorten(value: object, limit: int = MAX_ECHO) -> str:
    """`repr(value)` cut to `limit` characters, so a 10 MB value never ends up in a message whole."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    text = repr(value) if not isinstance(value, (dict, list, tuple)) else type(value).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def text_problem(value: object, max_length: int, *, identifier: bool = False) -> str | None:
    """What is wrong with `value` as a text field of at most `max_length` characters, or None.
    `identifier` (codes, ids) also refuses invisible formatting characters."""
    if not isinstance(value, str):
        return f"must be text; got {shorten(value)}"
    if len(value) > max_length:
        return f"must be at most {max_length} characters; got {len(value)}"
    bad = _FORBIDDEN.search(value) or (_INVISIBLE.search(value) if identifier else None)
    if bad is not None:
        return f"must not contain the character U+{ord(bad.group()):04X} (at position {bad.start()})"
    return None


def normalise_code(code: str) -> str:
    """The one form codes are compared in: surrounding white space trimmed, Unicode NFKC (full-width
    `ＷＥＬＣＯＭＥ` is `WELCOME`), case-folded (`ß` is `SS`), shown in upper case. Two codes with the same
    normal form are the same code."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", code.strip()).casefold())
    return folded.strip().upper()
