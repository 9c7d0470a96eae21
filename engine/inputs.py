"""Checking what a checkout hands to evaluate(): the cart, the account, codes, usage and `now`.

Mappings (decoded JSON) are checked against `schemas/cart.schema.json` and
`schemas/account.schema.json`, then semantically against the rule set (a known currency, prices
that fit its minor unit, unique line ids, shipping as `shipping` or `shipments` but not both, unique
shipment ids each naming only lines the cart has and each line at most once, a real IANA time zone, instants within
`text.EARLIEST`..`text.LATEST`). Any problem raises `InputError` listing all of them; nothing is evaluated.

JSON files (`read_json`: the CLI's cart, account, usage and trace) are bounded before they are read:
at most MAX_JSON_BYTES, no duplicate keys, no number of more than `text.MAX_NUMBER_DIGITS` digits,
nesting at most `schemas.MAX_DEPTH` levels.
"""
from __future__ import annotations

import itertools
import json
import math
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from . import schemas
from .errors import InputError, Problem
from .model import (Account, Cart, GiftCard, Line, Lot, PaysFor, Points, RuleSet, Shipment, Shipping,
                    Usage)
from .money import MoneyError, minor_unit, parse_money, quantum
from .text import MAX_NUMBER_DIGITS, instant_problem, shorten, text_problem
from .yamlsafe import json_path, read_capped

MAX_CODES = 20
MAX_CODE_LENGTH = 64
MAX_JSON_BYTES = 4 * 1024 * 1024   # a full 1,000-line cart is about 250 KiB; its trace about 1.5 MiB
MAX_COUNT = 10 ** 15               # usage counts: what the ledger's BIGINT columns hold, with room


def read_json(path: str | Path, follow_links: bool = True) -> Any:
    """Decode a JSON file strictly (see `decode_json`): at most MAX_JSON_BYTES, checked before reading
    and again while reading. Without `follow_links` a symbolic link is refused, never followed."""
    name = str(path)
    try:
        data = read_capped(Path(path), MAX_JSON_BYTES, follow_links=follow_links)
    except OSError as exc:
        raise _refused(name, f"cannot read: {exc.strerror or 'not a regular file'}") from None
    if data is None:
        raise _refused(name, f"file is larger than {MAX_JSON_BYTES // (1024 * 1024)} MiB")
    return decode_json(data, name)


def _refused(name: str, message: str, line: int = 0, column: int = 0) -> InputError:
    return InputError([Problem(name, line, column, "$", message)], name)


