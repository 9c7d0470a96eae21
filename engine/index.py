"""The candidate index: built once with the rule set, it finds the promotions a cart could get
without looking at the others, and counts the others by reason with arithmetic, not a scan.

Scope, as the README states it, first reason wins:
1. A promotion with a code is considered when its code was entered; otherwise `code_not_entered`.
2. An automatic promotion whose eligibility *requires* a region (a `region` leaf at the root or
   reached through `all`s only) that the account's region fails is `region_not_eligible`; one that
   requires a sales channel the cart's channel fails is `channel_not_eligible`. Such a leaf fails the
   whole tree whatever else is true, so the promotion could not apply to this customer at all.
3. An automatic promotion whose targets match no line is `no_eligible_items`.
Every other promotion is considered: it goes through the gates and its conditions.

How the index makes that cheap: automatic promotions are grouped into buckets by their required
region and channel leaves (a catalogue has a few dozen such combinations, not thousands). Each
bucket's leaves are tested once per evaluation; a failing bucket is counted by its size. Inside a
passing bucket, inverted maps (category, SKU, brand -> promotions) and an "include all" list give,
line by line, only the promotions that include that line; exclusions are then applied to those
pairs alone. So the work grows with the promotions that could apply, not with the catalogue.
`tests/oracle.py` implements the same rules by scanning every promotion and every line, and the
tests check both give the same trace.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
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


def scope_failure(promotion: "Promotion", region: str, channel: str) -> Reason | None:
    """Why an automatic promotion is out of scope for this region and channel, if it is (region first)."""
    regions, channels = scope_leaves(promotion)
    return _failure(regions, channels, region, channel)


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
class CandidateIndex:
    buckets: tuple[_Bucket, ...]
    coded: int                         # promotions with a code
    # Most buckets require one region, `region equal_to "JP"`: those are looked up by the region, so
    # the buckets of other regions cost one subtraction, not a test each. The rest are tested one by one.
    by_region: Mapping[str, tuple[_Bucket, ...]]
    by_region_size: int                # promotions in all of `by_region`'s buckets
    tested: tuple[_Bucket, ...]

    @staticmethod
    def build(promotions: Iterable["Promotion"]) -> "CandidateIndex":
        grouped: dict[tuple, list["Promotion"]] = {}
        leaves_of: dict[tuple, tuple[tuple[Leaf, ...], tuple[Leaf, ...]]] = {}
        coded = 0
        for p in promotions:
            if p.code is not None:
                coded += 1
                continue
            regions, channels = scope_leaves(p)
            key = (tuple(_leaf_key(l) for l in regions), tuple(_leaf_key(l) for l in channels))
            grouped.setdefault(key, []).append(p)
            leaves_of.setdefault(key, (regions, channels))
        buckets = []
        for key in sorted(grouped, key=repr):
            members = grouped[key]
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
            regions, channels = leaves_of[key]
            buckets.append(_Bucket(regions, channels, len(members), _freeze(by_category), _freeze(by_sku),
                                   _freeze(by_brand), tuple(include_all),
                                   frozenset(p.id for p in members if has_exclusions(p))))
        by_region: dict[str, list[_Bucket]] = {}
        tested = []
        for bucket in buckets:
            region = _one_region(bucket.regions)
            if region is None:
                tested.append(bucket)
            else:
                by_region.setdefault(region, []).append(bucket)
        return CandidateIndex(tuple(buckets), coded, _freeze(by_region),
                              sum(b.size for bs in by_region.values() for b in bs), tuple(tested))

    def scope(self, promotions: Mapping[str, "Promotion"], codes: Mapping[str, tuple[str, ...]],
              lines: tuple["Line", ...], region: str, channel: str, entered: Iterable[str]) -> Scope:
        """The promotions this cart could get, and the others counted by reason."""
        out_of_scope: Counter = Counter()
        targeted: dict[str, list["Line"]] = {}
        found: dict[str, "Promotion"] = {}
        automatic = 0
        passing = self.by_region.get(region, ())
        others = self.by_region_size - sum(bucket.size for bucket in passing)
        if others:   # they require another region
            out_of_scope[Reason.REGION_NOT_ELIGIBLE.value] += others
        for bucket in passing + self.tested:
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
