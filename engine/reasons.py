"""Why a promotion did not apply: the closed set of reason codes, and the one table of messages.

Messages are rendered from these templates only; amounts arrive already formatted for the currency.
"""
from __future__ import annotations

from enum import Enum


class Reason(str, Enum):
    NOT_ACTIVE = "not_active"
    CURRENCY_MISMATCH = "currency_mismatch"
    NOT_STARTED = "not_started"
    EXPIRED = "expired"
    CODE_NOT_ENTERED = "code_not_entered"
    USAGE_LIMIT_REACHED = "usage_limit_reached"
    BUDGET_EXHAUSTED = "budget_exhausted"
    NO_ELIGIBLE_ITEMS = "no_eligible_items"
    REGION_NOT_ELIGIBLE = "region_not_eligible"
    CHANNEL_NOT_ELIGIBLE = "channel_not_eligible"
    TIER_NOT_ELIGIBLE = "tier_not_eligible"
    SEGMENT_NOT_ELIGIBLE = "segment_not_eligible"
    FIRST_ORDER_NOT_ELIGIBLE = "first_order_not_eligible"   # first orders only, or returning customers only
    CONDITION_FAILED = "condition_failed"
    MIN_SPEND_NOT_MET = "min_spend_not_met"
    MIN_QUANTITY_NOT_MET = "min_quantity_not_met"
    LOST_TO_EXCLUSIVE = "lost_to_exclusive"
    NOT_BEST_ON_ANY_LINE = "not_best_on_any_line"
    NOTHING_LEFT_TO_DISCOUNT = "nothing_left_to_discount"
    BUDGET_WOULD_OVERRUN = "budget_would_overrun"
    GET_ITEMS_MISSING = "get_items_missing"
    NO_ELIGIBLE_SHIPMENT = "no_eligible_shipment"          # a shipping benefit: no shipment it targets
    NOTHING_LEFT_ON_SHIPPING = "nothing_left_on_shipping"  # its shipments already cost nothing (or its price)
    UNKNOWN_CODE = "unknown_code"


MESSAGES: dict[Reason, str] = {
    Reason.NOT_ACTIVE: "{name} is {status}, not active.",
    Reason.CURRENCY_MISMATCH: "{name} is for carts in {promotion_currency}; this cart is in {currency}.",
    Reason.NOT_STARTED: "{name} starts at {starts}.",
    Reason.EXPIRED: "{name} ended at {ends}.",
    Reason.CODE_NOT_ENTERED: "{name} needs a promo code.",
    Reason.USAGE_LIMIT_REACHED: "{name} has reached its usage limit ({limit}).",
    Reason.BUDGET_EXHAUSTED: "{name} has used up its budget of {budget}.",
    Reason.NO_ELIGIBLE_ITEMS: "Nothing in the cart is eligible for {name}.",
    Reason.REGION_NOT_ELIGIBLE: "{name} is not available in {region}.",
    Reason.CHANNEL_NOT_ELIGIBLE: "{name} is not available on the {channel} channel.",
    Reason.TIER_NOT_ELIGIBLE: "{name} is for other customer tiers.",
    Reason.SEGMENT_NOT_ELIGIBLE: "{name} is for other customer segments.",
    Reason.FIRST_ORDER_NOT_ELIGIBLE: "{name} is not available for this customer's order history.",
    Reason.CONDITION_FAILED: "The cart or account does not meet the terms of {name}.",
    Reason.MIN_SPEND_NOT_MET: "{name} needs {required} {what}; the cart has {measured} ({shortfall} short).",
    Reason.MIN_QUANTITY_NOT_MET: "{name} needs {required} {what}; the cart has {measured} ({shortfall} short).",
    Reason.LOST_TO_EXCLUSIVE: "{name} cannot be combined: {winner} {why}.",
    Reason.NOT_BEST_ON_ANY_LINE: "{name} does not add to other {stacking_class} discounts on a line, and on every "
                                 "line it could discount {winner} takes off more (or as much, and goes first).",
    Reason.NOTHING_LEFT_TO_DISCOUNT: "{name} would take nothing off: its items are already at or below what it offers.",
    Reason.BUDGET_WOULD_OVERRUN: "{name} has {left} of its budget left, less than the {amount} it would take off "
                                 "this order; it does not give part of a discount.",
    Reason.GET_ITEMS_MISSING: "{name} needs {required} of {what} to give; the cart has {measured}.",
    Reason.NO_ELIGIBLE_SHIPMENT: "{name} is for {shipments}; the cart has none.",
    Reason.NOTHING_LEFT_ON_SHIPPING: "{name} would take nothing off: {shipping} already costs {cost}.",
    Reason.UNKNOWN_CODE: "The code {code} is not valid.",
}

