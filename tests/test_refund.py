"""Returns and cancellations: refund + kept = paid to the minor unit, nothing negative, no tender gets
back more than it paid, expired lots forfeited and reported, the clawback when the kept order no
longer meets a promotion's terms; and bad requests refused with nothing computed."""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest
import yaml
from hypothesis import given, strategies as st

from engine import InputError, evaluate
from engine.verify import TraceMismatch
from engine.refund import refund
from engine.ruleset import build_ruleset

from .test_evaluate import INSTANTS, NOW, SETTINGS, scenarios

LATER = INSTANTS + ["2027-06-01T00:00:00+09:00"]


@st.composite
def returns(draw, cart):
    chosen = draw(st.lists(st.sampled_from(cart["lines"]), min_size=1, unique_by=lambda line: line["id"]))
    return {line["id"]: draw(st.integers(1, line["quantity"])) for line in chosen}


@SETTINGS
@given(st.data())
def test_refund_plus_kept_is_what_was_paid_and_no_tender_gets_back_more_than_it_paid(data):
    rules, cart, account = data.draw(scenarios())
    trace = evaluate(rules, cart, account, now=NOW)
    returned = data.draw(returns(cart))
    when = data.draw(st.sampled_from(LATER))
    r = refund(rules, trace.to_dict(), returned, when)
    assert r.refund + r.kept == r.paid == trace.tenders.due
    assert Decimal(0) <= r.refund <= r.returned_value and r.clawback == r.returned_value - r.refund
    assert sum((p.amount + (p.forfeited or 0) for p in r.parts), Decimal(0)) == r.refund
    paid_by = {(u.kind, u.id): u.amount for u in trace.tenders.used + (trace.tenders.payment_method,)}
    for p in r.parts:
        assert p.amount >= 0 and 0 <= p.clawback <= p.returned <= p.paid == paid_by[(p.kind, p.id)]
        if p.kind == "promotional_balance":
            expired = p.expires_at is not None and datetime.fromisoformat(when) >= datetime.fromisoformat(p.expires_at)
            assert (p.forfeited, p.amount) == ((p.returned - p.clawback, 0) if expired else (0, p.returned - p.clawback))
        if p.kind == "points":
            point_value = next(u.point_value for u in trace.tenders.used if u.kind == "points")
            assert p.amount == p.points * point_value
    everything = all(returned.get(line["id"]) == line["quantity"] for line in cart["lines"])
    assert r.cancelled == everything
    if everything:
        assert r.refund == r.paid and r.kept == 0 and r.clawback == 0
        assert {g.promotion for g in r.revoked_grants} == {g.promotion for g in trace.grants}
        assert {lost.promotion for lost in r.lost_promotions} == {a.promotion for a in trace.applied}


@SETTINGS
@given(st.data())
def test_a_refund_is_deterministic_and_does_not_depend_on_how_the_trace_arrived(data):
    rules, cart, account = data.draw(scenarios())
    trace = evaluate(rules, cart, account, now=NOW)
    returned = data.draw(returns(cart))
    from_object = refund(rules, trace, returned, NOW)
    from_json = refund(rules, json.loads(trace.to_json()), returned, NOW)
    assert from_object.to_json() == from_json.to_json()


# --- worked examples -----------------------------------------------------------------------------

def rules_with(*docs, currencies="[JPY]"):
    files = {"r/_settings.yaml": f"currencies: {currencies}\n".encode()}
    for doc in docs:
        files[f"r/{doc['id']}.yaml"] = yaml.safe_dump(doc, sort_keys=False).encode()
    return build_ruleset(files)


BOOKS_500 = {"id": "books-500", "name": "¥500 off books over ¥3,000", "status": "active", "currency": "JPY",
             "eligibility": {"all": [{"name": "eligible_subtotal", "operator": "greater_than_or_equal_to",
                                      "value": "3000"}]},
             "targets": {"include": {"categories": ["books"]}},
             "benefits": [{"type": "amount_off", "scope": "per_order", "amount": "500"}],
             "stacking": {"priority": 1, "exclusive": False}}


def book(line_id, price, quantity=1):
    return {"id": line_id, "sku": f"SKU-{line_id}", "category": "books", "seller": "first_party",
            "product_type": "physical", "unit_price": price, "quantity": quantity}


ACCOUNT = {"id": "c1", "region": "JP", "tier": "standard", "order_count": 1, "time_zone": "Asia/Tokyo"}


