"""Properties of evaluate() over generated rule sets, carts and accounts with balances: money and
tender invariants, independence from line order, untargeted lines change nothing, exclusivity,
determinism, and a trace's own inputs evaluating to the same trace."""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest
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
        return with_units(draw, reward)
    if kind == "amount_off":
        reward = {"type": kind, "scope": draw(st.sampled_from(["per_unit", "per_line", "per_order"])),
                  "amount": money(draw, currency, 1, 80)}
        return reward if reward["scope"] == "per_order" else with_units(draw, reward)
    if kind == "fixed_price":
        reward = with_units(draw, {"type": kind, "quantity": draw(st.integers(2, 4)),
                                   "price": money(draw, currency, 1, 100)})
        units = reward.get("units", {})
        most = units.get("max_total")
        if most is not None and most < reward["quantity"]:   # a set that could never apply does not load
            units["max_total"] = reward["quantity"] * units.get("group_size", 1)
        return reward
    if kind == "buy_x_get_y":
        reward = {"type": kind, "buy": draw(st.integers(1, 3)), "get": draw(st.integers(1, 2)), "percent": percent,
                  "discounted_units": draw(st.sampled_from(["cheapest", "most_expensive", "equal_or_lesser"]))}
        if draw(st.booleans()):   # the units given from a selection of their own (it may overlap the bought one)
            reward["targets"] = {"include": {"categories": draw(st.lists(st.sampled_from(CATEGORIES), min_size=1,
                                                                         max_size=2, unique=True))}}
        if draw(st.booleans()):
            reward["units"] = draw(caps())
        return reward
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
def caps(draw):
    """A cap on the units of each line and / or in all, each at least 1."""
    units = {}
    while not units:
        if draw(st.booleans()):
            units["max_per_line"] = draw(st.integers(1, 3))
        if draw(st.booleans()):
            units["max_total"] = draw(st.integers(1, 6))
    return units


def with_units(draw, reward):
    """Sometimes `units` on an item benefit: caps, whole groups, which units are kept."""
    if draw(st.integers(0, 2)):
        return reward
    units = draw(caps()) if draw(st.booleans()) else {}
    if draw(st.booleans()) or not units:
        group = draw(st.integers(2, 3))
        units["group_size"] = group
        if "max_total" in units:   # a whole number of groups, at least one
            units["max_total"] = max(1, units["max_total"] // group) * group
    if draw(st.booleans()):
        units["choose"] = draw(st.sampled_from(["cheapest", "most_expensive"]))
    return dict(reward, units=units)


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
           "stacking": draw(stacking(st.integers(0, 2)))}
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


STAGE_CLASSES = ["item", "order", "shipping", "grant"]
CLASSES = ["member", "catalogue"]


@st.composite
def stacking(draw, priorities):
    """`stacking` with, sometimes, a class of its own and, for an exclusive promotion, classes it combines with
    (`known_classes` later drops those no promotion of the rule set has)."""
    doc = {"priority": draw(priorities), "exclusive": draw(st.sampled_from([False, False, True]))}
    if draw(st.booleans()):
        doc["class"] = draw(st.sampled_from(CLASSES))
    if doc["exclusive"] and draw(st.integers(0, 2)) > 0:
        doc["combines_with"] = draw(st.lists(st.sampled_from(STAGE_CLASSES + CLASSES), min_size=1, max_size=3,
                                             unique=True))
    return doc


def known_classes(docs):
    """The classes the rule set has; combines_with keeps only those (naming another is a load error)."""
    classes = set(STAGE_CLASSES) | {d["stacking"]["class"] for d in docs if "class" in d["stacking"]}
    for d in docs:
        if "combines_with" in d["stacking"]:
            d["stacking"]["combines_with"] = [c for c in d["stacking"]["combines_with"] if c in classes]
    return classes


def combination_settings(draw, classes):
    """_settings.yaml lines for a resolution policy and best_per_line classes, sometimes."""
    text = ""
    policy = draw(st.sampled_from([None, "best_for_customer", "highest_priority"]))
    if policy:
        text += f"exclusive_resolution: {policy}\n"
    per_line = draw(st.lists(st.sampled_from(["item"] + sorted(classes & set(CLASSES))), max_size=2, unique=True)) \
        if draw(st.booleans()) else []
    if per_line:
        text += f"best_per_line: [{', '.join(per_line)}]\n"
    return text


def money_policies(draw):
    """_settings.yaml lines for the money policies, each left at its default or drawn."""
    from engine.model import POLICY_CHOICES
    return "".join(f"{key}: {draw(st.sampled_from(choices))}\n" for key, choices in POLICY_CHOICES.items()
                   if draw(st.booleans()))


