"""evaluate(): a cart and an account, against a rule set, into a Trace. Pure: no clock, no files,
no mutation of its inputs; the same inputs give the same trace, byte for byte.

The order of work, which the README states for users:
1. Check the inputs (a bad cart, account, code list or `now` raises InputError; nothing is decided).
2. Scope: a promotion is considered when its code was entered, or it is automatic, for the cart's
   currency, within its window, its required region and channel match, and it targets at least one
   line; the rest are only counted, by reason. The rule set's candidate index (engine/index.py)
   finds them without a scan.
3. Gates that do not depend on other promotions: status, currency, window, usage limits, budget,
   targeted lines.
4. Stages, in order: item, order, shipping; within a stage, priority (higher first), then id.
   A promotion measures its conditions on the cart as earlier promotions left it, before its first
   benefit; each benefit, in its own stage, is computed exactly, rounded once, capped, and split over
   its lines. A promotion with several benefits is one promotion: one eligibility, one use.
   A shipping benefit works on the shipments its `shipping_methods` name (all when it names none):
   per shipment, or once across them for `shipping_amount_off` (`_apply_shipping`).
5. Combination: every maximal set of promotions that may combine (classes and `combines_with`;
   without them, all non-exclusive promotions together and each exclusive one alone) is run; the
   rule set's `exclusive_resolution` policy (RESOLUTIONS) picks the winner, and every promotion
   outside it that applied in its own set lost to it, with the criterion that decided.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from math import lcm
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from .conditions import LeafResult, Several
from .errors import InputError, InvariantError, Problem
from fractions import Fraction

from .index import Scope
from .inputs import parse_account, parse_cart, parse_codes, parse_now, parse_usage
from .model import (LEGACY_SHIPMENT_ID, STAGE_ORDER, Account, Benefit, Cart, Line, Promotion, RuleSet, Shipment,
                    Stage, Targets, Usage)
from .money import allocate_units, format_money, from_units, minor_unit, quantum, round_units, to_units
from .reasons import Reason, hint, message, why_won
from .benefits import KINDS, Exact, Lines, Missing, NextTier, Short, keep_units
from .text import normalise_code, text_problem

MAX_PREVIEW = 100   # promotions one evaluation may preview
from .tenders import pay
from .trace import (TRACE_FORMAT, Applied, CodeResult, FailedCondition, Grant, Hint, HintItem, Inputs, LineDiscount,
                    LineShare, LineTrace, LostLine, NotApplied, ShipmentShare, ShipmentTrace, ShippingTrace, Threshold,
                    Totals, Trace, scope_of)
from .variables import (MEASURED_PER_PROMOTION, MONEY_VARIABLES, QUANTITY_VARIABLES, REGION_VARIABLES,
                        SPEND_VARIABLES, VARIABLE_TYPES, WEEKDAYS, Facts, PromotionVariables)

def evaluate(ruleset: RuleSet, cart: Mapping[str, Any], account: Mapping[str, Any], *,
             codes: Iterable[str] = (), now: datetime | str, usage: Mapping[str, Any] | None = None,
             preview: Iterable[str] = ()) -> Trace:
    """Evaluate `cart` for `account` at `now` with the entered `codes`.

    `usage` maps promotion id to its counts so far (`Usage` or a mapping with total_uses,
    customer_uses, budget_spent); `None` means nothing has been used. `preview` names draft or
    paused promotions to treat as active, for marketers trying a promotion before it goes live.
    """
    return evaluate_with(indexed_scope, ruleset, cart, account, codes=codes, now=now, usage=usage, preview=preview)


ScopeFinder = Callable[[RuleSet, Cart, Account, set[str], datetime], Scope]


def indexed_scope(ruleset: RuleSet, cart: Cart, account: Account, entered_codes: set[str], now: datetime) -> Scope:
    """The promotions this cart could get, found through the rule set's candidate index."""
    return ruleset.index.scope(ruleset.promotions, ruleset.codes, cart.lines, cart.currency, account.region,
                               cart.channel, entered_codes, now)


def evaluate_with(find_scope: ScopeFinder, ruleset: RuleSet, cart: Mapping[str, Any], account: Mapping[str, Any], *,
                  codes: Iterable[str] = (), now: datetime | str, usage: Mapping[str, Any] | None = None,
                  preview: Iterable[str] = ()) -> Trace:
    """`evaluate`, with the scope step given: the tests pass a plain scan of every promotion and line
    (tests/oracle.py) and check that it gives the same trace as the index."""
    when = parse_now(now)
    the_cart = parse_cart(cart, ruleset)
    the_account = parse_account(account, ruleset)
    entered = parse_codes(codes)
    used = parse_usage(usage, ruleset)
    previewed = _parse_preview(preview, ruleset)
    code_results, entered_codes = _match_codes(ruleset, entered)
    scope = find_scope(ruleset, the_cart, the_account, entered_codes, when)
    ctx = _Context.build(ruleset, the_cart, the_account, when, used, previewed, scope.targeted)

    gated: list[NotApplied] = []
    live: list[Promotion] = []
    for promotion in scope.considered:
        refusal = _gate(promotion, ctx)
        if refusal is None:
            live.append(promotion)
        else:
            gated.append(refusal)

    outcome = _resolve(live, ctx)
    not_applied = sorted(gated + outcome.not_applied, key=lambda n: _order(ctx.ruleset.promotions[n.promotion]))
    inputs = Inputs(the_cart, the_account, entered, tuple(sorted(used.items())), tuple(sorted(previewed)))
    return _trace(ctx, code_results, outcome, not_applied, scope.out_of_scope, inputs)


