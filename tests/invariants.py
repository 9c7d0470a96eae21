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
    for line in trace.lines:
        assert line.subtotal == line.unit_price * line.quantity
        assert line.discount == sum((d.amount for d in line.discounts), zero)
        assert line.total == line.subtotal - line.discount >= 0, f"line {line.id} below zero"
    if trace.shipping is not None:
        s = trace.shipping
        assert s.total == s.price - s.discount >= 0
    t = trace.totals
    assert t.subtotal == sum((line.subtotal for line in trace.lines), zero)
    assert t.discount == t.item_discount + t.order_discount + t.shipping_discount
    assert t.discount == sum((a.amount for a in trace.applied), zero)
    assert t.discount <= t.subtotal + t.shipping
    assert t.total == t.subtotal + t.shipping - t.discount >= 0
    for stage, total in (("item", t.item_discount), ("order", t.order_discount), ("shipping", t.shipping_discount)):
        assert total == sum((a.amount for a in trace.applied if a.stage == stage), zero)
    listed = [a.promotion for a in trace.applied] + [n.promotion for n in trace.not_applied]
    assert len(listed) == len(set(listed)), "a promotion appears twice in the trace"