@st.composite
def scenarios(draw):
    currency = draw(st.sampled_from(sorted(DIGITS)))
    rounding = draw(st.sampled_from(["half_up", "half_even", "down", "up"]))
    count = draw(st.integers(1, 6))
    docs = [draw(promotions(currency, i)) for i in range(count)]
    classes = known_classes(docs)
    files = {"r/_settings.yaml": (f"currencies: [JPY, USD, KWD]\nrounding: {rounding}\n"
                                  + combination_settings(draw, classes) + money_policies(draw)).encode()}
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
    """Except under `leftover: first_line / last_line`, which put leftover minor units by cart order on
    purpose (as Sylius, Solidus, Oscar and Saleor do); the invariants hold for them all the same."""
    rules, cart, account = scenario
    shuffled = dict(cart, lines=rnd.sample(cart["lines"], len(cart["lines"])))
    a, b = evaluate(rules, cart, account, now=NOW), evaluate(rules, shuffled, account, now=NOW)
    if rules.policies.leftover != "largest_remainder":
        check_invariants(b)
        return
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
def test_applied_promotions_pairwise_combine_and_losers_name_applied_winners(scenario):
    rules, cart, account = scenario
    trace = evaluate(rules, cart, account, now=NOW)
    applied = {a.promotion for a in trace.applied} | {g.promotion for g in trace.grants}
    for a in applied:
        for b in applied - {a}:
            assert rules.promotions[a].combines(rules.promotions[b]), (a, b)
    for n in trace.not_applied:
        if n.reason.value in ("lost_to_exclusive", "not_best_on_any_line"):
            assert n.lost_to and set(n.lost_to) <= applied | {a.promotion for a in trace.applied}
            assert "saves more" not in n.message or "saves the same" not in n.message


def _live(rules, cart, account):
    """The promotions that pass their gates, and the evaluation's context, as evaluate() builds them."""
    from engine import context, decide
    from engine.evaluate import indexed_scope
    from engine.inputs import parse_account, parse_cart, parse_now
    the_cart, the_account = parse_cart(cart, rules), parse_account(account, rules)
    when = parse_now(NOW)
    scope = indexed_scope(rules, the_cart, the_account, set(), when)
    ctx = context.Context.build(rules, the_cart, the_account, when, {}, frozenset(), scope.targeted)
    return decide, [p for p in scope.considered if decide.gate(p, ctx) is None], ctx


@SETTINGS
@given(scenarios(), st.randoms())
def test_the_candidates_are_exactly_the_maximal_combinable_sets_in_any_order(scenario, rnd):
    from itertools import combinations
    rules, cart, account = scenario
    ev, live, _ = _live(rules, cart, account)
    found = {frozenset(p.id for p in c) for c in ev._candidates(live)}
    cliques = [frozenset(p.id for p in group) for size in range(1, len(live) + 1)
               for group in combinations(live, size) if all(a.combines(b) for a, b in combinations(group, 2))]
    maximal = {c for c in cliques if not any(c < d for d in cliques)} or {frozenset()}
    assert found == maximal or (not live and found == {frozenset()})
    shuffled = rnd.sample(live, len(live))
    assert [[p.id for p in c] for c in ev._candidates(shuffled)] == [[p.id for p in c] for c in ev._candidates(live)]


@SETTINGS
@given(scenarios())
def test_best_for_customer_is_never_worse_than_any_candidate(scenario):
    rules, cart, account = scenario
    ev, live, ctx = _live(rules, cart, account)
    trace = evaluate(rules, cart, account, now=NOW)
    value = trace.totals.discount + sum((g.amount for g in trace.grants), Decimal(0))
    runs = [ev.run_promotions(c, ctx).value() for c in ev._candidates(live)]
    if rules.exclusive_resolution == "best_for_customer":
        assert value == max(runs)
    else:
        assert value in runs


