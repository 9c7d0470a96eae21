"""The trace from a decided outcome: line and shipment records, totals (checked against the applied
amounts), grants; the tenders are paid by the pipeline and passed in."""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from .context import Context, evaluation_order
from .decide import Outcome, Unexplained, explained, settle_hints
from .errors import InvariantError
from .model import LEGACY_SHIPMENT_ID, Promotion, Stage
from .money import from_units, minor_unit
from .trace import (TRACE_FORMAT, Applied, CodeResult, Grant, Hint, Inputs, LineDiscount, LineTrace, NotApplied,
                    ShipmentTrace, ShippingTrace, Tenders, Totals, Trace, scope_of)


@dataclass(frozen=True)
class Priced:
    """The outcome as the trace records it: each line and shipment with its discounts and what is left
    to pay, the totals (checked against the applied amounts), the discounts applied and the grants."""

    lines: tuple[LineTrace, ...]
    shipments: tuple[ShipmentTrace, ...]
    shipping: ShippingTrace | None      # the record of a cart written with `shipping`
    totals: Totals
    applied: tuple[Applied, ...]
    grants: tuple[Grant, ...]

    def line_totals(self) -> dict[str, Decimal]:
        return {line.id: line.total for line in self.lines}

    def shipment_totals(self) -> dict[str, Decimal]:
        return {s.id: s.total for s in self.shipments}


def priced(ctx: Context, outcome: Outcome) -> Priced:
    """Lines, shipments and totals from what the winning outcome left on each, in minor units."""
    per_line: dict[str, list[LineDiscount]] = {line.id: [] for line in ctx.cart.lines}
    per_shipment: dict[str, list[LineDiscount]] = {s.id: [] for s in ctx.shipments}
    by_stage: dict[str, Decimal] = {stage.value: ctx.zero for stage in Stage}
    applied = tuple(a for a in outcome.applied if a.stage != Stage.GRANT.value)
    grants = tuple(_grant(ctx.ruleset.promotions[a.promotion], a.amount, ctx)
                   for a in outcome.applied if a.stage == Stage.GRANT.value)
    for a in applied:
        by_stage[a.stage] += a.amount
        for share in a.lines:
            per_line[share.line].append(LineDiscount(a.promotion, a.stage, share.amount))
        if a.shipments is not None:
            for part in a.shipments:
                per_shipment[part.shipment].append(LineDiscount(a.promotion, a.stage, part.amount))
        elif a.shipping is not None:   # the one shipment of a cart written with `shipping`
            per_shipment[LEGACY_SHIPMENT_ID].append(LineDiscount(a.promotion, a.stage, a.shipping))
    # Each line's discount and total from what the promotions left on it, in minor units; _split has
    # checked every share against what was left, and the sums are checked against the totals below.
    currency, left = ctx.currency, outcome.left
    lines = []
    discounted_units = 0
    for line in ctx.cart.lines:
        subtotal_units, total_units = ctx.subtotals[line.id], left.lines[line.id]
        if total_units < 0 or total_units > subtotal_units:
            raise InvariantError(f"line {line.id} went below zero")
        discounted_units += subtotal_units - total_units
        lines.append(LineTrace(line.id, line.sku, line.name, line.category, line.seller, line.product_type,
                               line.unit_price, line.quantity, from_units(subtotal_units, currency),
                               tuple(per_line[line.id]), from_units(subtotal_units - total_units, currency),
                               from_units(total_units, currency)))
    shipments = []
    for s, price_units, total_units in zip(ctx.shipments, ctx.shipment_units, left.shipping):
        if total_units < 0 or total_units > price_units:
            raise InvariantError(f"shipment {s.id!r} went below zero")
        discounted_units += price_units - total_units
        shipments.append(ShipmentTrace(s.id, s.method, s.lines, s.price, tuple(per_shipment[s.id]),
                                       from_units(price_units - total_units, currency),
                                       from_units(total_units, currency)))
    shipping = None
    if ctx.cart.shipping is not None:   # today's record for a cart written with `shipping`
        [one] = shipments
        shipping = ShippingTrace(one.method, one.price, one.discounts, one.discount, one.total)
        shipping_price = ctx.cart.shipping.price
    else:
        shipping_price = sum((s.price for s in shipments), ctx.zero)
    subtotal = from_units(sum(ctx.subtotals.values()), currency)
    discount = by_stage["item"] + by_stage["order"] + by_stage["shipping"]
    if discount != outcome.total or discount != from_units(discounted_units, currency):
        raise InvariantError("total discount does not match the applied promotions or what they took off the lines")
    totals = Totals(subtotal, by_stage["item"], by_stage["order"], shipping_price, by_stage["shipping"], discount,
                    subtotal + shipping_price - discount)
    return Priced(tuple(lines), tuple(shipments), shipping, totals, applied, grants)


