from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from engine.money import (MoneyError, allocate, format_money, minor_unit, parse_decimal, parse_money, quantum,
                          round_to_minor)


def test_minor_units_come_from_iso_4217():
    assert (minor_unit("JPY"), minor_unit("USD"), minor_unit("KWD")) == (0, 2, 3)
    assert quantum("KWD") == Decimal("0.001")


def test_unknown_currency_is_an_error_not_a_default():
    with pytest.raises(MoneyError, match="unknown currency"):
        minor_unit("XYZ")


@pytest.mark.parametrize("bad", [12.5, 1, None, True, "1e3", "-1", "NaN", "Infinity", " 1", "1.", ".5", "01", "1,000",
                                 "1\n", "1.50\n"])
def test_parse_decimal_refuses_anything_but_a_plain_decimal_string(bad):
    with pytest.raises(MoneyError):
        parse_decimal(bad)


def test_parse_money_refuses_amounts_finer_than_the_currency():
    assert parse_money("12.50", "USD") == Decimal("12.50")
    assert parse_money("5", "KWD") == Decimal("5.000")
    with pytest.raises(MoneyError, match="finer than JPY"):
        parse_money("0.5", "JPY")
    with pytest.raises(MoneyError, match="finer than USD"):
        parse_money("1.234", "USD")


@pytest.mark.parametrize("mode, half_2, half_3", [
    ("half_up", "3", "4"), ("half_even", "2", "4"), ("half_down", "2", "3"), ("down", "2", "3"), ("up", "3", "4")])
def test_each_rounding_mode_decides_exact_halves_exactly(mode, half_2, half_3):
    assert round_to_minor(Fraction(5, 2), "JPY", mode) == Decimal(half_2)
    assert round_to_minor(Fraction(7, 2), "JPY", mode) == Decimal(half_3)


def test_an_unknown_rounding_mode_is_an_error_even_when_nothing_needs_rounding():
    from engine.money import round_units
    with pytest.raises(MoneyError, match="unknown rounding mode"):
        round_units(300, 3, "nearest")          # exactly 100: no rounding needed, still refused
    with pytest.raises(MoneyError, match="unknown rounding mode"):
        round_to_minor(Fraction(5), "JPY", "bankers")
    assert round_units(300, 3, "down") == 100 and round_units(301, 3, "up") == 101 and round_units(301, 3, "down") == 100


def test_rounding_uses_the_currency_minor_unit():
    assert round_to_minor(Fraction("1.2345"), "KWD", "half_up") == Decimal("1.235")
    assert round_to_minor(Fraction("1.2345"), "USD", "half_up") == Decimal("1.23")
    assert round_to_minor(Fraction(1, 3), "USD", "up") == Decimal("0.34")


def test_allocate_gives_leftover_units_to_largest_remainders_then_smallest_id():
    # 100 over three equal weights: 33.33 each, one unit left, the tie goes to the smallest id.
    parts = allocate(Decimal(100), [Fraction(300)] * 3, ["c", "a", "b"], "JPY")
    assert parts == [Decimal(33), Decimal(34), Decimal(33)]


def test_allocate_never_gives_a_part_more_than_its_weight_rounded_up():
    weights = [Fraction(100), Fraction("0.5")]
    assert allocate(Decimal(101), weights, ["a", "b"], "JPY") == [Decimal(100), Decimal(1)]


