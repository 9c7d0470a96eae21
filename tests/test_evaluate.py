"""Properties of evaluate() over generated rule sets, carts and accounts with balances: money and
tender invariants, independence from line order, untargeted lines change nothing, exclusivity,
determinism, and a trace's own inputs evaluating to the same trace."""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from engine import evaluate
from engine.ruleset import build_ruleset
from engine.schemas import validator

from .invariants import check_invariants

NOW = "2026-11-21T10:00:00+09:00"
NOW_AT = datetime.fromisoformat(NOW)
ACCOUNT = {"id": "c1", "region": "JP", "tier": "standard", "order_count": 0, "time_zone": "Asia/Tokyo"}
CATEGORIES = ["a", "b", "c"]
DIGITS = {"JPY": 0, "USD": 2, "KWD": 3}


def money(draw, currency, low, high):
    units = draw(st.integers(low * 10 ** DIGITS[currency], high * 10 ** DIGITS[currency]))
    text = str(Decimal(units).scaleb(-DIGITS[currency]))
    return text


@st.composite
def rewards(draw, currency):
    kind = draw(st.sampled_from(["percent_off", "amount_off", "fixed_price", "buy_x_get_y", "tiered",
                                 "free_shipping", "shipping_amount_off", "shipping_percent_off",
                                 "shipping_fixed_price", "grant_promotional_balance"]))
    percent = draw(st.sampled_from([5, 10, 33, 50, 100, "12.5", "33.33"]))
    if kind == "percent_off":
        reward = {"type": kind, "percent": percent}
        if draw(st.booleans()):
            reward["max_discount"] = money(draw, currency, 1, 50)
        return reward
    if kind == "amount_off":
        return {"type": kind, "scope": draw(st.sampled_from(["per_unit", "per_line", "per_order"])),
                "amount": money(draw, currency, 1, 80)}
    if kind == "fixed_price":
        return {"type": kind, "quantity": draw(st.integers(2, 4)), "price": money(draw, currency, 1, 100)}
    if kind == "buy_x_get_y":
        return {"type": kind, "buy": draw(st.integers(1, 3)), "get": draw(st.integers(1, 2)), "percent": percent,
                "discounted_units": draw(st.sampled_from(["cheapest", "most_expensive"]))}
    if kind == "tiered":
        if draw(st.booleans()):
            return {"type": kind, "basis": "eligible_quantity",
                    "tiers": [{"at": 2, "percent": 5}, {"at": 4, "amount": money(draw, currency, 1, 30)}]}
        return {"type": kind, "basis": "eligible_subtotal",
                "tiers": [{"at": money(draw, currency, 10, 40), "percent": 10},
                          {"at": money(draw, currency, 41, 200), "percent": 20}]}
    if kind.startswith("shipping_") or kind == "free_shipping":
        reward = {"type": kind}
        if kind == "shipping_amount_off":
            reward["amount"] = money(draw, currency, 1, 20)
        elif kind == "shipping_percent_off":
            reward["percent"] = percent
        elif kind == "shipping_fixed_price":
            reward["price"] = money(draw, currency, 0, 8)
        if draw(st.booleans()):
            reward["shipping_methods"] = draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=2, unique=True))
        return reward
    if kind == "grant_promotional_balance":
        return {"type": kind, "amount": money(draw, currency, 1, 30), "expires": {"after_days": draw(st.integers(1, 90))},
                "pays_for": draw(pays_for())}
    return {"type": kind}


@st.composite
def pays_for(draw):
    scope = {}
    if draw(st.booleans()):
        scope["categories"] = draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2, unique=True))
    if draw(st.booleans()):
        scope["excludes"] = draw(st.lists(st.sampled_from(["third_party", "digital", "subscription", "gift_card"]),
                                          max_size=4, unique=True))
    if draw(st.booleans()):
        scope["shipping"] = draw(st.booleans())
    return scope


METHODS = ["standard", "ground", "express"]