def trace(ctx: Context, priced: Priced, codes: tuple[CodeResult, ...], outcome: Outcome,
          refused: list[NotApplied | Unexplained], out_of_scope: Counter[str], tenders: Tenders, inputs: Inputs) -> Trace:
    """The single record of the evaluation. `refused` is in evaluation order, not yet explained."""
    return Trace(format=TRACE_FORMAT, ruleset_version=ctx.ruleset.version, now=ctx.now.isoformat(),
                 currency=ctx.currency, minor_unit=minor_unit(ctx.currency), rounding=ctx.ruleset.rounding,
                 cart_id=ctx.cart.id, account_id=ctx.account.id, codes=codes, lines=priced.lines,
                 shipping=priced.shipping, applied=priced.applied,
                 out_of_scope=tuple(sorted(out_of_scope.items())), totals=priced.totals, tenders=tenders,
                 grants=priced.grants, inputs=inputs,
                 shipments=priced.shipments if ctx.cart.shipments is not None else None,
                 why=Why(ctx, tuple(refused), outcome.hints))


class Why:
    """Why the refused promotions did not apply, and the hints: worked out the first time the trace's
    `not_applied` or `hints` is read, then kept. Pure functions of the evaluation, so the trace's bytes
    do not depend on when (or in which thread) that happens; a lock makes it happen once, since
    settling hints spends the evaluation's what-if runs. The compact view explains only the refusals
    it lists (`customer`)."""

    def __init__(self, ctx: Context, refused: tuple[NotApplied | Unexplained, ...], hints: tuple):
        self._ctx, self._refused, self._pending = ctx, refused, hints
        self._lock = threading.Lock()
        self._hints: tuple[Hint, ...] | None = None
        self._not_applied: tuple[NotApplied, ...] | None = None

    def hints(self) -> tuple[Hint, ...]:
        with self._lock:
            if self._hints is None:
                ctx = self._ctx
                self._hints = tuple(sorted(settle_hints(self._pending, ctx), key=lambda h: (
                    evaluation_order(ctx.ruleset.promotions[h.promotion]), h.kind, h.shortfall)))
            return self._hints

    def not_applied(self) -> tuple[NotApplied, ...]:
        self.hints()                     # hints first, always: the order the eager build had
        with self._lock:
            if self._not_applied is None:
                self._not_applied = tuple(explained(self._refused))
                # Both are worked out: the evaluation's context is no longer needed (a trace kept in
                # memory keeps only its records from now on).
                self._ctx, self._refused, self._pending = None, (), ()   # type: ignore[assignment]
            return self._not_applied

    def customer(self) -> tuple[NotApplied, ...]:
        """The refusals of entered codes and of near misses with a hint, explaining only those."""
        hinted = {h.promotion for h in self.hints()}
        with self._lock:
            if self._not_applied is not None:
                return tuple(n for n in self._not_applied if n.code is not None or n.promotion in hinted)
            return tuple(explained(r for r in self._refused if r.code is not None or r.promotion in hinted))


def _grant(p: Promotion, amount: Decimal, ctx: Context) -> Grant:
    """The lot the order system issues after the order: its expiry is a fixed instant, or whole days after `now`."""
    grant = next(b for b in p.benefits if b.stage is Stage.GRANT)   # at most one per promotion (one per stage)
    expires = grant.expires_at if grant.expires_at is not None else ctx.now + timedelta(days=grant.expires_after_days)
    assert grant.pays_for is not None  # the loader sets it for every grant
    return Grant(p.id, p.name, amount, ctx.currency, expires.isoformat(), scope_of(grant.pays_for))

