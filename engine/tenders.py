"""The payment waterfall: after every discount, what pays for what is left, in a fixed order.

1. Promotional balance lots, automatically: earliest expiry first, lots without expiry last, ties by
   id. A lot is usable from `granted_at` (inclusive) until `expires_at` (exclusive, so a lot that
   expired a second before `now` pays nothing). It pays only for the lines its `pays_for` covers
   (its categories, minus third-party, digital, subscription and gift card lines unless it says
   otherwise), and for shipping only when it says `shipping: true` (then for every shipment).
2. The gift card balance: every line except gift card purchases, and shipping.
3. Points, up to the number the customer chose (or as many as needed), in whole points: never more
   than is left to pay, so a remainder below one point's value goes to the payment method. Points
   pay for the same things as the gift card.
4. The rest: the payment method.

Each amount is split over the lines (and shipments) it may pay for in proportion to what each still
owes, by largest remainder (`money.split`; ties to the smaller line id, shipments after lines, by
id), so a refund later knows what paid for what. Nothing is
rounded here: every amount is already in the currency's minor unit. Pure, like evaluate().
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Mapping

from .errors import InvariantError
from .model import Account, Cart, Line
from .money import format_money, quantum, split
from .reasons import TenderReason, tender_message
from .trace import LineShare, ShipmentShare, TenderNotUsed, TenderUse, Tenders

SHIPPING_KEY = 1   # shipments sort after every line in largest-remainder ties, then by shipment id


@dataclass
class _Due:
    """What each line and each shipment still owes while the waterfall runs (local to one call)."""

    lines: dict[str, Decimal]
    shipments: dict[str, Decimal]   # shipment id ("" for a cart's one `shipping`) -> owed

    def open(self, covered: list[Line], shipping: bool) -> Decimal:
        return sum((self.lines[line.id] for line in covered), Decimal(0)) + \
            (sum(self.shipments.values(), Decimal(0)) if shipping else 0)

    def take(self, amount: Decimal, covered: list[Line], shipping: bool,
             currency: str) -> tuple[tuple[LineShare, ...], Decimal | None, tuple[ShipmentShare, ...]]:
        """Take `amount` from the covered lines (and every shipment) in proportion to what they owe: the
        lines' shares, the shipping part (None when nothing), and each shipment's part of it."""
        keys: list[tuple] = [(0, line.id) for line in covered]
        owed = [self.lines[line.id] for line in covered]
        if shipping:
            for shipment_id, left in self.shipments.items():
                keys.append((SHIPPING_KEY, shipment_id))
                owed.append(left)
        # Paying everything it may pay for needs no split (the common case: the payment method).
        parts = owed if amount == sum(owed, Decimal(0)) else split(amount, owed, keys, currency)
        shares = []
        shipment_shares = []
        shipping_part = Decimal(0)
        for key, part in zip(keys, parts):
            if key[0] == SHIPPING_KEY:
                if part > self.shipments[key[1]]:
                    raise InvariantError(f"tender share {part} exceeds what shipping owes")
                self.shipments[key[1]] -= part
                shipping_part += part
                if part:
                    shipment_shares.append(ShipmentShare(key[1], part))
                continue
            if part > self.lines[key[1]]:
                raise InvariantError(f"tender share {part} exceeds what line {key[1]} owes")
            if part:
                self.lines[key[1]] -= part
                shares.append(LineShare(key[1], part))
        return tuple(shares), (shipping_part if shipping_part else None), tuple(shipment_shares)


def pay(cart: Cart, account: Account, now: datetime, owed: Mapping[str, Decimal],
        shipments_owed: Mapping[str, Decimal], locale: str) -> Tenders:
    """The waterfall over what is `owed` per line id (after discounts) and per shipment id (in cart order)."""
    currency = cart.currency
    zero = quantum(currency) * 0   # "0.00" in USD, like every other amount
    due = _Due({line_id: amount for line_id, amount in owed.items()}, dict(shipments_owed))
    total_due = sum(owed.values(), zero) + sum(shipments_owed.values(), zero)
    has_shipping = bool(shipments_owed)
    listed = cart.shipments is not None   # the `shipments` form: each use says which shipment it paid
    used: list[TenderUse] = []
    not_used: list[TenderNotUsed] = []

    def money(amount: Decimal) -> str:
        return format_money(amount, currency, locale)

    def each(parts: tuple[ShipmentShare, ...]) -> tuple[ShipmentShare, ...] | None:
        return parts if listed and parts else None

    for lot in sorted(account.lots, key=lambda lot: lot.order_key()):
        what = f"Promotional balance {lot.id}"
        covered = [line for line in cart.lines if lot.pays_for.covers(line)]
        ships = lot.pays_for.shipping and has_shipping
        reason, values = None, {}
        if lot.currency != currency:
            reason, values = TenderReason.CURRENCY_MISMATCH, {"tender_currency": lot.currency, "currency": currency}
        elif now < lot.granted_at:
            reason, values = TenderReason.NOT_YET_VALID, {"granted_at": lot.granted_at.isoformat()}
        elif lot.expires_at is not None and now >= lot.expires_at:
            reason, values = TenderReason.EXPIRED, {"expires_at": lot.expires_at.isoformat()}
        elif lot.amount == 0:
            reason = TenderReason.EMPTY
        elif not covered and not ships:
            reason, values = TenderReason.NO_ELIGIBLE_ITEMS, {"scope": describe_scope(lot.pays_for)}
        elif due.open(covered, ships) == 0:
            reason = TenderReason.NOTHING_LEFT_TO_PAY
        if reason is not None:
            not_used.append(TenderNotUsed("promotional_balance", reason, tender_message(reason, what=what, **values),
                                          id=lot.id, balance=lot.amount))
            continue
        amount = min(lot.amount, due.open(covered, ships))
        lines, shipping, parts = due.take(amount, covered, ships, currency)
        used.append(TenderUse("promotional_balance", amount, lines, shipping, id=lot.id, balance_before=lot.amount,
                              balance_left=lot.amount - amount,
                              expires_at=lot.expires_at.isoformat() if lot.expires_at else None,
                              shipments=each(parts)))

    not_gift_cards = [line for line in cart.lines if line.product_type != "gift_card"]
    card = account.gift_card
    if card is not None:
        what = "The gift card balance"
        reason, values = _plain_reason(card.currency, currency, card.amount == 0, due.open(not_gift_cards, has_shipping),
                                       not_gift_cards, has_shipping)
        if reason is None:
            amount = min(card.amount, due.open(not_gift_cards, has_shipping))
            lines, shipping, parts = due.take(amount, not_gift_cards, has_shipping, currency)
            used.append(TenderUse("gift_card", amount, lines, shipping, balance_before=card.amount,
                                  balance_left=card.amount - amount, shipments=each(parts)))
        else:
            not_used.append(TenderNotUsed("gift_card", reason, tender_message(reason, what=what, **values),
                                          balance=card.amount))

    points = account.points
    if points is not None:
        what = "The points balance"
        available = points.balance if points.use is None else points.use
        open_ = due.open(not_gift_cards, has_shipping)
        reason, values = _plain_reason(points.currency, currency, points.balance == 0, open_, not_gift_cards,
                                       has_shipping)
        if reason is None and available == 0:
            reason = TenderReason.NOT_REQUESTED
        count = 0
        if reason is None:
            count = min(available, int(open_ // points.value))
            if count == 0:
                reason, values = TenderReason.LESS_THAN_ONE_POINT, {"left": money(open_), "value": money(points.value)}
        if reason is None:
            amount = points.value * count
            lines, shipping, parts = due.take(amount, not_gift_cards, has_shipping, currency)
            used.append(TenderUse("points", amount, lines, shipping, points=count, points_left=points.balance - count,
                                  point_value=points.value, shipments=each(parts)))
        else:
            not_used.append(TenderNotUsed("points", reason, tender_message(reason, what=what, **values),
                                          points=points.balance))

    rest = sum(due.lines.values(), zero) + sum(due.shipments.values(), zero)
    lines, shipping, parts = due.take(rest, list(cart.lines), has_shipping, currency)
    payment = TenderUse("payment_method", rest, lines, shipping, shipments=each(parts))
    if sum((u.amount for u in used), zero) + rest != total_due or any(v != 0 for v in due.lines.values()) \
            or any(v != 0 for v in due.shipments.values()):
        raise InvariantError("tenders do not add up to what is due")
    return Tenders(total_due, tuple(used), tuple(not_used), payment)


def _plain_reason(tender_currency: str, currency: str, empty: bool, open_: Decimal, covered: list[Line],
                  shipping: bool) -> tuple[TenderReason | None, dict]:
    """The reasons the gift card or points pay nothing, in the same order as for lots."""
    if tender_currency != currency:
        return TenderReason.CURRENCY_MISMATCH, {"tender_currency": tender_currency, "currency": currency}
    if empty:
        return TenderReason.EMPTY, {}
    if not covered and not shipping:
        return TenderReason.NO_ELIGIBLE_ITEMS, {"scope": "items other than gift cards"}
    if open_ == 0:
        return TenderReason.NOTHING_LEFT_TO_PAY, {}
    return None, {}


EXCLUSION_WORDS: dict[str, str] = {"third_party": "third-party sellers", "digital": "digital content",
                                   "subscription": "subscriptions", "gift_card": "gift cards"}


def describe_scope(pays_for) -> str:
    """'books, toys; not third-party sellers or digital content' — for messages."""
    what = ", ".join(sorted(pays_for.categories)) if pays_for.categories is not None else "any item"
    excluded = [EXCLUSION_WORDS[name] for name in sorted(pays_for.excludes)]
    if excluded:
        what += "; not " + (", ".join(excluded[:-1]) + " or " + excluded[-1] if len(excluded) > 1 else excluded[0])
    return what


