"""Balances belong to the ledger: the only ways a promotional balance lot, a gift card or points come to
exist or change outside an order. Each operation checks its arguments before any SQL, writes an audit
row, and with an `op_id` (the caller's key for the operation) is applied once however often it is
retried; the same op_id with another request is refused.

A lot is credited with its terms (granted, expires, pays for) and they never change; what it holds
only goes down through orders (and back up through returns). A gift card is loaded and adjusted; points
are set (with the value of one point) and added to. Nothing ever goes below what is held or below zero.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import Connection, insert, select, update

from ..errors import PromoError
from ..inputs import parse_account
from ..model import RuleSet
from ..text import shorten
from .common import check_id, iso, minor, subject_text, us
from .errors import LedgerError, LedgerReason
from .redemption import instant_us, lot_pays_for
from .store import balance_operations, balances

MAX_POINTS = 10 ** 12


def checked_lot(ruleset: RuleSet, account_id: str, lot_id: str, amount: object, currency: object,
                granted_at: object, expires_at: object, pays_for: object, when: datetime) -> Any:
    """The lot as the engine would read it from an account file: the same checks, the same words."""
    lot: dict[str, Any] = {"id": lot_id, "amount": amount, "currency": currency,
                           "granted_at": granted_at if granted_at is not None else when.isoformat()}
    if expires_at is not None:
        lot["expires_at"] = expires_at
    if pays_for is not None:
        lot["pays_for"] = pays_for
    return _account(ruleset, account_id, promotional_balance=[lot]).lots[0]


def _account(ruleset: RuleSet, account_id: str, **parts: Any) -> Any:
    doc = {"id": account_id, "region": "JP", "tier": "standard", "segments": [], "order_count": 0,
           "time_zone": "UTC", **parts}
    try:
        return parse_account(doc, ruleset, source="balance")
    except PromoError as exc:
        first = exc.problems[0]
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{first.path}: {first.message}") from None
    except (TypeError, ValueError, AttributeError):
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"not a balance: {shorten(parts)}") from None


def once(conn: Connection, op_id: str | None, account_id: str, action: str, request: Mapping[str, Any],
         when: datetime) -> bool:
    """True when the operation is to be applied now; False when this op_id was already applied with the same
    request (a retry). The same op_id with another request is refused."""
    if op_id is None:
        return True
    check_id(op_id, "op_id")
    text = json.dumps(request, sort_keys=True, default=str)
    row = conn.execute(select(balance_operations).where(balance_operations.c.op_id == op_id)).first()
    if row is not None:
        if row.request != text or row.action != action or row.account_id != account_id:
            raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"op_id {op_id!r} was already used for another operation")
        return False
    conn.execute(insert(balance_operations).values(op_id=op_id, account_id=account_id, action=action, request=text,
                                                   at=iso(when)))
    return True


def credit_lot(conn: Connection, lot: Any, account_id: str, when: datetime, audit: Any) -> None:
    where = (balances.c.account_id == account_id, balances.c.kind == "promotional_balance", balances.c.lot_id == lot.id)
    row = conn.execute(select(balances).where(*where).with_for_update()).first()
    units = minor(lot.amount, lot.currency)
    if row is not None:   # a lot id is credited once: a second credit could only double it (retries pass an op_id)
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"lot {lot.id!r} of {account_id} already exists; a lot is "
                                                           "credited once: credit a new lot id")
    conn.execute(insert(balances).values(
        account_id=account_id, kind="promotional_balance", lot_id=lot.id, currency=lot.currency, amount=units, held=0,
        opened_at=iso(when), granted_at=iso(lot.granted_at), granted_at_us=us(lot.granted_at),
        expires_at=iso(lot.expires_at) if lot.expires_at is not None else None,
        expires_at_us=instant_us(lot.expires_at), pays_for=lot_pays_for(lot), origin="credit"))
    audit("balance_opened", subject_text((account_id, "promotional_balance", lot.id)),
          {"amount": units, "currency": lot.currency, "expires_at": iso(lot.expires_at) if lot.expires_at else None})


def change(conn: Connection, account_id: str, kind: str, currency: str | None, delta: int, when: datetime,
           audit: Any, *, point_value: str | None = None, set_to: int | None = None) -> int:
    """Add `delta` to (or set) the gift card or points; never below what is held, never below zero.
    Returns the new amount."""
    where = (balances.c.account_id == account_id, balances.c.kind == kind, balances.c.lot_id == "")
    row = conn.execute(select(balances).where(*where).with_for_update()).first()
    if row is None:
        if currency is None:
            raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{account_id} has no {kind.replace('_', ' ')} "
                                                               "in the ledger")
        amount = set_to if set_to is not None else delta
        _not_below(amount, 0, account_id, kind)
        conn.execute(insert(balances).values(account_id=account_id, kind=kind, lot_id="", currency=currency,
                                             amount=amount, held=0, opened_at=iso(when), point_value=point_value,
                                             origin="credit"))
        audit("balance_opened", subject_text((account_id, kind, "")), {"amount": amount, "currency": currency})
        return amount
    if currency is not None and row.currency != currency:
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{account_id}'s {kind.replace('_', ' ')} is in "
                                                           f"{row.currency}, not {currency}")
    amount = set_to if set_to is not None else row.amount + delta
    _not_below(amount, row.held, account_id, kind)
    values: dict[str, Any] = {"amount": amount}
    if point_value is not None:
        values["point_value"] = point_value
    conn.execute(update(balances).where(*where).values(**values))
    audit("balance_changed", subject_text((account_id, kind, "")),
          {"amount": amount - row.amount, **({"point_value": point_value} if point_value is not None else {})})
    return amount


def _not_below(amount: int, held: int, account_id: str, kind: str) -> None:
    if amount < held or amount < 0:
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{account_id}'s {kind.replace('_', ' ')} would go below "
                                                           f"{'what checkouts hold' if held else 'zero'}")


def points_count(value: object, name: str, signed: bool = False) -> int:
    if type(value) is not int or abs(value) > MAX_POINTS or (value < 0 and not signed):
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{name} must be a whole number of points"
                                                           f"{'' if signed else ' (0 or more)'} up to {MAX_POINTS}; "
                                                           f"got {shorten(value)}")
    return value


def money_amount(ruleset: RuleSet, account_id: str, amount: object, currency: object, signed: bool = False) -> int:
    """A gift card amount checked as the account file's gift card would be (a decimal string in a currency
    of the rule set, within its minor unit); `signed` allows a leading minus (adjustments)."""
    negative = signed and isinstance(amount, str) and amount.startswith("-")
    text = amount[1:] if negative else amount
    card = _account(ruleset, account_id, gift_card={"amount": text, "currency": currency}).gift_card
    units = minor(card.amount, card.currency)
    return -units if negative else units


