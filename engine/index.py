"""The candidate index: built once with the rule set, it finds the promotions a cart could get
without looking at the others, and counts the others by reason with arithmetic, not a scan.

Scope, as the README states it, first reason wins:
1. A promotion with a code is considered when its code was entered; otherwise `code_not_entered`.
   (An entered promotion is always considered, and its gates give the exact reason it fails.)
2. An automatic promotion for another currency than the cart's is `currency_mismatch`.
3. An automatic promotion outside its window at `now` is `not_started` or `expired`.
4. An automatic promotion whose eligibility *requires* a region (a `region` leaf at the root or
   reached through `all`s only) that the account's region fails is `region_not_eligible`; one that
   requires a sales channel the cart's channel fails is `channel_not_eligible`. Such a leaf fails the
   whole tree whatever else is true, so the promotion could not apply to this customer at all.
5. An automatic promotion whose targets match no line is `no_eligible_items`.
Every other promotion is considered: it goes through the gates and its conditions.

How the index makes that cheap. The windows' start and end instants cut time into stretches in
which no automatic promotion starts or ends; the promotions that can apply to carts in one currency
during one stretch form a *market*, built the first time a cart in that currency is evaluated at a
`now` in that stretch and kept (the last few are cached: this is memoization of a pure function, so
evaluate() stays pure). A market counts the promotions of other currencies and outside their windows,
and groups the rest into buckets by their required region and channel leaves (a catalogue has a few
dozen such combinations, not thousands). A bucket that requires exactly one region is found by the
account's region, and the buckets of every other region are counted with one subtraction; other
buckets' leaves are tested once per evaluation. Inside a passing bucket, inverted maps (category,
SKU, brand -> promotions) give, line by line, only the promotions that include that line; exclusions
are then applied to those pairs alone. So the work grows with the promotions that could apply, not
with the catalogue, however many old campaigns it keeps. `tests/oracle.py` implements the same rules
by scanning every promotion and every line, and the tests check both give the same trace.
"""
from __future__ import annotations

import threading
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .conditions import AllOf, Leaf, Node
from .reasons import Reason

if TYPE_CHECKING:
    from .model import Line, Promotion

SCOPE_VARIABLES = {"region": Reason.REGION_NOT_ELIGIBLE, "sales_channel": Reason.CHANNEL_NOT_ELIGIBLE}


def required_leaves(root: Node | None) -> tuple[Leaf, ...]:
    """The leaves the tree cannot pass without: the root if it is a leaf, or leaves reached through `all` only."""
    if root is None:
        return ()
    if isinstance(root, Leaf):
        return (root,)
    if isinstance(root, AllOf):
        return tuple(leaf for child in root.children for leaf in required_leaves(child))
    return ()


def scope_leaves(promotion: "Promotion") -> tuple[tuple[Leaf, ...], tuple[Leaf, ...]]:
    """An automatic promotion's required region leaves and required channel leaves."""
    if promotion.code is not None:
        return (), ()
    required = required_leaves(promotion.condition.root)
    return (tuple(leaf for leaf in required if leaf.variable == "region"),
            tuple(leaf for leaf in required if leaf.variable == "sales_channel"))


def _failure(regions: tuple[Leaf, ...], channels: tuple[Leaf, ...], region: str, channel: str) -> Reason | None:
    if not all(leaf.test(region, leaf.operand) for leaf in regions):
        return Reason.REGION_NOT_ELIGIBLE
    if not all(leaf.test(channel, leaf.operand) for leaf in channels):
        return Reason.CHANNEL_NOT_ELIGIBLE
    return None


def has_exclusions(promotion: "Promotion") -> bool:
    t = promotion.targets
    return bool(t.exclude_categories or t.exclude_skus or t.exclude_brands or t.exclude_sellers
                or t.exclude_product_types)


@dataclass(frozen=True)
class Scope:
    """What the index found for one cart: the promotions to consider (by id), each with its targeted
    lines in cart order, and the others counted by reason."""

    considered: tuple["Promotion", ...]
    targeted: Mapping[str, tuple["Line", ...]]
    out_of_scope: Counter


