from decimal import Decimal
from fractions import Fraction

from engine.model import Benefit, Stage, Tier
from engine.benefits import Exact, Lines, Short, buy_x_get_y, fixed_price, tiered


def lines(*specs):
    ids, quantities, totals = zip(*specs)
    return Lines(ids, quantities, tuple(int(t) for t in totals))  # JPY: minor units are yen


def as_dict(result):
    assert isinstance(result, Exact)
    return result.amounts()


def test_buy_one_get_one_discounts_the_cheapest_units():
    reward = Benefit(stage=Stage.ITEM, type="buy_x_get_y", buy=1, get=1, percent=Decimal(100))
    got = as_dict(buy_x_get_y(reward, lines(("a", 3, "600"), ("b", 1, "150")), 0, "JPY"))
    assert got == {"a": Fraction(200), "b": Fraction(150)}  # 4 units, 2 sets: the 150 and one 200 are free


def test_buy_x_get_y_can_discount_the_most_expensive_units():
    reward = Benefit(stage=Stage.ITEM, type="buy_x_get_y", buy=2, get=1, percent=Decimal(50), discounted_units="most_expensive")
    got = as_dict(buy_x_get_y(reward, lines(("a", 3, "300"), ("b", 3, "600")), 0, "JPY"))
    assert got == {"a": Fraction(0), "b": Fraction(200)}  # 2 sets: two 200-units at 50%


def test_buy_x_get_y_reports_how_many_units_are_missing():
    reward = Benefit(stage=Stage.ITEM, type="buy_x_get_y", buy=2, get=1, percent=Decimal(100))
    assert buy_x_get_y(reward, lines(("a", 2, "200")), 0, "JPY") == Short("eligible_quantity", Decimal(2), Decimal(3))


def test_fixed_price_sets_take_the_most_expensive_units_and_cross_lines():
    reward = Benefit(stage=Stage.ITEM, type="fixed_price", quantity=3, price=Decimal(1000))
    got = as_dict(fixed_price(reward, lines(("a", 2, "1000"), ("b", 2, "800")), 0, "JPY"))
    # one set: 500 + 500 + 400 = 1400 -> 1000; saving 400 spread 500:500:400
    assert got == {"a": Fraction(2000, 7), "b": Fraction(800, 7)}
    assert sum(got.values()) == 400


def test_huge_quantities_cost_work_per_line_not_per_unit():
    reward = Benefit(stage=Stage.ITEM, type="fixed_price", quantity=3, price=Decimal(1))
    got = as_dict(fixed_price(reward, lines(("a", 9999, str(9999 * 10))), 0, "JPY"))
    assert got == {"a": Fraction(3333 * 29)}


def test_tiered_picks_the_highest_tier_reached_and_names_the_next():
    reward = Benefit(stage=Stage.ORDER, type="tiered", basis="eligible_quantity",
                    tiers=(Tier(at=Decimal(3), percent=Decimal(5)), Tier(at=Decimal(5), percent=Decimal(10))))
    result = tiered(reward, lines(("a", 4, "1000")), 0, "JPY")
    assert as_dict(result) == {"a": Fraction(50)}
    assert result.next_tier.required == 5 and result.next_tier.measured == 4


def test_the_schema_and_the_table_of_kinds_agree():
    """One table of benefit kinds (engine/benefits.py KINDS): the schema lists exactly its kinds, each
    with its own definition; a kind that discounts lines takes `targets`, a shipping kind takes
    `shipping_methods`, and a kind with a scope lists the scopes the table gives stages for."""
    import json
    from pathlib import Path

    from engine.benefits import KINDS
    schema = json.loads((Path(__file__).parent.parent / "schemas" / "promotion.schema.json").read_text())
    defs = schema["$defs"]
    assert defs["benefit"]["properties"]["type"]["enum"] == list(KINDS)
    dispatched = {c["if"]["properties"]["type"]["const"]: c["then"]["$ref"] for c in defs["benefit"]["allOf"]}
    assert dispatched == {name: f"#/$defs/{name}" for name in KINDS}
    for name, kind in KINDS.items():
        props = defs[name]["properties"]
        assert ("targets" in props) == kind.selects_lines, name
        assert ("shipping_methods" in props) == (set(kind.stages.values()) == {Stage.SHIPPING}), name
        scopes = set(props["scope"]["enum"]) if "scope" in props else set()
        assert scopes == set(kind.stages) - {None} and (None in kind.stages) == ("scope" not in defs[name].get("required", [])), name


