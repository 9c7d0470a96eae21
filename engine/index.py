"""The candidate index: built once with the rule set, it finds the promotions a cart could get
without looking at the others, and counts the others by reason with arithmetic, not a scan.

Scope, as the README states it, first reason wins:
1. A promotion with a code is considered when its code was entered; otherwise `code_not_entered`.
   (An entered promotion is always considered, and its gates give the exact reason it fails.)
2. An automatic promotion for another currency than the cart's is `currency_mismatch`.
3. An automatic promotion outside its window at `now` is `not_started` or `expired`.
4. An automatic promotion whose eligibility *requires* something of a fact fixed for the whole
   evaluation (SCOPE_ORDER: the account's region, the cart's sales channel, the account's tier, its
   segments, whether this is its first order) that the evaluation fails is counted by that fact's
   reason: `region_not_eligible`, `channel_not_eligible`, `tier_not_eligible`, `segment_not_eligible`,
   `first_order_not_eligible`. A requirement is a node reached from the root through `all`s only
   (the root itself, or a child of such an `all`) every leaf of which reads that one variable: a leaf
   `region equal_to JP`, a set "JP, KR or TW" written as `any` of `equal_to` leaves, a leaf
   `customer_segments shares_at_least_one_element_with [vip, staff]`, `first_order is_true`. Such a
   node fails the whole tree whatever else is true, so the promotion could not apply to this customer
   at all. A promotion failing several is counted once, by the first in SCOPE_ORDER. A leaf on one of
   these variables inside an `any` with a leaf on another variable requires nothing: that promotion is
   considered and its conditions decide (the trace lists it, `condition_failed` for a tier, say).
5. An automatic promotion whose targets match no line is `no_eligible_items`.
Every other promotion is considered: it goes through the gates and its conditions.

How the index makes that cheap. The windows' start and end instants cut time into stretches in
which no automatic promotion starts or ends; the promotions that can apply to carts in one currency
during one stretch form a *market*, built the first time a cart in that currency is evaluated at a
`now` in that stretch and kept (the last few are cached: this is memoization of a pure function, so
evaluate() stays pure). A market counts the promotions of other currencies and outside their windows.
The rest are grouped by their requirements on the SCOPE_ORDER variables. The evaluation's five values
are reduced to a *key* that keeps exactly what the market's requirements can tell apart:
- a region, channel or tier whose requirements list their values (`equal_to` leaves, in sets combined
  by `any` and `all`) is kept if some requirement lists it, else None (a value no one lists);
- first_order (true when the account has no earlier orders) is a boolean whose `is_true` / `is_false`
  requirements list {True}, {False}, both or neither, and is kept the same way.
The promotions whose every requirement is decided by the key are merged, per key, into one bucket,
found by one dict lookup, with the others counted by reason (an *entry*, built the first time a key is
seen in the market, then kept; at most ENTRIES_KEPT per market, the oldest dropped first, so a stream
of accounts with ever new values cannot grow memory without bound). Segments are not in the key: an
account's combination of segments is nearly its own, so keying on them would build an entry for most
evaluations. The segments, compared case-insensitively element by element by every operator of the
vocabulary (contains_all, is_contained_by, shares_at_least_one / exactly_one / no_elements_with), are
decided by which of the names the market's segment requirements compare with the account has, and
whether it has any other: its *representative*, the sorted lower-cased segments among those names
plus OTHER_SEGMENT if it has any other, on which a requirement gives the same verdict (tested with its
real leaves) as on the account's segments. An entry lists the promotions that require something of
segments and pass the rest of its key in one row per distinct segment requirement, and each
evaluation decides those rows on its representative (a few dozen tests): the ones that fail are
counted and taken out of what the bucket finds. No bucket of another region or tier is looked at.
Requirements whose values cannot be listed (`starts_with`, `equal_to_case_insensitive`) are few; their buckets are tested on the evaluation's own values once per
evaluation. Inside a passing bucket, inverted maps (category, SKU, brand -> promotions) give, line by
line, only the promotions that include that line; exclusions are then applied to those pairs alone. So
the work grows with the promotions that could apply, not with the catalogue, however many old
campaigns or other tiers' promotions it keeps. `tests/oracle.py` implements the same rules by scanning
every promotion and every line (the requirements decided by business-rules' own engine), and the
tests check both give the same trace.
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
    from .model import Account, Cart, Line, Promotion

# The facts fixed for one evaluation that rule out an automatic promotion requiring something else of
# them, in the order that names the reason when a promotion fails several.
SCOPE_VARIABLES = {"region": Reason.REGION_NOT_ELIGIBLE, "sales_channel": Reason.CHANNEL_NOT_ELIGIBLE,
                   "customer_tier": Reason.TIER_NOT_ELIGIBLE, "customer_segments": Reason.SEGMENT_NOT_ELIGIBLE,
                   "first_order": Reason.FIRST_ORDER_NOT_ELIGIBLE}
SCOPE_ORDER = ("region", "sales_channel", "customer_tier", "customer_segments", "first_order")
# Variables whose value is a set of names compared case-insensitively (select_multiple): looked up by a
# representative of the account's names, not by listed values.
SET_VARIABLES = frozenset({"customer_segments"})
SEGMENTS = SCOPE_ORDER.index("customer_segments")
# In a representative, every segment that no requirement of the market names. A segment name matches
# ^[a-z0-9][a-z0-9_.-]*$ (the account and promotion schemas), so none is, or equals, a NUL.
OTHER_SEGMENT = "\x00"


def scope_values(cart: "Cart", account: "Account") -> tuple[Any, ...]:
    """This evaluation's value of each SCOPE_ORDER variable, as PromotionVariables reads it."""
    return (account.region, cart.channel, account.tier, account.segments, account.order_count == 0)


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