def test_returning_a_book_below_the_minimum_spend_claws_back_the_discount_the_kept_book_had():
    rules = rules_with(BOOKS_500)
    cart = {"currency": "JPY", "channel": "web", "lines": [book("L1", "2000"), book("L2", "1500")]}
    trace = evaluate(rules, cart, ACCOUNT, now=NOW)
    # 500 over 2000:1500 -> 285.71 / 214.29 -> 286 / 214; the lines pay 1714 and 1286; paid 3000.
    assert [line.total for line in trace.lines] == [Decimal(1714), Decimal(1286)]
    r = refund(rules, trace, {"L2": 1}, NOW)
    # The kept order (L1 alone, 2000) is below 3000: it costs 2000 now, so 1000 comes back, not 1286.
    assert (r.paid, r.returned_value, r.kept_due, r.refund, r.clawback, r.kept) == (
        Decimal(3000), Decimal(1286), Decimal(2000), Decimal(1000), Decimal(286), Decimal(2000))
    [lost] = r.lost_promotions
    assert (lost.promotion, lost.reason, lost.before) == ("books-500", "min_spend_not_met", Decimal(500))
    [payment] = r.parts
    assert (payment.kind, payment.returned, payment.clawback, payment.amount) == (
        "payment_method", Decimal(1286), Decimal(286), Decimal(1000))


def test_the_clawback_is_kept_back_first_from_the_tenders_the_waterfall_used_first_and_expired_lots_forfeit():
    rules = rules_with(BOOKS_500)
    cart = {"currency": "JPY", "channel": "web", "lines": [book("L1", "2000"), book("L2", "1500")]}
    account = dict(ACCOUNT, promotional_balance=[
        {"id": "lot-a", "amount": "600", "currency": "JPY", "granted_at": "2026-11-01T00:00:00+09:00",
         "expires_at": "2026-11-25T00:00:00+09:00"}],
        gift_card={"amount": "1000", "currency": "JPY"})
    trace = evaluate(rules, cart, account, now=NOW)
    # lot-a 600 over 1714:1286 -> 342.86 / 257.14 -> 343 / 257; gift card 1000 over 1371:1029 -> 571 / 429;
    # the payment method pays the rest: 800 on L1, 600 on L2.
    by_kind = {u.kind: {s.line: s.amount for s in u.lines} for u in trace.tenders.used + (trace.tenders.payment_method,)}
    assert by_kind == {"promotional_balance": {"L1": 343, "L2": 257}, "gift_card": {"L1": 571, "L2": 429},
                       "payment_method": {"L1": 800, "L2": 600}}
    r = refund(rules, trace, {"L2": 1}, "2026-11-26T00:00:00+09:00")
    # L2 paid 1286 = 257 lot + 429 gift card + 600 payment; clawback 286 comes first off the lot's 257,
    # then 29 off the gift card's 429. The lot expired before the return: what is left of it (0) forfeits.
    parts = {p.kind: p for p in r.parts}
    assert (parts["promotional_balance"].clawback, parts["promotional_balance"].amount,
            parts["promotional_balance"].forfeited) == (Decimal(257), Decimal(0), Decimal(0))
    assert (parts["gift_card"].clawback, parts["gift_card"].amount) == (Decimal(29), Decimal(400))
    assert parts["payment_method"].amount == Decimal(600)
    assert r.refund == Decimal(1000)


def test_a_cancellation_after_a_lot_expired_forfeits_its_part_and_returns_shipping():
    rules = rules_with(BOOKS_500)
    cart = {"currency": "JPY", "channel": "web", "lines": [book("L1", "2000")],
            "shipping": {"method": "standard", "price": "400"}}
    account = dict(ACCOUNT, promotional_balance=[
        {"id": "old", "amount": "300", "currency": "JPY", "granted_at": "2026-11-01T00:00:00+09:00",
         "expires_at": "2026-11-22T00:00:00+09:00", "pays_for": {"shipping": True}},
        {"id": "new", "amount": "300", "currency": "JPY", "granted_at": "2026-11-01T00:00:00+09:00"}])
    trace = evaluate(rules, cart, account, now=NOW)
    r = refund(rules, trace, {"L1": 1}, "2026-11-23T00:00:00+09:00")
    parts = {p.id or p.kind: p for p in r.parts}
    assert r.cancelled and r.refund == r.paid == Decimal(2400) and r.kept == 0
    assert (parts["old"].amount, parts["old"].forfeited) == (Decimal(0), Decimal(300))
    assert (parts["new"].amount, parts["new"].forfeited) == (Decimal(300), Decimal(0))
    assert parts["payment_method"].amount == Decimal(1800) and r.forfeited == Decimal(300)