HINTS: dict[str, str] = {
    "spend": "Add {shortfall} more of eligible items to get {name}.",
    "cart_spend": "Add {shortfall} more to your cart to get {name}.",
    "quantity": "Add {shortfall} more eligible item{plural} to get {name}.",
    "next_tier_spend": "Add {shortfall} more of eligible items to get the next tier of {name}.",
    "next_tier_quantity": "Add {shortfall} more eligible item{plural} to get the next tier of {name}.",
    "item": "Add {count} × {item} to get {name}.",
}


# Why the winning outcome beat a losing one, by the first criterion of the resolution policy
# (evaluate.RESOLUTIONS) on which they differ; the criteria before it were equal.
WON_BY: dict[str, str] = {
    "value": "saves more",
    "priority": "has the higher priority",
    "id": "comes first by id",
}
TIED_ON: dict[str, str] = {
    "value": "saves the same",
    "priority": "has the same priority",
}
WON_TIE_BY: dict[str, str] = {
    "value": "by saving more",
    "priority": "by its higher priority",
    "id": "by its id, which sorts first",
}


def why_won(criteria: tuple[str, ...], deciding: str) -> str:
    """'saves more and was applied instead', or for a tie, what was equal and what broke the tie."""
    ties = criteria[:criteria.index(deciding)]
    if not ties:
        return f"{WON_BY[deciding]} and was applied instead"
    return f"{' and '.join(TIED_ON[t] for t in ties)}, and won the tie {WON_TIE_BY[deciding]}, so it was applied instead"


def message(reason: Reason, **values: object) -> str:
    return MESSAGES[reason].format(**values)


def hint(kind: str, **values: object) -> str:
    return HINTS[kind].format(**values)


class TenderReason(str, Enum):
    """Why a promotional balance lot, the gift card balance or points paid nothing for this order."""

    CURRENCY_MISMATCH = "currency_mismatch"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    EMPTY = "empty"
    NOT_REQUESTED = "not_requested"
    NO_ELIGIBLE_ITEMS = "no_eligible_items"
    NOTHING_LEFT_TO_PAY = "nothing_left_to_pay"
    LESS_THAN_ONE_POINT = "less_than_one_point"


TENDER_MESSAGES: dict[TenderReason, str] = {
    TenderReason.CURRENCY_MISMATCH: "{what} is in {tender_currency}; this cart is in {currency}.",
    TenderReason.NOT_YET_VALID: "{what} can be used from {granted_at}.",
    TenderReason.EXPIRED: "{what} expired at {expires_at}.",
    TenderReason.EMPTY: "{what} has nothing left.",
    TenderReason.NOT_REQUESTED: "The customer chose not to use points on this order.",
    TenderReason.NO_ELIGIBLE_ITEMS: "{what} pays only for {scope}; nothing in the cart is.",
    TenderReason.NOTHING_LEFT_TO_PAY: "{what} was not needed: nothing it may pay for was left to pay.",
    TenderReason.LESS_THAN_ONE_POINT: "What is left to pay ({left}) is less than one point ({value}).",
}


def tender_message(reason: TenderReason, **values: object) -> str:
    return TENDER_MESSAGES[reason].format(**values)
