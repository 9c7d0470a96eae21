"""The candidate index: built once with the rule set, it finds the promotions a cart could get
without looking at the others, and counts the others by reason with arithmetic, not a scan.

Scope, as the README states it, first reason wins:
1. A promotion with a code is considered when its code was entered; otherwise `code_not_entered`.
   (An entered promotion is always considered, and its gates give the exact reason it fails.)
2. An automatic promotion for another currency than the cart's is `currency_mismatch`.
3. An automatic promotion outside its window at `now` is `not_started` or `expired`.
4. An automatic promotion whose eligibility *requires* a region (a node reached from the root through
   `all`s only, every leaf of which reads `region`: a leaf `region equal_to JP`, or a set "JP, KR or
   TW" written as `any` of `equal_to` leaves) that the account's region fails is `region_not_eligible`;
   one that requires a sales channel (a leaf or a set) the cart's channel fails is
   `channel_not_eligible`; a promotion failing both is counted by its region. Such a node fails the
   whole tree whatever else is true, so the promotion could not apply to this customer at all.
   Tier, segment and first-order terms are *not* counted here, even when required: the trace lists
   such a miss as `condition_failed` with the measured tier or segments (the golden cases pin it),
   so those promotions are considered like any other.
5. An automatic promotion whose targets match no line is `no_eligible_items`.
Every other promotion is considered: it goes through the gates and its conditions.

How the index makes that cheap. The windows' start and end instants cut time into stretches in
which no automatic promotion starts or ends; the promotions that can apply to carts in one currency
during one stretch form a *market*, built the first time a cart in that currency is evaluated at a
`now` in that stretch and kept (the last few are cached: this is memoization of a pure function, so
evaluate() stays pure). A market counts the promotions of other currencies and outside their windows.
The rest are grouped by their region and channel requirements. When a requirement's values can be
listed (`equal_to` leaves, in sets), the promotions accepting one (region, channel) pair are merged
into one bucket, found by one dict lookup of the evaluation's pair, with the others counted by reason
(built the first time a pair is seen in the market, then kept): no bucket of another region is
looked at. Requirements that cannot be listed (`starts_with`, `equal_to_case_insensitive`) are few;
their buckets are tested once per evaluation. Inside a passing bucket, inverted maps (category,
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
SCOPE_ORDER = ("region", "sales_channel")   # a promotion failing both is counted by the first


def required_leaves(root: Node | None) -> tuple[Leaf, ...]:
    """The leaves the tree cannot pass without: the root if it is a leaf, or leaves reached through `all` only."""
    return tuple(node for node in required_nodes(root) if isinstance(node, Leaf))


def required_nodes(root: Node | None) -> tuple[Node, ...]:
    """The nodes the tree cannot pass without: the root unless it is an `all`, and the children of every
    `all` reached through `all`s only (a required `any` is one node: its children are not required)."""
    if root is None:
        return ()
    if isinstance(root, AllOf):
        return tuple(node for child in root.children for node in required_nodes(child))
    return (root,)


def _leaves_under(node: Node) -> Iterable[Leaf]:
    if isinstance(node, Leaf):
        yield node
    else:
        for child in node.children:
            yield from _leaves_under(child)


def _holds(node: Node, value: Any) -> bool:
    """A node whose leaves all read one variable, decided for that variable's value."""
    if isinstance(node, Leaf):
        return bool(node.test(value, node.operand))
    if isinstance(node, AllOf):
        return all(_holds(child, value) for child in node.children)
    return any(_holds(child, value) for child in node.children)


def _accepted(node: Node) -> frozenset[str] | None:
    """The values a one-variable node accepts, when they can be listed: `equal_to` leaves combined by
    `any` (union) and `all` (intersection). None when some leaf's values cannot be listed (starts_with...)."""
    if isinstance(node, Leaf):
        if node.operator == "equal_to" and isinstance(node.operand, str) and node.operand:
            return frozenset((node.operand,))
        return None
    sets = [_accepted(child) for child in node.children]
    if any(s is None for s in sets):
        return None
    if isinstance(node, AllOf):
        return frozenset.intersection(*sets)
    return frozenset().union(*sets)


@dataclass(frozen=True)
class Requirement:
    """What a promotion requires of one fixed variable: the required nodes that read only it. Either the
    values it accepts are listed (`accepted`, looked up by the evaluation's value) or its nodes are tested."""

    variable: str
    nodes: tuple[Node, ...]
    accepted: frozenset[str] | None

    def holds(self, value: Any) -> bool:
        if self.accepted is not None:
            return value in self.accepted
        return all(_holds(node, value) for node in self.nodes)

    def key(self) -> tuple:
        if self.accepted is not None:
            return ("in", tuple(sorted(self.accepted)))
        return ("test", tuple(repr(_node_key(node)) for node in self.nodes))


def requirement(root: Node | None, variable: str) -> Requirement | None:
    """The required nodes of the tree whose every leaf reads `variable` (a leaf `region equal_to JP`, or
    `any` of region leaves: "JP, KR or TW"). Such a node fails the whole tree whatever else is true."""
    nodes = tuple(node for node in required_nodes(root) if all(l.variable == variable for l in _leaves_under(node)))
    if not nodes:
        return None
    sets = [_accepted(node) for node in nodes]
    accepted = None if any(s is None for s in sets) else frozenset.intersection(*sets)
    return Requirement(variable, nodes, accepted)


def scope_requirements(promotion: "Promotion") -> tuple[Requirement | None, ...]:
    """An automatic promotion's requirements on the region and on the sales channel (SCOPE_ORDER)."""
    if promotion.code is not None:
        return (None,) * len(SCOPE_ORDER)
    return tuple(requirement(promotion.condition.root, variable) for variable in SCOPE_ORDER)