def test_allocate_refuses_more_than_the_weights_can_take():
    with pytest.raises(ValueError):
        allocate(Decimal(5), [Fraction(1), Fraction(1)], ["a", "b"], "JPY")
    with pytest.raises(ValueError):   # one part: at most its weight rounded up
        allocate(Decimal(3), [Fraction(3, 2)], ["a"], "JPY")
    with pytest.raises(ValueError):
        allocate(Decimal(1), [Fraction(0)], ["a"], "JPY")
    assert allocate(Decimal(2), [Fraction(3, 2)], ["a"], "JPY") == [Decimal(2)]
    assert allocate(Decimal(1), [Fraction(3, 2)], ["a"], "JPY") == [Decimal(1)]   # a cap below the weight


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=12), st.data())
def test_allocate_parts_sum_to_the_total_and_stay_within_weights(weights, data):
    fractions = [Fraction(w, 1000) for w in weights]  # KWD-like exact weights
    cap = sum(fractions, Fraction(0))
    total_units = data.draw(st.integers(min_value=0, max_value=int(cap * 1000)))
    total = Decimal(total_units) / 1000
    keys = [f"k{i:02d}" for i in range(len(weights))]
    parts = allocate(total, fractions, keys, "KWD")
    assert sum(parts) == total
    for part, weight in zip(parts, fractions):
        assert Decimal(0) <= part <= Decimal(-(-weight * 1000 // 1)) / 1000


@given(st.lists(st.integers(min_value=1, max_value=10**5), min_size=2, max_size=8), st.randoms())
def test_allocate_does_not_depend_on_the_order_of_parts(weights, rnd):
    keys = [f"L{i}" for i in range(len(weights))]
    total = Decimal(sum(weights) // 3)
    first = dict(zip(keys, allocate(total, [Fraction(w) for w in weights], keys, "JPY")))
    order = list(range(len(weights)))
    rnd.shuffle(order)
    second = dict(zip([keys[i] for i in order],
                      allocate(total, [Fraction(weights[i]) for i in order], [keys[i] for i in order], "JPY")))
    assert first == second


def test_format_money_uses_the_currency_digits():
    assert format_money(Decimal("3500"), "JPY") == "¥3,500"
    assert format_money(Decimal("1.5"), "KWD") == "KWD1.500"


def test_when_rounding_lowers_the_total_lines_keep_their_exact_share_rounded_down():
    # 33.8 + 33.8 + 31.8 = 99.4 -> 99: floors 33, 33, 31 and the two yen left go to L1, L2 (tied .8s).
    parts = allocate(Decimal(99), [Fraction("33.8"), Fraction("33.8"), Fraction("31.8")], ["L1", "L2", "L3"], "JPY")
    assert parts == [Decimal(34), Decimal(34), Decimal(31)]


def test_a_cap_below_the_rounded_down_shares_scales_them_first():
    parts = allocate(Decimal(50), [Fraction(60), Fraction(40)], ["a", "b"], "JPY")
    assert parts == [Decimal(30), Decimal(20)]


def _allocate_with_fractions(total, weights, keys, currency):
    """allocate() as first written, over Fractions: kept as the oracle for the integer version."""
    q = Fraction(quantum(currency))
    units_total = Fraction(total) / q
    exact = [w / q for w in weights]
    exact_sum = sum(exact, Fraction(0))
    if exact_sum == 0:
        return [Decimal(0).quantize(quantum(currency))] * len(weights)
    shares = exact
    if sum(e.__floor__() for e in exact) > units_total:
        shares = [e * units_total / exact_sum for e in exact]
    floors = [s.__floor__() for s in shares]
    left = int(units_total) - sum(floors)
    order = sorted((i for i in range(len(shares)) if shares[i] != floors[i]),
                   key=lambda i: (-(shares[i] - floors[i]), keys[i]))
    for i in order[:left]:
        floors[i] += 1
    return [(Decimal(u) * quantum(currency)).quantize(quantum(currency)) for u in floors]


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["JPY", "USD", "KWD"]),
       st.lists(st.fractions(min_value=0, max_value=500, max_denominator=3000), min_size=1, max_size=8),
       st.integers(0, 10**6), st.randoms())
def test_allocate_over_integers_agrees_with_allocate_over_fractions(currency, weights, cap, rnd):
    from engine.money import round_to_minor
    keys = [f"L{i}" for i in rnd.sample(range(20), len(weights))]
    rounded = round_to_minor(sum(weights, Fraction(0)), currency, "half_up")
    total = min(rounded, (Decimal(cap) * quantum(currency)).quantize(quantum(currency)))
    assert allocate(total, weights, keys, currency) == _allocate_with_fractions(total, weights, keys, currency)
