"""The candidate index finds exactly the promotions a plain scan of every promotion and line finds,
counts the others by the same reasons, and so gives the same trace, byte for byte."""
from __future__ import annotations

import importlib
import random
from datetime import datetime

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from engine import evaluate
from engine.conditions import compile_condition
from engine.index import ENTRIES_KEPT, OTHER_SEGMENT, _holds, _names, representative, scope_values
from engine.ruleset import build_ruleset

from .oracle import evaluate_plainly, scanned_scope
from .test_evaluate import combination_settings, known_classes, money, rewards, shipping, stacking

NOW = "2026-11-21T10:00:00+09:00"
CATEGORIES = ["a", "b", "c", "d"]
BRANDS = ["acme", "zen"]
SKUS = ["S1", "S2", "S3"]
REGIONS = ["JP", "US", "KR"]
CHANNELS = ["web", "app", "store"]


def region_leaf(draw):
    operator = draw(st.sampled_from(["equal_to", "equal_to_case_insensitive", "starts_with", "ends_with", "non_empty"]))
    leaf = {"name": "region", "operator": operator}
    if operator != "non_empty":
        leaf["value"] = draw(st.sampled_from(REGIONS))
    return leaf


def channel_leaf(draw):
    operator = draw(st.sampled_from(["equal_to", "equal_to_case_insensitive", "starts_with"]))
    return {"name": "sales_channel", "operator": operator, "value": draw(st.sampled_from(CHANNELS))}


TIERS = ["standard", "prime", "gold"]
SEGMENTS = ["vip", "staff", "student"]
SEGMENT_OPERATORS = ["contains_all", "is_contained_by", "shares_at_least_one_element_with",
                     "shares_exactly_one_element_with", "shares_no_elements_with"]


def one_of(draw, name, values):
    """A set of values as marketers write it: one `equal_to` leaf, or `any` of them ("JP, KR or US")."""
    chosen = draw(st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True))
    leaves = [{"name": name, "operator": "equal_to", "value": v} for v in chosen]
    return leaves[0] if len(leaves) == 1 and draw(st.booleans()) else {"any": leaves}


def region_condition(draw):
    shape = draw(st.sampled_from(["leaf", "set", "set", "mixed", "all-of-sets"]))
    if shape == "leaf":
        return region_leaf(draw)
    if shape == "set":
        return one_of(draw, "region", REGIONS)
    if shape == "mixed":   # a set whose values cannot all be listed: tested, not looked up
        return {"any": [region_leaf(draw), one_of(draw, "region", REGIONS)]}
    return {"all": [one_of(draw, "region", REGIONS), one_of(draw, "region", REGIONS)]}


def channel_condition(draw):
    return channel_leaf(draw) if draw(st.booleans()) else one_of(draw, "sales_channel", CHANNELS)


def tier_condition(draw):
    shape = draw(st.sampled_from(["set", "set", "set", "unlisted", "all-of-sets", "sets-in-any"]))
    if shape == "set":
        return one_of(draw, "customer_tier", TIERS)
    if shape == "unlisted":   # tested, not looked up
        operator = draw(st.sampled_from(["equal_to_case_insensitive", "starts_with", "non_empty"]))
        leaf = {"name": "customer_tier", "operator": operator}
        if operator != "non_empty":
            leaf["value"] = draw(st.sampled_from(TIERS + ["pr"]))
        return leaf
    if shape == "sets-in-any":   # "gold, or both of two sets": listed by union and intersection
        return {"any": [{"all": [one_of(draw, "customer_tier", TIERS), one_of(draw, "customer_tier", TIERS)]},
                        one_of(draw, "customer_tier", TIERS)]}
    return {"all": [one_of(draw, "customer_tier", TIERS), one_of(draw, "customer_tier", TIERS)]}


def segment_leaf(draw):
    return {"name": "customer_segments", "operator": draw(st.sampled_from(SEGMENT_OPERATORS)),
            "value": draw(st.lists(st.sampled_from(SEGMENTS + ["alumni"]), min_size=1, max_size=3, unique=True))}


def segment_condition(draw):
    shape = draw(st.sampled_from(["leaf", "leaf", "any", "all"]))
    if shape == "leaf":
        return segment_leaf(draw)
    return {shape: [segment_leaf(draw) for _ in range(draw(st.integers(1, 3)))]}


