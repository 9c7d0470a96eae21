"""Deciding: the gates, promotions run benefit by benefit in stage order, the best-per-line classes,
the sets of promotions that combine and the policy that picks the winning set. Pure functions of a
`Context`; the explanations they attach come from engine/explain.py."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from math import lcm
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, cast

from .benefits import KINDS, Exact, Lines, Missing, NextTier, Short, keep_units
from .context import MAX_PROBES, NO_USAGE, PROBE_LINE, Context, State, evaluation_order, initial_state, refuse, targeted_shipments
from .errors import InvariantError
from .explain import (ITEM_WORDS, condition_failure, gives_nothing_on_shipping, item_to_add, lost_every_line, missing_refusal,
                      next_tier_hint, nothing_on_shipping, short_refusal, threshold_hint)
from .model import STAGE_ORDER, Benefit, Promotion, Stage, Usage
from .money import allocate_units, from_units, round_units, to_units
from .reasons import Reason, hint, why_won
from .trace import Applied, Hint, LineShare, LostLine, NotApplied, ShipmentShare, Threshold
from .variables import MEASURED_PER_PROMOTION, SPEND_VARIABLES

if TYPE_CHECKING:
    from typing_extensions import TypeIs


def gate(p: Promotion, ctx: Context) -> NotApplied | None:
    """The checks that do not depend on other promotions, in GATES' order; the first failure is the reason."""
    for reason, check in GATES:
        values = check(p, ctx)
        if values is not None:
            return refuse(p, reason, **values)
    return None


def _used(p: Promotion, ctx: Context) -> Usage:
    return ctx.usage.get(p.id, NO_USAGE)


_Check = Callable[[Promotion, "Context"], "dict[str, Any] | None"]

# The gates as one ordered table: each check gives the values of its reason's message when the
# promotion fails it, or None. A new gate is one row, at the place its reason should win.
GATES: tuple[tuple[Reason, _Check], ...] = (
    (Reason.NOT_ACTIVE, lambda p, ctx: {"status": p.status}
        if p.status != "active" and p.id not in ctx.previewed else None),
    (Reason.CURRENCY_MISMATCH, lambda p, ctx: {"promotion_currency": p.currency, "currency": ctx.currency}
        if p.currency is not None and p.currency != ctx.currency else None),
    (Reason.NOT_STARTED, lambda p, ctx: {"starts": p.starts.isoformat()}
        if p.starts is not None and ctx.now < p.starts else None),
    (Reason.EXPIRED, lambda p, ctx: {"ends": p.ends.isoformat()} if p.ends is not None and ctx.now >= p.ends else None),
    (Reason.USAGE_LIMIT_REACHED, lambda p, ctx: {"limit": f"{p.limits.total_uses} uses in all"}
        if p.limits.total_uses is not None and _used(p, ctx).total_uses >= p.limits.total_uses else None),
    (Reason.USAGE_LIMIT_REACHED, lambda p, ctx: {"limit": f"{p.limits.uses_per_customer} per customer"}
        if p.limits.uses_per_customer is not None and _used(p, ctx).customer_uses >= p.limits.uses_per_customer
        else None),
    (Reason.BUDGET_EXHAUSTED, lambda p, ctx: {"budget": ctx.money(p.limits.budget)}
        if p.limits.budget is not None and _used(p, ctx).budget_spent >= p.limits.budget else None),
    (Reason.NO_ELIGIBLE_ITEMS, lambda p, ctx: {} if not ctx.targeted[p.id] else None),
)


# --- running promotions in order -----------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    applied: tuple[Applied, ...]
    not_applied: list["NotApplied | Unexplained"]   # a candidate set's; explained when the trace is read
    hints: tuple["Hint | NearMiss | PendingHint", ...]   # a candidate set's; settled (all Hint) when the trace is read
    total: Decimal          # discounts on this order
    granted: Decimal        # promotional balance granted for later orders
    left: State            # what is left to pay on each line and on shipping after the discounts

    def value(self) -> Decimal:
        """What the outcome is worth to the customer: a balance granted counts like a discount."""
        return self.total + self.granted

    def lead(self) -> tuple:
        """Tie-break between outcomes saving the same: the leading promotion's priority, then id."""
        if not self.applied:
            return (1, 0, "")
        top = min(self.applied, key=lambda a: (-a.priority, a.promotion))
        return (0, -top.priority, top.promotion)


