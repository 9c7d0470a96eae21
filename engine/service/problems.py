"""Every error the service answers with: an `application/problem+json` body (RFC 9457) with `type`,
`title`, `status`, `detail`, a `reason` code, and, where the engine or the ledger found them, `problems`
(each with its JSON path in the request body) and `refusals` (each part of a checkout that no longer
fits). One table maps each kind of failure to its status and title, so that a client can branch on
`reason` and a person can read `detail`. No response carries a stack trace or an exception's repr.
"""
from __future__ import annotations

import json
from typing import Any

from ..errors import PromoError
from ..ledger import LedgerError, LedgerReason, ReservationRefused

PROBLEM_TYPE = "https://promo-engine.dev/problems/"
MEDIA_TYPE = "application/problem+json"

# The service's own reasons, beside the engine's (`invalid_input`) and the ledger's (LedgerReason).
STATUS: dict[str, tuple[int, str]] = {
    "malformed_http": (400, "The request is not valid HTTP"),
    "malformed_json": (400, "The request body is not valid JSON"),
    "invalid_request": (400, "The request body does not have the fields this endpoint takes"),
    "invalid_input": (400, "The cart, account, codes or time were refused"),
    "unauthorized": (401, "An API key is needed"),
    "forbidden": (403, "This API key's scope does not allow this request"),
    "not_found": (404, "No such resource"),
    "method_not_allowed": (405, "This method is not allowed here"),
    "too_large": (413, "The request body is larger than the service accepts"),
    "unsupported_media_type": (415, "The request body must be application/json"),
    "rules_refused": (422, "The rule set has problems; the rules already loaded keep serving"),
    "no_ledger": (503, "This service runs without a ledger"),
    "timeout": (503, "The request took longer than the service allows"),
    "internal_error": (500, "The service failed; the request id names it in the service's log"),
}

# The ledger's reasons: what the client should do next decides the status.
LEDGER_STATUS: dict[LedgerReason, int] = {
    LedgerReason.USAGE_LIMIT_REACHED: 409, LedgerReason.BUDGET_EXHAUSTED: 409, LedgerReason.CODE_ALREADY_USED: 409,
    LedgerReason.CODE_NOT_PRESENTED: 409, LedgerReason.BALANCE_CHANGED: 409, LedgerReason.UNKNOWN_BALANCE: 409,
    LedgerReason.UNKNOWN_ORDER: 404,
    LedgerReason.ORDER_RELEASED: 409, LedgerReason.ORDER_EXPIRED: 409, LedgerReason.ORDER_COMMITTED: 409,
    LedgerReason.ORDER_NOT_COMMITTED: 409, LedgerReason.ORDER_REUSED: 409, LedgerReason.WRONG_RULESET: 409,
    LedgerReason.RETURN_NEEDS_REVIEW: 409, LedgerReason.TRACE_MISMATCH: 409, LedgerReason.PREVIEW_TRACE: 409,
    LedgerReason.STALE_TRACE: 409,
    LedgerReason.BAD_TTL: 400, LedgerReason.BAD_REQUEST: 400, LedgerReason.BAD_RETURN: 400,
    LedgerReason.BUSY: 503, LedgerReason.UNAVAILABLE: 503, LedgerReason.CLOCK_SKEW: 503,
    LedgerReason.NOT_INITIALISED: 503,
}


class ServiceError(Exception):
    """A request the service refuses, as the problem it answers with. (Not a frozen dataclass: Python
    writes `__traceback__` and `__context__` onto an exception as it travels.)"""

    def __init__(self, reason: str, detail: str, status: int = 0, title: str = "",
                 problems: tuple[dict[str, str], ...] = (), refusals: tuple[dict[str, str], ...] = (),
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status            # 0: the reason's status in STATUS
        self.title = title
        self.problems = problems
        self.refusals = refusals
        self.headers = headers or {}

    @property
    def code(self) -> int:
        return self.status or STATUS[self.reason][0]

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": PROBLEM_TYPE + self.reason.replace("_", "-"),
                               "title": self.title or STATUS[self.reason][1], "status": self.code,
                               "detail": self.detail, "reason": self.reason}
        if self.problems:
            out["problems"] = list(self.problems)
        if self.refusals:
            out["refusals"] = list(self.refusals)
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.body(), ensure_ascii=False, sort_keys=True).encode()


def body_path(source: str, path: str) -> str:
    """A problem's JSON path inside the request body: the engine reports `$.lines[0].unit_price` in
    `cart`; the client sent it at `$.cart.lines[0].unit_price`."""
    rest = path[1:] if path.startswith("$") else "." + path
    return f"$.{source}{rest}"


def from_input_error(exc: PromoError, reason: str = "invalid_input") -> ServiceError:
    problems = tuple({"path": body_path(p.file, p.path), "message": p.message} for p in exc.problems)
    detail = str(exc).split("\n", 1)[0]
    return ServiceError(reason, detail, problems=problems)


def from_ledger_error(exc: LedgerError) -> ServiceError:
    status = LEDGER_STATUS[exc.reason]
    headers = {"Retry-After": "1"} if status == 503 else {}
    if isinstance(exc, ReservationRefused):
        refusals = tuple({"kind": r.kind, "subject": r.subject, "reason": r.reason.value, "message": r.message}
                         for r in exc.refusals)
        return ServiceError(exc.reason.value, "The checkout was refused: nothing was reserved.", status,
                            "The ledger could not hold everything this order uses", refusals=refusals,
                            headers=headers)
    return ServiceError(exc.reason.value, str(exc), status, "The ledger refused the request", headers=headers)