def scope_leaves(promotion: "Promotion") -> tuple[tuple[Leaf, ...], tuple[Leaf, ...]]:
    """An automatic promotion's required region leaves and required channel leaves."""
    if promotion.code is not None:
        return (), ()
    required = required_leaves(promotion.condition.root)
    return (tuple(leaf for leaf in required if leaf.variable == "region"),
            tuple(leaf for leaf in required if leaf.variable == "sales_channel"))


def _failure(requirements: tuple[Requirement | None, ...], values: tuple[Any, ...]) -> Reason | None:
    """The reason a bucket's requirements rule it out for these values (SCOPE_ORDER), or None."""
    for req, value in zip(requirements, values):
        if req is not None and not req.holds(value):
            return SCOPE_VARIABLES[req.variable]
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
    """Automatic promotions found together: inverted maps from what a line is to the promotions that
    include it."""

    size: int
    by_category: Mapping[str, tuple["Promotion", ...]]
    by_sku: Mapping[str, tuple["Promotion", ...]]
    by_brand: Mapping[str, tuple["Promotion", ...]]
    include_all: tuple["Promotion", ...]
    excluding: frozenset[str]          # ids of the promotions with any exclusion
    requirements: tuple[Requirement | None, ...] = ()   # a tested bucket's (SCOPE_ORDER)

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
class _Entry:
    """For one combination of listed values (region, channel; None: a value no promotion lists): the
    automatic promotions that accept it, in one bucket, and how many the values rule out, by reason."""

    bucket: _Bucket
    counts: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class _Market:
    """The automatic promotions that carts in one currency can get during one stretch of time, and how
    many others there are by reason.

    Promotions whose region and channel requirements list their values (or that have none) are found
    through `entry`: one lookup by the evaluation's (region, channel) gives every such promotion that
    accepts both, merged into one bucket, and the count of those ruled out by each. An entry is built
    the first time a cart with those values is evaluated in this market (memoized: there are at most
    a few dozen). Promotions whose requirements cannot be listed (`region starts_with K`) are grouped by
    requirement in `tested` buckets, whose nodes are tested once per evaluation."""

    counts: tuple[tuple[str, int], ...]   # (reason, promotions) for currency and window, nonzero only
    listed: tuple[tuple[tuple[Requirement | None, ...], tuple["Promotion", ...]], ...]   # by requirements
    known: tuple[frozenset[str], ...]  # per SCOPE_ORDER variable: every value some listed requirement names
    tested: tuple[_Bucket, ...]
    _entries: dict[tuple, _Entry] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def build(automatic: Iterable["Promotion"], currency: str, now: datetime) -> "_Market":
        counts: Counter = Counter()
        grouped: dict[tuple, list["Promotion"]] = {}
        requirements_of: dict[tuple, tuple[Requirement | None, ...]] = {}
        for p in automatic:
            if p.currency is not None and p.currency != currency:
                counts[Reason.CURRENCY_MISMATCH.value] += 1
            elif p.starts is not None and now < p.starts:
                counts[Reason.NOT_STARTED.value] += 1
            elif p.ends is not None and now >= p.ends:
                counts[Reason.EXPIRED.value] += 1
            else:
                reqs = scope_requirements(p)
                key = tuple(None if r is None else r.key() for r in reqs)
                grouped.setdefault(key, []).append(p)
                requirements_of.setdefault(key, reqs)
        listed = []
        tested: list[_Bucket] = []
        known: list[set[str]] = [set() for _ in SCOPE_ORDER]
        for key in sorted(grouped, key=repr):
            reqs = requirements_of[key]
            if all(r is None or r.accepted is not None for r in reqs):
                listed.append((reqs, tuple(grouped[key])))
                for values, r in zip(known, reqs):
                    if r is not None:
                        values.update(r.accepted)
            else:
                tested.append(_bucket(grouped[key], reqs))
        return _Market(tuple(sorted(counts.items())), tuple(listed), tuple(frozenset(k) for k in known),
                       tuple(tested))

    def entry(self, values: tuple[Any, ...]) -> _Entry:
        """The promotions with listed requirements that accept these values, and the others by reason."""
        key = tuple(v if v in known else None for v, known in zip(values, self.known))
        found = self._entries.get(key)
        if found is None:   # a pure function of the key: two threads building it at once build the same
            members: list["Promotion"] = []
            counts: Counter = Counter()
            for reqs, promotions in self.listed:
                reason = _failure(reqs, key)
                if reason is None:
                    members.extend(promotions)
                else:
                    counts[reason.value] += len(promotions)
            found = _Entry(_bucket(members), tuple(sorted(counts.items())))
            self._entries[key] = found
        return found


def _bucket(members: list["Promotion"], requirements: tuple[Requirement | None, ...] = ()) -> _Bucket:
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
    return _Bucket(len(members), _freeze(by_category), _freeze(by_sku), _freeze(by_brand),
                   tuple(include_all), frozenset(p.id for p in members if has_exclusions(p)), requirements)


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
        values = (region, channel)   # SCOPE_ORDER
        entry = market.entry(values)
        out_of_scope.update(dict(entry.counts))
        automatic = entry.bucket.size
        entry.bucket.targeted(lines, targeted, found)
        for bucket in market.tested:
            reason = _failure(bucket.requirements, values)
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


def _node_key(node: Node) -> tuple:
    if isinstance(node, Leaf):
        return (node.variable, node.operator, repr(node.operand))
    return (type(node).__name__, tuple(_node_key(child) for child in node.children))