def first_order_condition(draw):
    leaf = {"name": "first_order", "operator": draw(st.sampled_from(["is_true", "is_false"]))}
    shape = draw(st.sampled_from(["leaf", "leaf", "any", "all", "all-in-any"]))
    if shape == "leaf":
        return leaf
    other = {"name": "first_order", "operator": draw(st.sampled_from(["is_true", "is_false"]))}
    if shape == "all-in-any":
        return {"any": [{"all": [leaf, other]}, {"name": "first_order", "operator": "is_false"}]}
    return {shape: [leaf, other]}   # both or neither, as a set can be written


@st.composite
def eligibility(draw, currency):
    """Region, channel, tier, segment and first-order conditions (one value or a set) at the top, nested
    in `all`s, or inside an `any` with another variable (where they rule nothing out)."""
    spend = {"name": "eligible_subtotal", "operator": "greater_than_or_equal_to", "value": money(draw, currency, 1, 60)}
    parts = []
    for make in (region_condition, channel_condition, tier_condition, segment_condition, first_order_condition):
        where = draw(st.sampled_from(["none", "none", "top", "top", "nested", "any"]))
        leaf = make(draw)
        if where == "top":
            parts.append(leaf)
        elif where == "nested":
            parts.append({"all": [leaf, {"name": "order_count", "operator": "less_than", "value": 50}]})
        elif where == "any":
            other = draw(st.sampled_from([{"name": "local_hour", "operator": "less_than", "value": 12},
                                          {"name": "first_order", "operator": "is_true"},
                                          {"name": "customer_tier", "operator": "equal_to", "value": "gold"}]))
            parts.append({"any": [leaf, other]})
    if draw(st.booleans()):
        parts.append(spend)
    shape = draw(st.sampled_from(["all", "single", "none"]))
    if not parts or shape == "none":
        return None
    if shape == "single" and len(parts) == 1:
        return parts[0]
    return {"all": parts}


def an_account(draw):
    return {"id": "a", "region": draw(st.sampled_from(REGIONS + ["TW"])), "tier": draw(st.sampled_from(TIERS + ["platinum"])),
            "segments": draw(st.lists(st.sampled_from(SEGMENTS + ["alumni", "b2b"]), max_size=3, unique=True)),
            "order_count": draw(st.integers(0, 2)), "time_zone": "Asia/Tokyo"}


@st.composite
def targets(draw):
    include = draw(st.sampled_from(["all", "categories", "skus", "brands", "mixed"]))
    if include == "all":
        doc: dict = {"include": "all"}
    elif include == "mixed":
        doc = {"include": {"categories": draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2, unique=True)),
                           "skus": draw(st.lists(st.sampled_from(SKUS), min_size=1, max_size=2, unique=True)),
                           "brands": [draw(st.sampled_from(BRANDS))]}}
    else:
        pool = {"categories": CATEGORIES, "skus": SKUS, "brands": BRANDS}[include]
        doc = {"include": {include: draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))}}
    exclude = draw(st.sampled_from([None, {"sellers": ["third_party"]}, {"product_types": ["digital"]},
                                    {"categories": ["b"]}, {"skus": ["S2"]}, {"brands": ["zen"]}]))
    if exclude:
        doc["exclude"] = exclude
    return doc


@st.composite
def scenarios(draw):
    currency = draw(st.sampled_from(["JPY", "USD"]))
    docs = []
    codes = []
    for i in range(draw(st.integers(1, 10))):
        own = draw(st.sampled_from([currency, currency, "JPY", "USD"]))   # sometimes another currency's
        doc = {"id": f"p{i}", "name": f"Promotion {i}", "status": draw(st.sampled_from(["active", "active", "paused"])),
               "currency": own, "targets": draw(targets()), "benefits": [draw(rewards(own))],
               "stacking": draw(stacking(st.integers(0, 3)))}
        window = draw(st.sampled_from(WINDOWS))
        if window:
            doc["window"] = window
        tree = draw(eligibility(own))
        if tree is not None:
            doc["eligibility"] = tree
        if draw(st.integers(0, 3)) == 0:
            doc["code"] = f"CODE{i}"
            codes.append(doc["code"])
        docs.append(doc)
    classes = known_classes(docs)
    files = {"r/_settings.yaml": ("currencies: [JPY, USD]\n" + combination_settings(draw, classes)).encode()}
    for doc in docs:
        files[f"r/{doc['id']}.yaml"] = yaml.safe_dump(doc, sort_keys=False).encode()
    lines = []
    for i in range(draw(st.integers(0, 6))):
        line = {"id": f"L{i}", "sku": draw(st.sampled_from(SKUS + ["S9"])), "category": draw(st.sampled_from(CATEGORIES)),
                "seller": draw(st.sampled_from(["first_party", "third_party"])),
                "product_type": draw(st.sampled_from(["physical", "digital"])),
                "unit_price": money(draw, currency, 1, 40), "quantity": draw(st.integers(1, 4))}
        brand = draw(st.sampled_from(BRANDS + [None]))
        if brand:
            line["brand"] = brand
        lines.append(line)
    cart = {"currency": currency, "channel": draw(st.sampled_from(CHANNELS)), "lines": lines} | \
        shipping(draw, currency, lines)
    accounts = [an_account(draw) for _ in range(draw(st.integers(1, 3)))]   # one market, several keys
    entered = draw(st.lists(st.sampled_from(codes + ["NOPE"]), max_size=3)) if codes else []
    nows = draw(st.lists(st.sampled_from(NOWS), min_size=1, max_size=3))
    return build_ruleset(files), cart, accounts, entered, nows