def _listed(leaf: Leaf) -> frozenset | None:
    """The values one leaf accepts, when they can be listed: a non-empty string it must equal, or the
    booleans an `is_true` / `is_false` leaf accepts (found by its own test). Else None (starts_with...)."""
    if leaf.operator == "equal_to" and isinstance(leaf.operand, str) and leaf.operand:
        return frozenset((leaf.operand,))
    if leaf.operator in ("is_true", "is_false"):
        return frozenset(value for value in (True, False) if leaf.test(value, leaf.operand))
    return None


def _accepted(node: Node) -> frozenset | None:
    """The values a one-variable node accepts, when they can be listed: listed leaves combined by `any`
    (union) and `all` (intersection). None when some leaf's values cannot be listed."""
    if isinstance(node, Leaf):
        return _listed(node)
    sets = [_accepted(child) for child in node.children]
    if any(s is None for s in sets):
        return None
    if isinstance(node, AllOf):
        return frozenset.intersection(*sets)
    return frozenset().union(*sets)


def _names(nodes: tuple[Node, ...]) -> frozenset[str]:
    """Every name a set variable's leaves compare with, lower-cased (they compare case-insensitively)."""
    return frozenset(name.lower() for node in nodes for leaf in _leaves_under(node)
                     for name in (leaf.operand or ()) if isinstance(name, str))


def representative(segments: Iterable[str], names: frozenset[str]) -> tuple[str, ...]:
    """The account's segments as far as requirements comparing only with `names` (lower-cased) can tell:
    the sorted lower-cased segments among them, then OTHER_SEGMENT if it has any other. Every operator on
    segments asks, for each name, whether some segment equals it case-insensitively (and is_contained_by
    also whether some segment equals none), so a requirement gives the same verdict on both."""
    lowered = {segment.lower() for segment in segments}
    named = tuple(sorted(lowered & names))
    return named + (OTHER_SEGMENT,) if len(named) < len(lowered) else named