@dataclass(frozen=True)
class _Bucket:
    """Automatic promotions that require the same region and channel leaves."""

    regions: tuple[Leaf, ...]
    channels: tuple[Leaf, ...]
    size: int
    by_category: Mapping[str, tuple["Promotion", ...]]
    by_sku: Mapping[str, tuple["Promotion", ...]]
    by_brand: Mapping[str, tuple["Promotion", ...]]
    include_all: tuple["Promotion", ...]
    excluding: frozenset[str]          # ids of the promotions with any exclusion

    def targeted(self, lines: tuple["Line", ...], into: dict[str, list["Line"]],
                 found: dict[str, "Promotion"]) -> None:
        """Add, in cart order, every line each promotion of this bucket targets."""
        by_category, by_sku, by_brand, excluding = self.by_category, self.by_sku, self.by_brand, self.excluding
        for line in lines:
            hits = by_category.get(line.category, ())
            more = by_sku.get(line.sku, ())
            if line.brand is not None:
                more += by_brand.get(line.brand, ())
            if more:  # a promotion may include a line by category and by SKU: count the line once
                hits = tuple({p.id: p for p in hits + more}.values())
            for p in hits:
                if p.id in excluding and p.targets.excludes(line):
                    continue
                bucket = into.get(p.id)
                if bucket is None:
                    into[p.id] = [line]
                    found[p.id] = p
                else:
                    bucket.append(line)
        # A promotion that includes everything is in no map: its lines are the cart's, minus exclusions.
        for p in self.include_all:
            kept = [line for line in lines if not p.targets.excludes(line)] if p.id in excluding else list(lines)
            if kept:
                into[p.id] = kept
                found[p.id] = p


def _freeze(groups: dict[str, list["Promotion"]]) -> Mapping[str, tuple["Promotion", ...]]:
    return MappingProxyType({key: tuple(ps) for key, ps in groups.items()})


@dataclass(frozen=True)
class _Market:
    """The automatic promotions that carts in one currency can get during one stretch of time, in
    buckets, and how many others there are by reason."""

    counts: tuple[tuple[str, int], ...]   # (reason, promotions) for currency and window, nonzero only
    by_region: Mapping[str, tuple[_Bucket, ...]]   # buckets that require exactly one region
    by_region_size: int                # promotions in all of `by_region`'s buckets
    tested: tuple[_Bucket, ...]        # every other bucket: its leaves are tested per evaluation

    @staticmethod
    def build(automatic: Iterable["Promotion"], currency: str, now: datetime) -> "_Market":
        counts: Counter = Counter()
        grouped: dict[tuple, list["Promotion"]] = {}
        leaves_of: dict[tuple, tuple[tuple[Leaf, ...], tuple[Leaf, ...]]] = {}
        for p in automatic:
            if p.currency is not None and p.currency != currency:
                counts[Reason.CURRENCY_MISMATCH.value] += 1
            elif p.starts is not None and now < p.starts:
                counts[Reason.NOT_STARTED.value] += 1
            elif p.ends is not None and now >= p.ends:
                counts[Reason.EXPIRED.value] += 1
            else:
                regions, channels = scope_leaves(p)
                key = (tuple(_leaf_key(l) for l in regions), tuple(_leaf_key(l) for l in channels))
                grouped.setdefault(key, []).append(p)
                leaves_of.setdefault(key, (regions, channels))
        by_region: dict[str, list[_Bucket]] = {}
        tested: list[_Bucket] = []
        for key in sorted(grouped, key=repr):
            regions, channels = leaves_of[key]
            bucket = _bucket(regions, channels, grouped[key])
            region = _one_region(regions)
            if region is None:
                tested.append(bucket)
            else:
                by_region.setdefault(region, []).append(bucket)
        return _Market(tuple(sorted(counts.items())), _freeze(by_region),
                       sum(b.size for bs in by_region.values() for b in bs), tuple(tested))


def _bucket(regions: tuple[Leaf, ...], channels: tuple[Leaf, ...], members: list["Promotion"]) -> _Bucket:
    by_category: dict[str, list] = {}
    by_sku: dict[str, list] = {}
    by_brand: dict[str, list] = {}
    include_all = []
    for p in members:
        t = p.targets
        if t.include_all:
            include_all.append(p)
            continue
        for value, table in ((t.categories, by_category), (t.skus, by_sku), (t.brands, by_brand)):
            for name in sorted(value):
                table.setdefault(name, []).append(p)
    return _Bucket(regions, channels, len(members), _freeze(by_category), _freeze(by_sku), _freeze(by_brand),
                   tuple(include_all), frozenset(p.id for p in members if has_exclusions(p)))