# --- context -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Context:
    ruleset: RuleSet
    cart: Cart
    account: Account
    now: datetime
    usage: Mapping[str, Usage]
    previewed: frozenset[str]
    targeted: Mapping[str, tuple[Line, ...]]   # the considered promotions' targeted lines, in cart order
    local_date: str
    local_weekday: str
    local_hour: int
    subtotals: Mapping[str, int]   # each line's subtotal in minor units: promotions work in whole minor units
    shipments: tuple[Shipment, ...]     # every shipping charge, in cart order (`shipping` is one, id "")
    shipment_units: tuple[int, ...]     # each one's price in minor units
    quantity: int                  # units in the cart
    shapes: dict[tuple[str, int], tuple[tuple[str, ...], tuple[int, ...]]] = field(default_factory=dict)  # see _lines
    probes: list[int] = field(default_factory=lambda: [MAX_PROBES])   # left for this evaluation's hints
    probing: bool = False          # a what-if run for a hint (see _spend_hint): it gives no hints itself

    @staticmethod
    def build(ruleset: RuleSet, cart: Cart, account: Account, now: datetime, usage: Mapping[str, Usage],
              previewed: frozenset[str], targeted: Mapping[str, tuple[Line, ...]]) -> "_Context":
        local = now.astimezone(ZoneInfo(account.time_zone))
        currency = cart.currency
        subtotals = {line.id: to_units(line.unit_price, currency) * line.quantity for line in cart.lines}
        shipments = cart.all_shipments
        return _Context(ruleset, cart, account, now, usage, previewed, targeted,
                        local.date().isoformat(), WEEKDAYS[local.weekday()], local.hour, subtotals, shipments,
                        tuple(to_units(s.price, currency) for s in shipments), sum(line.quantity for line in cart.lines))

    @property
    def currency(self) -> str:
        return self.cart.currency

    @property
    def zero(self) -> Decimal:
        """Zero written in the currency's minor unit ("0.00" for USD), for sums that may be empty."""
        return quantum(self.currency) * 0

    def money(self, amount: Decimal) -> str:
        return format_money(amount, self.currency, self.ruleset.locale)

    @cached_property
    def fixed_values(self) -> Mapping[str, Any]:
        """Every variable but those measured per promotion, read once per evaluation through
        PromotionVariables (business-rules' variable methods): they are the same for every promotion."""
        account, cart = self.account, self.cart
        facts = Facts(region=account.region, customer_id=account.id, customer_tier=account.tier,
                      customer_segments=account.segments,
                      order_count=account.order_count, sales_channel=cart.channel,
                      shipping_method=_shipping_method(self.shipments),
                      cart_subtotal=self.zero, order_total=self.zero, cart_quantity=self.quantity,
                      eligible_subtotal=self.zero,
                      eligible_quantity=0, local_date=self.local_date, local_weekday=self.local_weekday,
                      local_hour=self.local_hour)
        variables = PromotionVariables(facts)
        return MappingProxyType({name: getattr(variables, name)() for name in VARIABLE_TYPES
                                 if name not in MEASURED_PER_PROMOTION})


def _shipping_method(shipments: tuple[Shipment, ...]) -> str | Several:
    """The `shipping_method` variable: "" when nothing is shipped, the method when there is one, and
    with several methods all of them (sorted), a leaf on it passing when it passes for any one."""
    methods = sorted({s.method for s in shipments})
    if not methods:
        return ""
    return methods[0] if len(methods) == 1 else Several(methods)


def _parse_preview(preview: Iterable[str], ruleset: RuleSet) -> frozenset[str]:
    if isinstance(preview, (str, bytes)) or not isinstance(preview, (list, tuple, set, frozenset)) or \
            len(preview) > MAX_PREVIEW or not all(isinstance(n, str) and text_problem(n, 64, identifier=True) is None
                                                  for n in preview):
        raise InputError([Problem("preview", 0, 0, "$", f"preview must be a list of at most {MAX_PREVIEW} promotion "
                                                        "ids")], "preview")
    names = frozenset(preview)
    unknown = sorted(n for n in names if n not in ruleset.promotions)
    if unknown:
        raise InputError([Problem("preview", 0, 0, "$", f"no promotion with id {n!r}") for n in unknown[:10]], "preview")
    return names


NO_USAGE = Usage()


def _order(promotion: Promotion) -> tuple:
    return promotion.order


# --- codes and gates -----------------------------------------------------------------------------

def _match_codes(ruleset: RuleSet, entered: tuple[str, ...]) -> tuple[tuple[CodeResult, ...], set[str]]:
    results: list[CodeResult] = []
    seen: set[str] = set()
    for raw in entered:
        code = normalise_code(raw)
        if not code:
            raise InputError([Problem("codes", 0, 0, "$", "an entered code is empty")], "codes")
        if code in seen:
            continue
        seen.add(code)
        owners = ruleset.codes.get(code, ())
        if owners:
            results.append(CodeResult(raw, code, "matched", owners, None))
        else:
            results.append(CodeResult(raw, code, Reason.UNKNOWN_CODE.value, (),
                                      message(Reason.UNKNOWN_CODE, code=code)))
    return tuple(results), seen


def _refuse(promotion: Promotion, reason: Reason, **values: Any) -> NotApplied:
    return NotApplied(promotion=promotion.id, name=promotion.name, stage=promotion.stage.value, reason=reason,
                      message=message(reason, name=promotion.name, **values), code=promotion.code,
                      **{k: v for k, v in values.items() if k in ("failed_conditions", "thresholds", "lost_to")})


def _gate(p: Promotion, ctx: _Context) -> NotApplied | None:
    """The checks that do not depend on other promotions, in GATES' order; the first failure is the reason."""
    for reason, check in GATES:
        values = check(p, ctx)
        if values is not None:
            return _refuse(p, reason, **values)
    return None


