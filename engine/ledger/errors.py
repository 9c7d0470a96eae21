"""Why the ledger refused something: the closed set of reason codes, the one table of messages, and the
errors that carry them. A refused reservation names every part that no longer fits (the promotion, code
or balance, and the reason); any other refused request names the order and the reason. Either way the
ledger's tables are exactly as they were."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class LedgerReason(str, Enum):
    # A reservation that no longer fits: the parts of the trace the ledger could not hold.
    USAGE_LIMIT_REACHED = "usage_limit_reached"
    BUDGET_EXHAUSTED = "budget_exhausted"
    CODE_ALREADY_USED = "code_already_used"
    CODE_NOT_PRESENTED = "code_not_presented"
    BALANCE_CHANGED = "balance_changed"
    UNKNOWN_BALANCE = "unknown_balance"
    # A request the ledger cannot carry out as asked.
    UNKNOWN_ORDER = "unknown_order"
    ORDER_RELEASED = "order_released"
    ORDER_EXPIRED = "order_expired"
    ORDER_COMMITTED = "order_committed"
    ORDER_NOT_COMMITTED = "order_not_committed"
    ORDER_REUSED = "order_reused"
    WRONG_RULESET = "wrong_ruleset"
    BAD_TTL = "bad_ttl"
    BAD_REQUEST = "bad_request"
    BAD_RETURN = "bad_return"
    RETURN_NEEDS_REVIEW = "return_needs_review"
    BUSY = "busy"
    TRACE_MISMATCH = "trace_mismatch"
    PREVIEW_TRACE = "preview_trace"
    STALE_TRACE = "stale_trace"
    CLOCK_SKEW = "clock_skew"
    UNAVAILABLE = "unavailable"
    NOT_INITIALISED = "not_initialised"


MESSAGES: dict[LedgerReason, str] = {
    LedgerReason.USAGE_LIMIT_REACHED: "{subject} has reached its usage limit ({limit}).",
    LedgerReason.BUDGET_EXHAUSTED: "{subject} has {left} of its budget left; this order needs {needed}.",
    LedgerReason.CODE_ALREADY_USED: "The single-use code given for {subject} is used or held by another order.",
    LedgerReason.CODE_NOT_PRESENTED: "{subject} needs one of its single-use codes; none was given to reserve().",
    LedgerReason.BALANCE_CHANGED: "{what} has {available} available; the order was priced with {expected}.",
    LedgerReason.UNKNOWN_BALANCE: "{what} is not a balance the ledger holds in {currency}{held_in}: balances are "
                                  "opened only by the ledger's own operations (credit_lot, load_gift_card, set_points).",
    LedgerReason.UNKNOWN_ORDER: "The ledger has no order {order}.",
    LedgerReason.ORDER_RELEASED: "Order {order} was released; reserve it again under a new order id.",
    LedgerReason.ORDER_EXPIRED: "Order {order}'s reservation expired at {expires_at}; reserve it again under a new order id.",
    LedgerReason.ORDER_COMMITTED: "Order {order} is committed: cancel it instead of releasing it.",
    LedgerReason.ORDER_NOT_COMMITTED: "Order {order} is {state}, not committed: only a committed order can be cancelled.",
    LedgerReason.ORDER_REUSED: "Order {order} is already reserved with a different trace; an order id names one checkout.",
    LedgerReason.WRONG_RULESET: "The trace was priced with rule set {got}; the ledger runs {expected}.",
    LedgerReason.BAD_TTL: "The reservation's time to live must be more than zero seconds and at most 7 days; got {ttl}.",
    LedgerReason.BAD_REQUEST: "{detail}",
    LedgerReason.BAD_RETURN: "Order {order}: {detail}",
    LedgerReason.RETURN_NEEDS_REVIEW: "Order {order}: this return would take back {amount} already refunded to "
                                      "{tender}; refund it by hand.",
    LedgerReason.BUSY: "The ledger's database stayed busy through every retry; nothing was changed. Try again.",
    LedgerReason.TRACE_MISMATCH: "The trace differs from what its own inputs evaluate to, first at {field}: it was "
                                 "edited or forged. Evaluate the order again and reserve that trace.",
    LedgerReason.PREVIEW_TRACE: "The trace previews draft or paused promotions ({preview}); a preview is never an order.",
    LedgerReason.STALE_TRACE: "The trace was priced at {priced}, {age} from this reservation's time {now} (at most "
                              "{limit} is accepted); evaluate the order again.",
    LedgerReason.CLOCK_SKEW: "{detail}",
    LedgerReason.UNAVAILABLE: "The ledger's database could not be reached ({detail}); nothing was changed that a "
                              "retry would repeat: retry with the same order id.",
    LedgerReason.NOT_INITIALISED: "{detail}: run `promo ledger init --db …` first.",
}

# Refusals a customer may see. Unknown, expired and used codes read the same (no oracle for guessing codes);
# the detailed reason stays in the trace, the code check and the refusal, for the merchant.
CODE_REFUSED_MESSAGE = "This code can't be used."


def message(reason: LedgerReason, **values: object) -> str:
    return MESSAGES[reason].format(**values)


@dataclass(frozen=True)
class Refusal:
    """One part of a trace the ledger could not hold."""

    kind: str              # promotion | customer | code | balance
    subject: str           # the promotion id, or the balance ("promotional_balance promo-books-nov")
    reason: LedgerReason
    message: str


class LedgerError(ValueError):
    """A request the ledger refused; nothing in the ledger changed."""

    def __init__(self, reason: LedgerReason, order_id: str | None = None, **values: object):
        self.reason = reason
        self.order_id = order_id
        self.field = values.get("field")       # trace_mismatch: the JSON path of the first differing field
        super().__init__(message(reason, order=order_id, **values))


class ReservationRefused(LedgerError):
    """reserve() could not hold everything the trace uses, so it held nothing. `refusals` names each part."""

    def __init__(self, order_id: str, refusals: tuple[Refusal, ...]):
        self.reason = refusals[0].reason
        self.order_id = order_id
        self.field = None
        self.refusals = refusals
        ValueError.__init__(self, f"order {order_id} was not reserved: "
                                  + " ".join(f"[{r.reason.value}] {r.message}" for r in refusals))
