"""Cancellations and returns: what goes back where, as a pure function of a trace.

`refund(ruleset, trace, returned, now)` takes an evaluated order's trace (its JSON form, or a `Trace`),
the quantities returned per line id, and the moment of the return. It works in five steps, each
reported:

1. **What the returned units paid.** Each line's paid total (after discounts) is split between the
   returned and the kept units by largest remainder (ties to the returned part). A full
   cancellation (every unit returned) also returns shipping, every shipment of it; a partial return
   keeps every shipment in the kept order at its price.
2. **Which tender paid it.** Each line's returned part is split over the tenders that paid for the
   line, in proportion to what each paid (largest remainder, ties in waterfall order).
3. **The clawback.** The units the customer keeps are evaluated again, with the order's own codes,
   usage and `now`, against the same rule set (its version must match the trace's). The customer
   keeps paying what the kept order costs now: if it no longer meets a promotion's terms (a minimum
   spend, a buy-X-get-Y set), the refund is smaller by the discount lost. The refund is never
   negative and never more than the returned units paid (a return never earns a discount).
4. **Back in waterfall order.** The clawback is kept back from the returned parts in the order the
   waterfall used the tenders (promotional balance lots, gift card, points, payment method).
5. **Where it lands.** Gift card and payment method amounts go back as money; points go back as
   whole points (a remainder worth less than one point goes to the payment method); each
   promotional balance lot's part is returned to the lot if the lot has not expired at `now`, and
   is otherwise forfeited, reported as such.

Invariant (checked on every call): refund + kept = paid, to the minor unit; no part is negative and
no tender gets back more than it paid. Grants the kept order no longer earns are reported as revoked.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Mapping

from .errors import InputError, InvariantError, Problem
from .evaluate import evaluate
from .inputs import parse_now
from .model import RuleSet
from .money import allocate, parse_money, quantum, split
from .trace import Trace, _plain
from .verify import verified


@dataclass(frozen=True)
class RefundPart:
    """Money going back to one tender. For a lot, `forfeited` is the part that stays gone because the
    lot expired before `now`; `amount` is what the lot gets back."""

    kind: str                        # payment_method | gift_card | points | promotional_balance
    paid: Decimal                    # what this tender paid for the whole order
    returned: Decimal                # the returned units' part of it, before the clawback
    clawback: Decimal                # kept back from it
    amount: Decimal                  # back to the customer
    id: str | None = None
    forfeited: Decimal | None = None
    expires_at: str | None = None
    points: int | None = None        # points credited back


@dataclass(frozen=True)
class LostPromotion:
    """A promotion (discount or grant) of the order that the kept order no longer earns."""

    promotion: str
    name: str
    before: Decimal                  # its discount (or grant) on the whole order
    after: Decimal                   # on the kept order
    reason: str | None               # why it no longer applies, from the new evaluation
    message: str | None


@dataclass(frozen=True)
class ReturnedLine:
    line: str
    quantity: int
    paid: Decimal                    # what these units paid (their part of the line's total)


@dataclass(frozen=True)
class Refund:
    cart_id: str | None
    account_id: str
    currency: str
    now: str
    cancelled: bool                  # every unit returned: shipping is refunded too, grants revoked
    returned_lines: tuple[ReturnedLine, ...]
    paid: Decimal                    # what the order paid (trace.tenders.due)
    returned_value: Decimal          # what the returned units (and shipping, on cancellation) paid
    kept_due: Decimal                # what the kept order costs when evaluated again
    clawback: Decimal                # returned_value - refund
    refund: Decimal                  # what the returned units are worth now: to_customer + forfeited
    forfeited: Decimal               # the part owed to promotional balance lots that expired before `now`
    to_customer: Decimal             # what actually goes back to the customer, in every tender
    kept: Decimal                    # paid - refund
    parts: tuple[RefundPart, ...]
    lost_promotions: tuple[LostPromotion, ...]   # discounts the kept order no longer earns
    revoked_grants: tuple[LostPromotion, ...]    # grants it no longer earns: the order system takes them back

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, ensure_ascii=False) + "\n"


def refund(ruleset: RuleSet, trace: Mapping[str, Any] | Trace, returned: Mapping[str, int],
           now: datetime | str) -> Refund:
    """What returning `returned` (line id -> units) at `now` gives back. The trace's numbers are not
    believed: it is evaluated again from its own inputs (engine.verify) and refused if it differs."""
    when = parse_now(now)
    doc = json.loads(verified(ruleset, trace).to_json(indent=None))
    return _refund(ruleset, doc, returned, when)


def _refund(ruleset: RuleSet, doc: Mapping[str, Any], returned: Mapping[str, int], when: datetime) -> Refund:
    currency = doc["currency"]
    money = lambda text: parse_money(text, currency)  # noqa: E731 - amounts in a schema-checked trace
    zero = quantum(currency) * 0                       # "0.00" in USD, like every other amount
    lines = {line["id"]: line for line in doc["lines"]}
    quantities = _returned(returned, lines)
    cancelled = all(quantities.get(i, 0) == line["quantity"] for i, line in lines.items())
    tenders = list(doc["tenders"]["used"]) + [doc["tenders"]["payment_method"]]
    paid = money(doc["tenders"]["due"])

    # 1-2: what the returned units paid, and which tender paid it.
    back = [zero] * len(tenders)
    returned_lines = []
    for line_id in sorted(quantities):
        line = lines[line_id]
        total, n, k = money(line["total"]), line["quantity"], quantities[line_id]
        part = allocate(total, [Fraction(total) * k / n, Fraction(total) * (n - k) / n], [0, 1], currency)[0]
        returned_lines.append(ReturnedLine(line_id, k, part))
        shares = [_share(t["lines"], line_id, money) for t in tenders]
        for i, amount in enumerate(split(part, shares, list(range(len(tenders))), currency)):
            back[i] += amount
    if cancelled:
        for i, t in enumerate(tenders):
            back[i] += money(t.get("shipping", "0"))
    returned_value = sum(back, zero)

    # 3: the kept order, evaluated again.
    kept_trace = None if cancelled else evaluate_kept(ruleset, doc, quantities)
    kept_due = kept_trace.tenders.due if kept_trace is not None else zero
    refund_total = min(returned_value, max(zero, paid - kept_due))
    clawback = returned_value - refund_total

    # 4-5: the clawback kept back in waterfall order; where each part lands.
    parts, to_payment = [], zero
    left = clawback
    for i, t in enumerate(tenders):
        kept_back = min(left, back[i])
        left -= kept_back
        amount = back[i] - kept_back
        paid_by = money(t["amount"])
        if t["kind"] == "promotional_balance":
            expired = "expires_at" in t and when >= _instant(t["expires_at"])
            parts.append(RefundPart("promotional_balance", paid_by, back[i], kept_back, zero if expired else amount,
                                    id=t["id"], forfeited=amount if expired else zero,
                                    expires_at=t.get("expires_at")))
        elif t["kind"] == "points":
            value = money(t["point_value"])
            points = int(amount // value)
            to_payment += amount - points * value
            parts.append(RefundPart("points", paid_by, back[i], kept_back, points * value, points=points))
        else:
            parts.append(RefundPart(t["kind"], paid_by, back[i], kept_back, amount))
    if to_payment:
        last = parts[-1]
        parts[-1] = RefundPart(last.kind, last.paid, last.returned, last.clawback, last.amount + to_payment)
    forfeited = sum((p.forfeited or 0 for p in parts), zero)
    result = Refund(cart_id=doc.get("cart_id"), account_id=doc["account_id"], currency=currency, now=when.isoformat(),
                    cancelled=cancelled, returned_lines=tuple(returned_lines), paid=paid,
                    returned_value=returned_value, kept_due=kept_due, clawback=clawback, refund=refund_total,
                    forfeited=forfeited, to_customer=refund_total - forfeited, kept=paid - refund_total,
                    parts=tuple(parts), lost_promotions=_lost(doc["applied"], kept_trace, money, zero),
                    revoked_grants=_lost(doc["grants"], kept_trace, money, zero))
    _check(result, paid)
    return result


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.utcoffset() is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment


def _returned(returned: Mapping[str, int], lines: Mapping[str, Any]) -> dict[str, int]:
    if not isinstance(returned, Mapping) or not returned:
        raise InputError([Problem("returned", 0, 0, "$", "name at least one line and the quantity returned")],
                         "returned")
    problems = []
    for line_id, qty in returned.items():
        if line_id not in lines:
            problems.append(Problem("returned", 0, 0, f"$.{line_id}", f"the order has no line {line_id!r}"))
        elif isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= lines[line_id]["quantity"]:
            problems.append(Problem("returned", 0, 0, f"$.{line_id}",
                                    f"quantity must be a whole number from 1 to {lines[line_id]['quantity']}"))
    if problems:
        raise InputError(problems, "returned")
    return dict(returned)


def _share(shares: list[Mapping[str, str]], line_id: str, money) -> Decimal:
    return next((money(s["amount"]) for s in shares if s["line"] == line_id), Decimal(0))


def evaluate_kept(ruleset: RuleSet, doc: Mapping[str, Any], quantities: Mapping[str, int]) -> Trace:
    """The order as if only the kept units (quantity minus `quantities` returned) had been bought, with the
    order's own codes, usage and `now`. The ledger reads each promotion's kept amount from it."""
    inputs = doc["inputs"]
    cart = dict(inputs["cart"])
    cart["lines"] = [dict(line, quantity=line["quantity"] - quantities.get(line["id"], 0))
                     for line in cart["lines"] if line["quantity"] > quantities.get(line["id"], 0)]
    if "shipments" in cart:   # a line returned whole is no longer carried; the shipments stay, at their price
        kept = {line["id"] for line in cart["lines"]}
        cart["shipments"] = [dict(s, lines=[i for i in s["lines"] if i in kept]) for s in cart["shipments"]]
    return evaluate(ruleset, cart, inputs["account"], codes=inputs["codes"], now=doc["now"],
                    usage=inputs["usage"], preview=inputs["preview"])


def _lost(entries: list[Mapping[str, Any]], kept: Trace | None, money, zero: Decimal) -> tuple[LostPromotion, ...]:
    """The order's discounts (or grants) missing from the kept order's evaluation, with its reason;
    on a cancellation, all of them. One per promotion: a promotion's benefits are summed."""
    earned: dict[str, dict[str, Any]] = {}
    for a in entries:
        if a["promotion"] in earned:
            earned[a["promotion"]]["amount"] = str(Decimal(earned[a["promotion"]]["amount"]) + Decimal(a["amount"]))
        else:
            earned[a["promotion"]] = {"promotion": a["promotion"], "name": a["name"], "amount": a["amount"]}
    if kept is None:
        return tuple(LostPromotion(a["promotion"], a["name"], money(a["amount"]), zero, None,
                                   "The order was cancelled.") for a in earned.values())
    still = {a.promotion for a in kept.applied} | {g.promotion for g in kept.grants}
    why = {n.promotion: n for n in kept.not_applied}
    out = []
    for a in earned.values():
        if a["promotion"] not in still:
            n = why.get(a["promotion"])
            out.append(LostPromotion(a["promotion"], a["name"], money(a["amount"]), zero,
                                     n.reason.value if n else None, n.message if n else None))
    return tuple(out)


def _check(r: Refund, paid: Decimal) -> None:
    parts_total = sum((p.amount + (p.forfeited or 0) for p in r.parts), Decimal(0))
    if r.refund + r.kept != paid or parts_total != r.refund or r.refund < 0 or r.kept < 0 or \
            r.to_customer + r.forfeited != r.refund:
        raise InvariantError(f"refund {r.refund} + kept {r.kept} != paid {paid}, or parts sum to {parts_total}")
    for p in r.parts:
        if min(p.amount, p.returned, p.clawback) < 0 or p.returned > p.paid or p.clawback > p.returned:
            raise InvariantError(f"refund part for {p.kind} {p.id or ''} is out of bounds")