MARKETS_KEPT = 16   # markets cached per rule set: a few currencies, the current stretch, refunds' old ones


@dataclass(frozen=True)
class CandidateIndex:
    automatic: tuple["Promotion", ...]
    boundaries: tuple[datetime, ...]   # every automatic promotion's window start and end, sorted
    coded: int                         # promotions with a code
    _markets: dict[tuple[str, int], _Market] = field(default_factory=dict, repr=False, compare=False)
    _building: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @staticmethod
    def build(promotions: Iterable["Promotion"]) -> "CandidateIndex":
        every = tuple(promotions)
        automatic = tuple(p for p in every if p.code is None)
        boundaries = sorted({t for p in automatic for t in (p.starts, p.ends) if t is not None})
        return CandidateIndex(automatic, tuple(boundaries), len(every) - len(automatic))

    def __reduce__(self) -> tuple:
        """Copied or pickled (a rule set shipped to worker processes) without its cache and lock."""
        return (CandidateIndex, (self.automatic, self.boundaries, self.coded))

    def market(self, currency: str, now: datetime) -> _Market:
        """The market for carts in `currency` at `now`: every `now` in the same stretch between two
        window boundaries gives the same one (a boundary itself begins the next stretch, as a window
        includes its start and excludes its end)."""
        key = (currency, bisect_right(self.boundaries, now))
        market = self._markets.get(key)
        if market is None:
            with self._building:   # one thread builds it; the others wait and take it
                market = self._markets.get(key)
                if market is None:
                    market = _Market.build(self.automatic, currency, now)
                    while len(self._markets) >= MARKETS_KEPT:
                        del self._markets[next(iter(self._markets))]   # the oldest built
                    self._markets[key] = market
        return market

    def scope(self, promotions: Mapping[str, "Promotion"], codes: Mapping[str, tuple[str, ...]],
              lines: tuple["Line", ...], currency: str, region: str, channel: str, entered: Iterable[str],
              now: datetime) -> Scope:
        """The promotions this cart could get, and the others counted by reason."""
        market = self.market(currency, now)
        out_of_scope: Counter = Counter(dict(market.counts))
        targeted: dict[str, list["Line"]] = {}
        found: dict[str, "Promotion"] = {}
        automatic = 0
        passing = market.by_region.get(region, ())
        others = market.by_region_size - sum(bucket.size for bucket in passing)
        if others:   # they require another region
            out_of_scope[Reason.REGION_NOT_ELIGIBLE.value] += others
        for bucket in passing + market.tested:
            reason = _failure(bucket.regions, bucket.channels, region, channel)
            if reason is not None:
                out_of_scope[reason.value] += bucket.size
                continue
            automatic += bucket.size
            bucket.targeted(lines, targeted, found)
        if automatic > len(found):
            out_of_scope[Reason.NO_ELIGIBLE_ITEMS.value] = automatic - len(found)
        result = {pid: tuple(ls) for pid, ls in targeted.items()}
        entered_promotions = {pid for code in entered for pid in codes.get(code, ())}
        for pid in entered_promotions:
            p = promotions[pid]
            found[pid] = p
            result[pid] = tuple(line for line in lines if p.targets.matches(line))
        if self.coded > len(entered_promotions):
            out_of_scope[Reason.CODE_NOT_ENTERED.value] = self.coded - len(entered_promotions)
        considered = tuple(found[pid] for pid in sorted(found))
        return Scope(considered, MappingProxyType(result), out_of_scope)


def _one_region(leaves: tuple[Leaf, ...]) -> str | None:
    """The region a bucket requires when it is exactly `region equal_to <code>` (true for that region alone)."""
    if len(leaves) == 1 and leaves[0].operator == "equal_to" and isinstance(leaves[0].operand, str) \
            and leaves[0].operand:
        return leaves[0].operand
    return None


def _leaf_key(leaf: Leaf) -> tuple[str, str, Any]:
    return (leaf.variable, leaf.operator, leaf.operand)