def run_promotions(promotions: Iterable[Promotion], ctx: Context, until: str | None = None) -> Outcome:
    """The promotions together, benefit by benefit in stage order (then priority, then id). A promotion's
    conditions are measured once, before its first benefit; a promotion that gives nothing with any
    benefit did not apply. The item discounts of a `best_per_line` class are settled together, at the
    place of the first of them (`_best_per_line`). With `until`, the run stops just before that
    promotion's first benefit (a what-if run for a hint needs the cart only as it stands there)."""
    promotions = list(promotions)
    state = initial_state(ctx)
    applied: list[Applied] = []
    failed: list[NotApplied | Unexplained] = []
    hints: list[Hint | NearMiss | PendingHint] = []
    run = tuple(promotions)
    steps = sorted(((STAGE_ORDER.index(b.stage), -p.priority, p.id), p, b) for p in run for b in p.benefits)
    refused: set[str] = set()
    given: dict[str, int] = {}        # minor units each promotion has given so far, for its caps
    nothing: dict[str, Nothing] = {}   # why a promotion's first benefit that gave nothing gave nothing
    groups = _line_groups(run, ctx)
    outdone: dict[str, tuple[str, ...]] = {}   # best_per_line: promotions that lost every line, to whom
    on_shipping: dict[str, NotApplied] = {}   # why a shipping benefit took nothing off, told as such
    for _, promotion, benefit in steps:
        pid = promotion.id
        if pid == until and benefit is promotion.benefits[0]:
            break
        if pid in refused:
            continue
        group = groups.get(promotion.stacking_class) if benefit.stage is Stage.ITEM else None
        if group is not None:
            if group[0] is promotion:     # the first of its class: the whole class is settled here
                settled = _best_per_line(group, state, applied, run, ctx)
                state = settled.state
                applied.extend(settled.applied)
                hints.extend(settled.hints)
                given.update(settled.given)
                outdone.update(settled.outdone)
                nothing.update(settled.nothing)
                for loser in settled.refused:
                    refused.add(loser.promotion)
                    failed.append(loser)
            if pid in refused:
                continue
        else:
            if benefit is promotion.benefits[0]:
                refusal = _eligibility(promotion, state, ctx)
                if refusal is not None:
                    refused.add(pid)
                    failed.append(refusal)
                    if not ctx.probing and not gives_nothing_on_shipping(promotion, state, ctx):
                        hints.append(NearMiss(pid, promotion, refusal, applied, len(applied), run))
                    continue
            result = _apply(promotion, benefit, state, given.get(pid, 0), ctx)
            if isinstance(result, NotApplied):   # its own threshold (always the first benefit) refused it
                refused.add(pid)
                failed.append(result)
                if not ctx.probing:
                    hints.append(NearMiss(pid, promotion, result, applied, len(applied), run))
                continue
            if result is None or gave_nothing(result):
                nothing.setdefault(pid, result or (Reason.NOTHING_LEFT_TO_DISCOUNT, {}))
                if benefit.stage is Stage.SHIPPING:
                    why = nothing_on_shipping(promotion, benefit, state, ctx)
                    if why is not None:
                        on_shipping[pid] = why
            else:
                done, state, next_tier = result
                applied.append(done)
                given[pid] = given.get(pid, 0) + to_units(done.amount, ctx.currency)
                if next_tier is not None and not ctx.probing:
                    hints.extend(next_tier_hint(promotion, next_tier, ctx))
        if benefit is promotion.benefits[-1] and pid not in given:
            lines_too = any(b.stage not in (Stage.SHIPPING, Stage.GRANT) for b in promotion.benefits)
            if pid in outdone:
                failed.append(lost_every_line(promotion, outdone[pid], ctx))
            elif pid in on_shipping and not lines_too and nothing[pid][0] is Reason.NOTHING_LEFT_TO_DISCOUNT:
                failed.append(on_shipping[pid])
            else:
                reason, values = nothing.get(pid, (Reason.NOTHING_LEFT_TO_DISCOUNT, {}))
                failed.append(refuse(promotion, reason, **values))
    total = sum((a.amount for a in applied if a.stage != Stage.GRANT.value), ctx.zero)
    granted = sum((a.amount for a in applied if a.stage == Stage.GRANT.value), ctx.zero)
    return Outcome(tuple(applied), failed, tuple(hints), total, granted, state)


# --- best per line -------------------------------------------------------------------------------

def _line_groups(promotions: Iterable[Promotion], ctx: Context) -> dict[str | None, list[Promotion]]:
    """The promotions of each `best_per_line` class that discount items, in evaluation order."""
    classes = ctx.ruleset.best_per_line
    groups: dict[str | None, list[Promotion]] = {}
    if not classes:
        return groups
    for p in sorted(promotions, key=evaluation_order):
        if p.stacking_class in classes and p.benefits[0].stage is Stage.ITEM:
            groups.setdefault(p.stacking_class, []).append(p)
    return groups


@dataclass
class _Settled:
    """What one best_per_line class gave, for `run_promotions` to take in."""

    state: State
    applied: list[Applied] = field(default_factory=list)
    refused: list["NotApplied | Unexplained"] = field(default_factory=list)
    hints: list["Hint | NearMiss"] = field(default_factory=list)
    given: dict[str, int] = field(default_factory=dict)
    outdone: dict[str, tuple[str, ...]] = field(default_factory=dict)
    nothing: dict[str, "Nothing"] = field(default_factory=dict)


def _best_per_line(members: list[Promotion], state: State, earlier: list[Applied], run: tuple[Promotion, ...],
                   ctx: Context) -> _Settled:
    """The item discounts of one best_per_line class (Saleor's catalogue promotions): they do not
    compound on a line. Each member measures its conditions and computes its discount on the cart as
    it stands before the first of them (exact, rounded once, capped, split as usual); then each line
    keeps only the largest share any member gave it (ties: the higher priority, then the smaller id,
    which is the members' order). A member keeps its shares of the lines it won, so its amount is the
    sum of whole minor units it was already given, never re-rounded; the lines it lost are listed."""
    settled = _Settled(state)
    offers: list[tuple[Promotion, Benefit, Exact, tuple[str, ...], dict[str, int]]] = []
    for p in members:
        b = p.benefits[0]
        refusal = _eligibility(p, state, ctx)
        computed = _exact(p, b, state, 0, ctx) if refusal is None else refusal
        if isinstance(computed, (NotApplied, Refusal)):
            settled.refused.append(computed)
            if not ctx.probing:
                settled.hints.append(NearMiss(p.id, p, computed, earlier, len(earlier), run))
        elif gave_nothing(computed):
            settled.nothing[p.id] = computed
        else:
            result, amount, capped_by = computed
            shares = _parts(amount, result, state, ctx)
            offers.append((p, b, result, capped_by, dict(zip(result.ids, shares))))
    best: dict[str, tuple[int, str]] = {}         # line -> the largest share and who gave it
    for p, _, _, _, parts in offers:              # in evaluation order: a tie stays with the earlier
        for line, part in parts.items():
            if part and (line not in best or part > best[line][0]):
                best[line] = (part, p.id)
    for p, b, result, capped_by, parts in offers:
        won = tuple(line for line in result.ids if parts[line] and best[line][1] == p.id)
        lost = tuple(LostLine(line, from_units(parts[line], ctx.currency), best[line][1])
                     for line in result.ids if parts[line] and best[line][1] != p.id)
        if not won:
            if lost:
                settled.outdone[p.id] = tuple(dict.fromkeys(x.lost_to for x in lost))
            continue
        kept = Exact(won, tuple(parts[line] for line in won))
        amount = kept.total()
        done, settled.state = _split(p, b, kept, amount, capped_by, settled.state, ctx)
        settled.applied.append(replace(done, lost_lines=lost) if lost else done)
        settled.given[p.id] = amount
        if result.next_tier is not None and not ctx.probing:
            settled.hints.extend(next_tier_hint(p, result.next_tier, ctx))
    return settled


# --- which promotions combine, and which outcome wins ----------------------------------------------

MAX_CANDIDATES = 256   # maximal sets of combinable promotions enumerated per evaluation (see _candidates)


