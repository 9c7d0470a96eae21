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
5. Exclusive promotions: every eligible exclusive promotion is tried alone, against all the
   stackable ones together; the outcome that saves the customer most wins (ties: the higher
   priority, then the smaller id, of the outcome's leading promotion); the others lost to it.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from .conditions import LeafResult
from .errors import InputError, InvariantError, Problem
from fractions import Fraction

from .index import Scope
from .inputs import parse_account, parse_cart, parse_codes, parse_now, parse_usage
from .model import STAGE_ORDER, Account, Benefit, Cart, Line, Promotion, RuleSet, Stage, Targets, Usage
from .money import allocate_units, format_money, from_units, minor_unit, quantum, round_units, to_units
from .reasons import Reason, hint, message
from .benefits import KINDS, Exact, Lines, Missing, NextTier, Short, keep_units
from .text import normalise_code, text_problem

MAX_PREVIEW = 100   # promotions one evaluation may preview
from .tenders import pay
from .trace import (TRACE_FORMAT, Applied, CodeResult, FailedCondition, Grant, Hint, HintItem, Inputs, LineDiscount, LineShare,
                    LineTrace, NotApplied, ShippingTrace, Threshold, Totals, Trace, scope_of)
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
    shipping_units: int
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
        shipping = to_units(cart.shipping.price, currency) if cart.shipping else 0
        return _Context(ruleset, cart, account, now, usage, previewed, targeted,
                        local.date().isoformat(), WEEKDAYS[local.weekday()], local.hour, subtotals, shipping,
                        sum(line.quantity for line in cart.lines))

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
                      shipping_method=cart.shipping.method if cart.shipping else "",
                      cart_subtotal=self.zero, order_total=self.zero, cart_quantity=self.quantity,
                      eligible_subtotal=self.zero,
                      eligible_quantity=0, local_date=self.local_date, local_weekday=self.local_weekday,
                      local_hour=self.local_hour)
        variables = PromotionVariables(facts)
        return MappingProxyType({name: getattr(variables, name)() for name in VARIABLE_TYPES
                                 if name not in MEASURED_PER_PROMOTION})


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
    """The checks that do not depend on other promotions, in a fixed order; the first failure is the reason."""
    if p.status != "active" and p.id not in ctx.previewed:
        return _refuse(p, Reason.NOT_ACTIVE, status=p.status)
    if p.currency is not None and p.currency != ctx.currency:
        return _refuse(p, Reason.CURRENCY_MISMATCH, promotion_currency=p.currency, currency=ctx.currency)
    if p.starts is not None and ctx.now < p.starts:
        return _refuse(p, Reason.NOT_STARTED, starts=p.starts.isoformat())
    if p.ends is not None and ctx.now >= p.ends:
        return _refuse(p, Reason.EXPIRED, ends=p.ends.isoformat())
    used = ctx.usage.get(p.id, NO_USAGE)
    if p.limits.total_uses is not None and used.total_uses >= p.limits.total_uses:
        return _refuse(p, Reason.USAGE_LIMIT_REACHED, limit=f"{p.limits.total_uses} uses in all")
    if p.limits.uses_per_customer is not None and used.customer_uses >= p.limits.uses_per_customer:
        return _refuse(p, Reason.USAGE_LIMIT_REACHED, limit=f"{p.limits.uses_per_customer} per customer")
    if p.limits.budget is not None and used.budget_spent >= p.limits.budget:
        return _refuse(p, Reason.BUDGET_EXHAUSTED, budget=ctx.money(p.limits.budget))
    if not ctx.targeted[p.id]:
        return _refuse(p, Reason.NO_ELIGIBLE_ITEMS)
    return None


# --- running promotions in order -----------------------------------------------------------------

@dataclass(frozen=True)
class _State:
    """What is left to pay on each line and on shipping, in minor units."""

    lines: Mapping[str, int]
    shipping: int


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
    return _State(lines=dict(ctx.subtotals), shipping=ctx.shipping_units)


def _run(promotions: Iterable[Promotion], ctx: _Context) -> _Outcome:
    """The promotions together, benefit by benefit in stage order (then priority, then id). A promotion's
    conditions are measured once, before its first benefit; a promotion that gives nothing with any
    benefit did not apply."""
    state = _initial_state(ctx)
    applied: list[Applied] = []
    failed: list[NotApplied] = []
    hints: list[Hint] = []
    run = tuple(promotions)
    steps = sorted(((STAGE_ORDER.index(b.stage), -p.priority, p.id), p, b) for p in run for b in p.benefits)
    refused: set[str] = set()
    given: dict[str, int] = {}        # minor units each promotion has given so far, for its caps
    nothing: dict[str, _Nothing] = {}   # why a promotion's first benefit that gave nothing gave nothing
    for _, promotion, benefit in steps:
        pid = promotion.id
        if pid in refused:
            continue
        first = benefit is promotion.benefits[0]
        if first:
            refusal = _eligibility(promotion, state, ctx)
            if refusal is not None:
                refused.add(pid)
                failed.append(refusal)
                hints.extend(_near_miss_hints(promotion, refusal, applied, run, ctx))
                continue
        result = _apply(promotion, benefit, state, given.get(pid, 0), ctx)
        if isinstance(result, NotApplied):   # its own threshold (always the first benefit) refused it
            refused.add(pid)
            failed.append(result)
            hints.extend(_near_miss_hints(promotion, result, applied, run, ctx))
            continue
        if isinstance(result, tuple) and isinstance(result[0], Reason):
            nothing.setdefault(pid, result)
        else:
            done, state, next_tier = result
            applied.append(done)
            given[pid] = given.get(pid, 0) + to_units(done.amount, ctx.currency)
            if next_tier is not None and not ctx.probing:
                hints.extend(_next_tier_hint(promotion, next_tier, ctx))
        if benefit is promotion.benefits[-1] and pid not in given:
            reason, values = nothing[pid]
            failed.append(_refuse(promotion, reason, **values))
    total = sum((a.amount for a in applied if a.stage != Stage.GRANT.value), ctx.zero)
    granted = sum((a.amount for a in applied if a.stage == Stage.GRANT.value), ctx.zero)
    return _Outcome(tuple(applied), failed, tuple(hints), total, granted, state)


