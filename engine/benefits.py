"""Benefit kinds: the one table of what a promotion can give (KINDS), and each kind's calculator:
what it would take off, exactly, before any rounding.

Each calculator gets the benefit's targeted lines as they stand (after earlier promotions) and
the shipping still payable (a shipping kind: one shipment's, or for a kind that takes its amount
"once", all its targeted shipments' together; a line kind gets 0), all in whole minor units of the cart's currency, and returns either an
`Exact` result (per-line amounts as whole numerators over one common denominator, in minor units,
never more than a line has left) or `Short` when the reward's own threshold is not reached (a
buy-X-get-Y set, a fixed-price bundle, the lowest tier). Rounding, caps and splitting happen once,
in `evaluate`, for every benefit alike. Nothing here mutates anything.

Adding a kind is one entry in KINDS, its calculator, and its `$defs` entry in
schemas/promotion.schema.json (tests/test_benefits.py checks the schema and the table agree).

Why integers and not Fractions: every amount here is exact either way, but a Fraction normalises
(a gcd) on every operation, and a busy cart runs thousands of them per evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from math import lcm
from types import MappingProxyType
from typing import Callable, Iterator, Mapping

from .model import Benefit, Stage
from .money import from_units, to_units


@dataclass(frozen=True)
class Lines:
    """A promotion's targeted lines as they stand when it is evaluated, as parallel tuples in cart
    order (one object per promotion, not one per line): ids, units, and minor units left to pay."""

    ids: tuple[str, ...]
    quantities: tuple[int, ...]
    remaining: tuple[int, ...]


@dataclass(frozen=True)
class NextTier:
    variable: str
    measured: Decimal
    required: Decimal


@dataclass(frozen=True)
class Exact:
    """Exact amounts in minor units: each line's is `numerator / denominator`, and so is shipping's."""

    ids: tuple[str, ...] = ()            # the targeted lines
    numerators: tuple[int, ...] = ()     # per line, each amount <= what the line has left
    shipping: int = 0
    denominator: int = 1
    next_tier: NextTier | None = None

    def total(self) -> int:
        """The numerator of the whole amount, over `denominator`."""
        return sum(self.numerators) + self.shipping

    def amounts(self) -> dict[str, Fraction]:
        """Each line's exact amount in minor units, for people and tests."""
        return {line: Fraction(n, self.denominator) for line, n in zip(self.ids, self.numerators)}


@dataclass(frozen=True)
class Short:
    """The reward needs more than the targeted lines have: `required` of `variable`, `measured` now."""

    variable: str
    measured: Decimal
    required: Decimal


Result = Exact | Short
# benefit, targeted lines, shipping left (minor units), the cart's currency.
Calculator = Callable[[Benefit, Lines, int, str], Result]


@lru_cache(maxsize=1024)
def _percent(percent: Decimal) -> tuple[int, int]:
    """A percent as the fraction numerator / denominator of 1: 12.5 -> (25, 200)."""
    numerator, denominator = percent.as_integer_ratio()
    return numerator, denominator * 100


def _spread(amount: int, lines: Lines) -> Exact:
    """One amount over the lines in proportion to what each has left, never more than all have."""
    left = sum(lines.remaining)
    if left == 0:
        return Exact(lines.ids, (0,) * len(lines.ids))
    total = min(amount, left)
    return Exact(lines.ids, tuple(r * total for r in lines.remaining), denominator=left)


def _percent_of_lines(percent: Decimal, lines: Lines) -> Exact:
    numerator, denominator = _percent(percent)
    return Exact(lines.ids, tuple(r * numerator for r in lines.remaining), denominator=denominator)


def percent_off(benefit: Benefit, lines: Lines, shipping: int, currency: str) -> Result:
    assert benefit.percent is not None
    return _percent_of_lines(benefit.percent, lines)


def amount_off(benefit: Benefit, lines: Lines, shipping: int, currency: str) -> Result:
    assert benefit.amount is not None
    amount = to_units(benefit.amount, currency)
    if benefit.scope == "per_unit":   # min(amount, a unit's share of what is left) per unit
        return Exact(lines.ids, tuple(min(amount * q, r) for q, r in zip(lines.quantities, lines.remaining)))
    if benefit.scope == "per_line":
        return Exact(lines.ids, tuple(min(amount, r) for r in lines.remaining))
    return _spread(amount, lines)