@dataclass(frozen=True)
class _Candidate:
    """A maximal set of live promotions that pairwise combine, and what it gives when run together."""

    members: tuple[Promotion, ...]       # in evaluation order
    outcome: Outcome

    @cached_property
    def ids(self) -> tuple[str, ...]:
        return tuple(sorted(p.id for p in self.members))

    def order(self) -> tuple:
        """The last tie-break: the applied promotions from the first in evaluation order, then the
        members' ids. Two different sets always differ here, so the winner never depends on file order."""
        applied = tuple(sorted(dict.fromkeys((-a.priority, a.promotion) for a in self.outcome.applied)))
        return (self.outcome.lead()[2], applied, self.ids)


# A resolution policy ranks candidates by named criteria, first to last; the lowest wins. The names
# are what a loser's message explains (reasons.why_won): "value", "priority", "id".
Ranking = tuple[tuple[str, Any], ...]


def _best_for_customer(c: _Candidate) -> Ranking:
    """The outcome worth most to the customer; ties: the higher priority, then the smaller id, of its
    leading promotion."""
    return (("value", -c.outcome.value()), ("priority", c.outcome.lead()[:2]), ("id", c.order()))


def _highest_priority(c: _Candidate) -> Ranking:
    """Sylius: the outcome holding the applied promotion of the highest priority; ties: the outcome
    worth more, then the smaller id."""
    return (("priority", c.outcome.lead()[:2]), ("value", -c.outcome.value()), ("id", c.order()))


RESOLUTIONS: dict[str, Callable[[_Candidate], Ranking]] = {
    "best_for_customer": _best_for_customer,
    "highest_priority": _highest_priority,
}


def _rank(c: _Candidate, ctx: Context) -> tuple:
    return tuple(value for _, value in RESOLUTIONS[ctx.ruleset.exclusive_resolution](c))


def resolve(live: list[Promotion], ctx: Context) -> Outcome:
    """Every maximal set of live promotions that may combine is run; the resolution policy picks the
    winner. Each promotion outside it that applied in its own set lost to the winner (`_lost`); the
    others keep their own reason, from the best-ranked set that holds them. The outcome's refusals
    are not explained yet nor its hints settled: the trace does both when they are first read
    (`explained`, `settle_hints`)."""
    candidates = _candidates(live)
    if len(candidates) == 1:
        return run_promotions(candidates[0], ctx)
    ranked = sorted((_Candidate(members, run_promotions(members, ctx)) for members in candidates), key=lambda c: _rank(c, ctx))
    best = ranked[0]
    in_best = {p.id for p in best.members}
    nothing = not best.outcome.applied       # nothing applies in any set: every near miss is worth telling
    not_applied = list(best.outcome.not_applied)
    hints = list(best.outcome.hints)
    settled: set[str] = set(in_best)
    for applied_only in (True, False):       # lost to the winner where it applied; else its own reason
        for c in ranked[1:]:
            applied_here = {a.promotion for a in c.outcome.applied}
            for p in c.members:
                if p.id in settled or (p.id in applied_here) != applied_only:
                    continue
                settled.add(p.id)
                if applied_only:
                    not_applied.append(Lost(p.id, p, ctx, best, c))
                    continue
                not_applied.extend(n for n in c.outcome.not_applied if n.promotion == p.id)
                # Reaching a non-exclusive promotion's threshold would not let it combine with the winner.
                if p.exclusive or nothing:
                    hints.extend(h for h in c.outcome.hints if h.promotion == p.id)
    return Outcome(best.outcome.applied, not_applied, tuple(hints), best.outcome.total, best.outcome.granted,
                   best.outcome.left)


def state_before(p: Promotion, live: list[Promotion], ctx: Context) -> State:
    """The cart as `p` measured its conditions in `resolve` (for `promo explain`): before its first benefit,
    or the first of its best_per_line class, in the winning set when it is in it; else in the best-ranked
    set it applied in; else in the best-ranked set that holds it. On the original prices when the rule
    set's stacking base is `original`."""
    if ctx.ruleset.policies.stacking_base == "original":
        return initial_state(ctx)
    holding = [members for members in _candidates(live) if p in members]
    if not holding:
        raise InvariantError(f"{p.id}: promo explain asked for the run of a promotion that is not live")
    members = holding[0]
    if len(holding) > 1:
        ranked = sorted((_Candidate(m, run_promotions(m, ctx)) for m in _candidates(live)), key=lambda c: _rank(c, ctx))
        applied_in = [c for c in ranked if p in c.members and any(a.promotion == p.id for a in c.outcome.applied)]
        members = (ranked[0] if p in ranked[0].members else (applied_in or
                   [c for c in ranked if p in c.members])[0]).members
    first = (_line_groups(members, ctx).get(p.stacking_class) or [p])[0]
    return run_promotions(members, ctx, until=first.id).left


def try_benefits(p: Promotion, state: State, ctx: Context) -> list[tuple[Benefit, "Applied | NotApplied | Nothing"]]:
    """Each benefit of `p` on a copy of the cart as it stands, as a run would give them, its conditions
    taken as passed (for `promo explain`): what each gives, or why it gives nothing. A refusal by the
    promotion's own threshold ends it, as in a run."""
    state = State(dict(state.lines), state.shipping)
    given = 0
    out: list[tuple[Benefit, Applied | NotApplied | Nothing]] = []
    for b in p.benefits:
        result = _apply(p, b, state, given, ctx)
        if isinstance(result, NotApplied):
            out.append((b, result))
            break
        if result is None or gave_nothing(result):
            why = nothing_on_shipping(p, b, state, ctx) if b.stage is Stage.SHIPPING else None
            out.append((b, why or result or (Reason.NOTHING_LEFT_TO_DISCOUNT, {})))
            continue
        done, state, _ = result
        given += to_units(done.amount, ctx.currency)
        out.append((b, done))
    return out


@dataclass(frozen=True)
class Unexplained:
    """A promotion that did not apply, with what it was decided on: `not_applied` says why, worked out
    only when the trace lists it (then kept)."""

    promotion: str
    p: Promotion
    ctx: Context

    @property
    def code(self) -> str | None:
        return self.p.code

    @cached_property
    def not_applied(self) -> NotApplied:
        return self.explain()

    def explain(self) -> NotApplied:
        raise NotImplementedError