def _resolve(live: list[Promotion], ctx: _Context) -> _Outcome:
    """Stackable promotions together, against each exclusive one alone: the customer gets the best."""
    stackable = [p for p in live if not p.exclusive]
    exclusives = [p for p in live if p.exclusive]
    together = _run(stackable, ctx)
    if not exclusives:
        return together
    alone = {x.id: _run([x], ctx) for x in exclusives}
    contenders = [(together, None)] + [(alone[x.id], x) for x in exclusives if alone[x.id].applied]
    best, winner = min(contenders, key=lambda c: (-c[0].value(), c[0].lead()))
    names = ctx.ruleset.promotions
    not_applied: list[NotApplied] = []
    if winner is None:
        winner_ids = tuple(dict.fromkeys(a.promotion for a in together.applied))
        not_applied.extend(together.not_applied)
        hints = list(together.hints)
    else:
        winner_ids = (winner.id,)
        hints = list(best.hints) + [h for x in exclusives if x is not winner for h in alone[x.id].hints]
        for pid in dict.fromkeys(a.promotion for a in together.applied):   # once per promotion, in order
            not_applied.append(_lost(names[pid], winner_ids, ctx))
        not_applied.extend(together.not_applied)
    for x in exclusives:
        if x is winner:
            continue
        if alone[x.id].applied:
            not_applied.append(_lost(x, winner_ids, ctx))
        else:
            not_applied.extend(alone[x.id].not_applied)
            if winner is None:
                hints.extend(alone[x.id].hints)
    return _Outcome(best.applied, not_applied, tuple(hints), best.total, best.granted, best.left)


def _lost(p: Promotion, winners: tuple[str, ...], ctx: _Context) -> NotApplied:
    names = ", ".join(ctx.ruleset.promotions[w].name for w in winners)
    return _refuse(p, Reason.LOST_TO_EXCLUSIVE, winner=names, lost_to=winners)


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
            values[name] = from_units(sum(state.lines.values()) + state.shipping, ctx.currency)
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
    policies = ctx.ruleset.policies
    if b.stage is Stage.GRANT:  # balance for later orders: this order's lines and shipping are untouched
        assert b.amount is not None
        units, capped_by = _capped(p, b, to_units(b.amount, ctx.currency), given, ctx)
        if isinstance(units, tuple):
            return units
        if units == 0:
            return Reason.NOTHING_LEFT_TO_DISCOUNT, {}
        return _applied(p, b, from_units(units, ctx.currency), (), None, capped_by), state, None
    kind = KINDS[b.type]
    assert kind.calculate is not None
    original = policies.stacking_base == "original"
    base = _initial_state(ctx) if original else state
    lines = _lines(p, b, base, ctx)
    if b.units is not None and not kind.two_selections:   # buy-X-get-Y caps the units it gives itself
        lines = keep_units(b.units, lines)
    result = lines if isinstance(lines, Short) else kind.calculate(b, lines, base.shipping, ctx.currency)
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
    return _split(p, b, result, amount, capped_by, state, ctx) + (result.next_tier,)


def _clamped(result: Exact, state: _State) -> Exact:
    """An amount worked out on the original prices, each line (and shipping) clamped at what is left."""
    d = result.denominator
    return Exact(result.ids, tuple(min(n, state.lines[i] * d) for i, n in zip(result.ids, result.numerators)),
                 shipping=min(result.shipping, state.shipping * d), denominator=d, next_tier=result.next_tier)


# Kinds that take the same off every unit of a line, so that rounding "per unit" means one thing; the
# others (sets, amounts per line) round each line's share when the rule set rounds per unit.
UNIFORM_PER_UNIT = frozenset({"percent_off", "amount_off"})


