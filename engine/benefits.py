"""Benefit kinds: the one table of what a promotion can give (KINDS), and each kind's calculator:
what it would take off, exactly, before any rounding.

Each calculator gets the benefit's targeted lines as they stand (after earlier promotions) and
the shipping still payable (a shipping kind: one shipment's, or for a kind that takes its amount
"once", all its targeted shipments' together; a line kind gets 0), all in whole minor units of the
cart's currency (a line's amount left is `remaining / denominator`: whole minor units unless `units`
kept only some of its units), and returns either an
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
from math import gcd, lcm
from types import MappingProxyType
from typing import Callable, Iterator, Mapping

from .model import Benefit, Stage, Units
from .money import from_units, to_units


@dataclass(frozen=True)
class Lines:
    """A benefit's lines as they stand when it is evaluated, as parallel tuples in cart order (one
    object per benefit, not one per line): ids, units, and what is left to pay, `remaining[i] /
    denominator` minor units (the denominator is 1 unless `keep_units` kept only some of a line's
    units, each worth its exact share of the line).

    A buy-X-get-Y benefit with targets of its own sees the union of the promotion's targeted lines
    and its own, with `buys` (the line's units may be bought: the promotion's targets) and `gets`
    (they may be discounted: the benefit's targets); None means every line is both."""

    ids: tuple[str, ...]
    quantities: tuple[int, ...]
    remaining: tuple[int, ...]
    denominator: int = 1
    buys: tuple[bool, ...] | None = None
    gets: tuple[bool, ...] | None = None


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


@dataclass(frozen=True)
class Missing:
    """A buy-X-get-Y benefit's own selection (the units it gives) has too few units in the cart:
    `measured` of the `required` units. `hint` is true when adding `required - measured` units of
    that selection, and nothing else, would make it apply (the units bought are already there)."""

    measured: int
    required: int
    hint: bool


Result = Exact | Short | Missing
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
    total = min(amount * lines.denominator, left)   # both over lines.denominator
    return Exact(lines.ids, tuple(r * total for r in lines.remaining), denominator=left * lines.denominator)


def _percent_of_lines(percent: Decimal, lines: Lines) -> Exact:
    numerator, denominator = _percent(percent)
    return Exact(lines.ids, tuple(r * numerator for r in lines.remaining), denominator=denominator * lines.denominator)


def percent_off(benefit: Benefit, lines: Lines, shipping: int, currency: str) -> Result:
    assert benefit.percent is not None
    return _percent_of_lines(benefit.percent, lines)


def amount_off(benefit: Benefit, lines: Lines, shipping: int, currency: str) -> Result:
    assert benefit.amount is not None
    amount = to_units(benefit.amount, currency)
    scaled = amount * lines.denominator
    if benefit.scope == "per_unit":   # min(amount, a unit's share of what is left) per unit
        return Exact(lines.ids, tuple(min(scaled * q, r) for q, r in zip(lines.quantities, lines.remaining)),
                     denominator=lines.denominator)
    if benefit.scope == "per_line":   # once per line, never more than its (kept) units are worth
        return Exact(lines.ids, tuple(min(scaled, r) for r in lines.remaining), denominator=lines.denominator)
    return _spread(amount, lines)


def _runs(lines: Lines, cheapest_first: bool) -> tuple[list[tuple[int, str, int]], int]:
    """Units grouped by line as (unit value, line id, count), most expensive first unless asked, and
    the denominator of the unit values (a unit is worth value / denominator minor units).

    Ties between lines of equal unit value go to the smaller line id, so the cart's order of lines
    never changes which units are picked."""
    denominator = lcm(*lines.quantities) if lines.quantities else 1
    runs = [(r * (denominator // q), line_id, q) for line_id, q, r in zip(lines.ids, lines.quantities, lines.remaining)]
    if cheapest_first:
        return sorted(runs, key=lambda r: (r[0], r[1])), denominator * lines.denominator
    return sorted(runs, key=lambda r: (-r[0], r[1])), denominator * lines.denominator


def _take(runs: list[tuple[int, str, int]], total: int | None, per_line: int | None = None) -> dict[str, int]:
    """How many units of each line to keep, taking runs in their order: at most `per_line` of a
    line, at most `total` in all (None: no limit)."""
    kept: dict[str, int] = {}
    left = total
    for _, line_id, count in runs:
        n = count if per_line is None else min(count, per_line)
        if left is not None:
            n = min(n, left)
            left -= n
        if n:
            kept[line_id] = kept.get(line_id, 0) + n
        if left == 0:
            break
    return kept


def keep_units(units: Units, lines: Lines) -> Lines | Short:
    """The units a benefit discounts: at most `max_per_line` of each line, at most `max_total` in
    all, then only whole groups of `group_size`; `choose` says which are kept (the cheapest, or the
    most expensive; equal unit values by line id). A line keeping k of its q units keeps k/q of what
    it has left, exactly: the result's `denominator` makes every amount a whole numerator. Fewer
    units than one group is a threshold not reached (`Short`). Lines that keep nothing are left out."""
    runs, _ = _runs(lines, cheapest_first=units.choose == "cheapest")
    countable = sum(q if units.max_per_line is None else min(q, units.max_per_line) for q in lines.quantities)
    total = countable if units.max_total is None else min(countable, units.max_total)
    if units.group_size is not None:
        if countable < units.group_size:
            return Short("eligible_quantity", Decimal(countable), Decimal(units.group_size))
        total -= total % units.group_size
    kept = _take(runs, total, units.max_per_line)
    ids, quantities, parts = [], [], []
    for line_id, q, r in zip(lines.ids, lines.quantities, lines.remaining):
        k = kept.get(line_id, 0)
        if k:
            ids.append(line_id)
            quantities.append(k)
            parts.append((r * k, q))     # r * k / q, over lines.denominator
    scale = lcm(*(q // gcd(n, q) for n, q in parts)) if parts else 1
    return Lines(tuple(ids), tuple(quantities), tuple(n * scale // q for n, q in parts),
                 denominator=lines.denominator * scale)


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
    """Buy N, get M at a percent off, in sets of N bought units (from the promotion's targets) and M
    given units (from the benefit's targets, the same lines unless it has its own); a unit in both
    may be bought or given, never both. Sets are counted whole, capped by `max_sets`; the given units
    are the cheapest, the most expensive, or (`equal_or_lesser`) the most valuable that cost no more
    than the units bought with them. `units` caps then limit how many given units are discounted."""
    assert benefit.buy is not None and benefit.get is not None and benefit.percent is not None
    buy, get = benefit.buy, benefit.get
    buys = lines.buys or (True,) * len(lines.ids)
    gets = lines.gets or (True,) * len(lines.ids)
    buy_only = sum(q for q, b, g in zip(lines.quantities, buys, gets) if b and not g)
    get_only = sum(q for q, b, g in zip(lines.quantities, buys, gets) if g and not b)
    shared = sum(q for q, b, g in zip(lines.quantities, buys, gets) if b and g)
    units = buy_only + get_only + shared
    # Whole sets by count: `get` units from the given side, `buy` others from the bought side.
    sets = min((get_only + shared) // get, (buy_only + shared) // buy, units // (buy + get))
    if benefit.max_sets is not None:
        sets = min(sets, benefit.max_sets)
    if sets == 0:
        if lines.gets is None:
            return Short("eligible_quantity", Decimal(units), Decimal(buy + get))
        if get_only + shared < get:   # the units given are what is missing (with the units bought, or not)
            enough_bought = buy_only + shared >= buy
            more = max(get - get_only - shared, buy + get - units) if enough_bought else get - get_only - shared
            return Missing(get_only + shared, get_only + shared + more, hint=enough_bought)
        more = max(buy - buy_only - shared, buy + get - units)   # units bought are missing
        return Short("eligible_quantity", Decimal(buy_only + shared), Decimal(buy_only + shared + more))
    cheapest = benefit.discounted_units == "cheapest"
    runs, unit_denominator = _runs(lines, cheapest_first=cheapest)
    role = {line_id: (b, g) for line_id, b, g in zip(lines.ids, buys, gets)}
    if benefit.discounted_units == "equal_or_lesser":
        given = _equal_or_lesser(runs, role, buy, get, sets)
    else:
        # At most this many shared units may be given, so that enough remain to be bought.
        shared_left = shared - max(0, buy * sets - buy_only)
        given = {}
        left = sets * get
        for _, line_id, count in runs:
            bought, gives = role[line_id]
            if not gives or left == 0:
                continue
            n = min(count, left, shared_left) if bought else min(count, left)
            if n:
                given[line_id] = n
                left -= n
                if bought:
                    shared_left -= n
    caps = benefit.units
    if caps is not None:   # caps limit the discounted units, keeping them in the rule's order
        given = _take([(v, line_id, given[line_id]) for v, line_id, _ in runs if line_id in given],
                      caps.max_total, caps.max_per_line)
    numerator, denominator = _percent(benefit.percent)
    value = {line_id: v for v, line_id, _ in runs}
    return Exact(lines.ids, tuple(given.get(line_id, 0) * value[line_id] * numerator for line_id in lines.ids),
                 denominator=denominator * unit_denominator)


def _equal_or_lesser(runs: list[tuple[int, str, int]], role: Mapping[str, tuple[bool, bool]], buy: int, get: int,
                     sets: int) -> dict[str, int]:
    """Sets from the most expensive down: each takes the `buy` most expensive units left that may be
    bought, then the `get` most valuable units left that may be given and cost no more than the
    cheapest of those; it stops at `sets` sets or when no whole set can be formed. Runs of a line
    make many identical sets at once, so the work grows with lines and set boundaries, not units."""
    left = {line_id: count for _, line_id, count in runs}
    order = [(v, line_id) for v, line_id, _ in runs]          # most expensive first
    given: dict[str, int] = {}
    made = 0
    while made < sets:
        bought = _first_units(order, left, buy, lambda line_id: role[line_id][0])
        if bought is None:
            break
        threshold = min(order[i][0] for i, _ in bought)
        for i, n in bought:
            left[order[i][1]] -= n
        gotten = _first_units(order, left, get, lambda line_id: role[line_id][1], threshold)
        if gotten is None:
            for i, n in bought:
                left[order[i][1]] += n
            break
        for i, n in gotten:
            left[order[i][1]] -= n
        repeats = 1
        if len(bought) == 1 and len(gotten) == 1:   # the same set again, as long as both runs last
            b, g = order[bought[0][0]][1], order[gotten[0][0]][1]
            more = left[b] // (buy + get) if b == g else min(left[b] // buy, left[g] // get)
            more = min(more, sets - made - 1)
            if more:
                left[b] -= more * buy
                left[g] -= more * get
                repeats += more
        for i, n in gotten:
            given[order[i][1]] = given.get(order[i][1], 0) + n * repeats
        made += repeats
    return given


def _first_units(order: list[tuple[int, str]], left: Mapping[str, int], count: int, allowed: Callable[[str], bool],
                 at_most: int | None = None) -> list[tuple[int, int]] | None:
    """`count` units from the first allowed runs with units left (worth at most `at_most`), as
    (position, units) pairs; None when there are not that many."""
    taken: list[tuple[int, int]] = []
    need = count
    for i, (value, line_id) in enumerate(order):
        if need == 0:
            break
        if (at_most is not None and value > at_most) or not left[line_id] or not allowed(line_id):
            continue
        n = min(left[line_id], need)
        taken.append((i, n))
        need -= n
    return taken if need == 0 else None


def tiered(benefit: Benefit, lines: Lines, shipping: int, currency: str) -> Result:
    """The highest tier reached on the basis (inclusive), as a percent of the lines or an amount."""
    assert lines.denominator == 1   # the schema gives tiered no `units`: its lines are always whole
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
    # Its own `targets` are a second selection beside the promotion's (buy-X-get-Y: the units
    # given), and it applies `units` itself (caps on the units given) rather than through keep_units.
    two_selections: bool = False
    # Shipping kinds: "each" targeted shipment priced on its own, or the amount taken "once" across
    # them (decide.py spreads it, the shipment with most left first, ties to the smaller id).
    shipments: str | None = None

    def stage(self, scope: str | None) -> Stage:
        return self.stages[scope]


Scopes = Mapping[str | None, Stage]   # Kind.stages: declared so, as a Mapping's key type is invariant
PERCENT_SCOPES: Scopes = MappingProxyType({None: Stage.ITEM, "per_line": Stage.ITEM, "per_order": Stage.ORDER})
AMOUNT_SCOPES: Scopes = MappingProxyType({"per_unit": Stage.ITEM, "per_line": Stage.ITEM, "per_order": Stage.ORDER})
SHIPPING: Scopes = MappingProxyType({None: Stage.SHIPPING})
ITEM_ONLY: Scopes = MappingProxyType({None: Stage.ITEM})
ORDER_ONLY: Scopes = MappingProxyType({None: Stage.ORDER})
GRANT_ONLY: Scopes = MappingProxyType({None: Stage.GRANT})

KINDS: Mapping[str, Kind] = MappingProxyType({
    "percent_off": Kind(PERCENT_SCOPES, percent_off),
    "amount_off": Kind(AMOUNT_SCOPES, amount_off),
    "fixed_price": Kind(ITEM_ONLY, fixed_price, threshold=True),
    "buy_x_get_y": Kind(ITEM_ONLY, buy_x_get_y, threshold=True, two_selections=True),
    "tiered": Kind(ORDER_ONLY, tiered, threshold=True),
    "free_shipping": Kind(SHIPPING, free_shipping, selects_lines=False, shipments="each"),
    "shipping_amount_off": Kind(SHIPPING, shipping_amount_off, selects_lines=False, shipments="once"),
    "shipping_percent_off": Kind(SHIPPING, shipping_percent_off, selects_lines=False, shipments="each"),
    "shipping_fixed_price": Kind(SHIPPING, shipping_fixed_price, selects_lines=False, shipments="each"),
    "grant_promotional_balance": Kind(GRANT_ONLY, None, selects_lines=False),
})