def _used(p: Promotion, ctx: _Context) -> Usage:
    return ctx.usage.get(p.id, NO_USAGE)


_Check = Callable[[Promotion, "_Context"], "dict[str, Any] | None"]

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
class _State:
    """What is left to pay on each line and on each shipment (in `_Context.shipments` order), in minor units."""

    lines: Mapping[str, int]
    shipping: tuple[int, ...]


@dataclass(frozen=True)
class _Outcome:
    applied: tuple[Applied, ...]
    not_applied: list[NotApplied]
    hints: tuple[Hint, ...]
    total: Decimal          # discounts on this order
    granted: Decimal        # promotional balance granted for later orders
    left: _State            # what is left to pay on each line and on shipping after the discounts

    def value(self) -> Decimal:
        """What the outcome is worth to the customer: a balance granted counts like a discount."""
        return self.total + self.granted

    def lead(self) -> tuple:
        """Tie-break between outcomes saving the same: the leading promotion's priority, then id."""
        if not self.applied:
            return (1, 0, "")
        top = min(self.applied, key=lambda a: (-a.priority, a.promotion))
        return (0, -top.priority, top.promotion)


def _initial_state(ctx: "_Context") -> _State:
    return _State(lines=dict(ctx.subtotals), shipping=ctx.shipment_units)


def _run(promotions: Iterable[Promotion], ctx: _Context) -> _Outcome:
    """The promotions together, benefit by benefit in stage order (then priority, then id). A promotion's
    conditions are measured once, before its first benefit; a promotion that gives nothing with any
    benefit did not apply. The item discounts of a `best_per_line` class are settled together, at the
    place of the first of them (`_best_per_line`)."""
    promotions = list(promotions)
    state = _initial_state(ctx)
    applied: list[Applied] = []
    failed: list[NotApplied] = []
    hints: list[Hint] = []
    run = tuple(promotions)
    steps = sorted(((STAGE_ORDER.index(b.stage), -p.priority, p.id), p, b) for p in run for b in p.benefits)
    refused: set[str] = set()
    given: dict[str, int] = {}        # minor units each promotion has given so far, for its caps
    nothing: dict[str, _Nothing] = {}   # why a promotion's first benefit that gave nothing gave nothing
    groups = _line_groups(run, ctx)
    outdone: dict[str, tuple[str, ...]] = {}   # best_per_line: promotions that lost every line, to whom
    on_shipping: dict[str, NotApplied] = {}   # why a shipping benefit took nothing off, told as such
    for _, promotion, benefit in steps:
        pid = promotion.id
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
                for refusal in settled.refused:
                    refused.add(refusal.promotion)
                    failed.append(refusal)
            if pid in refused:
                continue
        else:
            if benefit is promotion.benefits[0]:
                refusal = _eligibility(promotion, state, ctx)
                if refusal is not None:
                    refused.add(pid)
                    failed.append(refusal)
                    if not _gives_nothing_on_shipping(promotion, state, ctx):
                        hints.extend(_near_miss_hints(promotion, refusal, applied, run, ctx))
                    continue
            result = _apply(promotion, benefit, state, given.get(pid, 0), ctx)
            if isinstance(result, NotApplied):   # its own threshold (always the first benefit) refused it
                refused.add(pid)
                failed.append(result)
                hints.extend(_near_miss_hints(promotion, result, applied, run, ctx))
                continue
            if result is None or _gave_nothing(result):
                nothing.setdefault(pid, result or (Reason.NOTHING_LEFT_TO_DISCOUNT, {}))
                if benefit.stage is Stage.SHIPPING:
                    why = _nothing_on_shipping(promotion, benefit, state, ctx)
                    if why is not None:
                        on_shipping[pid] = why
            else:
                done, state, next_tier = result
                applied.append(done)
                given[pid] = given.get(pid, 0) + to_units(done.amount, ctx.currency)
                if next_tier is not None and not ctx.probing:
                    hints.extend(_next_tier_hint(promotion, next_tier, ctx))
        if benefit is promotion.benefits[-1] and pid not in given:
            lines_too = any(b.stage not in (Stage.SHIPPING, Stage.GRANT) for b in promotion.benefits)
            if pid in outdone:
                failed.append(_lost_every_line(promotion, outdone[pid], ctx))
            elif pid in on_shipping and not lines_too and nothing[pid][0] is Reason.NOTHING_LEFT_TO_DISCOUNT:
                failed.append(on_shipping[pid])
            else:
                reason, values = nothing.get(pid, (Reason.NOTHING_LEFT_TO_DISCOUNT, {}))
                failed.append(_refuse(promotion, reason, **values))
    total = sum((a.amount for a in applied if a.stage != Stage.GRANT.value), ctx.zero)
    granted = sum((a.amount for a in applied if a.stage == Stage.GRANT.value), ctx.zero)
    return _Outcome(tuple(applied), failed, tuple(hints), total, granted, state)


# --- best per line -------------------------------------------------------------------------------

def _line_groups(promotions: list[Promotion], ctx: _Context) -> dict[str, list[Promotion]]:
    """The promotions of each `best_per_line` class that discount items, in evaluation order."""
    classes = ctx.ruleset.best_per_line
    groups: dict[str, list[Promotion]] = {}
    if not classes:
        return groups
    for p in sorted(promotions, key=_order):
        if p.stacking_class in classes and p.benefits[0].stage is Stage.ITEM:
            groups.setdefault(p.stacking_class, []).append(p)
    return groups