def _runs(lines: Lines, cheapest_first: bool) -> tuple[list[tuple[int, str, int]], int]:
    """Units grouped by line as (unit value, line id, count), most expensive first unless asked, and
    the denominator of the unit values (a unit is worth value / denominator minor units).

    Ties between lines of equal unit value go to the smaller line id, so the cart's order of lines
    never changes which units are picked."""
    denominator = lcm(*lines.quantities)
    runs = [(r * (denominator // q), line_id, q) for line_id, q, r in zip(lines.ids, lines.quantities, lines.remaining)]
    if cheapest_first:
        return sorted(runs, key=lambda r: (r[0], r[1])), denominator
    return sorted(runs, key=lambda r: (-r[0], r[1])), denominator


def _sets(runs: list[tuple[int, str, int]], size: int, count: int) -> Iterator[tuple[int, list]]:
    """Consecutive sets of `size` units from `runs`, at most `count` of them, as (repeats, members).

    A run long enough for several whole sets yields them at once, so the work grows with the number
    of lines, not with quantities."""
    pending: list[tuple[str, int, int]] = []
    pending_units = 0
    made = 0
    for value, line_id, units in runs:
        while units > 0 and made < count:
            if pending_units == 0 and units >= size:
                repeats = min(units // size, count - made)
                yield repeats, [(line_id, value, size)]
                made += repeats
                units -= repeats * size
                continue
            take = min(units, size - pending_units)
            pending.append((line_id, value, take))
            pending_units += take
            units -= take
            if pending_units == size:
                yield 1, pending
                made += 1
                pending, pending_units = [], 0


def fixed_price(benefit: Benefit, lines: Lines, shipping: int, currency: str) -> Result:
    """N units for a price: the most expensive units form the sets, so the customer saves the most."""
    assert benefit.quantity is not None and benefit.price is not None
    units = sum(lines.quantities)
    if units < benefit.quantity:
        return Short("eligible_quantity", Decimal(units), Decimal(benefit.quantity))
    count = units // benefit.quantity
    if benefit.max_sets is not None:
        count = min(count, benefit.max_sets)
    runs, denominator = _runs(lines, cheapest_first=False)
    price = to_units(benefit.price, currency) * denominator   # in the unit values' denominator
    # Each set's saving is spread over its units in proportion to their value, so each set has its own
    # denominator: exact Fractions here (a few per cart), one common denominator at the end.
    amounts: dict[str, Fraction] = {}
    for repeats, members in _sets(runs, benefit.quantity, count):
        set_value = sum(value * n for _, value, n in members)
        if set_value <= price:  # already cheaper than the bundle price: nothing to take off
            continue
        for line_id, value, n in members:
            share = Fraction(repeats * value * n * (set_value - price), set_value * denominator)
            amounts[line_id] = amounts.get(line_id, 0) + share
    common = lcm(*(a.denominator for a in amounts.values())) if amounts else 1
    return Exact(lines.ids, tuple(_over(amounts.get(line_id, 0), common) for line_id in lines.ids), denominator=common)


def _over(amount: Fraction | int, denominator: int) -> int:
    """The numerator of `amount` written over `denominator` (a multiple of its own)."""
    if isinstance(amount, int):
        return amount * denominator
    return amount.numerator * (denominator // amount.denominator)


def buy_x_get_y(benefit: Benefit, lines: Lines, shipping: int, currency: str) -> Result:
    """Buy N, get M at a percent off. The discounted units are the cheapest (or the most expensive)
    `sets * M` units; `sets * N` others pay full price, so no unit is both bought and given."""
    assert benefit.buy is not None and benefit.get is not None and benefit.percent is not None
    size = benefit.buy + benefit.get
    units = sum(lines.quantities)
    sets = units // size
    if benefit.max_sets is not None:
        sets = min(sets, benefit.max_sets)
    if sets == 0:
        return Short("eligible_quantity", Decimal(units), Decimal(size))
    numerator, denominator = _percent(benefit.percent)
    runs, unit_denominator = _runs(lines, cheapest_first=benefit.discounted_units == "cheapest")
    amounts: dict[str, int] = {}
    for repeats, members in _sets(runs, sets * benefit.get, 1):
        for line_id, value, n in members:
            amounts[line_id] = amounts.get(line_id, 0) + repeats * value * n * numerator
    return Exact(lines.ids, tuple(amounts.get(line_id, 0) for line_id in lines.ids),
                 denominator=denominator * unit_denominator)


def tiered(benefit: Benefit, lines: Lines, shipping: int, currency: str) -> Result:
    """The highest tier reached on the basis (inclusive), as a percent of the lines or an amount."""
    if benefit.basis == "eligible_quantity":
        measured = Decimal(sum(lines.quantities))
    else:
        measured = from_units(sum(lines.remaining), currency)
    reached = [tier for tier in benefit.tiers if measured >= tier.at]
    if not reached:
        return Short(benefit.basis or "", measured, benefit.tiers[0].at)
    tier = reached[-1]
    above = [t for t in benefit.tiers if t.at > measured]
    next_tier = NextTier(benefit.basis or "", measured, above[0].at) if above else None
    if tier.percent is not None:
        result = _percent_of_lines(tier.percent, lines)
    else:
        assert tier.amount is not None
        result = _spread(to_units(tier.amount, currency), lines)
    return Exact(result.ids, result.numerators, denominator=result.denominator, next_tier=next_tier)


def free_shipping(benefit: Benefit, lines: Lines, shipping: int, currency: str) -> Result:
    return Exact(shipping=shipping)


def shipping_amount_off(benefit: Benefit, lines: Lines, shipping: int, currency: str) -> Result:
    assert benefit.amount is not None
    return Exact(shipping=min(to_units(benefit.amount, currency), shipping))


def shipping_percent_off(benefit: Benefit, lines: Lines, shipping: int, currency: str) -> Result:
    assert benefit.percent is not None
    numerator, denominator = _percent(benefit.percent)
    return Exact(shipping=shipping * numerator, denominator=denominator)


def shipping_fixed_price(benefit: Benefit, lines: Lines, shipping: int, currency: str) -> Result:
    """Shipping costs `price`: what is left of it above the price comes off; nothing when it costs less."""
    assert benefit.price is not None
    return Exact(shipping=max(shipping - to_units(benefit.price, currency), 0))


@dataclass(frozen=True)
class Kind:
    """One kind of benefit: the stage it runs in (amount_off and percent_off by their scope), its
    calculator, and whether it has a threshold of its own (it may then refuse a whole promotion, so
    it must be the promotion's first benefit)."""

    stages: Mapping[str | None, Stage]   # scope (None: written without one) -> stage
    calculate: Calculator | None         # None: a grant, which takes nothing off this order
    threshold: bool = False
    selects_lines: bool = True           # it discounts lines: `targets` and `units` apply
    # Shipping kinds: "each" targeted shipment priced on its own, or the amount taken "once" across
    # them (evaluate.py spreads it, the shipment with most left first, ties to the smaller id).
    shipments: str | None = None

    def stage(self, scope: str | None) -> Stage:
        return self.stages[scope]


PERCENT_SCOPES = MappingProxyType({None: Stage.ITEM, "per_line": Stage.ITEM, "per_order": Stage.ORDER})
AMOUNT_SCOPES = MappingProxyType({"per_unit": Stage.ITEM, "per_line": Stage.ITEM, "per_order": Stage.ORDER})
SHIPPING = MappingProxyType({None: Stage.SHIPPING})

KINDS: Mapping[str, Kind] = MappingProxyType({
    "percent_off": Kind(PERCENT_SCOPES, percent_off),
    "amount_off": Kind(AMOUNT_SCOPES, amount_off),
    "fixed_price": Kind(MappingProxyType({None: Stage.ITEM}), fixed_price, threshold=True),
    "buy_x_get_y": Kind(MappingProxyType({None: Stage.ITEM}), buy_x_get_y, threshold=True),
    "tiered": Kind(MappingProxyType({None: Stage.ORDER}), tiered, threshold=True),
    "free_shipping": Kind(SHIPPING, free_shipping, selects_lines=False, shipments="each"),
    "shipping_amount_off": Kind(SHIPPING, shipping_amount_off, selects_lines=False, shipments="once"),
    "shipping_percent_off": Kind(SHIPPING, shipping_percent_off, selects_lines=False, shipments="each"),
    "shipping_fixed_price": Kind(SHIPPING, shipping_fixed_price, selects_lines=False, shipments="each"),
    "grant_promotional_balance": Kind(MappingProxyType({None: Stage.GRANT}), None, selects_lines=False),
})
