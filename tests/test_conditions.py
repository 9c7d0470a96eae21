"""Compiled conditions must agree with business-rules' own engine on every tree and every input."""
from decimal import Decimal

from business_rules.engine import check_conditions_recursively
from hypothesis import given, settings, strategies as st

from engine.conditions import compile_condition
from engine.variables import (MONEY_VARIABLES, SALES_CHANNELS, VARIABLE_TYPES, WEEKDAYS, Facts,
                              PromotionVariables)
from engine.schemas import schema

OPS = {t: schema("promotion")["$defs"][f"{t}_operators"]["enum"] for t in ("numeric", "string", "boolean", "select_multiple")}
SEGMENTS = ["students", "vip", "staff", "new", "Vip"]
WORDS = ["JP", "US", "jp", "prime", "standard", "web", "app", "sat", "2026-11", "2026-11-21", "", "J"]

facts_strategy = st.builds(
    Facts,
    region=st.sampled_from(["JP", "US", "KW", "jp"]),
    customer_id=st.sampled_from(["c-1", "c-2", "C-1"]),
    customer_tier=st.sampled_from(["standard", "prime", "Prime"]),
    customer_segments=st.lists(st.sampled_from(SEGMENTS), max_size=3, unique=True).map(tuple),
    order_count=st.integers(0, 5),
    sales_channel=st.sampled_from(SALES_CHANNELS),
    shipping_method=st.sampled_from(["", "standard", "slow"]),
    cart_subtotal=st.integers(0, 10000).map(Decimal),
    order_total=st.integers(0, 12000).map(Decimal),
    cart_quantity=st.integers(0, 20),
    eligible_subtotal=st.sampled_from(["0", "2999", "3000", "3000.5", "3001"]).map(Decimal),
    eligible_quantity=st.integers(0, 6),
    local_date=st.sampled_from(["2026-11-21", "2026-12-24"]),
    local_weekday=st.sampled_from(WEEKDAYS),
    local_hour=st.integers(0, 23),
)


@st.composite
def leaves(draw):
    name = draw(st.sampled_from(sorted(VARIABLE_TYPES)))
    kind = VARIABLE_TYPES[name]
    op = draw(st.sampled_from(OPS[kind]))
    leaf = {"name": name, "operator": op}
    if op in ("is_true", "is_false", "non_empty"):
        return leaf
    if kind == "numeric":
        leaf["value"] = draw(st.sampled_from(["0", "3000", "2999.999999", "3000.0000005"])) if name in MONEY_VARIABLES \
            else draw(st.integers(0, 6))
    elif kind == "string":
        leaf["value"] = draw(st.sampled_from(WORDS))
    else:
        leaf["value"] = draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3))
    return leaf


trees = st.recursive(leaves(), lambda children: st.one_of(
    st.lists(children, min_size=1, max_size=4).map(lambda c: {"all": c}),
    st.lists(children, min_size=1, max_size=4).map(lambda c: {"any": c})), max_leaves=12)


def for_business_rules(tree):
    """The same tree as business-rules wants it: numbers as Decimal, a value key on every leaf."""
    if "all" in tree or "any" in tree:
        key = "all" if "all" in tree else "any"
        return {key: [for_business_rules(c) for c in tree[key]]}
    value = tree.get("value")
    if VARIABLE_TYPES[tree["name"]] == "numeric" and value is not None:
        value = Decimal(str(value))
    return {"name": tree["name"], "operator": tree["operator"], "value": value}


@settings(max_examples=400, deadline=None)
@given(trees, facts_strategy)
def test_compiled_condition_agrees_with_business_rules(tree, facts):
    condition = compile_condition(tree)
    variables = PromotionVariables(facts)
    values = {name: getattr(variables, name)() for name in condition.variables}
    ours, leaves_measured = condition.measure(values)
    assert ours == bool(check_conditions_recursively(for_business_rules(tree), variables))
    # A failing tree reports every leaf, as measured; a passing one reports none (nothing to explain).
    assert len(leaves_measured) == (0 if ours else len(condition.leaves))
    assert all(m.passed == bool(check_conditions_recursively(for_business_rules(leaf), variables))
               for m, leaf in zip(leaves_measured, _leaves(tree)))


def _leaves(tree):
    if "all" in tree or "any" in tree:
        return [leaf for child in tree.get("all", tree.get("any", [])) for leaf in _leaves(child)]
    return [tree]


def test_every_leaf_is_recorded_even_after_a_failure():
    condition = compile_condition({"all": [
        {"name": "region", "operator": "equal_to", "value": "US"},
        {"name": "order_count", "operator": "less_than", "value": 1}]})
    ok, measured = condition.measure({"region": "JP", "order_count": Decimal(3)})
    assert not ok
    assert [(m.variable, m.passed) for m in measured] == [("region", False), ("order_count", False)]


def test_blame_skips_failed_leaves_inside_a_branch_that_passed():
    condition = compile_condition({"all": [
        {"name": "sales_channel", "operator": "equal_to", "value": "app"},
        {"any": [{"name": "local_weekday", "operator": "equal_to", "value": "sat"},
                 {"name": "local_weekday", "operator": "equal_to", "value": "sun"}]}]})
    _, measured = condition.measure({"sales_channel": "web", "local_weekday": "sat"})
    assert condition.blame([m.passed for m in measured]) == (0,)


def test_numeric_comparisons_keep_business_rules_tolerance():
    condition = compile_condition({"name": "eligible_subtotal", "operator": "greater_than_or_equal_to", "value": "3000"})
    assert condition.measure({"eligible_subtotal": Decimal("2999.9999995")})[0]
    assert not condition.measure({"eligible_subtotal": Decimal("2999.99")})[0]


def test_a_leaf_on_a_variable_with_several_values_passes_when_any_one_passes():
    from engine.conditions import Several, compile_condition
    condition = compile_condition({"all": [{"name": "shipping_method", "operator": "equal_to", "value": "express"}]})
    assert condition.measure({"shipping_method": Several(("express", "ground"))})[0]
    passed, leaves = condition.measure({"shipping_method": Several(("ground", "standard"))})
    assert not passed and leaves[0].actual == ("ground", "standard")
    assert not compile_condition({"name": "shipping_method", "operator": "non_empty"}).measure(
        {"shipping_method": ""})[0]