def shipping(draw, currency, lines):
    """A cart's shipping, in either form: none, `shipping`, or `shipments` (none to three, each with a
    method, a price and sometimes some of the lines)."""
    form = draw(st.sampled_from(["none", "shipping", "shipping", "shipments", "shipments"]))
    if form == "shipping":
        return {"shipping": {"method": draw(st.sampled_from(METHODS)), "price": money(draw, currency, 0, 15)}}
    if form == "none":
        return {}
    free = [line["id"] for line in lines]
    shipments = []
    for i in range(draw(st.integers(0, 3))):
        shipment = {"id": f"S{draw(st.sampled_from('xyz'))}{i}", "method": draw(st.sampled_from(METHODS)),
                    "price": money(draw, currency, 0, 15)}
        if free and draw(st.booleans()):
            shipment["lines"] = draw(st.lists(st.sampled_from(free), max_size=len(free), unique=True))
            free = [i for i in free if i not in shipment["lines"]]
        shipments.append(shipment)
    return {"shipments": shipments}


INSTANTS = ["2026-11-01T00:00:00+09:00", "2026-11-21T09:59:59+09:00", NOW, "2026-11-21T10:00:01+09:00",
            "2026-12-31T00:00:00+09:00"]


@st.composite
def accounts(draw, currency):
    """An account with any mix of lots (live, expired, not yet valid, other currency), gift card and points."""
    account = dict(ACCOUNT)
    lots = []
    for i in range(draw(st.integers(0, 4))):
        lot_currency = draw(st.sampled_from([currency] * 4 + sorted(DIGITS)))
        granted = draw(st.sampled_from(INSTANTS[:4]))
        lot = {"id": f"lot-{draw(st.sampled_from('abc'))}{i}", "amount": money(draw, lot_currency, 0, 60),
               "currency": lot_currency, "granted_at": granted, "pays_for": draw(pays_for())}
        later = [t for t in INSTANTS if t > granted]
        if later and draw(st.booleans()):
            lot["expires_at"] = draw(st.sampled_from(later))
        lots.append(lot)
    if lots:
        account["promotional_balance"] = lots
    if draw(st.booleans()):
        account["gift_card"] = {"amount": money(draw, currency, 0, 80), "currency": currency}
    if draw(st.booleans()):
        value = draw(st.sampled_from({"JPY": ["1", "2", "5"], "USD": ["0.01", "0.05", "1"],
                                      "KWD": ["0.001", "0.010", "0.250"]}[currency]))
        balance = draw(st.integers(0, 5000))
        use = draw(st.one_of(st.just("as_needed"), st.integers(0, balance)))
        account["points"] = {"balance": balance, "value": value, "currency": currency, "use": use}
    return account


@st.composite
def promotions(draw, currency, index):
    doc = {"id": f"p{index}", "name": f"Promotion {index}", "status": "active", "currency": currency,
           "targets": {"include": {"categories": draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2,
                                                               unique=True))}},
           "benefits": [draw(rewards(currency))],
           "stacking": {"priority": draw(st.integers(0, 2)), "exclusive": draw(st.sampled_from([False, False, True]))}}
    if draw(st.booleans()):
        exclusions = draw(st.sampled_from([{"sellers": ["third_party"]}, {"product_types": ["digital"]}]))
        doc["targets"]["exclude"] = exclusions
    condition = draw(st.sampled_from([None, "spend", "quantity", "method"]))
    if condition == "spend":
        doc["eligibility"] = {"all": [{"name": "eligible_subtotal", "operator": "greater_than_or_equal_to",
                                       "value": money(draw, currency, 5, 60)}]}
    elif condition == "quantity":
        doc["eligibility"] = {"all": [{"name": "eligible_quantity", "operator": "greater_than", "value": 2}]}
    elif condition == "method":
        doc["eligibility"] = {"all": [{"name": "shipping_method", "operator": "equal_to",
                                       "value": draw(st.sampled_from(METHODS))}]}
    if draw(st.booleans()):
        doc["limits"] = {"max_discount": money(draw, currency, 1, 40)}
    return doc