@dataclass
class _Settled:
    """What one best_per_line class gave, for `_run` to take in."""

    state: _State
    applied: list[Applied] = field(default_factory=list)
    refused: list[NotApplied] = field(default_factory=list)
    hints: list[Hint] = field(default_factory=list)
    given: dict[str, int] = field(default_factory=dict)
    outdone: dict[str, tuple[str, ...]] = field(default_factory=dict)
    nothing: dict[str, "_Nothing"] = field(default_factory=dict)


def _best_per_line(members: list[Promotion], state: _State, earlier: list[Applied], run: tuple[Promotion, ...],
                   ctx: _Context) -> _Settled:
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
        if isinstance(computed, NotApplied):
            settled.refused.append(computed)
            settled.hints.extend(_near_miss_hints(p, computed, earlier, run, ctx))
        elif _gave_nothing(computed):
            settled.nothing[p.id] = computed
        else:
            result, amount, capped_by = computed
            parts = _parts(amount, result, state, ctx)
            offers.append((p, b, result, capped_by, dict(zip(result.ids, parts))))
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
            settled.hints.extend(_next_tier_hint(p, result.next_tier, ctx))
    return settled


def _lost_every_line(p: Promotion, winners: tuple[str, ...], ctx: _Context) -> NotApplied:
    names = ", ".join(ctx.ruleset.promotions[w].name for w in winners)
    return _refuse(p, Reason.NOT_BEST_ON_ANY_LINE, winner=names, stacking_class=p.stacking_class, lost_to=winners)


# --- which promotions combine, and which outcome wins ----------------------------------------------

MAX_CANDIDATES = 256   # maximal sets of combinable promotions enumerated per evaluation (see _candidates)


@dataclass(frozen=True)
class _Candidate:
    """A maximal set of live promotions that pairwise combine, and what it gives when run together."""

    members: tuple[Promotion, ...]       # in evaluation order
    outcome: _Outcome

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


def _rank(c: _Candidate, ctx: _Context) -> tuple:
    return tuple(value for _, value in RESOLUTIONS[ctx.ruleset.exclusive_resolution](c))


def _resolve(live: list[Promotion], ctx: _Context) -> _Outcome:
    """Every maximal set of live promotions that may combine is run; the resolution policy picks the
    winner. Each promotion outside it that applied in its own set lost to the winner (`_lost`); the
    others keep their own reason, from the best-ranked set that holds them."""
    candidates = _candidates(live)
    if len(candidates) == 1:
        return _run(candidates[0], ctx)
    ranked = sorted((_Candidate(members, _run(members, ctx)) for members in candidates), key=lambda c: _rank(c, ctx))
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
                    not_applied.append(_lost(p, best, c, ctx))
                    continue
                not_applied.extend(n for n in c.outcome.not_applied if n.promotion == p.id)
                # Reaching a non-exclusive promotion's threshold would not let it combine with the winner.
                if p.exclusive or nothing:
                    hints.extend(h for h in c.outcome.hints if h.promotion == p.id)
    return _Outcome(best.outcome.applied, not_applied, tuple(hints), best.outcome.total, best.outcome.granted,
                    best.outcome.left)


def _lost(p: Promotion, best: _Candidate, own: _Candidate, ctx: _Context) -> NotApplied:
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
    return _refuse(p, Reason.LOST_TO_EXCLUSIVE, winner=names, why=why_won(criteria, deciding), lost_to=winners)


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
    live = sorted(live, key=_order)
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
    sets = [tuple(sorted((p for i in clique for p in nodes[keys[i]]), key=_order)) for clique in found]
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


def _values(p: Promotion, state: _State, ctx: _Context) -> Mapping[str, Any]:
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


def _lines(p: Promotion, b: Benefit, state: _State, ctx: _Context) -> Lines:
    """The lines benefit `b` of `p` discounts, as they stand: the promotion's targeted lines, or the
    cart's lines that the benefit's own targets match. A buy-X-get-Y benefit with targets of its own
    sees both selections, each line marked as bought (the promotion's) and given (its own). Their
    ids, units and marks are worked out once per evaluation."""
    key = (p.id, b.index)
    shape = ctx.shapes.get(key)
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
    ids, quantities, buys, gets = shape
    left = state.lines
    return Lines(ids, quantities, tuple([left[i] for i in ids]), buys=buys, gets=gets)


def _eligibility(p: Promotion, state: _State, ctx: _Context) -> NotApplied | None:
    """`p`'s conditions, measured on the cart as it stands before its first benefit (on the original
    prices when the rule set's stacking base is `original`)."""
    if ctx.ruleset.policies.stacking_base == "original":
        state = _initial_state(ctx)
    passed, leaves = p.condition.measure(_values(p, state, ctx) if p.condition.variables else {})
    return None if passed else _condition_failure(p, leaves, ctx)


_Given = tuple[Applied, "_State", "NextTier | None"]
_Nothing = tuple[Reason, dict]   # why a benefit gives nothing, and the values its message names


def _apply(p: Promotion, b: Benefit, state: _State, given: int, ctx: _Context) -> NotApplied | _Given | _Nothing:
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
    if isinstance(computed, NotApplied) or _gave_nothing(computed):
        return computed
    result, amount, capped_by = computed
    return _split(p, b, result, amount, capped_by, state, ctx) + (result.next_tier,)


def _gave_nothing(result: Any) -> bool:
    return isinstance(result, tuple) and isinstance(result[0], Reason)


