"""A seeded synthetic cart corpus that exercises a rule set (`promo carts generate`).

Each cart is built around one of the rule set's promotions (sometimes none): the regions, channels,
tiers, segments, categories, SKUs, brands and shipping methods its rules name, the code it needs
(entered most of the time, so that "code not entered" is exercised too), spend just under or just
over its minimum (near misses are what a rule change moves), a few lines to dozens, in the rule set's
currencies, at times inside and outside its window. Only `random.Random(seed)` decides, so the same
rule set, seed and anchor give the same entries, in the same order.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterator
from zoneinfo import ZoneInfo

from .model import Promotion, RuleSet
from .money import minor_unit, quantum
from .text import EARLIEST, LATEST
from .variables import QUANTITY_VARIABLES, SALES_CHANNELS, SPEND_VARIABLES

MAX_COUNT = 10_000_000
DEFAULT_ANCHOR = datetime(2026, 1, 1, tzinfo=timezone.utc)
# A region's time zone, for the account and for writing `now` as a local time; others are UTC.
ZONES = {"JP": "Asia/Tokyo", "US": "America/New_York", "KW": "Asia/Kuwait", "GB": "Europe/London",
         "DE": "Europe/Berlin", "FR": "Europe/Paris", "CA": "America/Toronto", "AU": "Australia/Sydney"}
HOME = {"JPY": "JP", "USD": "US", "KWD": "KW", "GBP": "GB", "EUR": "DE", "CAD": "CA", "AUD": "AU"}
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")      # category, brand and segment names (cart schema)
_SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_REGION = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class Focus:
    """What one promotion asks of a cart, read from its rule."""

    promotion: Promotion
    values: dict[str, tuple[Any, ...]]        # condition variable -> the values its leaves name
    spend: tuple[Decimal, ...]                # spend thresholds
    quantity: tuple[int, ...]                 # quantity thresholds
    categories: tuple[str, ...]
    skus: tuple[str, ...]
    brands: tuple[str, ...]


def focus_of(p: Promotion) -> Focus:
    values: dict[str, list[Any]] = {}
    spend, quantity = [], []
    for leaf in p.condition.leaves:
        if leaf.variable in SPEND_VARIABLES and isinstance(leaf.operand, Decimal):
            spend.append(leaf.operand)
        elif leaf.variable in QUANTITY_VARIABLES and isinstance(leaf.operand, Decimal):
            quantity.append(int(leaf.operand))
        else:
            items = leaf.value if isinstance(leaf.value, list) else [leaf.value]
            values.setdefault(leaf.variable, []).extend(v for v in items if isinstance(v, (str, int, bool)))
    t = p.targets
    categories = set(t.categories) | set(t.exclude_categories)
    for b in p.benefits:
        if b.targets is not None:
            categories |= set(b.targets.categories)
        if b.pays_for is not None and b.pays_for.categories:
            categories |= set(b.pays_for.categories)
    return Focus(p, {k: tuple(v) for k, v in sorted(values.items())}, tuple(spend), tuple(quantity),
                 tuple(sorted(c for c in categories if _NAME.fullmatch(c))),
                 tuple(sorted(s for s in set(t.skus) | set(t.exclude_skus) if _SKU.fullmatch(s))),
                 tuple(sorted(b for b in set(t.brands) | set(t.exclude_brands) if _NAME.fullmatch(b))))


def default_anchor(ruleset: RuleSet) -> datetime:
    """Without --now: the median start of the promotions' windows (a time when campaigns run), or
    2026-01-01 UTC when none has a window. Never the clock, so the same seed gives the same bytes."""
    starts = sorted(p.starts for p in ruleset.promotions.values() if p.starts is not None)
    return starts[len(starts) // 2] if starts else DEFAULT_ANCHOR


def generate(ruleset: RuleSet, count: int, seed: int, anchor: datetime | None = None) -> Iterator[dict[str, Any]]:
    """`count` corpus entries (dicts, in the corpus's line form), one at a time."""
    r = random.Random(seed)
    anchor = anchor if anchor is not None else default_anchor(ruleset)
    foci = [focus_of(ruleset.promotions[pid]) for pid in sorted(ruleset.promotions)]
    currencies = sorted(ruleset.currencies)
    named = _named(foci)
    for i in range(1, count + 1):
        focus = r.choice(foci) if foci and r.random() < 0.85 else None
        yield _entry(r, i, focus, currencies, named, anchor)


def _named(foci: list[Focus]) -> dict[str, list[Any]]:
    def values(variable: str, pattern: re.Pattern | None) -> list[Any]:
        found = {v for f in foci for v in f.values.get(variable, ()) if isinstance(v, str)}
        return sorted(v for v in found if pattern is None or pattern.fullmatch(v))

    return {"regions": sorted(set(values("region", _REGION)) | set(HOME.values()) & {"JP", "US", "KW"}),
            "channels": sorted(set(values("sales_channel", None)) & set(SALES_CHANNELS)) or list(SALES_CHANNELS),
            "tiers": sorted(set(t for t in values("customer_tier", None) if 0 < len(t) <= 64) | {"standard"}),
            "segments": values("customer_segments", _NAME),
            "methods": sorted(set(m for m in values("shipping_method", None) if 0 < len(m) <= 64) | {
                m for f in foci for b in f.promotion.benefits for m in (b.shipping_methods or ())
                if 0 < len(m) <= 64} | {"standard", "express"}),
            "categories": sorted({c for f in foci for c in f.categories} | {"misc"}),
            "skus": sorted({s for f in foci for s in f.skus}),
            "brands": sorted({b for f in foci for b in f.brands})}


def _entry(r: random.Random, i: int, focus: Focus | None, currencies: list[str], named: dict[str, list[Any]],
           anchor: datetime) -> dict[str, Any]:
    p = focus.promotion if focus else None
    currency = p.currency if p is not None and p.currency in currencies else r.choice(currencies)
    q = quantum(currency)
    asked = focus.values if focus else {}
    region = _pick(r, asked.get("region"), None) or (HOME.get(currency) if r.random() < 0.7 else None) \
        or r.choice(named["regions"])
    if not _REGION.fullmatch(region):
        region = r.choice(named["regions"])
    zone = ZONES.get(region, "UTC")
    account: dict[str, Any] = {"id": f"acct-{r.randint(1, 5000)}", "region": region,
                               "tier": _pick(r, asked.get("customer_tier"), None) or r.choice(named["tiers"]),
                               "order_count": 0 if r.random() < 0.25 else r.randint(1, 60), "time_zone": zone}
    if named["segments"] and r.random() < 0.4:
        account["segments"] = sorted(set(r.sample(named["segments"], r.randint(1, min(2, len(named["segments"]))))))
    lines = _lines(r, focus, currency, named)
    cart: dict[str, Any] = {"id": f"cart-{i:06d}", "currency": currency,
                            "channel": _pick(r, asked.get("sales_channel"), SALES_CHANNELS) or r.choice(
                                named["channels"]), "lines": lines}
    if r.random() < 0.85:
        method = _pick(r, asked.get("shipping_method"), None) or r.choice(named["methods"])
        cart["shipping"] = {"method": method if 0 < len(method) <= 64 else "standard",
                            "price": _money(r.randint(3, 15) * _scale(currency) // 10, q)}
    if r.random() < 0.05:
        account["gift_card"] = {"amount": _money(r.randint(1, 50) * _scale(currency), q), "currency": currency}
    codes = []
    if p is not None and p.code and not p.code_pool and r.random() < 0.7:
        codes.append(p.code if r.random() < 0.8 else p.code.lower())
    if r.random() < 0.03:
        codes.append("NOT-A-CODE")
    return {"id": f"c{i:06d}", "cart": cart, "account": account, "codes": codes,
            "now": _now(r, p, anchor).astimezone(ZoneInfo(zone)).isoformat(timespec="seconds")}


def _pick(r: random.Random, values: tuple[Any, ...] | None, allowed: Any) -> Any:
    """One of the values a rule names, most of the time (the rest: a value it does not name)."""
    options = [v for v in values or () if isinstance(v, str) and (allowed is None or v in allowed)]
    return r.choice(options) if options and r.random() < 0.85 else None


def _scale(currency: str) -> int:
    """Minor units in a typical item price: ¥1,000, $10.00, KWD 3.000."""
    return {"JPY": 1000, "USD": 1000, "KWD": 3000}.get(currency, 10 * 10 ** minor_unit(currency))    # 10 major units


def _money(units: int, q: Decimal) -> str:
    return f"{(Decimal(max(units, 1)) * q):f}"


def _lines(r: random.Random, focus: Focus | None, currency: str, named: dict[str, list[Any]]) -> list[dict[str, Any]]:
    q = quantum(currency)
    size = r.choice((1, 1, 2, 2, 3, 3, 4, 5, 6, 8)) if r.random() < 0.9 else r.randint(9, 40)
    units = []
    lines = []
    for n in range(1, size + 1):
        own = focus is not None and r.random() < 0.7
        category = r.choice(focus.categories) if own and focus.categories else r.choice(named["categories"])
        sku = r.choice(focus.skus) if own and focus.skus and r.random() < 0.5 else \
            (r.choice(named["skus"]) if named["skus"] and r.random() < 0.1 else f"SKU-{category[:20]}-{r.randint(1, 99)}")
        line: dict[str, Any] = {"id": f"L{n}", "sku": sku, "category": category,
                                "seller": "first_party" if r.random() < 0.85 else "third_party",
                                "product_type": r.choices(("physical", "digital", "subscription", "gift_card"),
                                                          (85, 5, 5, 5))[0],
                                "quantity": r.choices((1, 2, 3, r.randint(4, 12)), (60, 20, 10, 10))[0]}
        brands = focus.brands if own and focus and focus.brands else named["brands"]
        if brands and r.random() < (0.6 if own else 0.2):
            line["brand"] = r.choice(brands)
        units.append(r.randint(1, 30) * _scale(currency) // 10)
        lines.append(line)
    if focus is not None and focus.quantity and r.random() < 0.6:
        want = r.choice(focus.quantity) + r.choice((-1, 0, 1))
        others = sum(line["quantity"] for line in lines[:-1])
        lines[-1]["quantity"] = min(9999, max(1, want - others))
    if focus is not None and focus.spend and r.random() < 0.7:
        # Just under or just over the minimum: the carts a threshold change moves.
        target_units = int(r.choice(focus.spend) / q)
        target_units += r.choice((-1, 1, 0, -max(1, target_units // 50), max(1, target_units // 50)))
        others = sum(u * line["quantity"] for u, line in zip(units[:-1], lines[:-1]))
        rest = target_units - others
        if rest < 1:
            lines, units, rest = lines[-1:], units[-1:], target_units
            lines[0]["id"] = "L1"
        lines[-1]["quantity"] = 1
        lines[-1]["seller"], lines[-1]["product_type"] = "first_party", "physical"
        units[-1] = max(1, rest)
    for u, line in zip(units, lines):
        line["unit_price"] = _money(u, q)
    return lines


def _now(r: random.Random, p: Promotion | None, anchor: datetime) -> datetime:
    """`_moment`, kept inside the instants evaluate() accepts (text.EARLIEST to LATEST): a window that
    starts in 1970, or an anchor near either end, never gives a cart every replay refuses."""
    return min(max(_moment(r, p, anchor), EARLIEST), LATEST - timedelta(seconds=1))


def _moment(r: random.Random, p: Promotion | None, anchor: datetime) -> datetime:
    """Inside the promotion's window most of the time, otherwise shortly before it starts or after it
    ends (an edge a window change moves); around the anchor when it has no window."""
    spread = timedelta(days=30)
    if p is not None and (p.starts or p.ends):
        roll = r.random()
        start = p.starts or (p.ends - spread)
        end = p.ends or (p.starts + spread)
        if roll < 0.6:
            return start + (end - start) * r.random()
        if roll < 0.8:
            return start - timedelta(seconds=r.choice((1, 60, 3600, 86400 * r.randint(1, 10))))
        return end + timedelta(seconds=r.choice((0, 1, 3600, 86400 * r.randint(1, 10))))
    return anchor + timedelta(seconds=r.randint(-30 * 86400, 30 * 86400))