@dataclass(frozen=True)
class Requirement:
    """What a promotion requires of one fixed variable: the required nodes that read only it. Either the
    values it accepts are listed (`accepted`, looked up by the evaluation's value), or it reads a set
    variable (`names`: what it compares with, for the representative), or its nodes are tested."""

    variable: str
    nodes: tuple[Node, ...]
    accepted: frozenset | None
    names: frozenset[str] = frozenset()

    @property
    def looked_up(self) -> bool:
        """Decided once per market key rather than tested per evaluation."""
        return self.accepted is not None or self.variable in SET_VARIABLES

    def holds(self, value: Any) -> bool:
        """The verdict for the evaluation's value, or for its key (a representative, a listed value or None)."""
        if self.accepted is not None:
            return value in self.accepted
        return all(_holds(node, value) for node in self.nodes)

    def key(self) -> tuple:
        if self.accepted is not None:
            return ("in", tuple(sorted(self.accepted)))
        return ("test", tuple(repr(_node_key(node)) for node in self.nodes))


def _requirement(variable: str, nodes: tuple[Node, ...]) -> Requirement:
    if variable in SET_VARIABLES:
        return Requirement(variable, nodes, None, _names(nodes))
    sets = [_accepted(node) for node in nodes]
    accepted = None if any(s is None for s in sets) else frozenset.intersection(*sets)
    return Requirement(variable, nodes, accepted)


def _only_variable(node: Node) -> str | None:
    """The one variable every leaf of the node reads, or None when they read several."""
    variables = {leaf.variable for leaf in _leaves_under(node)}
    return variables.pop() if len(variables) == 1 else None


def scope_requirements(promotion: "Promotion") -> tuple[Requirement | None, ...]:
    """An automatic promotion's requirements on each SCOPE_ORDER variable (None: it requires nothing of it).
    A promotion with a code requires nothing here: when its code is entered it is always considered."""
    if promotion.code is None:
        by_variable: dict[str, list[Node]] = {}
        for node in required_nodes(promotion.condition.root):
            variable = _only_variable(node)
            if variable in SCOPE_VARIABLES:
                by_variable.setdefault(variable, []).append(node)
        if by_variable:
            return tuple(_requirement(v, tuple(by_variable[v])) if v in by_variable else None for v in SCOPE_ORDER)
    return (None,) * len(SCOPE_ORDER)


def _failure(requirements: tuple[Requirement | None, ...], values: tuple[Any, ...]) -> Reason | None:
    """The reason a bucket's requirements rule it out for these values or this key (SCOPE_ORDER), or None."""
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
    """For one market key (see `_Market.key`): the automatic promotions whose looked-up requirements
    accept it, in one bucket, and how many the key rules out, by reason. Segments are not in the key
    (an account's combination of segments is nearly its own): the promotions that require something of
    them and pass the rest of the key are listed in `segmented`, one row per segment requirement: the
    requirement, their ids, and the reason a later variable (first order) gives them, or None when they
    are in the bucket. Each row is decided on the evaluation's segments once per evaluation."""

    bucket: _Bucket
    counts: tuple[tuple[str, int], ...]
    segmented: tuple[tuple[Requirement, frozenset[str], "Reason | None"], ...] = ()

    def ruled_out_by_segments(self, segments: tuple[str, ...], names: frozenset[str],
                              out_of_scope: Counter) -> set[str]:
        """Count the segmented promotions the account's segments (or, after them, its first order) rule
        out; return the ids of those in the bucket, which must not be considered."""
        dropped: set[str] = set()
        if not self.segmented:
            return dropped
        value = representative(segments, names)
        for requirement, ids, later in self.segmented:
            if not requirement.holds(value):
                out_of_scope[Reason.SEGMENT_NOT_ELIGIBLE.value] += len(ids)
                if later is None:
                    dropped |= ids
            elif later is not None:
                out_of_scope[later.value] += len(ids)
        return dropped


ENTRIES_KEPT = 1024   # keys kept per market: regions x channels x tiers x segment combinations seen