def _exact(p: Promotion, b: Benefit, state: _State, given: int,
           ctx: _Context) -> NotApplied | _Nothing | tuple[Exact, int, tuple[str, ...]]:
    """What a line or shipping benefit would take off, exactly, and its amount rounded and capped
    (minor units), by the rule set's policies; refused by its own threshold, or why it gives nothing."""
    policies = ctx.ruleset.policies
    kind = KINDS[b.type]
    assert kind.calculate is not None
    original = policies.stacking_base == "original"
    base = _initial_state(ctx) if original else state
    lines = _lines(p, b, base, ctx)
    if b.units is not None and not kind.two_selections:   # buy-X-get-Y caps the units it gives itself
        lines = keep_units(b.units, lines)
    result = lines if isinstance(lines, Short) else kind.calculate(b, lines, 0, ctx.currency)
    if isinstance(result, Short):
        return _short(p, result.variable, result.measured, result.required, "greater_than_or_equal_to", ctx)
    if isinstance(result, Missing):
        return _missing(p, b, result)
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


def _clamped(result: Exact, state: _State) -> Exact:
    """A line benefit worked out on the original prices, each line clamped at what is left of it."""
    d = result.denominator
    return Exact(result.ids, tuple(min(n, state.lines[i] * d) for i, n in zip(result.ids, result.numerators)),
                 denominator=d, next_tier=result.next_tier)


# Kinds that take the same off every unit of a line, so that rounding "per unit" means one thing; the
# others (sets, amounts per line) round each line's share when the rule set rounds per unit.
UNIFORM_PER_UNIT = frozenset({"percent_off", "amount_off"})


def _rounded_by_part(result: Exact, lines: Lines, state: _State, point: str, rounding: str) -> Exact:
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
            ctx: _Context) -> tuple[int, tuple[str, ...]] | tuple[_Nothing, tuple[str, ...]]:
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


def _parts(amount: int, result: Exact, state: _State, ctx: _Context) -> list[int]:
    """`amount` (minor units) over the result's lines in proportion to its exact amounts, the leftover
    minor units placed by the rule set's policy (never more than a line has left)."""
    leftover = ctx.ruleset.policies.leftover
    rooms = None if leftover == "largest_remainder" else [state.lines[i] for i in result.ids]
    return allocate_units(amount, result.numerators, result.denominator, result.ids, leftover, rooms)


def _split(p: Promotion, b: Benefit, result: Exact, amount: int, capped_by: tuple[str, ...], state: _State,
           ctx: _Context) -> tuple[Applied, _State]:
    """Put the rounded amount (minor units) on lines (largest remainder), and check nothing goes below zero."""
    currency = ctx.currency
    money = from_units(amount, currency)
    if result.shipping:
        raise InvariantError(f"{p.id}: a line benefit took {result.shipping} off shipping")
    ids = result.ids
    parts = _parts(amount, result, state, ctx)
    lines = dict(state.lines)
    shares: list[LineShare] = []
    for line_id, part in zip(ids, parts):
        if part:
            left = lines[line_id] - part
            if left < 0:
                raise InvariantError(f"{p.id}: {part} minor units on line {line_id} exceed what is left")
            lines[line_id] = left
            shares.append(LineShare(line_id, from_units(part, currency)))
    if sum(parts) != amount:
        raise InvariantError(f"{p.id}: line shares do not add up to {money}")
    return _applied(p, b, money, tuple(shares), None, capped_by), _State(lines, state.shipping)


# --- shipping: benefits on shipments ------------------------------------------------------------

NO_LINES = Lines((), (), ())


def _targeted_shipments(b: Benefit, ctx: _Context) -> tuple[int, ...]:
    """The places (in `ctx.shipments`) of the shipments a shipping benefit discounts: those sent by
    one of its `shipping_methods`, or every shipment when it names none."""
    return tuple(i for i, s in enumerate(ctx.shipments)
                 if b.shipping_methods is None or s.method in b.shipping_methods)