@dataclass(frozen=True)
class Lost(Unexplained):
    """A promotion that applied in its own candidate set, which lost (`_lost`)."""

    best: _Candidate
    own: _Candidate

    def explain(self) -> NotApplied:
        return _lost(self.p, self.best, self.own, self.ctx)


def _lost(p: Promotion, best: _Candidate, own: _Candidate, ctx: Context) -> NotApplied:
    """`p` applied in its own set `own`, which the policy ranked below `best`: name the winners it does not
    combine with, and say why `best` won (the first criterion on which the two differ)."""
    applied = tuple(dict.fromkeys(a.promotion for a in best.outcome.applied))
    promotions = ctx.ruleset.promotions
    winners = tuple(w for w in applied if not p.combines(promotions[w])) or applied or \
        tuple(q.id for q in best.members if not p.combines(q))
    names = ", ".join(promotions[w].name for w in winners)
    policy = RESOLUTIONS[ctx.ruleset.exclusive_resolution]
    ours, theirs = policy(best), policy(own)
    criteria = tuple(name for name, _ in ours)
    deciding = next(name for (name, a), (_, b) in zip(ours, theirs) if a != b)
    return refuse(p, Reason.LOST_TO_EXCLUSIVE, winner=names, why=why_won(criteria, deciding), lost_to=winners)


def _candidates(live: list[Promotion]) -> list[tuple[Promotion, ...]]:
    """The maximal sets of live promotions that pairwise combine (the maximal cliques of the graph
    "may combine"), each in evaluation order. With no `combines_with` anywhere these are what they
    always were: every non-exclusive promotion together, and each exclusive one alone.

    Promotions that combine with exactly the same ones and with each other (non-exclusive ones of
    one class, say) are one node, so the search works on classes rather than promotions. More than
    MAX_CANDIDATES sets would mean as many runs of the cart: then the candidates are, instead, the
    set grown greedily (in evaluation order) from each node. Each is still a maximal set that pairwise
    combines, so no two promotions that must not combine ever apply together; only the customer may
    miss a better set than those."""
    live = sorted(live, key=evaluation_order)
    exclusives = [p for p in live if p.exclusive]
    if not exclusives:
        return [tuple(live)]
    if not any(p.combines_with for p in exclusives):
        stackable = tuple(p for p in live if not p.exclusive)
        return ([stackable] if stackable else []) + [(x,) for x in exclusives]
    nodes: dict[tuple, list[Promotion]] = {}
    for p in live:
        twins = not p.exclusive or p.stacking_class in p.combines_with
        key = (p.exclusive, p.stacking_class, p.combines_with) if twins else (True, p.id)
        nodes.setdefault(key, []).append(p)
    keys = list(nodes)
    index = {k: i for i, k in enumerate(keys)}
    neighbours = [frozenset(index[k] for k in keys if k != key and nodes[key][0].combines(nodes[k][0]))
                  for key in keys]
    found = _maximal_cliques(len(keys), neighbours, MAX_CANDIDATES)
    if found is None:
        found = list(dict.fromkeys(_greedy(start, len(keys), neighbours) for start in range(len(keys))))
    sets = [tuple(sorted((p for i in clique for p in nodes[keys[i]]), key=evaluation_order)) for clique in found]
    return sorted(sets, key=lambda members: tuple(p.id for p in members))


def _maximal_cliques(size: int, neighbours: list[frozenset[int]], limit: int) -> list[frozenset[int]] | None:
    """Bron–Kerbosch with a pivot, stopping (None) once more than `limit` maximal cliques are found.
    Iterative, so a deep clique cannot exhaust Python's stack."""
    found: list[frozenset[int]] = []
    stack: list[tuple[frozenset[int], set[int], set[int]]] = [(frozenset(), set(range(size)), set())]
    while stack:
        clique, candidates, excluded = stack.pop()
        if not candidates and not excluded:
            found.append(clique)
            if len(found) > limit:
                return None
            continue
        pivot = max(candidates | excluded, key=lambda u: (len(neighbours[u] & candidates), -u))
        for v in sorted(candidates - neighbours[pivot], reverse=True):
            stack.append((clique | {v}, candidates & neighbours[v], excluded & neighbours[v]))
            candidates = candidates - {v}
            excluded = excluded | {v}
    return found


def _greedy(start: int, size: int, neighbours: list[frozenset[int]]) -> frozenset[int]:
    clique = {start}
    for v in range(size):
        if v not in clique and all(v in neighbours[u] for u in clique):
            clique.add(v)
    return frozenset(clique)


def _values(p: Promotion, state: State, ctx: Context) -> Mapping[str, Any]:
    """The values of the variables `p`'s conditions read: the evaluation's fixed values, and the cart as
    it stands for this promotion (the same values `PromotionVariables` gives for these facts; a test checks)."""
    fixed = ctx.fixed_values
    if not p.condition.variables & MEASURED_PER_PROMOTION:
        return fixed
    values: dict[str, Any] = {}
    targeted = ctx.targeted[p.id]
    for name in p.condition.variables:
        if name not in MEASURED_PER_PROMOTION:
            values[name] = fixed[name]
        elif name == "cart_subtotal":
            values[name] = from_units(sum(state.lines.values()), ctx.currency)
        elif name == "order_total":
            values[name] = from_units(sum(state.lines.values()) + sum(state.shipping), ctx.currency)
        elif name == "eligible_subtotal":
            left = state.lines
            values[name] = from_units(sum(left[line.id] for line in targeted), ctx.currency)
        else:
            values[name] = Decimal(sum(line.quantity for line in targeted))
    return values


def _lines(p: Promotion, b: Benefit, state: State, ctx: Context) -> Lines:
    """The lines benefit `b` of `p` discounts, as they stand: the promotion's targeted lines, or the
    cart's lines that the benefit's own targets match. A buy-X-get-Y benefit with targets of its own
    sees both selections, each line marked as bought (the promotion's) and given (its own). Their
    ids, units and marks are worked out once per evaluation."""
    ids, quantities, buys, gets = _shape(p, b, ctx)
    left = state.lines
    return Lines(ids, quantities, tuple([left[i] for i in ids]), buys=buys, gets=gets)


Shape = tuple[tuple[str, ...], tuple[int, ...], tuple[bool, ...] | None, tuple[bool, ...] | None]