@st.composite
def scenarios(draw):
    currency = draw(st.sampled_from(sorted(DIGITS)))
    rounding = draw(st.sampled_from(["half_up", "half_even", "down", "up"]))
    count = draw(st.integers(1, 6))
    docs = [draw(promotions(currency, i)) for i in range(count)]
    files = {"r/_settings.yaml": f"currencies: [JPY, USD, KWD]\nrounding: {rounding}\n".encode()}
    for doc in docs:
        files[f"r/{doc['id']}.yaml"] = yaml.safe_dump(doc, sort_keys=False).encode()
    lines = []
    for i in range(draw(st.integers(1, 7))):
        lines.append({"id": f"L{i}", "sku": f"SKU-{i}", "category": draw(st.sampled_from(CATEGORIES)),
                      "seller": draw(st.sampled_from(["first_party", "third_party"])),
                      "product_type": draw(st.sampled_from(["physical", "physical", "digital", "gift_card"])),
                      "unit_price": money(draw, currency, 1, 40), "quantity": draw(st.integers(1, 5))})
    cart = {"currency": currency, "channel": "web", "lines": lines} | shipping(draw, currency, lines)
    return build_ruleset(files), cart, draw(accounts(currency))


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def line_discounts(trace):
    return {line.id: [(d.promotion, d.amount) for d in line.discounts] for line in trace.lines}


def applied_summary(trace):
    return [(a.promotion, a.amount, sorted((s.line, s.amount) for s in a.lines), a.shipping,
             sorted((s.shipment, s.amount) for s in a.shipments or ())) for a in trace.applied]


def shipment_summary(trace):
    return sorted((s.id, s.price, s.discount, s.total, tuple(sorted((d.promotion, d.amount) for d in s.discounts)))
                  for s in trace.shipments or ())


@SETTINGS
@given(scenarios())
def test_every_evaluation_keeps_the_money_invariants_and_the_trace_schema(scenario):
    rules, cart, account = scenario
    trace = evaluate(rules, cart, account, now=NOW)
    check_invariants(trace)
    assert [e.message for e in validator("trace").iter_errors(trace.to_dict())] == []


@SETTINGS
@given(scenarios(), st.randoms())
def test_permuting_lines_changes_nothing(scenario, rnd):
    rules, cart, account = scenario
    shuffled = dict(cart, lines=rnd.sample(cart["lines"], len(cart["lines"])))
    a, b = evaluate(rules, cart, account, now=NOW), evaluate(rules, shuffled, account, now=NOW)
    assert line_discounts(a) == line_discounts(b)
    assert applied_summary(a) == applied_summary(b)
    assert a.totals == b.totals


@SETTINGS
@given(scenarios(), st.randoms())
def test_permuting_shipments_and_their_lines_changes_nothing(scenario, rnd):
    rules, cart, account = scenario
    if "shipments" not in cart:
        return
    shuffled = dict(cart, shipments=[dict(s, lines=rnd.sample(s["lines"], len(s["lines"]))) if "lines" in s else s
                                     for s in rnd.sample(cart["shipments"], len(cart["shipments"]))])
    a, b = evaluate(rules, cart, account, now=NOW), evaluate(rules, shuffled, account, now=NOW)
    assert line_discounts(a) == line_discounts(b)
    assert applied_summary(a) == applied_summary(b)
    assert shipment_summary(a) == shipment_summary(b)
    assert a.totals == b.totals
    assert a.tenders.due == b.tenders.due
    assert [(u.kind, u.id, u.amount) for u in a.tenders.used] == [(u.kind, u.id, u.amount) for u in b.tenders.used]


@SETTINGS
@given(scenarios())
def test_one_shipment_listed_prices_as_the_same_shipping_written_alone(scenario):
    """`shipping: {method, price}` and `shipments: [{id, method, price}]` are the same order: the same
    discounts, totals and tenders; only the trace's record of shipping differs in form."""
    rules, cart, account = scenario
    if "shipping" not in cart:
        return
    listed = {k: v for k, v in cart.items() if k != "shipping"} | {"shipments": [{"id": "one", **cart["shipping"]}]}
    a, b = evaluate(rules, cart, account, now=NOW), evaluate(rules, listed, account, now=NOW)
    assert line_discounts(a) == line_discounts(b)
    assert [x[:4] for x in applied_summary(a)] == [x[:4] for x in applied_summary(b)]
    assert a.totals == b.totals
    assert (a.shipping.price, a.shipping.discount, a.shipping.total) == \
        (b.shipments[0].price, b.shipments[0].discount, b.shipments[0].total)
    assert [(u.kind, u.id, u.amount, u.lines, u.shipping) for u in a.tenders.used] == \
        [(u.kind, u.id, u.amount, u.lines, u.shipping) for u in b.tenders.used]
    assert [(n.promotion, n.reason) for n in a.not_applied] == [(n.promotion, n.reason) for n in b.not_applied]