def _apply_shipping(p: Promotion, b: Benefit, state: _State, given: int,
                    ctx: _Context) -> _Given | _Nothing | None:
    """A shipping benefit on the targeted shipments as they stand. A kind priced per shipment (free,
    percent off, fixed price) is worked out exactly on each, rounded once in all, capped, and split
    back over them by largest remainder (ties to the smaller shipment id); a kind that takes its
    amount once (`shipping_amount_off`) takes it from the shipment with most left first (ties to
    the smaller id), then the next."""
    targeted = _targeted_shipments(b, ctx)
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
        denominator = lcm(*(r.denominator for r in each))
        numerators = [r.shipping * (denominator // r.denominator) for r in each]
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
    return done, _State(state.lines, tuple(shipping)), None


def _nothing_on_shipping(p: Promotion, b: Benefit, state: _State, ctx: _Context) -> NotApplied | None:
    """Why shipping benefit `b` takes nothing off, when shipping is why: no shipment it targets, or
    what they have left is already nothing (or, for a fixed price, at or below the price). None
    when the cause is elsewhere (a cap, or an amount that rounds to nothing)."""
    methods = sorted(b.shipping_methods) if b.shipping_methods is not None else None
    by = "" if methods is None else " by " + _either(methods)
    targeted = _targeted_shipments(b, ctx)
    if not targeted:
        return _refuse(p, Reason.NO_ELIGIBLE_SHIPMENT, shipments="shipments" + by)
    left = [state.shipping[i] for i in targeted]
    if not any(left):
        return _refuse(p, Reason.NOTHING_LEFT_ON_SHIPPING, shipping="shipping" + by, cost="nothing")
    if b.type == "shipping_fixed_price" and b.price is not None and \
            all(units <= to_units(b.price, ctx.currency) for units in left):
        return _refuse(p, Reason.NOTHING_LEFT_ON_SHIPPING, shipping="shipping" + by,
                       cost=f"{ctx.money(b.price)} or less")
    return None


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _gives_nothing_on_shipping(p: Promotion, state: _State, ctx: _Context) -> bool:
    """A promotion whose only benefit is a shipping benefit that would take nothing off the cart as it
    stands: meeting its terms changes nothing, so no hint tells the customer to."""
    return len(p.benefits) == 1 and p.benefits[0].stage is Stage.SHIPPING and \
        _nothing_on_shipping(p, p.benefits[0], state, ctx) is not None


# --- why not, and how close ----------------------------------------------------------------------

def _condition_failure(p: Promotion, leaves: tuple[LeafResult, ...], ctx: _Context) -> NotApplied:
    outcomes = [leaf.passed for leaf in leaves]
    failed = set(p.condition.blame(outcomes))
    thresholds = failed & {leaf.index for leaf in p.condition.threshold_leaves()}
    regions = {i for i in failed if leaves[i].variable in REGION_VARIABLES}

    def passes_with(forced: set[int]) -> bool:
        return p.condition.passes_if([ok or i in forced for i, ok in enumerate(outcomes)])

    failed_conditions = tuple(FailedCondition(leaves[i].variable, leaves[i].operator, _plain_value(leaves[i].expected),
                                              _measured_value(leaves[i])) for i in sorted(failed))
    if thresholds and passes_with(thresholds):
        measured = [_threshold(leaves[i], ctx) for i in sorted(thresholds)]
        spend = any(t.variable in SPEND_VARIABLES for t in measured)
        return _threshold_refusal(p, Reason.MIN_SPEND_NOT_MET if spend else Reason.MIN_QUANTITY_NOT_MET,
                                  tuple(measured), failed_conditions, ctx)
    if regions and passes_with(regions | thresholds):
        return _refuse(p, Reason.REGION_NOT_ELIGIBLE, region=ctx.account.region, failed_conditions=failed_conditions)
    return _refuse(p, Reason.CONDITION_FAILED, failed_conditions=failed_conditions)


def _measured_value(leaf: LeafResult) -> Any:
    """The measured value in the form the rule file writes it: counts as whole numbers, money as text."""
    if isinstance(leaf.actual, Decimal) and leaf.variable not in MONEY_VARIABLES:
        return int(leaf.actual)
    return _plain_value(leaf.actual)


def _plain_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


def _threshold(leaf: LeafResult, ctx: _Context) -> Threshold:
    measured, required = Decimal(leaf.actual), Decimal(leaf.expected)
    step = quantum(ctx.currency) if leaf.variable in SPEND_VARIABLES else Decimal(1)
    # "greater than" needs one step more than the threshold: one minor unit of money, or one unit.
    shortfall = required - measured + (step if leaf.operator == "greater_than" else 0)
    if leaf.variable in SPEND_VARIABLES:
        measured, required, shortfall = (v.quantize(step) for v in (measured, required, shortfall))
    return Threshold(leaf.variable, measured, required, shortfall)


def _short(p: Promotion, variable: str, measured: Decimal, required: Decimal, operator: str,
           ctx: _Context) -> NotApplied:
    leaf = LeafResult(variable, operator, required, measured, False)
    threshold = _threshold(leaf, ctx)
    reason = Reason.MIN_SPEND_NOT_MET if variable in SPEND_VARIABLES else Reason.MIN_QUANTITY_NOT_MET
    return _threshold_refusal(p, reason, (threshold,), (), ctx)


def _shown(t: Threshold, value: Decimal, ctx: _Context) -> str:
    return ctx.money(value) if t.variable in SPEND_VARIABLES else f"{value:f}"


# What each threshold's variable measures, in the refusal's words ("needs ¥3,000 of eligible items").
MEASURES = {"eligible_subtotal": "of eligible items", "cart_subtotal": "in the cart",
            "order_total": "as its order total with shipping", "eligible_quantity": "eligible items",
            "cart_quantity": "items in the cart"}


def _threshold_refusal(p: Promotion, reason: Reason, thresholds: tuple[Threshold, ...],
                       failed_conditions: tuple[FailedCondition, ...], ctx: _Context) -> NotApplied:
    first = thresholds[0]
    return _refuse(p, reason, what=MEASURES[first.variable], required=_shown(first, first.required, ctx),
                   measured=_shown(first, first.measured, ctx),
                   shortfall=_shown(first, first.shortfall, ctx), thresholds=thresholds,
                   failed_conditions=failed_conditions)


def _missing(p: Promotion, b: Benefit, missing: Missing) -> NotApplied:
    """Too few of the units a buy-X-get-Y benefit gives are in the cart (a free gift not added). The
    shortfall is listed, and hinted, only when those units alone are missing: the units bought are
    there, so adding that many of the selection makes the promotion apply."""
    assert b.targets is not None   # without targets of its own, what it gives is what it counts (Short)
    short = missing.required - missing.measured
    thresholds = (Threshold("get_quantity", Decimal(missing.measured), Decimal(missing.required), Decimal(short)),) \
        if missing.hint else ()
    return _refuse(p, Reason.GET_ITEMS_MISSING, what=_selection_text(b.targets), required=missing.required,
                   measured=missing.measured, thresholds=thresholds)


def _selection_text(t: Targets) -> str:
    """A benefit's own selection in words, for messages: "SKU TEE-W or category t-shirts"."""
    if t.include_all:
        return "eligible items"
    parts = [f"{label} {', '.join(sorted(names))}" for label, names in
             (("SKU", t.skus), ("category", t.categories), ("brand", t.brands)) if names]
    return " or ".join(parts)


def _item_to_add(t: Targets) -> HintItem | None:
    """One thing a customer can add that the selection takes: its first SKU, else category, else
    brand, not excluded by name (None for `include: all`)."""
    for kind, names, excluded in (("sku", t.skus, t.exclude_skus), ("category", t.categories, t.exclude_categories),
                                  ("brand", t.brands, t.exclude_brands)):
        for name in sorted(names - excluded):
            return HintItem(kind, name)
    return None


ITEM_WORDS = {"sku": "SKU {name}", "category": "item from {name}", "brand": "item of brand {name}"}


def _near_miss_hints(p: Promotion, refusal: NotApplied, earlier: list[Applied], run: tuple[Promotion, ...],
                     ctx: _Context) -> list[Hint]:
    """"Add so much more" for each threshold not reached, only when it is true (see `_spend_hint`), and
    "add this item" for a gift not in the cart."""
    if ctx.probing:
        return []
    if refusal.reason is Reason.GET_ITEMS_MISSING:
        target = p.benefits[0].targets
        item = _item_to_add(target) if target is not None else None
        if not refusal.thresholds or item is None:
            return []
        count = refusal.thresholds[0].shortfall
        return [Hint(p.id, "item", count, hint("item", count=f"{count:f}", item=ITEM_WORDS[item.kind].format(
            name=item.name), name=p.name), item)]
    if refusal.reason not in (Reason.MIN_SPEND_NOT_MET, Reason.MIN_QUANTITY_NOT_MET):
        return []
    hints = []
    for t in refusal.thresholds:
        if t.variable not in SPEND_VARIABLES:
            hints.append(_hint(p, t.variable, t.shortfall, ctx, next_tier=False))
        elif (needed := _spend_hint(p, t, earlier, run, ctx)) is not None:
            hints.append(_hint(p, t.variable, needed, ctx, next_tier=False))
    return hints


MAX_PROBES = 24                 # what-if runs one evaluation may spend on its hints
PROBE_LINE = "probe:" + "x" * 64   # longer than any cart line id may be, so it names no real line


def _spend_hint(p: Promotion, t: Threshold, earlier: list[Applied], run: tuple[Promotion, ...],
                ctx: _Context) -> Decimal | None:
    """The least the customer must add (as more of `p`'s eligible items) for the spend `t` measures to
    reach its threshold, or None. The spend is measured after earlier promotions; when none of them
    can take part of an addition (amounts given whole: per order, or cut by a cap), the shortfall is
    the answer. Otherwise an addition is tried in what-if runs of the same promotions: the shortfall
    grossed up by the percents off everything, else doubled a few times; then halved down to the
    least amount that works, to the minor unit. No amount found within MAX_PROBES runs: no hint,
    rather than a false one ("add ¥10 more" where an earlier promotion would take the ¥10 too)."""
    measured = None if t.variable != "eligible_subtotal" else {line.id for line in ctx.targeted[p.id]}
    kept, takes = Fraction(1), False
    for a in earlier:
        if not a.lines or (measured is not None and not any(s.line in measured for s in a.lines)):
            continue
        b = ctx.ruleset.promotions[a.promotion].benefits[a.benefit or 0]
        if a.capped_by or (b.type == "amount_off" and b.scope == "per_order" and b.amount == a.amount):
            continue
        takes = True
        targets = b.targets or ctx.ruleset.promotions[a.promotion].targets
        if b.type == "percent_off" and b.percent is not None and b.percent < 100 and targets.everything:
            kept *= 1 - Fraction(b.percent) / 100
    if not takes or ctx.ruleset.policies.stacking_base == "original":
        return t.shortfall
    step = quantum(ctx.currency)
    low = to_units(t.shortfall, ctx.currency) - 1          # adding the shortfall itself is never too much
    guess = Fraction(low + 1) / kept
    high = -(-guess.numerator // guess.denominator)
    while not _passes_with(p, t.variable, high, run, ctx):
        if ctx.probes[0] <= 0 or high > 1_000 * (low + 1):
            return None
        low, high = high, high * 2
    while high - low > 1 and ctx.probes[0] > 0:
        middle = (low + high) // 2
        if _passes_with(p, t.variable, middle, run, ctx):
            high = middle
        else:
            low = middle
    return from_units(high, ctx.currency)    # enough; the least unless the runs ran out first


def _passes_with(p: Promotion, variable: str, units: int, run: tuple[Promotion, ...], ctx: _Context) -> bool:
    """A what-if run: the same promotions on the cart with `units` minor units more of the eligible
    line with the smallest id; does `p` then reach its `variable` threshold?"""
    if ctx.probes[0] <= 0:
        return False
    ctx.probes[0] -= 1
    like = min(ctx.targeted[p.id], key=lambda line: line.id)
    probe = dataclasses.replace(like, id=PROBE_LINE, unit_price=from_units(units, ctx.currency), quantity=1)
    cart = dataclasses.replace(ctx.cart, lines=ctx.cart.lines + (probe,))
    targeted = {q.id: ctx.targeted[q.id] + ((probe,) if q.targets.matches(probe) else ()) for q in run}
    what_if = _Context.build(ctx.ruleset, cart, ctx.account, ctx.now, ctx.usage, ctx.previewed, targeted)
    what_if = dataclasses.replace(what_if, probing=True)
    outcome = _run(run, what_if)
    return not any(n.promotion == p.id and any(t.variable == variable for t in n.thresholds)
                   for n in outcome.not_applied)


def _next_tier_hint(p: Promotion, next_tier: NextTier, ctx: _Context) -> list[Hint]:
    shortfall = next_tier.required - next_tier.measured
    return [_hint(p, next_tier.variable, shortfall, ctx, next_tier=True)]


def _hint(p: Promotion, variable: str, shortfall: Decimal, ctx: _Context, next_tier: bool) -> Hint:
    if variable in QUANTITY_VARIABLES:
        kind = "next_tier_quantity" if next_tier else "quantity"
        shown = f"{shortfall:f}"
        text = hint(kind, shortfall=shown, plural="" if shortfall == 1 else "s", name=p.name)
        return Hint(p.id, "quantity", shortfall, text)
    kind = "next_tier_spend" if next_tier else ("cart_spend" if variable in ("cart_subtotal", "order_total")
                                                 else "spend")
    return Hint(p.id, "spend", shortfall, hint(kind, shortfall=ctx.money(shortfall), name=p.name))


# --- the trace -----------------------------------------------------------------------------------

def _trace(ctx: _Context, codes: tuple[CodeResult, ...], outcome: _Outcome, not_applied: list[NotApplied],
           out_of_scope: Counter[str], inputs: Inputs) -> Trace:
    per_line: dict[str, list[LineDiscount]] = {line.id: [] for line in ctx.cart.lines}
    per_shipment: dict[str, list[LineDiscount]] = {s.id: [] for s in ctx.shipments}
    by_stage: dict[str, Decimal] = {stage.value: ctx.zero for stage in Stage}
    applied = tuple(a for a in outcome.applied if a.stage != Stage.GRANT.value)
    grants = tuple(_grant(ctx.ruleset.promotions[a.promotion], a.amount, ctx)
                   for a in outcome.applied if a.stage == Stage.GRANT.value)
    for a in applied:
        by_stage[a.stage] += a.amount
        for share in a.lines:
            per_line[share.line].append(LineDiscount(a.promotion, a.stage, share.amount))
        if a.shipments is not None:
            for part in a.shipments:
                per_shipment[part.shipment].append(LineDiscount(a.promotion, a.stage, part.amount))
        elif a.shipping is not None:   # the one shipment of a cart written with `shipping`
            per_shipment[LEGACY_SHIPMENT_ID].append(LineDiscount(a.promotion, a.stage, a.shipping))
    # Each line's discount and total from what the promotions left on it, in minor units; _split has
    # checked every share against what was left, and the sums are checked against the totals below.
    currency, left = ctx.currency, outcome.left
    lines = []
    discounted_units = 0
    for line in ctx.cart.lines:
        subtotal_units, total_units = ctx.subtotals[line.id], left.lines[line.id]
        if total_units < 0 or total_units > subtotal_units:
            raise InvariantError(f"line {line.id} went below zero")
        discounted_units += subtotal_units - total_units
        lines.append(LineTrace(line.id, line.sku, line.name, line.category, line.seller, line.product_type,
                               line.unit_price, line.quantity, from_units(subtotal_units, currency),
                               tuple(per_line[line.id]), from_units(subtotal_units - total_units, currency),
                               from_units(total_units, currency)))
    shipments = []
    for s, price_units, total_units in zip(ctx.shipments, ctx.shipment_units, left.shipping):
        if total_units < 0 or total_units > price_units:
            raise InvariantError(f"shipment {s.id!r} went below zero")
        discounted_units += price_units - total_units
        shipments.append(ShipmentTrace(s.id, s.method, s.lines, s.price, tuple(per_shipment[s.id]),
                                       from_units(price_units - total_units, currency),
                                       from_units(total_units, currency)))
    shipping = None
    if ctx.cart.shipping is not None:   # today's record for a cart written with `shipping`
        [one] = shipments
        shipping = ShippingTrace(one.method, one.price, one.discounts, one.discount, one.total)
        shipping_price = ctx.cart.shipping.price
    else:
        shipping_price = sum((s.price for s in shipments), ctx.zero)
    subtotal = from_units(sum(ctx.subtotals.values()), currency)
    discount = by_stage["item"] + by_stage["order"] + by_stage["shipping"]
    if discount != outcome.total or discount != from_units(discounted_units, currency):
        raise InvariantError("total discount does not match the applied promotions or what they took off the lines")
    totals = Totals(subtotal, by_stage["item"], by_stage["order"], shipping_price, by_stage["shipping"], discount,
                    subtotal + shipping_price - discount)
    hints = tuple(sorted(outcome.hints, key=lambda h: (_order(ctx.ruleset.promotions[h.promotion]), h.kind,
                                                       h.shortfall)))
    tenders = pay(ctx.cart, ctx.account, ctx.now, {line.id: line.total for line in lines},
                  {s.id: s.total for s in shipments}, ctx.ruleset.locale)
    return Trace(format=TRACE_FORMAT, ruleset_version=ctx.ruleset.version, now=ctx.now.isoformat(),
                 currency=ctx.currency, minor_unit=minor_unit(ctx.currency), rounding=ctx.ruleset.rounding,
                 cart_id=ctx.cart.id, account_id=ctx.account.id, codes=codes, lines=tuple(lines), shipping=shipping,
                 applied=applied, not_applied=tuple(not_applied),
                 out_of_scope=tuple(sorted(out_of_scope.items())), hints=hints, totals=totals, tenders=tenders,
                 grants=grants, inputs=inputs,
                 shipments=tuple(shipments) if ctx.cart.shipments is not None else None)


def _grant(p: Promotion, amount: Decimal, ctx: _Context) -> Grant:
    """The lot the order system issues after the order: its expiry is a fixed instant, or whole days after `now`."""
    grant = next(b for b in p.benefits if b.stage is Stage.GRANT)   # at most one per promotion (one per stage)
    expires = grant.expires_at if grant.expires_at is not None else ctx.now + timedelta(days=grant.expires_after_days)
    assert grant.pays_for is not None  # the loader sets it for every grant
    return Grant(p.id, p.name, amount, ctx.currency, expires.isoformat(), scope_of(grant.pays_for))