def _shape(p: Promotion, b: Benefit, ctx: Context) -> Shape:
    """The ids, units and buy/get marks of the lines benefit `b` of `p` works on, once per evaluation."""
    key = (p.id, b.index)
    shape: Shape | None = ctx.shapes.get(key)
    if shape is None:
        if b.targets is None:
            targeted = ctx.targeted[p.id]
            shape = (tuple(line.id for line in targeted), tuple(line.quantity for line in targeted), None, None)
        elif KINDS[b.type].two_selections:
            bought = {line.id for line in ctx.targeted[p.id]}
            marked = [(line, line.id in bought, b.targets.matches(line)) for line in ctx.cart.lines]
            marked = [m for m in marked if m[1] or m[2]]
            shape = (tuple(m[0].id for m in marked), tuple(m[0].quantity for m in marked),
                     tuple(m[1] for m in marked), tuple(m[2] for m in marked))
        else:
            targeted = tuple(line for line in ctx.cart.lines if b.targets.matches(line))
            shape = (tuple(line.id for line in targeted), tuple(line.quantity for line in targeted), None, None)
        ctx.shapes[key] = shape
    return shape


def _eligibility(p: Promotion, state: State, ctx: Context) -> "Refusal | None":
    """`p`'s conditions, decided on the cart as it stands before its first benefit (on the original
    prices when the rule set's stacking base is `original`). Only the verdict is worked out here; a
    refusal keeps the values it was decided on, and says why only when asked (`Refusal.not_applied`)."""
    if not p.condition.variables:
        return None
    if ctx.ruleset.policies.stacking_base == "original":
        state = initial_state(ctx)
    values = _values(p, state, ctx)
    return None if p.condition.passes(values) else Refusal(p.id, p, ctx, values)


@dataclass(frozen=True)
class Refusal(Unexplained):
    """A promotion whose conditions failed, with the values they were decided on. The explanation (each
    leaf as measured, the reason, thresholds, message) is built only for the refusals the trace lists:
    those of losing candidate sets and of what-if runs never are."""

    values: Mapping[str, Any]

    def explain(self) -> NotApplied:
        passed, leaves = self.p.condition.measure(self.values)
        if passed:
            raise InvariantError(f"{self.promotion}: its conditions failed when decided and pass when measured")
        return condition_failure(self.p, leaves, self.ctx)


def explained(refusals: Iterable["NotApplied | Unexplained"]) -> list[NotApplied]:
    return [r if isinstance(r, NotApplied) else r.not_applied for r in refusals]


Given = tuple[Applied, "State", "NextTier | None"]
Nothing = tuple[Reason, dict]   # why a benefit gives nothing, and the values its message names


def _apply(p: Promotion, b: Benefit, state: State, given: int, ctx: Context) -> NotApplied | Given | Nothing | None:
    """One benefit of `p` on the cart as it stands: what it gives, refused by its own threshold, or
    why it gives nothing. The rule set's policies say what it works on and where it is rounded."""
    if b.stage is Stage.GRANT:  # balance for later orders: this order's lines and shipping are untouched
        assert b.amount is not None
        units, capped_by = _capped(p, b, to_units(b.amount, ctx.currency), given, ctx)
        if isinstance(units, tuple):
            return units
        if units == 0:
            return Reason.NOTHING_LEFT_TO_DISCOUNT, {}
        return _applied(p, b, from_units(units, ctx.currency), (), None, capped_by), state, None
    if b.stage is Stage.SHIPPING:
        return _apply_shipping(p, b, state, given, ctx)
    computed = _exact(p, b, state, given, ctx)
    if isinstance(computed, NotApplied) or gave_nothing(computed):
        return computed
    result, amount, capped_by = computed
    return _split(p, b, result, amount, capped_by, state, ctx) + (result.next_tier,)


def gave_nothing(result: Any) -> TypeIs[Nothing]:
    return isinstance(result, tuple) and isinstance(result[0], Reason)


def _exact(p: Promotion, b: Benefit, state: State, given: int,
           ctx: Context) -> NotApplied | Nothing | tuple[Exact, int, tuple[str, ...]]:
    """What a line or shipping benefit would take off, exactly, and its amount rounded and capped
    (minor units), by the rule set's policies; refused by its own threshold, or why it gives nothing."""
    policies = ctx.ruleset.policies
    kind = KINDS[b.type]
    assert kind.calculate is not None
    original = policies.stacking_base == "original"
    base = initial_state(ctx) if original else state
    lines = _lines(p, b, base, ctx)
    kept: Lines | Short = lines
    if b.units is not None and not kind.two_selections:   # buy-X-get-Y caps the units it gives itself
        kept = keep_units(b.units, lines)
    result = kept if isinstance(kept, Short) else kind.calculate(b, kept, 0, ctx.currency)
    lines = kept if isinstance(kept, Lines) else lines   # Short: refused just below
    if isinstance(result, Short):
        return short_refusal(p, result.variable, result.measured, result.required, "greater_than_or_equal_to", ctx)
    if isinstance(result, Missing):
        return missing_refusal(p, b, result)
    if original:
        result = _clamped(result, state)
    if policies.rounding_point != "promotion":
        point = policies.rounding_point if b.type in UNIFORM_PER_UNIT and b.scope != "per_line" else "line"
        result = _rounded_by_part(result, lines, state, point, ctx.ruleset.rounding)
    amount, capped_by = _capped(p, b, round_units(result.total(), result.denominator, ctx.ruleset.rounding), given,
                                ctx)
    if isinstance(amount, tuple):
        return amount
    if amount == 0:
        return Reason.NOTHING_LEFT_TO_DISCOUNT, {}
    return result, amount, capped_by


def _clamped(result: Exact, state: State) -> Exact:
    """A line benefit worked out on the original prices, each line clamped at what is left of it."""
    d = result.denominator
    return Exact(result.ids, tuple(min(n, state.lines[i] * d) for i, n in zip(result.ids, result.numerators)),
                 denominator=d, next_tier=result.next_tier)


# Kinds that take the same off every unit of a line, so that rounding "per unit" means one thing; the
# others (sets, amounts per line) round each line's share when the rule set rounds per unit.
UNIFORM_PER_UNIT = frozenset({"percent_off", "amount_off"})


