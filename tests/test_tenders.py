"""The payment waterfall's order and boundaries, on small hand-checked carts."""
from __future__ import annotations

from decimal import Decimal

import pytest

from engine import evaluate

from .test_refund import ACCOUNT, NOW, book, rules_with

RULES = rules_with()   # no promotions: the waterfall pays the cart as it is


def lot(lot_id, amount, **extra):
    return {"id": lot_id, "amount": amount, "currency": "JPY", "granted_at": "2026-11-01T00:00:00+09:00", **extra}


def pay(lines, account_changes, shipping=None):
    cart = {"currency": "JPY", "channel": "web", "lines": lines}
    if shipping:
        cart["shipping"] = {"method": "standard", "price": shipping}
    return evaluate(RULES, cart, dict(ACCOUNT, **account_changes), now=NOW).tenders


def test_lots_go_earliest_expiry_first_then_by_id_and_lots_without_expiry_last():
    tenders = pay([book("L1", "1000")], {"promotional_balance": [
        lot("z-never", "500"), lot("b-dec", "300", expires_at="2026-12-01T00:00:00+09:00"),
        lot("a-dec", "300", expires_at="2026-12-01T00:00:00+09:00"),
        lot("c-nov", "300", expires_at="2026-11-30T00:00:00+09:00")]})
    assert [(u.id, u.amount) for u in tenders.used] == [("c-nov", 300), ("a-dec", 300), ("b-dec", 300),
                                                      ("z-never", 100)]
    assert tenders.used[-1].balance_left == Decimal(400) and tenders.payment_method.amount == 0


@pytest.mark.parametrize("extra, reason", [
    ({"expires_at": NOW}, "expired"),                                   # expiry is exclusive: at now, gone
    ({"expires_at": "2026-11-21T09:59:59+09:00"}, "expired"),
    ({"granted_at": "2026-11-21T10:00:01+09:00"}, "not_yet_valid"),
    ({"amount": "0"}, "empty"),
    ({"pays_for": {"categories": ["toys"]}}, "no_eligible_items"),
])
def test_a_lot_that_pays_nothing_says_why(extra, reason):
    tenders = pay([book("L1", "1000")], {"promotional_balance": [lot("x", "100") | extra]})
    [not_used] = tenders.not_used
    assert (not_used.id, not_used.reason.value) == ("x", reason) and not tenders.used


def test_a_lot_granted_exactly_now_and_expiring_a_second_later_is_used():
    tenders = pay([book("L1", "1000")], {"promotional_balance": [
        lot("x", "100", granted_at=NOW, expires_at="2026-11-21T10:00:01+09:00")]})
    assert [(u.id, u.amount) for u in tenders.used] == [("x", 100)]


def test_default_exclusions_keep_a_lot_off_third_party_digital_subscription_and_gift_card_lines():
    lines = [book("L1", "100") | {"seller": "third_party"}, book("L2", "100") | {"product_type": "digital"},
             book("L3", "100") | {"product_type": "subscription"}, book("L4", "100") | {"product_type": "gift_card"},
             book("L5", "100")]
    tenders = pay(lines, {"promotional_balance": [lot("x", "1000")], "gift_card": {"amount": "1000", "currency": "JPY"}})
    lot_use, card = tenders.used
    assert [s.line for s in lot_use.lines] == ["L5"]
    assert [s.line for s in card.lines] == ["L1", "L2", "L3"]       # the gift card never buys a gift card
    assert [(s.line, s.amount) for s in tenders.payment_method.lines] == [("L4", 100)]


def test_shipping_is_paid_by_a_lot_only_when_it_says_so_and_otherwise_by_the_gift_card():
    tenders = pay([book("L1", "1000")], {"promotional_balance": [lot("x", "2000")],
                                         "gift_card": {"amount": "2000", "currency": "JPY"}}, shipping="400")
    lot_use, card = tenders.used
    assert (lot_use.amount, lot_use.shipping, card.amount, card.shipping) == (1000, None, 400, 400)
    tenders = pay([book("L1", "1000")], {"promotional_balance": [lot("x", "700", pays_for={"shipping": True})]},
                  shipping="400")
    # 700 over 1000 line + 400 shipping: 500 and 200 exactly.
    [lot_use] = tenders.used
    assert ([(s.line, s.amount) for s in lot_use.lines], lot_use.shipping) == ([("L1", 500)], 200)


@pytest.mark.parametrize("points, used, to_card", [
    ({"balance": 5000, "value": "1", "use": "as_needed"}, 1000, 0),
    ({"balance": 5000, "value": "1", "use": 300}, 300, 700),
    ({"balance": 200, "value": "1", "use": "as_needed"}, 200, 800),
    ({"balance": 5000, "value": "3", "use": "as_needed"}, 999, 1),        # 333 points; 1 yen is less than a point
])
def test_points_pay_whole_points_up_to_the_customers_choice(points, used, to_card):
    tenders = pay([book("L1", "1000")], {"points": dict(points, currency="JPY")})
    [p] = tenders.used
    assert (p.amount, tenders.payment_method.amount) == (used, to_card)
    assert p.points * p.point_value == p.amount


def test_points_worth_more_than_what_is_left_are_not_used():
    tenders = pay([book("L1", "2")], {"points": {"balance": 10, "value": "5", "currency": "JPY", "use": "as_needed"}})
    [not_used] = tenders.not_used
    assert not_used.reason.value == "less_than_one_point" and tenders.payment_method.amount == 2