# --- units: which of a benefit's units it discounts -------------------------------------------------

from engine.benefits import Missing, amount_off, keep_units, percent_off  # noqa: E402
from engine.model import Units  # noqa: E402


def kept(result):
    return {i: (q, Fraction(r, result.denominator)) for i, q, r in zip(result.ids, result.quantities, result.remaining)}


def test_max_per_line_keeps_each_lines_exact_share_of_what_is_left():
    got = keep_units(Units(max_per_line=2), lines(("a", 3, "100"), ("b", 1, "70")))
    assert kept(got) == {"a": (2, Fraction(200, 3)), "b": (1, Fraction(70))}
    assert percent_off(Benefit(stage=Stage.ITEM, type="percent_off", percent=Decimal(50)), got, 0, "JPY").amounts() == \
        {"a": Fraction(100, 3), "b": Fraction(35)}


def test_max_total_keeps_the_cheapest_or_the_most_expensive_units_ties_by_line_id():
    two = lines(("b", 1, "50"), ("a", 2, "100"), ("c", 1, "90"))
    assert kept(keep_units(Units(max_total=2), two)) == {"a": (2, Fraction(100))}   # a and b tie at 50: a first
    assert kept(keep_units(Units(max_total=3), two)) == {"a": (2, Fraction(100)), "b": (1, Fraction(50))}
    assert kept(keep_units(Units(max_total=1, choose="most_expensive"), two)) == {"c": (1, Fraction(90))}


def test_group_size_keeps_only_whole_groups_and_is_short_below_one():
    assert sum(keep_units(Units(group_size=3), lines(("a", 4, "400"), ("b", 3, "300"))).quantities) == 6
    assert keep_units(Units(group_size=3), lines(("a", 2, "200"))) == Short("eligible_quantity", Decimal(2), Decimal(3))
    # max_per_line counts first: 2 lines of 5 units with at most 1 each make no group of 3
    assert keep_units(Units(group_size=3, max_per_line=1), lines(("a", 5, "5"), ("b", 5, "5"))) == \
        Short("eligible_quantity", Decimal(2), Decimal(3))


def test_amount_off_per_line_with_units_is_once_per_line_capped_by_the_kept_units():
    benefit = Benefit(stage=Stage.ITEM, type="amount_off", scope="per_line", amount=Decimal(150))
    got = amount_off(benefit, keep_units(Units(max_per_line=1), lines(("a", 3, "300"), ("b", 1, "400"))), 0, "JPY")
    assert got.amounts() == {"a": Fraction(100), "b": Fraction(150)}


def test_huge_quantities_keep_units_without_a_loop_per_unit():
    got = keep_units(Units(max_total=9998, choose="most_expensive"), lines(("a", 9999, str(9999 * 7)), ("b", 9999, "9999")))
    assert kept(got) == {"a": (9998, Fraction(9998 * 7))}


def bxgy(buy, get, percent=100, units=None, discounted_units="cheapest", max_sets=None):
    return Benefit(stage=Stage.ITEM, type="buy_x_get_y", buy=buy, get=get, percent=Decimal(percent), units=units,
                   discounted_units=discounted_units, max_sets=max_sets)


def two(*specs):
    """Lines as (id, units, total, bought?, given?)."""
    ids, quantities, totals, buys, gets = zip(*specs)
    return Lines(ids, quantities, tuple(int(t) for t in totals), buys=buys, gets=gets)


def test_buy_two_sweaters_get_the_cheaper_t_shirt_free():
    cart = two(("sw", 2, "10000", True, False), ("tw", 1, "1500", False, True), ("tb", 1, "1200", False, True))
    assert as_dict(buy_x_get_y(bxgy(2, 1), cart, 0, "JPY")) == {"sw": 0, "tw": 0, "tb": 1200}