@SETTINGS
@given(scenarios(), st.integers(1, 5))
def test_adding_an_untargeted_line_does_not_change_other_lines(scenario, quantity):
    rules, cart, account = scenario
    extra = {"id": "ZZ", "sku": "OTHER", "category": "z", "seller": "first_party", "product_type": "physical",
             "unit_price": cart["lines"][0]["unit_price"], "quantity": quantity}
    before = evaluate(rules, cart, account, now=NOW)
    after = evaluate(rules, dict(cart, lines=cart["lines"] + [extra]), account, now=NOW)
    assert line_discounts(after) == {**line_discounts(before), "ZZ": []}
    assert applied_summary(after) == applied_summary(before)


@SETTINGS
@given(scenarios())
def test_an_applied_exclusive_promotion_is_alone(scenario):
    rules, cart, account = scenario
    trace = evaluate(rules, cart, account, now=NOW)
    if any(a.exclusive for a in trace.applied):
        assert len(trace.applied) == 1
        winner = trace.applied[0].promotion
        assert all(n.lost_to == (winner,) for n in trace.not_applied if n.reason.value == "lost_to_exclusive")


@SETTINGS
@given(scenarios())
def test_evaluation_is_deterministic_to_the_byte(scenario):
    rules, cart, account = scenario
    assert evaluate(rules, cart, account, now=NOW).to_json() == evaluate(rules, cart, account, now=NOW).to_json()


@SETTINGS
@given(scenarios())
def test_every_promotion_is_accounted_for_exactly_once(scenario):
    rules, cart, account = scenario
    trace = evaluate(rules, cart, account, now=NOW)
    listed = [a.promotion for a in trace.applied] + [n.promotion for n in trace.not_applied] + \
        [g.promotion for g in trace.grants]
    assert len(listed) + sum(count for _, count in trace.out_of_scope) == len(rules.promotions)


@SETTINGS
@given(scenarios())
def test_a_traces_own_inputs_evaluate_to_the_same_trace(scenario):
    rules, cart, account = scenario
    first = evaluate(rules, cart, account, now=NOW)
    inputs = json.loads(first.to_json())["inputs"]
    again = evaluate(rules, inputs["cart"], inputs["account"], codes=inputs["codes"], now=first.now,
                     usage=inputs["usage"], preview=inputs["preview"])
    assert again.to_json() == first.to_json()


@SETTINGS
@given(scenarios())
def test_the_waterfall_never_pays_more_than_each_balance_holds_nor_what_its_scope_forbids(scenario):
    rules, cart, account = scenario
    trace = evaluate(rules, cart, account, now=NOW)
    lots = {lot.id: lot for lot in trace.inputs.account.lots}
    lines = {line.id: line for line in trace.inputs.cart.lines}
    for used in trace.tenders.used:
        if used.kind == "promotional_balance":
            lot = lots[used.id]
            assert used.amount <= lot.amount and lot.currency == trace.currency
            assert lot.granted_at <= NOW_AT and (lot.expires_at is None or NOW_AT < lot.expires_at)
            assert all(lot.pays_for.covers(lines[s.line]) for s in used.lines)
            assert used.shipping is None or lot.pays_for.shipping
        else:
            assert all(lines[s.line].product_type != "gift_card" for s in used.lines)
    for not_used in trace.tenders.not_used:
        if not_used.reason.value == "nothing_left_to_pay" and not_used.kind == "promotional_balance":
            lot = lots[not_used.id]
            covered = [line for line in trace.lines if lot.pays_for.covers(lines[line.id])]
            paid_by_earlier = {s.line for u in trace.tenders.used for s in u.lines}
            assert all(line.total == 0 or line.id in paid_by_earlier for line in covered)