def decode_json(data: bytes, name: str) -> Any:
    """Decode a JSON document strictly: UTF-8, no duplicate keys, NaN and Infinity refused, no number of
    more than MAX_NUMBER_DIGITS digits, nesting at most schemas.MAX_DEPTH deep. Floats stay floats so the
    schema can refuse them where money is expected. The caller bounds the size before reading; `name`
    (a file, a request body) is what the problems are reported against."""
    def constant(token: str) -> Any:
        raise _refused(name, f"{token} is not a number promo-engine accepts")

    def integer(text: str) -> int:
        if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
            raise _refused(name, f"a number of {len(text)} digits; at most {MAX_NUMBER_DIGITS} are accepted")
        return int(text)

    def number(text: str) -> float:
        value = float(text) if len(text) <= MAX_NUMBER_DIGITS + 10 else math.inf
        if not math.isfinite(value):
            raise _refused(name, f"the number {shorten(text)} is out of range")
        return value

    def unique(pairs: list[tuple[str, Any]]) -> dict:
        out = dict(pairs)
        if len(out) != len(pairs):      # a key given twice: name the first one repeated
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise _refused(name, f"duplicate key {shorten(key)}; each key may appear once in an object")
                seen.add(key)
        return out

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refused(name, f"not UTF-8 text ({exc.reason})") from None
    try:
        doc = json.loads(text, parse_constant=constant, parse_int=integer, parse_float=number,
                         object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        raise _refused(name, f"not valid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except RecursionError:
        raise _refused(name, f"nested deeper than {schemas.MAX_DEPTH} levels") from None
    if _depth_over(doc, schemas.MAX_DEPTH):
        raise _refused(name, f"nested deeper than {schemas.MAX_DEPTH} levels")
    return doc


def _depth_over(doc: Any, limit: int) -> bool:
    """Whether an object or list sits `limit` or more levels below the top (the top is level 0). Walked a
    level at a time, containers only: scalars, most of a document, are never queued."""
    level = [doc] if isinstance(doc, (dict, list)) else []
    depth = 0
    while level:
        if depth >= limit:
            return True
        below: list[Any] = []
        for value in level:
            below += [item for item in (value.values() if isinstance(value, dict) else value)
                      if isinstance(item, (dict, list))]
        level = below
        depth += 1
    return False


def _schema_problems(kind: str, data: Any, source: str) -> list[Problem]:
    return [Problem(source, 0, 0, json_path(where), message) for where, message in schemas.check(kind, data)]


def parse_cart(data: Mapping[str, Any], ruleset: RuleSet, source: str = "cart") -> Cart:
    """A checked Cart from decoded JSON. Only mappings are accepted: a Cart built by hand would skip
    every check below, so there is no such shortcut."""
    problems = _schema_problems("cart", data, source)
    if problems:
        raise InputError(problems, source)
    _check_currency(data["currency"], ruleset, source)
    currency = data["currency"]
    unit = _unit(currency)
    lines: list[Line] = []
    seen: set[str] = set()
    for i, raw in enumerate(data["lines"]):
        line_id = raw["id"]
        _unique_id("line", line_id, seen, f"$.lines[{i}].id", source, problems)
        price = _price(raw["unit_price"], unit, currency, f"$.lines[{i}].unit_price", source, problems)
        sku = raw["sku"]
        lines.append(_line({"id": line_id, "sku": sku, "name": raw.get("name", sku), "category": raw["category"],
                            "brand": raw.get("brand"), "seller": raw["seller"], "product_type": raw["product_type"],
                            "unit_price": Decimal(0) if price is None else price, "quantity": raw["quantity"]}))
    shipping = None
    if "shipping" in data:
        price = _price(data["shipping"]["price"], unit, currency, "$.shipping.price", source, problems)
        shipping = Shipping(method=data["shipping"]["method"], price=Decimal(0) if price is None else price)
    shipments = None
    if "shipments" in data:
        if "shipping" in data:
            problems.append(Problem(source, 0, 0, "$.shipments",
                                    "a cart gives either `shipping` (one shipment) or `shipments`, not both"))
        shipments = _shipments(data["shipments"], seen, unit, currency, source, problems)
    if problems:
        raise InputError(problems, source)
    return Cart(id=data.get("id"), currency=currency, channel=data["channel"], lines=tuple(lines), shipping=shipping,
                shipments=shipments)


def _unique_id(kind: str, value: str, seen: set[str], where: str, source: str, problems: list[Problem]) -> None:
    """A line's or shipment's id: once in the cart, with no spaces around it. Adds it to `seen`."""
    if value in seen:
        problems.append(Problem(source, 0, 0, where, f"duplicate {kind} id {value!r}"))
    elif value != value.strip():
        problems.append(Problem(source, 0, 0, where, f"a {kind} id has no spaces around it"))
    seen.add(value)


def _price(raw: Any, unit: tuple[int, Decimal] | None, currency: str, where: str, source: str,
           problems: list[Problem]) -> Decimal | None:
    """A price: the fast check of a plain amount in the currency's minor unit, else the full one."""
    price = _checked_money(raw, unit)
    return price if price is not None else _money(raw, currency, where, source, problems)


def _shipments(raws: list[Mapping[str, Any]], line_ids: set[str], unit: tuple[int, Decimal] | None, currency: str,
               source: str, problems: list[Problem]) -> tuple[Shipment, ...]:
    """The list form of shipping: ids unique, and each line named by at most one shipment, one that exists."""
    out: list[Shipment] = []
    ids: set[str] = set()
    carried: dict[str, str] = {}   # line id -> the shipment carrying it
    for i, raw in enumerate(raws):
        where = f"$.shipments[{i}]"
        shipment_id = raw["id"]
        _unique_id("shipment", shipment_id, ids, f"{where}.id", source, problems)
        price = _price(raw["price"], unit, currency, f"{where}.price", source, problems)
        named: list[str] = []
        for j, line_id in enumerate(raw.get("lines", ())):
            if line_id not in line_ids:
                problems.append(Problem(source, 0, 0, f"{where}.lines[{j}]", f"the cart has no line {line_id!r}"))
            elif line_id in carried:
                problems.append(Problem(source, 0, 0, f"{where}.lines[{j}]",
                                        f"line {line_id!r} is already in shipment {carried[line_id]!r}; "
                                        "a line is in one shipment at most"))
            else:
                carried[line_id] = shipment_id
                named.append(line_id)
        out.append(Shipment(shipment_id, raw["method"], Decimal(0) if price is None else price, tuple(named)))
    return tuple(out)


def _check_currency(currency: str, ruleset: RuleSet, source: str) -> None:
    if currency not in ruleset.currencies:
        raise InputError([Problem(source, 0, 0, "$.currency",
                                  f"currency {currency!r} is not one the rule set knows "
                                  f"({', '.join(sorted(ruleset.currencies))})")], source)


def _money(text: str, currency: str, where: str, source: str, problems: list[Problem]) -> Decimal | None:
    try:
        return parse_money(text, currency, where)
    except MoneyError as exc:
        problems.append(Problem(source, 0, 0, where, str(exc)))
        return None


# --- the per-line shortcuts: parse_cart builds up to 1,000 lines on every evaluate() ----------------

@lru_cache(maxsize=None)
def _unit(currency: str) -> tuple[int, Decimal] | None:
    """The currency's decimal places and smallest amount; None if money.py does not know it (then
    parse_money, called instead, words the error)."""
    try:
        return minor_unit(currency), quantum(currency)
    except MoneyError:
        return None


def _checked_money(text: str, unit: tuple[int, Decimal] | None) -> Decimal | None:
    """What `parse_money(text, currency)` returns, for a string that has passed the schema; or None where
    this shortcut does not decide, and the caller calls parse_money itself (which words any error).

    It skips parse_money's type and pattern checks (money._DECIMAL_TEXT), because the schema's pattern
    has made them: `$defs/money` is the very same pattern, and `unit_price`'s pattern admits nothing
    else either once an amount has no more decimals than its currency has (at most 4 in ISO 4217).
    It also admits amounts with up to 11 decimals, such as "0.0000010"; those are always finer
    than the currency, so they go to parse_money, which refuses them in its own words.
    tests/test_inputs.py holds this against strings drawn from the schemas' own patterns.
    """
    if unit is None:
        return None
    places, smallest = unit
    # The schema matches patterns on the whole text, so a trailing newline never gets here; were it to,
    # parse_money (which Decimal() is more lenient than) refuses it.
    if text.endswith("\n"):
        return None
    dot = text.find(".")
    if dot >= 0 and len(text) - dot - 1 > places:   # decimals counted on the text
        return None
    return Decimal(text).quantize(smallest)


# Line is a frozen dataclass: its __init__ sets each of the nine fields through object.__setattr__,
# which costs more than all of a line's other work. A cart's lines are built by handing the new
# object its instance dict whole: the same Line, equal and hashing alike (tests/test_inputs.py
# compares the two and checks that parse_cart's dict names exactly Line's fields, in order).
def _line(fields: dict[str, Any]) -> Line:
    line = object.__new__(Line)
    object.__setattr__(line, "__dict__", fields)
    return line


def parse_account(data: Mapping[str, Any], ruleset: RuleSet, source: str = "account") -> Account:
    """A checked Account, balances included. Every balance must be in a currency the rule set knows
    and within its minor unit; lot ids are unique; a lot ends after it starts; points chosen never
    exceed the points held. A lot in a known currency other than the cart's is not an error: the
    trace reports it as not used (`currency_mismatch`)."""
    problems = _schema_problems("account", data, source)
    if problems:
        raise InputError(problems, source)
    if not known_time_zone(data["time_zone"]):
        problems.append(Problem(source, 0, 0, "$.time_zone",
                                f"unknown time zone {shorten(data['time_zone'])}; use an IANA name such as Asia/Tokyo"))
    if data["id"] != data["id"].strip():   # "cust-1 " would be another customer that prints the same
        problems.append(Problem(source, 0, 0, "$.id", "an account id has no spaces around it"))
    lots = _lots(data.get("promotional_balance", ()), ruleset, source, problems)
    gift_card = None
    if "gift_card" in data:
        raw = data["gift_card"]
        if _known(raw["currency"], ruleset, "$.gift_card.currency", source, problems):
            amount = _money(raw["amount"], raw["currency"], "$.gift_card.amount", source, problems)
            gift_card = GiftCard(amount or Decimal(0), raw["currency"])
    points = None
    if "points" in data:
        raw = data["points"]
        use = None if raw["use"] == "as_needed" else raw["use"]
        if use is not None and use > raw["balance"]:
            problems.append(Problem(source, 0, 0, "$.points.use",
                                    f"{use} points chosen but the account holds {raw['balance']}"))
        if _known(raw["currency"], ruleset, "$.points.currency", source, problems):
            value = _money(raw["value"], raw["currency"], "$.points.value", source, problems)
            if value is not None and value <= 0:
                problems.append(Problem(source, 0, 0, "$.points.value", "a point must be worth more than 0"))
            points = Points(raw["balance"], value or Decimal(0), raw["currency"], use)
    if problems:
        raise InputError(problems, source)
    return Account(id=data["id"], region=data["region"], tier=data["tier"], segments=tuple(data.get("segments", ())),
                   order_count=data["order_count"], time_zone=data["time_zone"], lots=tuple(lots),
                   gift_card=gift_card, points=points)


@lru_cache(maxsize=1)
def _zone_keys() -> frozenset[str]:
    """The IANA zone keys: tzdata's list (the package is a dependency), else the system's."""
    try:
        from importlib.resources import files
        return frozenset(files("tzdata").joinpath("zones").read_text("utf-8").split())
    except (ImportError, OSError):
        return frozenset(available_timezones()) - {"localtime", "posixrules"}


def known_time_zone(name: object) -> bool:
    """A real IANA zone key ("Asia/Tokyo", "UTC") that ZoneInfo loads. Only names from the list are ever
    handed to ZoneInfo, so "Asia" (a directory), "../../etc/passwd" or "UTC\n" never reach the file system."""
    if not isinstance(name, str) or name not in _zone_keys():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _known(currency: str, ruleset: RuleSet, where: str, source: str, problems: list[Problem]) -> bool:
    if currency in ruleset.currencies:
        return True
    problems.append(Problem(source, 0, 0, where, f"currency {currency!r} is not one the rule set knows "
                                                 f"({', '.join(sorted(ruleset.currencies))})"))
    return False


def _lots(raws: Iterable[Mapping[str, Any]], ruleset: RuleSet, source: str, problems: list[Problem]) -> list[Lot]:
    lots: list[Lot] = []
    seen: set[str] = set()
    for i, raw in enumerate(raws):
        where = f"$.promotional_balance[{i}]"
        if raw["id"] in seen:
            problems.append(Problem(source, 0, 0, f"{where}.id", f"duplicate lot id {raw['id']!r}"))
        seen.add(raw["id"])
        granted = _instant(raw["granted_at"], f"{where}.granted_at", source, problems)
        expires = _instant(raw["expires_at"], f"{where}.expires_at", source, problems) if "expires_at" in raw else None
        if granted is not None and expires is not None and expires <= granted:
            problems.append(Problem(source, 0, 0, f"{where}.expires_at", "a lot must expire after it is granted"))
        if not _known(raw["currency"], ruleset, f"{where}.currency", source, problems):
            continue
        amount = _money(raw["amount"], raw["currency"], f"{where}.amount", source, problems)
        pays_for = PaysFor.from_doc(raw.get("pays_for", {}))
        if amount is not None and granted is not None:
            lots.append(Lot(raw["id"], amount, raw["currency"], granted, expires, pays_for))
    return lots


def _instant(text: str, where: str, source: str, problems: list[Problem]) -> datetime | None:
    """An ISO 8601 instant with a UTC offset, in the accepted range, as lot dates must be."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        problems.append(Problem(source, 0, 0, where, f"{shorten(text)} is not an ISO 8601 date and time"))
        return None
    if value.utcoffset() is None:
        problems.append(Problem(source, 0, 0, where, f"{shorten(text)} has no UTC offset"))
        return None
    problem = instant_problem(value)
    if problem is not None:
        problems.append(Problem(source, 0, 0, where, problem))
        return None
    return value


def parse_now(now: datetime | str) -> datetime:
    """The evaluation moment. Naive times are refused: a promotion window is an instant, not a wall clock.
    So is an instant outside `text.EARLIEST`..`text.LATEST`, which local-time conversions would overflow."""
    if isinstance(now, str):
        problem = text_problem(now, 40)
        if problem is not None:
            raise InputError([Problem("now", 0, 0, "$", problem)], "now")
        try:
            now = datetime.fromisoformat(now.replace("Z", "+00:00"))
        except ValueError:
            raise InputError([Problem("now", 0, 0, "$", f"{now!r} is not an ISO 8601 date and time")], "now") from None
    if not isinstance(now, datetime):
        raise InputError([Problem("now", 0, 0, "$", "now must be a datetime with a UTC offset")], "now")
    try:
        offset = now.utcoffset()
    except (ValueError, TypeError, OverflowError):
        offset = None
    if offset is None:
        raise InputError([Problem("now", 0, 0, "$", f"{now.isoformat()} has no UTC offset; naive times are refused")],
                         "now")
    problem = instant_problem(now)
    if problem is not None:
        raise InputError([Problem("now", 0, 0, "$", problem)], "now")
    return now


def parse_codes(codes: Iterable[str]) -> tuple[str, ...]:
    """The entered codes, refused before any is looked at if there are more than MAX_CODES; each must be
    text of at most MAX_CODE_LENGTH characters with no control or invisible character."""
    if isinstance(codes, (str, bytes, Mapping)) or not isinstance(codes, Iterable):
        raise InputError([Problem("codes", 0, 0, "$", "codes must be a list of strings")], "codes")
    if hasattr(codes, "__len__") and len(codes) > MAX_CODES:  # type: ignore[arg-type]
        raise InputError([Problem("codes", 0, 0, "$", f"at most {MAX_CODES} codes may be entered")], "codes")
    out = tuple(itertools.islice(codes, MAX_CODES + 1))   # never more than that read from a generator
    if len(out) > MAX_CODES:
        raise InputError([Problem("codes", 0, 0, "$", f"at most {MAX_CODES} codes may be entered")], "codes")
    problems = []
    for i, code in enumerate(out):
        problem = text_problem(code, MAX_CODE_LENGTH, identifier=True)
        if problem is not None:
            problems.append(Problem("codes", 0, 0, f"$[{i}]", f"a code {problem}"))
    if problems:
        raise InputError(problems, "codes")
    return out


def parse_usage(usage: Mapping[str, Usage | Mapping[str, Any]] | None, ruleset: RuleSet) -> dict[str, Usage]:
    """Usage counts as the ledger reports them. Counts for promotions no longer in the rule set are
    ignored (a retired promotion keeps its history); malformed or negative counts are refused."""
    if usage is None:
        return {}
    if not isinstance(usage, Mapping):
        raise InputError([Problem("usage", 0, 0, "$", "usage must map promotion ids to their counts")], "usage")
    out: dict[str, Usage] = {}
    problems: list[Problem] = []
    for pid, value in usage.items():
        where = f"$.{shorten(pid)}" if not isinstance(pid, str) or len(pid) > 64 else f"$.{pid}"
        if text_problem(pid, 64, identifier=True) is not None:
            problems.append(Problem("usage", 0, 0, f"$[{shorten(pid)}]", "a usage key is a promotion id"))
            continue
        if isinstance(value, Mapping):
            unknown = set(value) - {"total_uses", "customer_uses", "budget_spent"}
            if unknown:
                problems.append(Problem("usage", 0, 0, where, f"unknown keys {sorted(unknown)}"))
                continue
            spent = value.get("budget_spent", "0")
            promotion = ruleset.promotions.get(pid)
            try:
                spent_value = parse_money(spent, promotion.currency, where + ".budget_spent") \
                    if promotion is not None and promotion.currency else Decimal(0)
            except MoneyError as exc:
                problems.append(Problem("usage", 0, 0, where + ".budget_spent", str(exc)))
                continue
            value = Usage(total_uses=value.get("total_uses", 0), customer_uses=value.get("customer_uses", 0),
                          budget_spent=spent_value)
        if not isinstance(value, Usage):
            problems.append(Problem("usage", 0, 0, where, "usage must be a mapping or a Usage"))
            continue
        for name in ("total_uses", "customer_uses"):
            count = getattr(value, name)
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
                problems.append(Problem("usage", 0, 0, f"{where}.{name}",
                                        f"must be a whole number, 0 or more and at most {MAX_COUNT:,}"))
        promotion = ruleset.promotions.get(pid)
        if not isinstance(value.budget_spent, Decimal) or not value.budget_spent.is_finite() or value.budget_spent < 0:
            problems.append(Problem("usage", 0, 0, f"{where}.budget_spent", "must be a non-negative Decimal"))
        elif promotion is not None and promotion.currency is not None and \
                value.budget_spent != value.budget_spent.quantize(quantum(promotion.currency)):
            problems.append(Problem("usage", 0, 0, f"{where}.budget_spent",
                                    f"{value.budget_spent} is finer than {promotion.currency} allows"))
        out[pid] = value
    if problems:
        raise InputError(problems, "usage")
    return out