def test_a_unit_in_both_selections_is_bought_or_given_never_both():
    # buy 1 get 1: one shared unit alone makes no set; with a bought-only unit it is given
    assert buy_x_get_y(bxgy(1, 1), two(("s", 1, "500", True, True)), 0, "JPY") == \
        Short("eligible_quantity", Decimal(1), Decimal(2))
    # 2 shared units and 1 given-only: 1 set, the cheapest given unit; the shared units keep one to buy
    got = as_dict(buy_x_get_y(bxgy(1, 1), two(("s", 2, "200", True, True), ("g", 1, "300", False, True)), 0, "JPY"))
    assert got == {"s": 100, "g": 0}
    # buy 2 get 1 from 2 shared + 1 given-only at 50: the given-only one is free, not a shared one
    got = as_dict(buy_x_get_y(bxgy(2, 1), two(("s", 2, "40", True, True), ("g", 1, "50", False, True)), 0, "JPY"))
    assert got == {"s": 0, "g": 50}


def test_a_gift_not_in_the_cart_is_missing_and_says_whether_adding_it_is_enough():
    assert buy_x_get_y(bxgy(2, 1), two(("sw", 2, "100", True, False)), 0, "JPY") == Missing(0, 1, hint=True)
    assert buy_x_get_y(bxgy(3, 1), two(("sw", 2, "100", True, False)), 0, "JPY") == Missing(0, 1, hint=False)


def test_a_cap_smaller_than_one_set_discounts_that_many_units():
    got = as_dict(buy_x_get_y(bxgy(1, 2, units=Units(max_total=1)), lines(("a", 2, "200"), ("b", 1, "50")), 0, "JPY"))
    assert got == {"a": 0, "b": 50}


def test_caps_limit_the_given_units_and_never_the_sets():
    # 6 units make 3 sets; the 3 given units are the cheapest (all of a); at most 1 per line is free
    got = as_dict(buy_x_get_y(bxgy(1, 1, units=Units(max_per_line=1)), lines(("a", 4, "400"), ("b", 2, "400")), 0, "JPY"))
    assert got == {"a": 100, "b": 0}


def test_equal_or_lesser_gives_each_set_the_most_valuable_unit_costing_no_more():
    got = as_dict(buy_x_get_y(bxgy(1, 1, discounted_units="equal_or_lesser"),
                              lines(("a", 3, "300"), ("b", 2, "140"), ("c", 1, "333")), 0, "JPY"))
    assert got == {"a": 200, "b": 70, "c": 0}   # 333 buys 100, 100 buys 100, 70 buys 70


def test_equal_or_lesser_never_gives_a_unit_dearer_than_the_units_bought():
    cart = two(("sw", 1, "50", True, False), ("tee", 1, "60", False, True))
    assert as_dict(buy_x_get_y(bxgy(1, 1, discounted_units="equal_or_lesser"), cart, 0, "JPY")) == {"sw": 0, "tee": 0}


def test_equal_or_lesser_with_huge_quantities_works_per_run():
    got = as_dict(buy_x_get_y(bxgy(2, 1, discounted_units="equal_or_lesser"),
                              lines(("a", 9999, str(9999 * 10)), ("b", 9999, str(9999 * 7))), 0, "JPY"))
    assert got == {"a": 33330, "b": 23331}


# --- properties: units and caps over random lines ----------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


@st.composite
def random_lines(draw, two_selections=False):
    count = draw(st.integers(1, 6))
    ids = [f"L{i}" for i in draw(st.permutations(range(count)))]
    quantities = [draw(st.integers(1, 9)) for _ in ids]
    remaining = [q * draw(st.integers(0, 50)) + draw(st.integers(0, q - 1)) * draw(st.booleans()) for q in quantities]
    if not two_selections:
        return Lines(tuple(ids), tuple(quantities), tuple(remaining))
    roles = [draw(st.sampled_from([(True, False), (False, True), (True, True)])) for _ in ids]
    return Lines(tuple(ids), tuple(quantities), tuple(remaining), buys=tuple(r[0] for r in roles),
                 gets=tuple(r[1] for r in roles))