def _rounded_by_part(result: Exact, lines: Lines, state: _State, point: str, rounding: str) -> Exact:
    """Each line's exact amount rounded to whole minor units (`line`), or each unit's before it is
    multiplied by the line's units (`unit`), never more than the line has left; shipping alone."""
    d = result.denominator
    parts = []
    for line_id, n, units in zip(result.ids, result.numerators, lines.quantities):
        part = round_units(n, d * units, rounding) * units if point == "unit" else round_units(n, d, rounding)
        parts.append(min(part, state.lines[line_id]))
    shipping = min(round_units(result.shipping, d, rounding), state.shipping)
    return Exact(result.ids, tuple(parts), shipping=shipping, denominator=1, next_tier=result.next_tier)


def _applied(p: Promotion, b: Benefit, amount: Decimal, shares: tuple[LineShare, ...], shipping: Decimal | None,
             capped_by: tuple[str, ...]) -> Applied:
    """The trace entry of one benefit given; `benefit` names its place only when the promotion has several."""
    return Applied(p.id, p.name, b.stage.value, b.type, p.code, amount, shares, shipping, capped_by, p.exclusive,
                   p.priority, b.index if len(p.benefits) > 1 else None)


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


def _split(p: Promotion, b: Benefit, result: Exact, amount: int, capped_by: tuple[str, ...], state: _State,
           ctx: _Context) -> tuple[Applied, _State]:
    """Put the rounded amount (minor units) on lines (largest remainder) or on shipping, and check
    nothing goes below zero."""
    currency = ctx.currency
    money = from_units(amount, currency)
    if result.shipping > 0:
        if amount > state.shipping or any(result.numerators):
            raise InvariantError(f"{p.id}: shipping discount {money} exceeds what is left of shipping")
        return _applied(p, b, money, (), money, capped_by), _State(state.lines, state.shipping - amount)
    ids = result.ids
    leftover = ctx.ruleset.policies.leftover
    rooms = None if leftover == "largest_remainder" else [state.lines[i] for i in ids]
    parts = allocate_units(amount, result.numerators, result.denominator, ids, leftover, rooms)
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
    shipping_discounts: list[LineDiscount] = []
    by_stage: dict[str, Decimal] = {stage.value: ctx.zero for stage in Stage}
    applied = tuple(a for a in outcome.applied if a.stage != Stage.GRANT.value)
    grants = tuple(_grant(ctx.ruleset.promotions[a.promotion], a.amount, ctx)
                   for a in outcome.applied if a.stage == Stage.GRANT.value)
    for a in applied:
        by_stage[a.stage] += a.amount
        for share in a.lines:
            per_line[share.line].append(LineDiscount(a.promotion, a.stage, share.amount))
        if a.shipping is not None:
            shipping_discounts.append(LineDiscount(a.promotion, a.stage, a.shipping))
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
    shipping = None
    if ctx.cart.shipping is not None:
        if left.shipping < 0 or left.shipping > ctx.shipping_units:
            raise InvariantError("shipping went below zero")
        discounted_units += ctx.shipping_units - left.shipping
        shipping_price = ctx.cart.shipping.price
        shipping = ShippingTrace(ctx.cart.shipping.method, shipping_price, tuple(shipping_discounts),
                                 from_units(ctx.shipping_units - left.shipping, currency),
                                 from_units(left.shipping, currency))
    else:
        shipping_price = ctx.zero
    subtotal = from_units(sum(ctx.subtotals.values()), currency)
    discount = by_stage["item"] + by_stage["order"] + by_stage["shipping"]
    if discount != outcome.total or discount != from_units(discounted_units, currency):
        raise InvariantError("total discount does not match the applied promotions or what they took off the lines")
    totals = Totals(subtotal, by_stage["item"], by_stage["order"], shipping_price, by_stage["shipping"], discount,
                    subtotal + shipping_price - discount)
    hints = tuple(sorted(outcome.hints, key=lambda h: (_order(ctx.ruleset.promotions[h.promotion]), h.kind,
                                                       h.shortfall)))
    tenders = pay(ctx.cart, ctx.account, ctx.now, {line.id: line.total for line in lines},
                  shipping.total if shipping else ctx.zero, ctx.ruleset.locale)
    return Trace(format=TRACE_FORMAT, ruleset_version=ctx.ruleset.version, now=ctx.now.isoformat(),
                 currency=ctx.currency, minor_unit=minor_unit(ctx.currency), rounding=ctx.ruleset.rounding,
                 cart_id=ctx.cart.id, account_id=ctx.account.id, codes=codes, lines=tuple(lines), shipping=shipping,
                 applied=applied, not_applied=tuple(not_applied),
                 out_of_scope=tuple(sorted(out_of_scope.items())), hints=hints, totals=totals, tenders=tenders,
                 grants=grants, inputs=inputs)


def _grant(p: Promotion, amount: Decimal, ctx: _Context) -> Grant:
    """The lot the order system issues after the order: its expiry is a fixed instant, or whole days after `now`."""
    grant = next(b for b in p.benefits if b.stage is Stage.GRANT)   # at most one per promotion (one per stage)
    expires = grant.expires_at if grant.expires_at is not None else ctx.now + timedelta(days=grant.expires_after_days)
    assert grant.pays_for is not None  # the loader sets it for every grant
    return Grant(p.id, p.name, amount, ctx.currency, expires.isoformat(), scope_of(grant.pays_for))