# Windows around the moments below, some starting or ending exactly at one of them.
WINDOWS = [None, None,
           {"starts": "2026-11-01T00:00:00+09:00", "ends": "2026-12-01T00:00:00+09:00"},
           {"starts": "2026-10-01T00:00:00+09:00", "ends": "2026-11-21T10:00:00+09:00"},
           {"starts": "2026-11-21T01:00:00Z", "ends": "2026-11-22T00:00:00+09:00"},
           {"starts": "2026-11-25T00:00:00+09:00"},
           {"ends": "2026-11-21T10:00:01+09:00"}]
NOWS = [NOW, "2026-11-21T09:59:59+09:00", "2026-11-21T10:00:01+09:00", "2026-11-22T00:00:00+09:00",
        "2026-10-15T00:00:00+09:00", "2026-12-24T00:00:00Z"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_index_gives_the_same_trace_as_scanning_every_promotion_and_line(scenario):
    rules, cart, accounts, codes, nows = scenario
    for now in nows:   # one rule set at several moments: each stretch of time has its own market
        for account in accounts:   # and several accounts: each key of a market has its own entry
            indexed = evaluate(rules, cart, account, codes=codes, now=now)
            plain = evaluate_plainly(rules, cart, account, codes=codes, now=now)
            assert indexed.to_json() == plain.to_json()
            listed = len(indexed.applied) + len(indexed.not_applied) + len(indexed.grants)
            assert listed + sum(count for _, count in indexed.out_of_scope) == len(rules.promotions)


def _rules(docs):
    files = {"r/_settings.yaml": b"currencies: [JPY]\n"}
    for doc in docs:
        base = {"name": doc["id"], "status": "active", "currency": "JPY",
                "benefits": [{"type": "percent_off", "percent": 10}], "stacking": {"priority": 1, "exclusive": False}}
        files[f"r/{doc['id']}.yaml"] = yaml.safe_dump({**base, **doc}).encode()
    return build_ruleset(files)


JP_ACCOUNT = {"id": "a", "region": "JP", "tier": "standard", "order_count": 1, "time_zone": "Asia/Tokyo"}
ONE_LINE = {"currency": "JPY", "channel": "web", "lines": [{"id": "L1", "sku": "S1", "category": "a", "seller": "first_party",
                                                            "product_type": "physical", "unit_price": "1000", "quantity": 1}]}


def only(region):
    return {"all": [{"name": "region", "operator": "equal_to", "value": region}]}


def test_promotions_for_other_regions_are_counted_and_never_gated(monkeypatch):
    ev = importlib.import_module("engine.evaluate")  # the module; `engine.evaluate` is the function
    gated = []
    real_gate = ev.gate
    monkeypatch.setattr(ev, "gate", lambda p, ctx: gated.append(p.id) or real_gate(p, ctx))
    rules = _rules([{"id": "jp", "targets": {"include": {"categories": ["a"]}}, "eligibility": only("JP")}] +
                   [{"id": f"us{i}", "targets": {"include": {"categories": ["a"]}}, "eligibility": only("US")}
                    for i in range(50)])
    trace = evaluate(rules, ONE_LINE, JP_ACCOUNT, now=NOW)
    assert gated == ["jp"]
    assert [a.promotion for a in trace.applied] == ["jp"]
    assert dict(trace.out_of_scope) == {"region_not_eligible": 50}


def test_region_rules_out_before_targets_and_channel_before_targets():
    rules = _rules([
        {"id": "us-other-category", "targets": {"include": {"categories": ["z"]}}, "eligibility": only("US")},
        {"id": "app-only", "targets": {"include": "all"},
         "eligibility": {"name": "sales_channel", "operator": "equal_to", "value": "app"}},
        {"id": "nothing-targeted", "targets": {"include": {"skus": ["NOPE"]}}}])
    trace = evaluate(rules, ONE_LINE, JP_ACCOUNT, now=NOW)
    assert dict(trace.out_of_scope) == {"region_not_eligible": 1, "channel_not_eligible": 1, "no_eligible_items": 1}


def test_a_region_leaf_inside_any_rules_nothing_out_and_is_listed_with_its_reason():
    rules = _rules([{"id": "us-or-prime", "targets": {"include": "all"}, "eligibility": {"any": [
        {"name": "region", "operator": "equal_to", "value": "US"},
        {"name": "customer_tier", "operator": "equal_to", "value": "prime"}]}}])
    trace = evaluate(rules, ONE_LINE, JP_ACCOUNT, now=NOW)
    assert trace.out_of_scope == ()
    assert [(n.promotion, n.reason.value) for n in trace.not_applied] == [("us-or-prime", "region_not_eligible")]


def test_an_entered_code_is_considered_whatever_its_region():
    rules = _rules([{"id": "us-code", "code": "USA", "targets": {"include": "all"}, "eligibility": only("US")}])
    trace = evaluate(rules, ONE_LINE, JP_ACCOUNT, codes=["usa"], now=NOW)
    assert [(n.promotion, n.reason.value) for n in trace.not_applied] == [("us-code", "region_not_eligible")]
    assert evaluate(rules, ONE_LINE, JP_ACCOUNT, now=NOW).out_of_scope == (("code_not_entered", 1),)


def test_a_line_included_twice_by_one_promotion_is_targeted_once():
    rules = _rules([{"id": "both", "targets": {"include": {"categories": ["a"], "skus": ["S1"]}}}])
    from engine.inputs import parse_account, parse_cart
    cart, account = parse_cart(ONE_LINE, rules), parse_account(JP_ACCOUNT, rules)
    now = datetime.fromisoformat(NOW)
    indexed = rules.index.scope(rules.promotions, rules.codes, cart.lines, "JPY", scope_values(cart, account), set(), now)
    assert [line.id for line in indexed.targeted["both"]] == ["L1"]
    assert indexed == scanned_scope(rules, cart, account, set(), now)


def any_region(*regions):
    return {"any": [{"name": "region", "operator": "equal_to", "value": r} for r in regions]}


def test_promotions_for_other_region_sets_are_counted_and_never_gated(monkeypatch):
    ev = importlib.import_module("engine.evaluate")
    gated = []
    real_gate = ev.gate
    monkeypatch.setattr(ev, "gate", lambda p, ctx: gated.append(p.id) or real_gate(p, ctx))
    rules = _rules([{"id": "jp-kr-tw", "targets": {"include": {"categories": ["a"]}},
                     "eligibility": {"all": [any_region("JP", "KR", "TW"),
                                             {"name": "eligible_subtotal", "operator": "greater_than_or_equal_to",
                                              "value": "100"}]}}] +
                   [{"id": f"us-br{i}", "targets": {"include": {"categories": ["a"]}},
                     "eligibility": any_region("US", "BR")} for i in range(30)] +
                   [{"id": f"app{i}", "targets": {"include": {"categories": ["a"]}},
                     "eligibility": {"any": [{"name": "sales_channel", "operator": "equal_to", "value": c}
                                             for c in ("app", "store")]}} for i in range(20)])
    trace = evaluate(rules, ONE_LINE, JP_ACCOUNT, now=NOW)
    assert gated == ["jp-kr-tw"]
    assert [a.promotion for a in trace.applied] == ["jp-kr-tw"]
    assert dict(trace.out_of_scope) == {"region_not_eligible": 30, "channel_not_eligible": 20}


def test_a_region_that_fails_counts_before_a_channel_that_fails():
    rules = _rules([{"id": "us-app", "targets": {"include": "all"},
                     "eligibility": {"all": [{"name": "sales_channel", "operator": "equal_to", "value": "app"},
                                             any_region("US", "KR")]}}])
    assert dict(evaluate(rules, ONE_LINE, JP_ACCOUNT, now=NOW).out_of_scope) == {"region_not_eligible": 1}


def tier(*tiers):
    return {"any": [{"name": "customer_tier", "operator": "equal_to", "value": t} for t in tiers]}


def segments(operator, *names):
    return {"name": "customer_segments", "operator": operator, "value": list(names)}


FIRST_ORDER = {"name": "first_order", "operator": "is_true"}
RETURNING = {"name": "first_order", "operator": "is_false"}
SPEND = {"name": "eligible_subtotal", "operator": "greater_than_or_equal_to", "value": "100"}


def test_promotions_for_other_tiers_segments_and_order_histories_are_counted_and_never_gated(monkeypatch):
    ev = importlib.import_module("engine.evaluate")
    gated = []
    real_gate = ev.gate
    monkeypatch.setattr(ev, "gate", lambda p, ctx: gated.append(p.id) or real_gate(p, ctx))
    mine = {"targets": {"include": {"categories": ["a"]}}}
    rules = _rules([{"id": "standard-vip-returning", **mine, "eligibility": {"all": [
                        tier("standard", "silver"), segments("shares_at_least_one_element_with", "vip", "staff"),
                        RETURNING, SPEND]}}] +
                   [{"id": f"gold{i}", **mine, "eligibility": {"all": [tier("gold", "prime"), SPEND]}} for i in range(30)] +
                   [{"id": f"student{i}", **mine, "eligibility": segments("contains_all", "student")} for i in range(20)] +
                   [{"id": f"not-vip{i}", **mine, "eligibility": segments("shares_no_elements_with", "vip")}
                    for i in range(5)] +
                   [{"id": f"welcome{i}", **mine, "eligibility": {"all": [FIRST_ORDER, SPEND]}} for i in range(10)])
    vip = {**JP_ACCOUNT, "segments": ["vip"]}
    trace = evaluate(rules, ONE_LINE, vip, now=NOW)
    assert gated == ["standard-vip-returning"]
    assert [a.promotion for a in trace.applied] == ["standard-vip-returning"]
    assert dict(trace.out_of_scope) == {"tier_not_eligible": 30, "segment_not_eligible": 25,
                                        "first_order_not_eligible": 10}
    gated.clear()
    first = evaluate(rules, ONE_LINE, {**JP_ACCOUNT, "order_count": 0, "segments": ["student"]}, now=NOW)
    assert sorted(gated) == sorted([f"not-vip{i}" for i in range(5)] + [f"student{i}" for i in range(20)] + [f"welcome{i}" for i in range(10)])
    assert dict(first.out_of_scope) == {"tier_not_eligible": 30, "segment_not_eligible": 1}


def test_a_promotion_failing_several_facts_is_counted_once_by_the_first_in_scope_order():
    rules = _rules([
        {"id": "us-gold", "targets": {"include": "all"}, "eligibility": {"all": [tier("gold"), only("US")]}},
        {"id": "app-gold", "targets": {"include": "all"},
         "eligibility": {"all": [tier("gold"), {"name": "sales_channel", "operator": "equal_to", "value": "app"}]}},
        {"id": "gold-student-first", "targets": {"include": "all"},
         "eligibility": {"all": [FIRST_ORDER, segments("contains_all", "student"), tier("gold")]}},
        {"id": "student-first", "targets": {"include": "all"},
         "eligibility": {"all": [FIRST_ORDER, segments("contains_all", "student")]}},
        {"id": "gold-other-category", "targets": {"include": {"categories": ["z"]}}, "eligibility": tier("gold")}])
    assert dict(evaluate(rules, ONE_LINE, JP_ACCOUNT, now=NOW).out_of_scope) == {
        "region_not_eligible": 1, "channel_not_eligible": 1, "tier_not_eligible": 2, "segment_not_eligible": 1}


def test_an_entered_code_with_a_failing_tier_is_listed_with_its_failed_condition():
    rules = _rules([{"id": "gold-code", "code": "GOLD", "targets": {"include": "all"}, "eligibility": tier("gold")}])
    trace = evaluate(rules, ONE_LINE, JP_ACCOUNT, codes=["gold"], now=NOW)
    assert trace.out_of_scope == ()
    [missed] = trace.not_applied
    assert (missed.promotion, missed.reason.value) == ("gold-code", "condition_failed")
    assert [(c.variable, c.operator, c.expected, c.actual) for c in missed.failed_conditions] == \
        [("customer_tier", "equal_to", "gold", "standard")]


def test_a_tier_leaf_inside_any_with_another_variable_requires_nothing_and_is_listed():
    """The trace lists it with the measured tier: "gold members, or anyone on Sundays" could pass
    without the tier (NOW is a Saturday in Tokyo)."""
    rules = _rules([{"id": "gold-or-sunday", "targets": {"include": "all"}, "eligibility": {"any": [
        {"name": "customer_tier", "operator": "equal_to", "value": "gold"},
        {"name": "local_weekday", "operator": "equal_to", "value": "sun"}]}}])
    trace = evaluate(rules, ONE_LINE, JP_ACCOUNT, now=NOW)
    assert trace.out_of_scope == ()
    assert [(n.promotion, n.reason.value) for n in trace.not_applied] == [("gold-or-sunday", "condition_failed")]
    assert [(c.variable, c.actual) for c in trace.not_applied[0].failed_conditions] == \
        [("customer_tier", "standard"), ("local_weekday", "sat")]


SEGMENT_NAMES = ["vip", "staff", "student", "ß", "ǆ", "x.y"]
# Account segments as written, in any case (the plain evaluation compares them case-insensitively).
SEGMENT_SPELLINGS = SEGMENT_NAMES + ["VIP", "Vip", "STAFF", "ẞ", "ǅ", "Ǆ", "X.Y", "b2b", "B2B", "other", ""]


@st.composite
def segment_trees(draw):
    def node(depth):
        if depth == 0 or draw(st.integers(0, 2)) == 0:
            return {"name": "customer_segments", "operator": draw(st.sampled_from(SEGMENT_OPERATORS)),
                    "value": draw(st.lists(st.sampled_from(SEGMENT_NAMES), min_size=1, max_size=4, unique=True))}
        return {draw(st.sampled_from(["all", "any"])): [node(depth - 1) for _ in range(draw(st.integers(1, 3)))]}
    return node(3)


@settings(max_examples=500, deadline=None)
@given(st.lists(segment_trees(), min_size=1, max_size=3),
       st.lists(st.sampled_from(SEGMENT_SPELLINGS), max_size=8),
       st.lists(st.sampled_from(["alumni", "b2b", "staff"]), max_size=2))
def test_a_segment_requirement_decides_the_same_on_the_representative_as_on_the_segments(trees, account, more):
    """Whatever the operators, however the account writes its segments (case, duplicates, none), and
    whatever else the market's other requirements name."""
    nodes = tuple(compile_condition(tree).root for tree in trees)
    names = _names(nodes) | frozenset(more)
    stands_for = representative(account, names)
    named = [s for s in stands_for if s != OTHER_SEGMENT]
    assert named == sorted(set(named)) and set(named) <= names
    assert (OTHER_SEGMENT in stands_for) == any(s.lower() not in names for s in account)
    for node in nodes:
        assert _holds(node, stands_for) == _holds(node, tuple(account))
    assert representative([s.lower() for s in account] + account, names) == stands_for   # however spelt


def test_segment_combinations_make_no_entries_and_are_decided_per_evaluation():
    """Segment requirements naming 12 segments allow 4,096 combinations: they are not part of the
    market's key (an account's segments are nearly its own), so one entry serves them all, and each
    evaluation decides the segment rows on the account's own segments, as the plain scan does."""
    names = [f"s{i:02d}" for i in range(12)]
    rules = _rules([{"id": f"needs-{n}", "targets": {"include": "all"}, "eligibility": segments("contains_all", n)}
                    for n in names] + [{"id": "anyone", "targets": {"include": "all"}}])
    market = rules.index.market("JPY", datetime.fromisoformat(NOW))
    rnd = random.Random(5)
    for _ in range(60):
        account = dict(JP_ACCOUNT, segments=sorted(rnd.sample(names, rnd.randint(0, 12))))
        assert evaluate(rules, ONE_LINE, account, now=NOW).to_json() == \
            evaluate_plainly(rules, ONE_LINE, account, now=NOW).to_json()
    assert len(market._entries) == 1


def test_the_entries_of_a_market_are_bounded_and_the_oldest_go_first():
    """40 regions x 30 tiers that promotions list give 1,200 keys: a stream of accounts with ever new
    combinations cannot grow a market's memory without bound."""
    regions = [f"{a}{b}" for a in "ABCD" for b in "ABCDEFGHIJ"]
    tiers = [f"t{i:02d}" for i in range(30)]
    rules = _rules([{"id": f"in-{r.lower()}", "targets": {"include": "all"}, "eligibility": only(r)} for r in regions] +
                   [{"id": f"for-{t}", "targets": {"include": "all"},
                     "eligibility": {"name": "customer_tier", "operator": "equal_to", "value": t}} for t in tiers])
    market = rules.index.market("JPY", datetime.fromisoformat(NOW))
    keys = [(r, "web", t, (), False) for r in regions for t in tiers]
    assert len(keys) > ENTRIES_KEPT
    for values in keys:
        market.entry(values)
    assert len(market._entries) == ENTRIES_KEPT
    assert market.key(keys[-1]) in market._entries and market.key(keys[0]) not in market._entries
    # The first key built, dropped since, is built again when an account needs it.
    first = dict(JP_ACCOUNT, region=regions[0], tier=tiers[0])
    assert evaluate(rules, ONE_LINE, first, now=NOW).to_json() == evaluate_plainly(rules, ONE_LINE, first, now=NOW).to_json()
    assert market.key(keys[0]) in market._entries and len(market._entries) == ENTRIES_KEPT


def test_listed_region_sets_are_looked_up_not_tested(monkeypatch):
    """The cost of scope grows with the promotions a cart can get: promotions whose region, channel and
    tier sets can be listed, and whose segment and first-order terms are decided by the market's key, are
    found by one lookup of that key, and only requirements that cannot be listed
    (`equal_to_case_insensitive`, `starts_with`) are tested per evaluation."""
    index_module = importlib.import_module("engine.index")
    regions = [f"A{chr(ord('A') + i)}" for i in range(26)]
    mine = {"targets": {"include": {"categories": ["a"]}}}
    rules = _rules([{"id": "jp", **mine, "eligibility": any_region("JP", "KR")}] +
                   [{"id": f"r{i}", **mine, "eligibility": any_region(region, regions[i - 1])}
                    for i, region in enumerate(regions)] +
                   [{"id": f"t{i}", **mine, "eligibility": tier(f"tier-{i}", "gold")} for i in range(10)] +
                   [{"id": f"s{i}", **mine, "eligibility": segments("shares_at_least_one_element_with", f"seg-{i}")}
                    for i in range(10)] +
                   [{"id": "welcome", **mine, "eligibility": FIRST_ORDER},
                    {"id": "jp-any-case", **mine,
                     "eligibility": {"name": "region", "operator": "equal_to_case_insensitive", "value": "JP"}},
                    {"id": "st-tiers", **mine, "eligibility": {"all": [
                        segments("contains_all", "seg-1"),
                        {"name": "customer_tier", "operator": "starts_with", "value": "st"}]}}])
    evaluate(rules, ONE_LINE, JP_ACCOUNT, now=NOW)     # builds the market and the entry of this key
    tested = []
    real_failure = index_module._failure
    monkeypatch.setattr(index_module, "_failure", lambda reqs, values: tested.append(reqs) or
                        real_failure(reqs, values))
    trace = evaluate(rules, ONE_LINE, JP_ACCOUNT, now=NOW)
    assert sorted([r.nodes[0].operator for r in reqs if r is not None and r.accepted is None] for reqs in tested) == \
        [["equal_to_case_insensitive"], ["starts_with", "contains_all"]]   # SCOPE_ORDER: tier, then segments
    assert sorted(a.promotion for a in trace.applied) == ["jp", "jp-any-case"]
    assert dict(trace.out_of_scope) == {"region_not_eligible": 26, "tier_not_eligible": 10,
                                        "segment_not_eligible": 11, "first_order_not_eligible": 1}


def test_a_rule_set_copies_without_its_market_cache():
    import copy
    rules = _rules([{"id": "jp", "targets": {"include": {"categories": ["a"]}}, "eligibility": only("JP")}])
    before = evaluate(rules, ONE_LINE, JP_ACCOUNT, now=NOW)   # builds and caches a market
    twin = copy.deepcopy(rules)
    assert twin.index._markets == {} and twin.index.automatic == rules.index.automatic
    assert evaluate(twin, ONE_LINE, JP_ACCOUNT, now=NOW).to_json() == before.to_json()