@dataclass(frozen=True)
class _Market:
    """The automatic promotions that carts in one currency can get during one stretch of time, and how
    many others there are by reason.

    Promotions whose every scope requirement is looked up (listed values, or segments; or that have
    none) are found through `entry`: one lookup by the evaluation's key gives every such promotion that
    accepts it, merged into one bucket, and the count of those ruled out by each reason. An entry is
    built the first time a key is seen in this market and kept (memoized; the last ENTRIES_KEPT).
    Promotions with a requirement that cannot be listed (`region starts_with K`) are grouped by
    requirements in `tested` buckets, tested on the evaluation's values once per evaluation."""

    counts: tuple[tuple[str, int], ...]   # (reason, promotions) for currency and window, nonzero only
    listed: tuple[tuple[tuple[Requirement | None, ...], tuple["Promotion", ...]], ...]   # by requirements
    # per SCOPE_ORDER variable: every value some looked-up requirement lists (a set variable: every name
    # one compares with, lower-cased)
    known: tuple[frozenset, ...]
    tested: tuple[_Bucket, ...]
    _entries: dict[tuple, _Entry] = field(default_factory=dict, repr=False, compare=False)
    _keeping: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

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
        known: list[set] = [set() for _ in SCOPE_ORDER]
        for key in sorted(grouped, key=repr):
            reqs = requirements_of[key]
            if all(r is None or r.looked_up for r in reqs):
                listed.append((reqs, tuple(grouped[key])))
                for values, r in zip(known, reqs):
                    if r is not None:
                        values.update(r.names if r.accepted is None else r.accepted)
            else:
                tested.append(_bucket(grouped[key], reqs))
        return _Market(tuple(sorted(counts.items())), tuple(listed), tuple(frozenset(k) for k in known),
                       tuple(tested))

    def key(self, values: tuple[Any, ...]) -> tuple:
        """What the looked-up requirements can tell of these values (SCOPE_ORDER): a listed value, or None
        for a value no requirement lists; segments are not part of it (see `_Entry`)."""
        return tuple(None if variable in SET_VARIABLES else value if value in known else None
                     for variable, value, known in zip(SCOPE_ORDER, values, self.known))

    def entry(self, values: tuple[Any, ...]) -> _Entry:
        """The promotions with looked-up requirements that accept these values, and the others by reason."""
        key = self.key(values)
        found = self._entries.get(key)
        if found is None:   # a pure function of the key: two threads building it at once build the same
            members: list["Promotion"] = []
            counts: Counter = Counter()
            segmented: dict[tuple, tuple[Requirement, set[str], Reason | None]] = {}
            for reqs, promotions in self.listed:
                segments = reqs[SEGMENTS]
                reason = _failure(reqs[:SEGMENTS] if segments is not None else reqs, key)
                if reason is not None:
                    counts[reason.value] += len(promotions)
                    continue
                later = None if segments is None else _failure(reqs[SEGMENTS + 1:], key[SEGMENTS + 1:])
                if later is None:
                    members.extend(promotions)
                if segments is not None:
                    row = segmented.setdefault((segments.key(), later), (segments, set(), later))
                    row[1].update(p.id for p in promotions)
            rows = tuple((req, frozenset(ids), later) for (_, _), (req, ids, later) in sorted(
                segmented.items(), key=lambda item: repr(item[0])))
            found = _Entry(_bucket(members), tuple(sorted(counts.items())), rows)
            with self._keeping:
                while len(self._entries) >= ENTRIES_KEPT:
                    del self._entries[next(iter(self._entries))]   # the oldest built
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
              lines: tuple["Line", ...], currency: str, values: tuple[Any, ...], entered: Iterable[str],
              now: datetime) -> Scope:
        """The promotions this cart could get, and the others counted by reason. `values`: the evaluation's
        value of each SCOPE_ORDER variable (`scope_values`)."""
        market = self.market(currency, now)
        out_of_scope: Counter = Counter(dict(market.counts))
        targeted: dict[str, list["Line"]] = {}
        found: dict[str, "Promotion"] = {}
        entry = market.entry(values)
        out_of_scope.update(dict(entry.counts))
        dropped = entry.ruled_out_by_segments(values[SEGMENTS], market.known[SEGMENTS], out_of_scope)
        automatic = entry.bucket.size - len(dropped)
        entry.bucket.targeted(lines, targeted, found)
        for pid in dropped.intersection(found):
            del found[pid], targeted[pid]
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