def _rounded_by_part(result: Exact, lines: Lines, state: State, point: str, rounding: str) -> Exact:
    """Each line's exact amount rounded to whole minor units (`line`), or each unit's before it is
    multiplied by the line's units (`unit`), never more than the line has left."""
    d = result.denominator
    parts = []
    for line_id, n, units in zip(result.ids, result.numerators, lines.quantities):
        part = round_units(n, d * units, rounding) * units if point == "unit" else round_units(n, d, rounding)
        parts.append(min(part, state.lines[line_id]))
    return Exact(result.ids, tuple(parts), denominator=1, next_tier=result.next_tier)


def _applied(p: Promotion, b: Benefit, amount: Decimal, shares: tuple[LineShare, ...], shipping: Decimal | None,
             capped_by: tuple[str, ...], shipments: tuple[ShipmentShare, ...] | None = None) -> Applied:
    """The trace entry of one benefit given; `benefit` names its place only when the promotion has several."""
    return Applied(p.id, p.name, b.stage.value, b.type, p.code, amount, shares, shipping, capped_by, p.exclusive,
                   p.priority, b.index if len(p.benefits) > 1 else None, shipments=shipments)


def _capped(p: Promotion, b: Benefit, amount: int, given: int,
            ctx: Context) -> tuple[int, tuple[str, ...]] | tuple[Nothing, tuple[str, ...]]:
    """Apply the benefit's cap, then what is left of the promotion's per-order cap and of its budget
    after its earlier benefits on this order (`given`, minor units), in that order. A budget whose
    policy is `refuse` refuses an amount it cannot cover whole, instead of capping it."""
    if b.max_discount is None and p.limits.max_discount is None and p.limits.budget is None:
        return amount, ()
    capped_by: list[str] = []
    currency = ctx.currency
    caps = [("max_discount", None if b.max_discount is None else to_units(b.max_discount, currency)),
            ("limits.max_discount", None if p.limits.max_discount is None
             else to_units(p.limits.max_discount, currency) - given)]
    if p.limits.budget is not None:
        caps.append(("limits.budget", to_units(p.limits.budget - ctx.usage.get(p.id, NO_USAGE).budget_spent, currency)
                     - given))
    for name, cap in caps:
        if cap is not None and amount > cap:
            if name == "limits.budget" and (p.limits.budget_overrun or ctx.ruleset.policies.budget_overrun) == "refuse":
                return (Reason.BUDGET_WOULD_OVERRUN, {"left": ctx.money(from_units(max(cap, 0), currency)),
                                                      "amount": ctx.money(from_units(amount, currency))}), ()
            amount = max(cap, 0)
            capped_by.append(name if name.startswith("limits.") else _benefit_path(p, b, name))
    return amount, tuple(capped_by)


def _benefit_path(p: Promotion, b: Benefit, name: str) -> str:
    return f"benefits[{b.index}].{name}"


def _parts(amount: int, result: Exact, state: State, ctx: Context) -> list[int]:
    """`amount` (minor units) over the result's lines in proportion to its exact amounts, the leftover
    minor units placed by the rule set's policy (never more than a line has left)."""
    leftover = ctx.ruleset.policies.leftover
    rooms = None if leftover == "largest_remainder" else [state.lines[i] for i in result.ids]
    return allocate_units(amount, result.numerators, result.denominator, result.ids, leftover, rooms)


def _split(p: Promotion, b: Benefit, result: Exact, amount: int, capped_by: tuple[str, ...], state: State,
           ctx: Context) -> tuple[Applied, State]:
    """Put the rounded amount (minor units) on lines (largest remainder), and check nothing goes below zero."""
    currency = ctx.currency
    money = from_units(amount, currency)
    if result.shipping:
        raise InvariantError(f"{p.id}: a line benefit took {result.shipping} off shipping")
    ids = result.ids
    parts = _parts(amount, result, state, ctx)
    if sum(parts) != amount:
        raise InvariantError(f"{p.id}: line shares do not add up to {money}")
    lines = state.lines    # one run's own: updated in place (every run starts from a fresh initial_state)
    shares: list[LineShare] = []
    for line_id, part in zip(ids, parts):
        if part:
            left = lines[line_id] - part
            if left < 0:
                raise InvariantError(f"{p.id}: {part} minor units on line {line_id} exceed what is left")
            shares.append(LineShare(line_id, from_units(part, currency)))
    for line_id, part in zip(ids, parts):
        lines[line_id] -= part
    return _applied(p, b, money, tuple(shares), None, capped_by), state


# --- shipping: benefits on shipments ------------------------------------------------------------

NO_LINES = Lines((), (), ())