@SETTINGS
@given(scenarios())
def test_best_per_line_leaves_at_most_one_discount_of_each_such_class_on_a_line(scenario):
    rules, cart, account = scenario
    trace = evaluate(rules, cart, account, now=NOW)
    for line in trace.lines:
        classes = [rules.promotions[d.promotion].stacking_class for d in line.discounts if d.stage == "item"]
        for name in rules.best_per_line:
            assert classes.count(name) <= 1, (line.id, name)
    for a in trace.applied:
        for lost in a.lost_lines or ():
            assert lost.line not in {s.line for s in a.lines} and lost.amount > 0


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
    from engine import context, decide
    from engine.inputs import parse_account, parse_cart, parse_now
    from engine.money import from_units
    from engine.variables import VARIABLE_TYPES, Facts, PromotionVariables
    leaf = {"string": ("equal_to", "x"), "select_multiple": ("shares_at_least_one_element_with", ["vip"]),
            "boolean": ("is_true", None), "numeric": ("greater_than", "0")}
    valid = {"local_date": "2026-11-20", "local_weekday": "fri", "region": "US", "sales_channel": "app"}
    terms = []
    for name, kind in sorted(VARIABLE_TYPES.items()):
        operator, value = leaf[kind]
        value = valid.get(name, value)
        if kind == "numeric" and name not in ("cart_subtotal", "eligible_subtotal", "order_total"):
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
    ctx = context.Context.build(rules, cart, account, now, {}, frozenset(), {"every": (cart.lines[0],)})
    state = context.State(lines={"L1": 3001, "L2": 1450}, shipping=(500,))   # after some earlier discount on L1
    facts = Facts(region="US", customer_id="c", customer_tier="prime", customer_segments=("vip", "staff"), order_count=4,
                  sales_channel="app", shipping_method="express", cart_subtotal=from_units(4451, "USD"),
                  order_total=from_units(4951, "USD"), cart_quantity=5, eligible_subtotal=from_units(3001, "USD"), eligible_quantity=3,
                  local_date="2026-11-20", local_weekday="fri", local_hour=22)
    expected = PromotionVariables(facts)
    got = decide._values(promotion, state, ctx)
    assert promotion.condition.variables == set(VARIABLE_TYPES)
    for name in VARIABLE_TYPES:
        want = getattr(expected, name)()
        assert got[name] == want and type(got[name]) is type(want), name
        if isinstance(want, Decimal):
            assert str(got[name]) == str(want), name   # the same digits, as the trace shows them


def test_the_hint_for_a_gift_not_in_the_cart_is_true():
    """Adding what the item hint names, as many as it says, makes the promotion apply."""
    from pathlib import Path
    from engine import load_ruleset, read_json
    case = Path(__file__).parent / "golden" / "u-gift-not-in-cart-hint-jpy"
    rules, cart, account = load_ruleset(case / "rules"), read_json(case / "cart.json"), read_json(case / "account.json")
    trace = evaluate(rules, cart, account, now=NOW)
    [tip] = trace.hints
    assert tip.kind == "item" and tip.item.kind == "sku" and not trace.applied
    tote = {"id": "GIFT", "sku": tip.item.name, "category": "bags", "seller": "first_party", "product_type": "physical",
            "unit_price": "1800", "quantity": int(tip.shortfall)}
    after = evaluate(rules, dict(cart, lines=cart["lines"] + [tote]), account, now=NOW)
    assert [(a.promotion, a.amount, [(s.line, s.amount) for s in a.lines]) for a in after.applied] == \
        [("two-sweaters-tote-free", Decimal(1800), [("GIFT", Decimal(1800))])]
    assert after.hints == ()


def _rules(docs, settings=""):
    files = {"r/_settings.yaml": ("currencies: [JPY]\n" + settings).encode()}
    for doc in docs:
        files[f"r/{doc['id']}.yaml"] = yaml.safe_dump(doc).encode()
    return build_ruleset(files)


def _promo(pid, benefit, priority=0, exclusive=False, **more):
    return {"id": pid, "name": pid.title(), "status": "active", "currency": "JPY", "targets": {"include": "all"},
            "benefits": [benefit], "stacking": {"priority": priority, "exclusive": exclusive, **more}}


JPY_CART = {"currency": "JPY", "channel": "web", "lines": [
    {"id": "L1", "sku": "S1", "category": "a", "seller": "first_party", "product_type": "physical",
     "unit_price": "1000", "quantity": 1}]}


def test_more_maximal_sets_than_the_bound_fall_back_to_greedy_sets_that_still_combine():
    """18 exclusive promotions in 9 pairs, each combining with everyone but its partner: 2^9 = 512 maximal
    sets, over MAX_CANDIDATES. The evaluation still ends, with one set grown from each promotion, and
    the promotions it applies pairwise combine."""
    from engine import decide as ev
    classes = [f"k{i}" for i in range(18)]
    docs = [_promo(f"p{i:02d}", {"type": "percent_off", "percent": 1}, priority=i, exclusive=True, **{
        "class": classes[i], "combines_with": [c for j, c in enumerate(classes) if j not in (i, i ^ 1)]})
        for i in range(18)]
    rules = _rules(docs)
    live = list(rules.promotions.values())
    assert ev._maximal_cliques(18, [frozenset(j for j in range(18) if j not in (i, i ^ 1)) for i in range(18)],
                               ev.MAX_CANDIDATES) is None
    candidates = ev._candidates(live)
    assert 1 < len(candidates) <= 18 and all(len(c) == 9 for c in candidates)
    trace = evaluate(rules, JPY_CART, ACCOUNT, now=NOW)
    applied = [rules.promotions[a.promotion] for a in trace.applied]
    assert len(applied) == 9 and all(a.combines(b) for a in applied for b in applied if a is not b)


