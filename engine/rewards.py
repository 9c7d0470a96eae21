"""Reward calculators: what each reward type would take off, exactly, before any rounding.

Each calculator gets the promotion's targeted lines as they stand (after earlier promotions) and
the shipping still payable, and returns either `Exact` per-line amounts as fractions (never more
than a line has left) or `Short` when the reward's own threshold is not reached (a buy-X-get-Y
set, a fixed-price bundle, the lowest tier). Rounding, caps and splitting happen once, in
`evaluate`, for every reward alike. Nothing here mutates anything; `REWARDS` is the registry.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Callable, Iterator, Sequence

from .model import Reward

HUNDRED = Fraction(100)


@dataclass(frozen=True)
class LineState:
    """A targeted line as it stands when a promotion is evaluated."""

    id: str
    quantity: int
    remaining: Decimal


@dataclass(frozen=True)
class NextTier:
    variable: str
    measured: Decimal
    required: Decimal


@dataclass(frozen=True)
class Exact:
    lines: tuple[tuple[str, Fraction], ...] = ()   # line id -> exact discount, each <= what the line has left
    shipping: Fraction = Fraction(0)
    next_tier: NextTier | None = None

    def total(self) -> Fraction:
        return sum((amount for _, amount in self.lines), self.shipping)


@dataclass(frozen=True)
class Short:
    """The reward needs more than the targeted lines have: `required` of `variable`, `measured` now."""

    variable: str
    measured: Decimal
    required: Decimal


Result = Exact | Short
Calculator = Callable[[Reward, Sequence[LineState], Decimal], Result]


def _each(lines: Sequence[LineState], fn: Callable[[LineState], Fraction]) -> Exact:
    return Exact(lines=tuple((line.id, fn(line)) for line in lines))


def _spread(amount: Fraction, lines: Sequence[LineState]) -> Exact:
    """One amount over the lines in proportion to what each has left, never more than all have."""
    left = sum((Fraction(line.remaining) for line in lines), Fraction(0))
    if left == 0:
        return _each(lines, lambda line: Fraction(0))
    total = min(amount, left)
    return _each(lines, lambda line: Fraction(line.remaining) * total / left)


def percent_off(reward: Reward, lines: Sequence[LineState], shipping: Decimal) -> Result:
    pct = Fraction(reward.percent) / HUNDRED
    return _each(lines, lambda line: Fraction(line.remaining) * pct)


def amount_off(reward: Reward, lines: Sequence[LineState], shipping: Decimal) -> Result:
    amount = Fraction(reward.amount)
    if reward.scope == "per_unit":
        return _each(lines, lambda line: min(amount, Fraction(line.remaining) / line.quantity) * line.quantity)
    if reward.scope == "per_line":
        return _each(lines, lambda line: min(amount, Fraction(line.remaining)))
    return _spread(amount, lines)


def _runs(lines: Sequence[LineState], cheapest_first: bool) -> list[tuple[Fraction, str, int]]:
    """Units grouped by line as (unit value, line id, count); most expensive first unless asked.

    Ties between lines of equal unit value go to the smaller line id, so the cart's order of lines
    never changes which units are picked."""
    runs = [(Fraction(line.remaining) / line.quantity, line.id, line.quantity) for line in lines]
    if cheapest_first:
        return sorted(runs, key=lambda r: (r[0], r[1]))
    return sorted(runs, key=lambda r: (-r[0], r[1]))


def _sets(runs: list[tuple[Fraction, str, int]], size: int, count: int) -> Iterator[tuple[int, list]]:
    """Consecutive sets of `size` units from `runs`, at most `count` of them, as (repeats, members).

    A run long enough for several whole sets yields them at once, so the work grows with the number
    of lines, not with quantities."""
    pending: list[tuple[str, Fraction, int]] = []
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


def _add(into: dict[str, Fraction], line_id: str, amount: Fraction) -> None:
    into[line_id] = into.get(line_id, Fraction(0)) + amount


def _by_line(lines: Sequence[LineState], amounts: dict[str, Fraction]) -> Exact:
    return Exact(lines=tuple((line.id, amounts.get(line.id, Fraction(0))) for line in lines))


def fixed_price(reward: Reward, lines: Sequence[LineState], shipping: Decimal) -> Result:
    """N units for a price: the most expensive units form the sets, so the customer saves the most."""
    assert reward.quantity is not None and reward.price is not None
    units = sum(line.quantity for line in lines)
    if units < reward.quantity:
        return Short("eligible_quantity", Decimal(units), Decimal(reward.quantity))
    count = units // reward.quantity
    if reward.max_sets is not None:
        count = min(count, reward.max_sets)
    price = Fraction(reward.price)
    amounts: dict[str, Fraction] = {}
    for repeats, members in _sets(_runs(lines, cheapest_first=False), reward.quantity, count):
        set_value = sum((value * n for _, value, n in members), Fraction(0))
        if set_value <= price:  # already cheaper than the bundle price: nothing to take off
            continue
        saving = (set_value - price) / set_value
        for line_id, value, n in members:
            _add(amounts, line_id, repeats * value * n * saving)
    return _by_line(lines, amounts)


def buy_x_get_y(reward: Reward, lines: Sequence[LineState], shipping: Decimal) -> Result:
    """Buy N, get M at a percent off. The discounted units are the cheapest (or the most expensive)
    `sets * M` units; `sets * N` others pay full price, so no unit is both bought and given."""
    assert reward.buy is not None and reward.get is not None and reward.percent is not None
    size = reward.buy + reward.get
    units = sum(line.quantity for line in lines)
    sets = units // size
    if reward.max_sets is not None:
        sets = min(sets, reward.max_sets)
    if sets == 0:
        return Short("eligible_quantity", Decimal(units), Decimal(size))
    pct = Fraction(reward.percent) / HUNDRED
    runs = _runs(lines, cheapest_first=reward.discounted_units == "cheapest")
    amounts: dict[str, Fraction] = {}
    for repeats, members in _sets(runs, sets * reward.get, 1):
        for line_id, value, n in members:
            _add(amounts, line_id, repeats * value * n * pct)
    return _by_line(lines, amounts)


def tiered(reward: Reward, lines: Sequence[LineState], shipping: Decimal) -> Result:
    """The highest tier reached on the basis (inclusive), as a percent of the lines or an amount."""
    if reward.basis == "eligible_quantity":
        measured = Decimal(sum(line.quantity for line in lines))
    else:
        measured = sum((line.remaining for line in lines), Decimal(0))
    reached = [tier for tier in reward.tiers if measured >= tier.at]
    if not reached:
        return Short(reward.basis or "", measured, reward.tiers[0].at)
    tier = reached[-1]
    above = [t for t in reward.tiers if t.at > measured]
    next_tier = NextTier(reward.basis or "", measured, above[0].at) if above else None
    if tier.percent is not None:
        pct = Fraction(tier.percent) / HUNDRED
        result = _each(lines, lambda line: Fraction(line.remaining) * pct)
    else:
        assert tier.amount is not None
        result = _spread(Fraction(tier.amount), lines)
    return Exact(lines=result.lines, next_tier=next_tier)


def free_shipping(reward: Reward, lines: Sequence[LineState], shipping: Decimal) -> Result:
    return Exact(shipping=Fraction(shipping))


def shipping_amount_off(reward: Reward, lines: Sequence[LineState], shipping: Decimal) -> Result:
    assert reward.amount is not None
    return Exact(shipping=min(Fraction(reward.amount), Fraction(shipping)))


def shipping_percent_off(reward: Reward, lines: Sequence[LineState], shipping: Decimal) -> Result:
    assert reward.percent is not None
    return Exact(shipping=Fraction(shipping) * Fraction(reward.percent) / HUNDRED)


REWARDS: dict[str, Calculator] = {
    "percent_off": percent_off,
    "amount_off": amount_off,
    "fixed_price": fixed_price,
    "buy_x_get_y": buy_x_get_y,
    "tiered": tiered,
    "free_shipping": free_shipping,
    "shipping_amount_off": shipping_amount_off,
    "shipping_percent_off": shipping_percent_off,
}
