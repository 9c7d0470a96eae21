"""Money: currencies and their minor units, exact parsing, the one rounding point, and splitting.

Every amount in promo-engine is a `Decimal` read from a string and held at the currency's minor
unit (ISO 4217, via Babel: JPY 0 decimals, USD 2, KWD 3). Inside evaluate() the same amounts are
whole numbers of minor units (`to_units` / `from_units` convert, exactly), and an intermediate
share (a percentage of a line, a line's part of an order amount) is an exact rational: a whole
numerator over a whole denominator. It becomes money in exactly one place, `round_units()` (the
Decimal form is `round_to_minor()`), and is split across lines by `allocate_units()` (`allocate()`)
so the parts always add up. Integers make that exact and cheap: no float, no Fraction objects.
"""
from __future__ import annotations

import re
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction
from functools import lru_cache
from math import lcm
from typing import Any, Sequence

from babel.numbers import format_currency, get_currency_precision, list_currencies

# Rounding modes a rule set may declare, by the name written in `_settings.yaml` and the trace.
ROUNDING_MODES = ("half_up", "half_even", "half_down", "down", "up")
DEFAULT_ROUNDING = "half_up"

_DECIMAL_TEXT = re.compile(r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$")
ZERO = Decimal(0)


class MoneyError(ValueError):
    """A value that is not acceptable money: a float, a malformed string, too fine for its currency."""


@lru_cache(maxsize=None)
def known_currency(code: object) -> bool:   # any value: a rule file's `currencies` item is checked here
    return isinstance(code, str) and len(code) == 3 and code in list_currencies()


@lru_cache(maxsize=None)
def minor_unit(code: str) -> int:
    """Decimal places of the currency's minor unit; unknown currencies are an error, never a default."""
    if not known_currency(code):
        raise MoneyError(f"unknown currency {code!r}: use an ISO 4217 code such as JPY, USD or KWD")
    return get_currency_precision(code)


@lru_cache(maxsize=None)
def quantum(code: str) -> Decimal:
    """The smallest amount of the currency: 1 for JPY, 0.01 for USD, 0.001 for KWD."""
    return Decimal(1).scaleb(-minor_unit(code))


def parse_decimal(text: object, what: str = "value") -> Decimal:
    """A non-negative decimal from its string form. Floats, NaN, exponents and signs are refused."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise MoneyError(f"{what} must be a decimal string such as \"12.50\", not {type(text).__name__} {text!r}")
    if not _DECIMAL_TEXT.fullmatch(text):   # fullmatch: a `$` alone would let "500\n" through
        raise MoneyError(f"{what} {text!r} is not a plain non-negative decimal such as \"12.50\"")
    return Decimal(text)


def parse_money(text: object, currency: str, what: str = "amount") -> Decimal:
    """A money amount in `currency`, refused if it has more decimals than the currency's minor unit."""
    value = parse_decimal(text, what)
    places = minor_unit(currency)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > places:
        unit = "has no decimals" if places == 0 else f"has {places} decimal place{'s' if places > 1 else ''}"
        example = value.quantize(quantum(currency), rounding=ROUND_DOWN)
        subject = repr(text) if what.startswith("$") else f"{what} {text!r}"   # a path is printed beside it
        raise MoneyError(f"{subject} is finer than {currency} allows: {currency} {unit}; write \"{example:f}\"")
    return value.quantize(quantum(currency))


def to_units(amount: Decimal, currency: str) -> int:
    """A checked amount (within the currency's minor unit) as a whole number of minor units: "12.50" USD -> 1250."""
    units = amount.scaleb(minor_unit(currency))
    whole = int(units)
    if whole != units:
        raise ValueError(f"to_units: {amount} is finer than {currency} allows")
    return whole


_EXPONENTS: dict[str, int] = {}   # currency -> -minor_unit(currency): from_units runs hundreds of times per cart


def from_units(units: int, currency: str) -> Decimal:
    """Whole minor units as money written in the currency's minor unit: 1250 USD -> Decimal("12.50")."""
    exponent = _EXPONENTS.get(currency)
    if exponent is None:
        exponent = _EXPONENTS[currency] = -minor_unit(currency)
    return Decimal(units).scaleb(exponent) if exponent else Decimal(units)


def round_units(numerator: int, denominator: int, rounding: str) -> int:
    """The one rounding point: the exact amount numerator/denominator minor units, rounded to a whole
    minor unit with the rule set's mode. Half-way cases are decided exactly, in integers."""
    if rounding not in ROUNDING_MODES:   # checked first: an unknown mode is an error even on a whole amount
        raise MoneyError(f"unknown rounding mode {rounding!r}; known: {', '.join(ROUNDING_MODES)}")
    if denominator <= 0 or numerator < 0:
        raise ValueError("round_units: amounts here are never negative, denominators always positive")
    whole, rest = divmod(numerator, denominator)
    if not rest:
        return whole
    twice = 2 * rest
    if rounding == "half_up":
        up = twice >= denominator
    elif rounding == "half_even":
        up = twice > denominator or (twice == denominator and whole % 2 == 1)
    elif rounding == "half_down":
        up = twice > denominator
    else:
        up = rounding == "up"   # "down" never rounds up
    return whole + up


def round_to_minor(amount: Fraction, currency: str, rounding: str) -> Decimal:
    """`round_units` for an exact amount of money (a Fraction of the currency's major unit)."""
    if amount < 0:
        raise ValueError("round_to_minor: amounts here are never negative")
    units = amount * 10 ** minor_unit(currency)
    return from_units(round_units(units.numerator, units.denominator, rounding), currency)


LEFTOVERS = ("largest_remainder", "first_line", "last_line")


def allocate_units(total: int, numerators: Sequence[int], denominator: int, keys: Sequence[Any],
                   leftover: str = "largest_remainder", rooms: Sequence[int] | None = None) -> list[int]:
    """Split `total` minor units across parts in proportion to exact weights (numerator / denominator
    minor units each), by largest remainder; or, with `leftover` first_line / last_line, each part
    its weight rounded down and the units still missing to the first (last) parts with weight, in the
    order given, each as many as its room (`rooms`: the most each part may take) allows.

    Each part is its exact weight rounded down; the units still missing go one each to the parts with
    the largest remainders, ties to the smallest key (a line id), so the result does not depend on the
    order of lines in the cart. Any rounding of the weights' sum lies between the sum of their floors
    and of their ceilings, so every part ends up as its exact weight rounded down or up: never more,
    and so never more than a line has left. Only when a cap makes `total` smaller than the sum of the
    floors are the weights first scaled down to it. The parts always sum to `total` exactly.
    """
    if len(numerators) != len(keys):
        raise ValueError("allocate: weights and keys differ in length")
    if total < 0 or denominator <= 0:
        raise ValueError(f"allocate: {total} is not a non-negative number of minor units")
    if len(numerators) == 1:   # most promotions target one line: it takes the whole amount
        if total > -(-numerators[0] // denominator):
            raise ValueError(f"allocate: {total} minor units is more than the weights' sum rounded up")
        return [total]
    exact_sum = sum(numerators)
    if exact_sum == 0:
        if total != 0:
            raise ValueError("allocate: a positive amount cannot be split over zero weight")
        return [0] * len(numerators)
    floors = [n // denominator for n in numerators]
    if sum(floors) > total:  # capped below the rounded-down shares: scale the weights down to it
        numerators = [n * total for n in numerators]
        denominator = exact_sum
        floors = [n // denominator for n in numerators]
    left = total - sum(floors)
    if not left:
        return floors
    if leftover != "largest_remainder":
        if leftover not in LEFTOVERS:
            raise ValueError(f"allocate: unknown leftover policy {leftover!r}")
        weighted = [i for i, n in enumerate(numerators) if n]
        for i in (weighted if leftover == "first_line" else reversed(weighted)):
            take = left if rooms is None else min(left, rooms[i] - floors[i])
            floors[i] += max(take, 0)
            left -= max(take, 0)
            if not left:
                return floors
        raise ValueError(f"allocate: {total} minor units is more than the parts have room for")
    # (-remainder, key, position) tuples sort largest remainder first, ties to the smallest key.
    order = sorted((f * denominator - n, k, i) for i, (n, f, k) in enumerate(zip(numerators, floors, keys))
                   if n != f * denominator)
    if left > len(order):
        raise ValueError(f"allocate: {total} minor units is more than the weights' sum rounded up")
    for _, _, i in order[:left]:
        floors[i] += 1
    return floors


def allocate(total: Decimal, weights: Sequence[Fraction], keys: Sequence[Any], currency: str) -> list[Decimal]:
    """`allocate_units` for money: `total` and exact weights (Fractions of the major unit) in `currency`."""
    if len(weights) != len(keys):
        raise ValueError("allocate: weights and keys differ in length")
    units = total.scaleb(minor_unit(currency))
    if units != units.to_integral_value() or units < 0:
        raise ValueError(f"allocate: {total} is not a whole, non-negative number of minor units")
    scale = 10 ** minor_unit(currency)
    # Every weight in minor units over one common denominator: plain integers from here on.
    common = lcm(*(w.denominator for w in weights)) if weights else 1
    numerators = [w.numerator * scale * (common // w.denominator) for w in weights]
    return [from_units(u, currency) for u in allocate_units(int(units), numerators, common, keys)]


def split(total: Decimal, amounts: Sequence[Decimal], keys: Sequence[Any], currency: str) -> list[Decimal]:
    """Split `total` over parts in proportion to `amounts` (what each part has due), by largest
    remainder as `allocate` does. With `total` at most the amounts' sum, no part gets more than its
    amount; when `total` equals the sum, each part gets exactly its amount."""
    whole = sum(amounts, Decimal(0))
    if total > whole:
        raise ValueError(f"split: {total} is more than the {whole} it is split over")
    if whole == 0:
        return allocate(total, [Fraction(0)] * len(amounts), keys, currency)
    ratio = Fraction(total) / Fraction(whole)
    return allocate(total, [Fraction(a) * ratio for a in amounts], keys, currency)


def format_money(amount: Decimal, currency: str, locale: str = "en_US") -> str:
    """Amount for people, in the currency's own digits: ¥500, $3.50, KWD1.500."""
    return _formatted(str(amount), currency, locale)


@lru_cache(maxsize=4096)
def _formatted(amount: str, currency: str, locale: str) -> str:
    # Babel's formatting is the costliest step of a refusal message; the same few amounts recur.
    return format_currency(Decimal(amount), currency, locale=locale)
