"""Money invariants every trace must satisfy, checked on golden and generated traces alike."""
from __future__ import annotations

from decimal import Decimal

from engine.money import quantum
from engine.trace import Trace


def check_invariants(trace: Trace) -> None:
    q = quantum(trace.currency)
    zero = Decimal(0)
    by_line = {line.id: line for line in trace.lines}
    for a in trace.applied:
        assert a.amount > 0, f"{a.promotion} applied with no amount"
        assert a.amount == a.amount.quantize(q), f"{a.promotion} amount finer than {trace.currency}"
        shares = sum((s.amount for s in a.lines), zero) + (a.shipping or zero)
        assert shares == a.amount, f"{a.promotion}: shares {shares} != amount {a.amount}"
        for s in a.lines:
            assert s.amount > 0 and s.line in by_line
        if a.shipments is not None:
            assert trace.shipments is not None and a.shipping is not None
            assert sum((s.amount for s in a.shipments), zero) == a.shipping, f"{a.promotion}: shipment shares"
            assert all(s.amount > 0 for s in a.shipments)
            assert len({s.shipment for s in a.shipments}) == len(a.shipments)
    for line in trace.lines:
        assert line.subtotal == line.unit_price * line.quantity
        assert line.discount == sum((d.amount for d in line.discounts), zero)
        assert line.total == line.subtotal - line.discount >= 0, f"line {line.id} below zero"
    assert trace.shipping is None or trace.shipments is None, "shipping in both forms"
    charges = ([trace.shipping] if trace.shipping is not None else []) + list(trace.shipments or ())
    for s in charges:
        assert s.total == s.price - s.discount >= 0
        assert s.discount == sum((d.amount for d in s.discounts), zero)
        assert all(d.stage == "shipping" and d.amount > 0 for d in s.discounts)
    t = trace.totals
    assert t.shipping == sum((s.price for s in charges), zero)
    assert t.shipping_discount == sum((s.discount for s in charges), zero)
    if trace.shipments is not None:
        assert len({s.id for s in trace.shipments}) == len(trace.shipments)
        for s in trace.shipments:
            assert {d.promotion: d.amount for d in s.discounts} == {
                a.promotion: x.amount for a in trace.applied for x in a.shipments or () if x.shipment == s.id}
    assert t.subtotal == sum((line.subtotal for line in trace.lines), zero)
    assert t.discount == t.item_discount + t.order_discount + t.shipping_discount
    assert t.discount == sum((a.amount for a in trace.applied), zero)
    assert t.discount <= t.subtotal + t.shipping
    assert t.total == t.subtotal + t.shipping - t.discount >= 0
    for stage, total in (("item", t.item_discount), ("order", t.order_discount), ("shipping", t.shipping_discount)):
        assert total == sum((a.amount for a in trace.applied if a.stage == stage), zero)
    # A promotion is applied (each benefit once, several benefits with their places), not applied, or granted.
    benefits = [(a.promotion, a.benefit) for a in trace.applied] + [(g.promotion, "grant") for g in trace.grants]
    assert len(benefits) == len(set(benefits)), "a benefit appears twice in the trace"
    for pid in {p for p, _ in benefits}:
        places = [b for p, b in benefits if p == pid]
        assert places == [None] or None not in places, f"{pid}: several benefits, each must say its place"
    given = {p for p, _ in benefits}
    refused = [n.promotion for n in trace.not_applied]
    assert len(refused) == len(set(refused)) and not given & set(refused), "a promotion appears twice in the trace"
    for g in trace.grants:
        assert g.amount > 0 and g.amount == g.amount.quantize(q) and g.currency == trace.currency
    check_tenders(trace)


def check_tenders(trace: Trace) -> None:
    """The waterfall pays exactly what is due: per line, on shipping and in total; nothing negative,
    no balance used beyond what it held, and the order lots > gift card > points > payment method."""
    q = quantum(trace.currency)
    zero = Decimal(0)
    tenders = trace.tenders
    assert tenders.due == trace.totals.total
    everything = tenders.used + (tenders.payment_method,)
    assert [u.kind for u in everything] == sorted((u.kind for u in everything), key=(
        "promotional_balance", "gift_card", "points", "payment_method").index)
    paid_line = {line.id: zero for line in trace.lines}
    paid_shipping = zero
    paid_shipment = {s.id: zero for s in trace.shipments or ()}
    for u in everything:
        assert u.amount >= 0 and u.amount == u.amount.quantize(q)
        shares = sum((s.amount for s in u.lines), zero) + (u.shipping or zero)
        assert shares == u.amount, f"{u.kind} {u.id}: shares {shares} != {u.amount}"
        for s in u.lines:
            assert s.amount > 0
            paid_line[s.line] += s.amount
        paid_shipping += u.shipping or zero
        if trace.shipments is None:
            assert u.shipments is None
        else:
            assert sum((s.amount for s in u.shipments or ()), zero) == (u.shipping or zero)
            for s in u.shipments or ():
                assert s.amount > 0
                paid_shipment[s.shipment] += s.amount
        if u.kind != "payment_method":
            assert u.amount > 0
        if u.balance_before is not None:
            assert u.balance_left == u.balance_before - u.amount >= 0
        if u.points is not None:
            assert u.amount == u.points * u.point_value and u.points_left >= 0
    for line in trace.lines:
        assert paid_line[line.id] == line.total, f"line {line.id}: tenders pay {paid_line[line.id]} of {line.total}"
    assert paid_shipping == (trace.shipping.total if trace.shipping else zero) + \
        sum((s.total for s in trace.shipments or ()), zero)
    for s in trace.shipments or ():
        assert paid_shipment[s.id] == s.total, f"shipment {s.id}: tenders pay {paid_shipment[s.id]} of {s.total}"
    assert sum((u.amount for u in everything), zero) == tenders.due
    by_kind = {(u.kind, u.id) for u in tenders.used}
    assert not by_kind & {(n.kind, n.id) for n in tenders.not_used}, "a tender is both used and not used"
    for lot in trace.inputs.account.lots:
        assert ("promotional_balance", lot.id) in by_kind | {(n.kind, n.id) for n in tenders.not_used}
