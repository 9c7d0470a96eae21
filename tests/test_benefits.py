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