def _apply_shipping(p: Promotion, b: Benefit, state: State, given: int,
                    ctx: Context) -> Given | Nothing | None:
    """A shipping benefit on the targeted shipments as they stand. A kind priced per shipment (free,
    percent off, fixed price) is worked out exactly on each, rounded once in all, capped, and split
    back over them by largest remainder (ties to the smaller shipment id); a kind that takes its
    amount once (`shipping_amount_off`) takes it from the shipment with most left first (ties to
    the smaller id), then the next."""
    targeted = targeted_shipments(b, ctx)
    if not targeted:
        return None
    calculate = KINDS[b.type].calculate
    assert calculate is not None
    currency, rounding = ctx.currency, ctx.ruleset.rounding
    left = [state.shipping[i] for i in targeted]
    ids = [ctx.shipments[i].id for i in targeted]
    if KINDS[b.type].shipments == "once":
        whole = calculate(b, NO_LINES, sum(left), currency)
        assert isinstance(whole, Exact)
        amount, capped_by = _capped(p, b, round_units(whole.shipping, whole.denominator, rounding), given, ctx)
        if isinstance(amount, tuple):
            return amount
        parts = [0] * len(left)
        rest = amount
        for _, _, k in sorted((-units, shipment_id, k) for k, (units, shipment_id) in enumerate(zip(left, ids))):
            parts[k] = min(rest, left[k])
            rest -= parts[k]
    else:
        each = [calculate(b, NO_LINES, units, currency) for units in left]
        assert all(isinstance(r, Exact) for r in each)
        exact = cast("list[Exact]", each)
        denominator = lcm(*(r.denominator for r in exact))
        numerators = [r.shipping * (denominator // r.denominator) for r in exact]
        amount, capped_by = _capped(p, b, round_units(sum(numerators), denominator, rounding), given, ctx)
        if isinstance(amount, tuple):
            return amount
        parts = allocate_units(amount, numerators, denominator, ids) if amount else [0] * len(left)
    if amount == 0:
        return None
    shipping = list(state.shipping)
    for i, part, units in zip(targeted, parts, left):
        if part > units or part < 0:
            raise InvariantError(f"{p.id}: a shipping discount exceeds what is left of shipment {ctx.shipments[i].id!r}")
        shipping[i] -= part
    if sum(parts) != amount:
        raise InvariantError(f"{p.id}: shipment shares do not add up to {from_units(amount, currency)}")
    money = from_units(amount, currency)
    shares = tuple(ShipmentShare(shipment_id, from_units(part, currency))
                   for shipment_id, part in zip(ids, parts) if part) if ctx.cart.shipments is not None else None
    done = _applied(p, b, money, (), money, capped_by, shares)
    return done, State(state.lines, tuple(shipping)), None


def near_miss_hints(p: Promotion, refusal: NotApplied, earlier: list[Applied], run: tuple[Promotion, ...],
                     ctx: Context) -> list[Hint | PendingHint]:
    """"Add so much more" for each threshold not reached, only when it is true (see `_spend_hint`), and
    "add this item" for a gift not in the cart."""
    if ctx.probing:
        return []
    if refusal.reason is Reason.GET_ITEMS_MISSING:
        target = p.benefits[0].targets
        item = item_to_add(target) if target is not None else None
        if not refusal.thresholds or item is None:
            return []
        count = refusal.thresholds[0].shortfall
        return [Hint(p.id, "item", count, hint("item", count=f"{count:f}", item=ITEM_WORDS[item.kind].format(
            name=item.name), name=p.name), item)]
    if refusal.reason not in (Reason.MIN_SPEND_NOT_MET, Reason.MIN_QUANTITY_NOT_MET):
        return []
    hints: list[Hint | PendingHint] = []
    for t in refusal.thresholds:
        if t.variable not in SPEND_VARIABLES or not _takes_from_additions(p, t, earlier, ctx):
            hints.append(threshold_hint(p, t.variable, t.shortfall, ctx, next_tier=False))
        else:   # worked out with what-if runs once the winning set is known (settle_hints)
            hints.append(PendingHint(p.id, p, t, tuple(earlier), run))
    return hints


@dataclass(frozen=True)
class PendingHint:
    """A spend hint that needs what-if runs to be true: kept in a candidate set's outcome and worked
    out only if that set wins (`settle_hints`), so losing sets cost no runs."""

    promotion: str
    p: Promotion
    threshold: Threshold
    earlier: tuple[Applied, ...]
    run: tuple[Promotion, ...]


@dataclass(frozen=True)
class NearMiss:
    """A refused promotion that may deserve hints, kept in a candidate set's outcome: its hints are
    worked out (`near_miss_hints`) only if that set's hints are settled, on the promotions applied
    before it (`applied[:before]`: the run's own list, which only grows)."""

    promotion: str
    p: Promotion
    refusal: "NotApplied | Refusal"
    applied: list[Applied]
    before: int
    run: tuple[Promotion, ...]


def settle_hints(hints: Iterable[Hint | NearMiss | PendingHint], ctx: Context) -> tuple[Hint, ...]:
    """The hints of the winning outcome, each near miss worked out and each pending one proved (or left
    out when no amount can be proved within the evaluation's what-if runs), in the order they arose."""
    out = []
    for h in _near_misses_worked_out(hints, ctx):
        if isinstance(h, PendingHint):
            needed = _spend_hint(h.p, h.threshold, list(h.earlier), h.run, ctx)
            if needed is not None:
                out.append(threshold_hint(h.p, h.threshold.variable, needed, ctx, next_tier=False))
        else:
            out.append(h)
    return tuple(out)


def _near_misses_worked_out(hints: Iterable[Hint | NearMiss | PendingHint], ctx: Context) -> Iterable[Hint | PendingHint]:
    for h in hints:
        if isinstance(h, NearMiss):
            if isinstance(h.refusal, Refusal) and not h.p.condition.threshold_leaves():
                continue      # no threshold to reach: not a near miss, and nothing to explain for it
            refusal = h.refusal.not_applied if isinstance(h.refusal, Refusal) else h.refusal
            yield from near_miss_hints(h.p, refusal, h.applied[:h.before], h.run, ctx)
        else:
            yield h


def _takes_from_additions(p: Promotion, t: Threshold, earlier: list[Applied], ctx: Context) -> bool:
    """Whether an earlier discount on the lines `t` measures could take part of what the customer adds:
    all but amounts given whole (a per-order amount, or one cut by a cap)."""
    if ctx.ruleset.policies.stacking_base == "original":   # measured on the original prices
        return False
    measured = None if t.variable != "eligible_subtotal" else {line.id for line in ctx.targeted[p.id]}
    for a in earlier:
        if not a.lines or (measured is not None and not any(s.line in measured for s in a.lines)):
            continue
        b = ctx.ruleset.promotions[a.promotion].benefits[a.benefit or 0]
        if not (a.capped_by or (b.type == "amount_off" and b.scope == "per_order" and b.amount == a.amount)):
            return True
    return False




def _spend_hint(p: Promotion, t: Threshold, earlier: list[Applied], run: tuple[Promotion, ...],
                ctx: Context) -> Decimal | None:
    """The least the customer must add (as more of `p`'s eligible items) for the spend `t` measures to
    reach its threshold, or None. The spend is measured after earlier promotions. When none of them
    can take part of an addition (amounts given whole: per order, or cut by a cap) the shortfall is
    the answer, with no what-if run. Otherwise the answer is worked out, then proved in what-if runs
    of the promotions before `p` on the cart with that much more: the shortfall, plus what earlier
    per-order amounts that took all the lines had could still take, grossed up by the percents off
    everything; one run shows it is enough and, while half the evaluation's MAX_PROBES runs are left,
    one more that a minor unit less is not (else the hint may ask a minor unit or so more than the
    least, but never less). When the guess is short it is doubled until enough (and halved back while
    runs are left). Nothing proved: no hint, rather than a false one
    ("add ¥10 more" where an earlier promotion would take the ¥10 too)."""
    measured = None if t.variable != "eligible_subtotal" else {line.id for line in ctx.targeted[p.id]}
    kept, absorbs, takes = Fraction(1), 0, False
    for a in earlier:
        if not a.lines or (measured is not None and not any(s.line in measured for s in a.lines)):
            continue
        b = ctx.ruleset.promotions[a.promotion].benefits[a.benefit or 0]
        per_order_amount = b.type == "amount_off" and b.scope == "per_order"
        if a.capped_by or (per_order_amount and b.amount == a.amount):
            continue
        takes = True
        targets = b.targets or ctx.ruleset.promotions[a.promotion].targets
        if b.type == "percent_off" and b.percent is not None and b.percent < 100 and targets.everything:
            kept *= 1 - Fraction(b.percent) / 100
        elif per_order_amount and b.amount is not None:   # it took all its lines had: it takes more, up to its amount
            absorbs += to_units(b.amount, ctx.currency) - to_units(a.amount, ctx.currency)
    if not takes or ctx.ruleset.policies.stacking_base == "original":
        return t.shortfall
    low = to_units(t.shortfall, ctx.currency) - 1          # adding the shortfall itself is never too much
    guess = Fraction(low + 1 + absorbs) / kept
    high = -(-guess.numerator // guess.denominator)
    while not _passes_with(p, t.variable, high, run, ctx):
        if ctx.probes[0] <= 0 or high > 1_000 * (low + 1 + absorbs):
            return None
        low, high = high, high * 2
    if high - low == 1 or ctx.probes[0] < MAX_PROBES // 2 or not _passes_with(p, t.variable, high - 1, run, ctx):
        return from_units(high, ctx.currency)   # the guess: proved enough, and the least when runs allowed
    high -= 1
    while high - low > 1 and ctx.probes[0] > MAX_PROBES // 2:
        middle = (low + high) // 2
        if _passes_with(p, t.variable, middle, run, ctx):
            high = middle
        else:
            low = middle
    return from_units(high, ctx.currency)    # enough; the least unless the runs ran out first


def _passes_with(p: Promotion, variable: str, units: int, run: tuple[Promotion, ...], ctx: Context) -> bool:
    """A what-if run: the promotions before `p` on the cart with `units` minor units more of the
    eligible line with the smallest id; does `p` then reach its `variable` threshold? (Promotions of a
    best_per_line class are measured before the first of their class.)"""
    if ctx.probes[0] <= 0:
        return False
    ctx.probes[0] -= 1
    like = min(ctx.targeted[p.id], key=lambda line: line.id)
    probe = dataclasses.replace(like, id=PROBE_LINE, unit_price=from_units(units, ctx.currency), quantity=1)
    cart = dataclasses.replace(ctx.cart, lines=ctx.cart.lines + (probe,))
    first = (_line_groups(run, ctx).get(p.stacking_class) or [p])[0]
    members = what_if_members(p, variable, run, first, ctx)
    targeted = {q.id: ctx.targeted[q.id] + ((probe,) if q.targets.matches(probe) else ()) for q in members + (p,)}
    what_if = Context.build(ctx.ruleset, cart, ctx.account, ctx.now, ctx.usage, ctx.previewed, targeted)
    what_if = dataclasses.replace(what_if, probing=True)
    before = run_promotions(members, what_if, until=first.id)
    refusal = _eligibility(p, before.left, what_if)
    return refusal is None or not any(t.variable == variable for t in refusal.not_applied.thresholds)


WIDE_SPEND = frozenset({"cart_subtotal", "order_total"})   # read every line (and shipment) as it stands


def what_if_members(p: Promotion, variable: str, run: tuple[Promotion, ...], first: Promotion,
                    ctx: Context) -> tuple[Promotion, ...]:
    """The promotions of `run` a what-if run for `p`'s `variable` threshold needs: those that can change
    what `p` measures. `eligible_subtotal` reads only `p`'s targeted lines (the probe among them), so
    a promotion matters only if it takes something off a line whose value something that matters
    reads: the closure, from `p`'s lines, of "discounts a needed line" (its own targeted and benefit
    lines are then needed too). A best_per_line class is taken whole, so it settles where it would.
    Any promotion in the closure that reads the whole cart (`cart_subtotal`, `order_total`), or a
    threshold on those, needs every promotion. The others only discount lines nothing needed reads:
    leaving them out changes no amount `p` measures (tests/test_decide.py checks the hints are the same
    as with the whole run).

    Worked out on the evaluation's own cart, once per promotion and set: the probe is a copy of one of
    `p`'s lines but for its id and price, so a promotion targets it exactly when it targets that line,
    which `p` needs anyway."""
    if variable in WIDE_SPEND:
        return run
    key = ("what-if", p.id, variable, tuple(q.id for q in run))
    found = ctx.shapes.get(key)
    if found is not None:
        return found
    chosen = _closure(p, run, first, ctx)
    members = run if chosen is None else tuple(q for q in run if q.id in chosen or q is first)
    ctx.shapes[key] = members
    return members


def _closure(p: Promotion, run: tuple[Promotion, ...], first: Promotion, ctx: Context) -> set[str] | None:
    """The ids of the promotions before `first` that can change what `p`'s targeted lines measure
    (see `what_if_members`), or None when that takes every promotion."""
    classes = ctx.ruleset.best_per_line
    writes: dict[str, frozenset[str]] = {}
    for q in run:
        if q is not p and q.order < first.order:   # its first benefit's place: it runs before the stop
            writes[q.id] = frozenset(i for b in q.benefits if b.stage in (Stage.ITEM, Stage.ORDER)
                                     for i in _shape(q, b, ctx)[0])
    need = {line.id for line in ctx.targeted[p.id]}
    chosen: set[str] = set()
    grew = True
    while grew:
        grew = False
        for q in run:
            if q.id not in writes or q.id in chosen or not writes[q.id] & need:
                continue
            family = [r for r in run if r.id in writes and r.stacking_class == q.stacking_class] \
                if q.stacking_class in classes else [q]
            if any(r.condition.variables & WIDE_SPEND for r in family):
                return None
            for r in family:
                chosen.add(r.id)
                need |= writes[r.id] | {line.id for line in ctx.targeted[r.id]}
            grew = True
    return chosen