def test_the_trace_json_has_sorted_keys_and_amounts_as_strings():
    files = {"r/_settings.yaml": b"currencies: [USD]\n", "r/p.yaml": yaml.safe_dump({
        "id": "p", "name": "P", "status": "active", "targets": {"include": "all"},
        "benefits": [{"type": "percent_off", "percent": "12.5"}], "stacking": {"priority": 1, "exclusive": False}}).encode()}
    cart = {"currency": "USD", "channel": "web", "lines": [
        {"id": "L1", "sku": "S", "category": "a", "seller": "first_party", "product_type": "physical",
         "unit_price": "9.99", "quantity": 3}]}
    text = evaluate(build_ruleset(files), cart, ACCOUNT, now=NOW).to_json()
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["applied"][0]["amount"] == "3.75"  # 29.97 * 12.5% = 3.74625 -> half_up 3.75
    assert data["totals"]["total"] == "26.22"


def test_variable_values_are_the_ones_business_rules_variables_give():
    """evaluate() reads the fixed variables once per evaluation and measures the cart per promotion;
    each value must equal what `PromotionVariables` (business-rules' methods) gives for the same facts."""
    import sys
    from engine.inputs import parse_account, parse_cart, parse_now
    from engine.money import from_units
    from engine.variables import VARIABLE_TYPES, Facts, PromotionVariables
    ev = sys.modules["engine.evaluate"]
    leaf = {"string": ("equal_to", "x"), "select_multiple": ("shares_at_least_one_element_with", ["vip"]),
            "boolean": ("is_true", None), "numeric": ("greater_than", "0")}
    valid = {"local_date": "2026-11-20", "local_weekday": "fri", "region": "US", "sales_channel": "app"}
    terms = []
    for name, kind in sorted(VARIABLE_TYPES.items()):
        operator, value = leaf[kind]
        value = valid.get(name, value)
        if kind == "numeric" and name not in ("cart_subtotal", "eligible_subtotal"):
            value = 0
        terms.append({"name": name, "operator": operator} | ({} if value is None else {"value": value}))
    doc = {"id": "every", "name": "Every variable", "status": "active", "currency": "USD",
           "eligibility": {"any": terms}, "targets": {"include": {"categories": ["a"]}},
           "benefits": [{"type": "percent_off", "percent": 10}], "stacking": {"priority": 0, "exclusive": False}}
    rules = build_ruleset({"r/_settings.yaml": b"currencies: [USD]\n", "r/every.yaml": yaml.safe_dump(doc).encode()})
    cart = parse_cart({"currency": "USD", "channel": "app", "shipping": {"method": "express", "price": "5.00"},
                       "lines": [{"id": "L1", "sku": "S1", "category": "a", "seller": "first_party",
                                  "product_type": "physical", "unit_price": "12.50", "quantity": 3},
                                 {"id": "L2", "sku": "S2", "category": "b", "seller": "first_party",
                                  "product_type": "physical", "unit_price": "7.25", "quantity": 2}]}, rules)
    account = parse_account({"id": "c", "region": "US", "tier": "prime", "segments": ["vip", "staff"],
                             "order_count": 4, "time_zone": "America/New_York"}, rules)
    now = parse_now("2026-11-21T03:30:00+00:00")
    promotion = rules.promotions["every"]
    ctx = ev._Context.build(rules, cart, account, now, {}, frozenset(), {"every": (cart.lines[0],)})
    state = ev._State(lines={"L1": 3001, "L2": 1450}, shipping=(500,))   # after some earlier discount on L1
    facts = Facts(region="US", customer_tier="prime", customer_segments=("vip", "staff"), order_count=4,
                  sales_channel="app", shipping_method="express", cart_subtotal=from_units(4451, "USD"),
                  cart_quantity=5, eligible_subtotal=from_units(3001, "USD"), eligible_quantity=3,
                  local_date="2026-11-20", local_weekday="fri", local_hour=22)
    expected = PromotionVariables(facts)
    got = ev._values(promotion, state, ctx)
    assert promotion.condition.variables == set(VARIABLE_TYPES)
    for name in VARIABLE_TYPES:
        want = getattr(expected, name)()
        assert got[name] == want and type(got[name]) is type(want), name
        if isinstance(want, Decimal):
            assert str(got[name]) == str(want), name   # the same digits, as the trace shows them