@st.composite
def random_units(draw):
    units = {}
    if draw(st.booleans()):
        units["max_per_line"] = draw(st.integers(1, 4))
    if draw(st.booleans()):
        units["max_total"] = draw(st.integers(1, 12))
    if draw(st.booleans()) or not units:
        units["group_size"] = draw(st.integers(2, 4))
    return Units(**units, choose=draw(st.sampled_from(["cheapest", "most_expensive"])))


def shuffled(lines_, order):
    pick = lambda seq: None if seq is None else tuple(seq[i] for i in order)  # noqa: E731
    return Lines(pick(lines_.ids), pick(lines_.quantities), pick(lines_.remaining), lines_.denominator,
                 pick(lines_.buys), pick(lines_.gets))


@settings(max_examples=300, deadline=None)
@given(random_lines(), random_units(), st.randoms())
def test_kept_units_respect_every_cap_keep_exact_shares_and_ignore_line_order(lines_, units, rnd):
    result = keep_units(units, lines_)
    if isinstance(result, Short):
        assert units.group_size is not None and result.measured < units.group_size
        return
    total = sum(result.quantities)
    assert units.max_total is None or total <= units.max_total
    assert units.group_size is None or total % units.group_size == 0
    before = {i: (q, r) for i, q, r in zip(lines_.ids, lines_.quantities, lines_.remaining)}
    for line_id, k, r in zip(result.ids, result.quantities, result.remaining):
        q, left = before[line_id]
        assert 1 <= k <= q and (units.max_per_line is None or k <= units.max_per_line)
        assert Fraction(r, result.denominator) == Fraction(left * k, q)   # its exact share, never more
    order = list(range(len(lines_.ids)))
    rnd.shuffle(order)
    again = keep_units(units, shuffled(lines_, order))
    assert kept(again) == kept(result)


@settings(max_examples=300, deadline=None)
@given(random_lines(two_selections=True), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from(["cheapest", "most_expensive", "equal_or_lesser"]), st.none() | st.integers(1, 4),
       st.none() | st.integers(1, 8), st.none() | st.integers(1, 3), st.randoms())
def test_buy_x_get_y_gives_units_within_the_caps_and_the_sets_whatever_the_line_order(
        lines_, buy, get, mode, per_line, total, max_sets, rnd):
    units = Units(max_per_line=per_line, max_total=total) if per_line or total else None
    benefit = bxgy(buy, get, units=units, discounted_units=mode, max_sets=max_sets)
    result = buy_x_get_y(benefit, lines_, 0, "JPY")
    order = list(range(len(lines_.ids)))
    rnd.shuffle(order)
    again = buy_x_get_y(benefit, shuffled(lines_, order), 0, "JPY")
    if not isinstance(result, Exact):
        assert again == result
        return
    assert again.amounts() == result.amounts()
    spec = {i: (q, r, b, g) for i, q, r, b, g in zip(lines_.ids, lines_.quantities, lines_.remaining, lines_.buys,
                                                      lines_.gets)}
    given_units = {}
    for line_id, amount in result.amounts().items():
        q, r, b, g = spec[line_id]
        assert 0 <= amount <= r
        if amount:
            assert g, "only lines of the given selection are discounted"
            given_units[line_id] = amount * q / r   # percent 100: each given unit is worth r / q
            assert given_units[line_id].denominator == 1
    n = sum(given_units.values())
    units_in = lambda pred: sum(q for q, _, b, g in spec.values() if pred(b, g))  # noqa: E731
    sets = min(units_in(lambda b, g: g) // get, units_in(lambda b, g: b) // buy, units_in(lambda b, g: True) // (buy + get))
    assert n <= sets * get and (max_sets is None or n <= max_sets * get)
    assert total is None or n <= total
    assert per_line is None or all(k <= per_line for k in given_units.values())
    # the units bought, disjoint from those given, are enough for the sets that give them
    bought_left = sum(q - given_units.get(i, 0) for i, (q, _, b, g) in spec.items() if b)
    assert bought_left >= buy * -(-n // get)