# --- bad requests --------------------------------------------------------------------------------

@pytest.fixture
def order():
    rules = rules_with(BOOKS_500)
    cart = {"currency": "JPY", "channel": "web", "lines": [book("L1", "2000", 2)]}
    return rules, evaluate(rules, cart, ACCOUNT, now=NOW).to_dict()


@pytest.mark.parametrize("returned, fragment", [
    ({}, "at least one line"), ({"L9": 1}, "no line 'L9'"), ({"L1": 3}, "from 1 to 2"), ({"L1": 0}, "from 1 to 2"),
    ({"L1": True}, "from 1 to 2"), ({"L1": "1"}, "from 1 to 2")])
def test_bad_returns_are_refused(order, returned, fragment):
    rules, trace = order
    with pytest.raises(InputError) as exc:
        refund(rules, trace, returned, NOW)
    assert fragment in str(exc.value)


def test_a_trace_priced_with_other_rules_is_refused(order):
    _, trace = order
    other = rules_with(dict(BOOKS_500, name="changed"))
    with pytest.raises(InputError) as exc:
        refund(other, trace, {"L1": 1}, NOW)
    assert "$.ruleset_version" in str(exc.value)


def test_a_tampered_trace_is_refused(order):
    rules, trace = order
    broken = dict(trace, tenders=dict(trace["tenders"], due=-1))
    with pytest.raises(InputError) as exc:
        refund(rules, broken, {"L1": 1}, NOW)
    assert "$.tenders.due" in str(exc.value)


def test_a_naive_return_time_is_refused(order):
    rules, trace = order
    with pytest.raises(InputError):
        refund(rules, trace, {"L1": 1}, "2026-11-21T10:00:00")


def _priced_up(t):
    """The attacker's edit: the line's price raised a hundredfold, everything derived from it too, inputs untouched."""
    line = t["lines"][0]
    for key in ("unit_price", "subtotal", "total"):
        line[key] = str(int(line[key]) * 100)


@pytest.mark.parametrize("tamper, field", [
    (_priced_up, "$.lines[0].subtotal"),
    (lambda t: t["tenders"]["payment_method"].update(amount="3999.5"), "$.tenders.payment_method.amount"),
    (lambda t: t.update(currency="EUR"), "$.currency"),
    (lambda t: t["lines"][0].update(total="999999"), "$.lines[0].total"),
    (lambda t: t["applied"][0].update(amount="1"), "$.applied[0].amount"),
    (lambda t: t["applied"].pop(), "$.applied[0]"),
    (lambda t: t["applied"].append(dict(t["applied"][0])), "$.applied[1]"),
    (lambda t: t["totals"].update(total="1"), "$.totals.total"),
    (lambda t: t["inputs"]["cart"]["lines"][0].update(quantity=1), "$.applied[0]"),   # the kept inputs no longer earn it
])
def test_a_trace_that_its_own_inputs_do_not_give_is_refused_naming_the_field(order, tamper, field):
    rules, trace = order
    broken = json.loads(json.dumps(trace))
    tamper(broken)
    before = json.loads(json.dumps(broken))
    with pytest.raises(TraceMismatch) as exc:
        refund(rules, broken, {"L1": 1}, NOW)
    assert exc.value.field == field
    assert broken == before


def test_a_lot_expiry_edited_in_a_trace_is_refused():
    rules = rules_with(BOOKS_500)
    cart = {"currency": "JPY", "channel": "web", "lines": [book("L1", "2000")]}
    account = dict(ACCOUNT, promotional_balance=[
        {"id": "x", "amount": "300", "currency": "JPY", "granted_at": "2026-11-01T00:00:00+09:00",
         "expires_at": "2026-12-01T00:00:00+09:00"}])
    doc = json.loads(evaluate(rules, cart, account, now=NOW).to_json())
    doc["tenders"]["used"][0]["expires_at"] = "2026-12-01T00:00:00"
    with pytest.raises(TraceMismatch) as exc:
        refund(rules, doc, {"L1": 1}, NOW)
    assert exc.value.field == "$.tenders.used[0].expires_at"
