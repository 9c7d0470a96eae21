"""Single-use codes: generating them, their canonical form and hash, and what a customer is told.

A code is 16 symbols from a 31-symbol alphabet without look-alikes (no 0/O, 1/I/L), shown in groups of
four (`K7QX-M3HD-9WTR-BC4N`), optionally after a prefix (`SPRING-K7QX-…`): about 79 bits from
`secrets`, so even a million live codes leave a guesser one chance in 10^17 per try. The ledger stores
only a SHA-256 of the canonical form (upper case, no spaces or hyphens); the plain codes exist once, in
the file `promo codes generate` writes. Codes are matched case-insensitively, with or without hyphens.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import Enum

from ..reasons import Reason
from ..trace import CodeResult, NotApplied
from .errors import CODE_REFUSED_MESSAGE, Refusal

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
SYMBOLS = 16
GROUP = 4
PREFIX = re.compile(r"^[A-Z0-9]{1,12}$")
MAX_COUNT = 1_000_000


def generate(count: int, prefix: str | None = None) -> list[str]:
    """`count` fresh codes (distinct within the batch)."""
    out: set[str] = set()
    while len(out) < count:
        body = "".join(secrets.choice(ALPHABET) for _ in range(SYMBOLS))
        groups = [body[i:i + GROUP] for i in range(0, SYMBOLS, GROUP)]
        out.add("-".join(([prefix] if prefix else []) + groups))
    return sorted(out)


def canonical(code: str) -> str:
    return re.sub(r"[\s-]", "", code).upper()


def code_hash(code: str) -> str:
    return hashlib.sha256(b"promo-engine single-use code\0" + canonical(code).encode()).hexdigest()


def looks_like_pool_code(code: str) -> bool:
    """Cheap pre-check before a database look-up: long enough and nothing outside letters and digits."""
    text = canonical(code)
    return len(text) >= SYMBOLS and text.isalnum() and text.isascii()


class CodeStatus(str, Enum):
    SHARED = "shared"                        # a promotion's shared code: evaluate() matches it itself
    POOL = "pool"                            # an unused single-use code, resolved to its promotion
    UNKNOWN_CODE = "unknown_code"
    EXPIRED = "expired"                      # its promotion is over (the trace says so too)
    CODE_ALREADY_USED = "code_already_used"  # held by a checkout or redeemed


@dataclass(frozen=True)
class CodeCheck:
    """What the ledger found for one entered code. `status` is the merchant's detail; the customer sees
    `customer_message()`."""

    entered: str
    status: CodeStatus
    promotion: str | None = None


@dataclass(frozen=True)
class CodeResolution:
    """Entered codes made ready for checkout: `codes` go to evaluate(); `pool_codes` to reserve()."""

    codes: tuple[str, ...]
    pool_codes: tuple[str, ...]
    checks: tuple[CodeCheck, ...]


# Reasons that make a code promotion unusable for this customer now: told as the same one sentence.
CODE_GATES = {Reason.UNKNOWN_CODE, Reason.EXPIRED, Reason.NOT_STARTED, Reason.NOT_ACTIVE, Reason.USAGE_LIMIT_REACHED}


def customer_message(result: CodeCheck | CodeResult | NotApplied | Refusal) -> str | None:
    """The one text a customer sees for a code that cannot be used, whatever the reason: unknown, expired
    and already used read the same, so the answer is no oracle for guessing codes. The detailed reason
    stays in the `CodeCheck`, the trace or the `Refusal` for the merchant. None: nothing to tell."""
    if isinstance(result, CodeCheck):
        refused = result.status not in (CodeStatus.SHARED, CodeStatus.POOL)
    elif isinstance(result, CodeResult):
        refused = result.status != "matched"
    elif isinstance(result, NotApplied):
        refused = result.code is not None and result.reason in CODE_GATES
    elif isinstance(result, Refusal):
        refused = result.kind == "code"
    else:
        raise TypeError(f"customer_message() takes a code check, code result, not-applied entry or refusal, "
                        f"not {type(result).__name__}")
    return CODE_REFUSED_MESSAGE if refused else None