def test_without_combines_with_the_candidates_are_the_stackables_together_and_each_exclusive_alone():
    from engine import decide as ev
    docs = [_promo("a", {"type": "percent_off", "percent": 5}), _promo("b", {"type": "free_shipping"}),
            _promo("x", {"type": "percent_off", "percent": 9}, exclusive=True, **{"class": "vip"}),
            _promo("y", {"type": "percent_off", "percent": 8}, exclusive=True)]
    rules = _rules(docs)
    got = [[p.id for p in c] for c in ev._candidates(list(rules.promotions.values()))]
    assert got == [["a", "b"], ["x"], ["y"]]


def test_best_per_line_ties_go_to_the_higher_priority_then_the_smaller_id():
    per_line = {"type": "amount_off", "scope": "per_line", "amount": "100"}
    docs = [_promo("cat-b", per_line, priority=9, **{"class": "catalogue"}),
            _promo("cat-a", per_line, priority=5, **{"class": "catalogue"}),
            _promo("cat-c", per_line, priority=9, **{"class": "catalogue"})]
    trace = evaluate(_rules(docs, "best_per_line: [catalogue]\n"), JPY_CART, ACCOUNT, now=NOW)
    assert [(a.promotion, a.amount) for a in trace.applied] == [("cat-b", Decimal(100))]
    assert {n.promotion: (n.reason.value, n.lost_to) for n in trace.not_applied} == {
        "cat-a": ("not_best_on_any_line", ("cat-b",)), "cat-c": ("not_best_on_any_line", ("cat-b",))}


def test_a_tie_between_outcomes_is_explained_as_a_tie():
    docs = [_promo("one", {"type": "percent_off", "percent": 10}, priority=3, exclusive=True),
            _promo("two", {"type": "amount_off", "scope": "per_order", "amount": "100"}, priority=3, exclusive=True)]
    trace = evaluate(_rules(docs), JPY_CART, ACCOUNT, now=NOW)
    [lost] = trace.not_applied
    assert lost.promotion == "two" and "saves more" not in lost.message
    assert "saves the same and has the same priority, and won the tie by its id" in lost.message


@SETTINGS
@given(scenarios(), st.randoms())
def test_the_order_files_are_given_in_changes_nothing(scenario, rnd):
    rules, cart, account = scenario
    files = {"r/_settings.yaml": ("currencies: [JPY, USD, KWD]\nrounding: " + rules.rounding + "\n"
                                  + (f"exclusive_resolution: {rules.exclusive_resolution}\n")
                                  + (f"best_per_line: [{', '.join(sorted(rules.best_per_line))}]\n"
                                     if rules.best_per_line else "")).encode()}
    for p in rnd.sample(list(rules.promotions.values()), len(rules.promotions)):
        doc = {"id": p.id, "name": p.name, "status": p.status, "currency": p.currency,
               "targets": {"include": "all"}, "benefits": [{"type": "percent_off", "percent": 10}],
               "stacking": {"priority": p.priority, "exclusive": p.exclusive, "class": p.stacking_class}}
        if p.combines_with:
            doc["stacking"]["combines_with"] = list(reversed(p.combines_with))
        files[f"r/{p.id}.yaml"] = yaml.safe_dump(doc).encode()
    shuffled = dict(rnd.sample(list(files.items()), len(files)))
    assert evaluate(build_ruleset(files), cart, account, now=NOW).to_json() == \
        evaluate(build_ruleset(shuffled), cart, account, now=NOW).to_json()


@SETTINGS
@given(scenarios())
def test_the_compact_view_keeps_entered_codes_and_hinted_near_misses_and_counts_the_rest(scenario):
    rules, cart, account = scenario
    trace = evaluate(rules, cart, account, codes=sorted(rules.codes)[:2], now=NOW)
    full, compact = trace.to_dict(), trace.to_dict(view="compact")
    errors = [e.message for e in validator("trace").iter_errors(json.loads(trace.to_json(view="compact")))]
    assert not errors, errors
    hinted = {h["promotion"] for h in full["hints"]}
    kept = [n for n in full["not_applied"] if "code" in n or n["promotion"] in hinted]
    assert compact["not_applied"] == kept
    assert compact["not_applied_omitted"] == len(full["not_applied"]) - len(kept)
    assert compact.pop("view") == "compact" and "inputs" not in compact
    del full["inputs"], full["not_applied"], compact["not_applied"], compact["not_applied_omitted"]
    assert compact == full   # everything else is the full trace's
    with pytest.raises(ValueError):
        trace.to_dict(view="short")

