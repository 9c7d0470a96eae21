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
5. Exclusive promotions: every eligible exclusive promotion is tried alone, against all the
   stackable ones together; the outcome that saves the customer most wins (ties: the higher
   priority, then the smaller id, of the outcome's leading promotion); the others lost to it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from math import lcm
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from .conditions import LeafResult, Several
from .errors import InputError, InvariantError, Problem
from .index import Scope
from .inputs import parse_account, parse_cart, parse_codes, parse_now, parse_usage
from .model import (LEGACY_SHIPMENT_ID, STAGE_ORDER, Account, Benefit, Cart, Line, Promotion, RuleSet, Shipment,
                    Stage, Usage)
from .money import allocate_units, format_money, from_units, minor_unit, quantum, round_units, to_units
from .reasons import Reason, hint, message
from .benefits import KINDS, Exact, Lines, NextTier, Short
from .text import normalise_code, text_problem

MAX_PREVIEW = 100   # promotions one evaluation may preview
from .tenders import pay
from .trace import (TRACE_FORMAT, Applied, CodeResult, FailedCondition, Grant, Hint, Inputs, LineDiscount, LineShare,
                    LineTrace, NotApplied, ShipmentShare, ShipmentTrace, ShippingTrace, Threshold, Totals, Trace,
                    scope_of)
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
        facts = Facts(region=account.region, customer_tier=account.tier, customer_segments=account.segments,
                      order_count=account.order_count, sales_channel=cart.channel,
                      shipping_method=_shipping_method(self.shipments),
                      cart_subtotal=self.zero, cart_quantity=self.quantity, eligible_subtotal=self.zero,
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
    benefit did not apply."""
    state = _initial_state(ctx)
    applied: list[Applied] = []
    failed: list[NotApplied] = []
    hints: list[Hint] = []
    steps = sorted(((STAGE_ORDER.index(b.stage), -p.priority, p.id), p, b) for p in promotions for b in p.benefits)
    refused: set[str] = set()
    given: dict[str, int] = {}        # minor units each promotion has given so far, for its caps
    on_shipping: dict[str, NotApplied] = {}   # why a shipping benefit took nothing off, told as such
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
                if not _gives_nothing_on_shipping(promotion, state, ctx):
                    hints.extend(_near_miss_hints(promotion, refusal, ctx))
                continue
        result = _apply(promotion, benefit, state, given.get(pid, 0), ctx)
        if isinstance(result, NotApplied):   # its own threshold (always the first benefit) refused it
            refused.add(pid)
            failed.append(result)
            hints.extend(_near_miss_hints(promotion, result, ctx))
            continue
        if result is not None:
            done, state, next_tier = result
            applied.append(done)
            given[pid] = given.get(pid, 0) + to_units(done.amount, ctx.currency)
            if next_tier is not None:
                hints.extend(_next_tier_hint(promotion, next_tier, ctx))
        elif benefit.stage is Stage.SHIPPING:
            why = _nothing_on_shipping(promotion, benefit, state, ctx)
            if why is not None:
                on_shipping[pid] = why
        if benefit is promotion.benefits[-1] and pid not in given:
            lines_too = any(b.stage not in (Stage.SHIPPING, Stage.GRANT) for b in promotion.benefits)
            failed.append(on_shipping[pid] if pid in on_shipping and not lines_too
                          else _refuse(promotion, Reason.NOTHING_LEFT_TO_DISCOUNT))
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
        elif name == "eligible_subtotal":
            left = state.lines
            values[name] = from_units(sum(left[line.id] for line in targeted), ctx.currency)
        else:
            values[name] = Decimal(sum(line.quantity for line in targeted))
    return values


def _lines(p: Promotion, b: Benefit, state: _State, ctx: _Context) -> Lines:
    """The lines benefit `b` of `p` discounts, as they stand: the promotion's targeted lines, or the
    cart's lines that the benefit's own targets match. Their ids and units are worked out once per
    evaluation."""
    key = (p.id, b.index)
    shape = ctx.shapes.get(key)
    if shape is None:
        targeted = ctx.targeted[p.id] if b.targets is None else \
            tuple(line for line in ctx.cart.lines if b.targets.matches(line))
        shape = ctx.shapes[key] = (tuple(line.id for line in targeted), tuple(line.quantity for line in targeted))
    ids, quantities = shape
    left = state.lines
    return Lines(ids, quantities, tuple([left[i] for i in ids]))


def _eligibility(p: Promotion, state: _State, ctx: _Context) -> NotApplied | None:
    """`p`'s conditions, measured on the cart as it stands before its first benefit."""
    passed, leaves = p.condition.measure(_values(p, state, ctx) if p.condition.variables else {})
    return None if passed else _condition_failure(p, leaves, ctx)


_Given = tuple[Applied, "_State", "NextTier | None"]


def _apply(p: Promotion, b: Benefit, state: _State, given: int, ctx: _Context) -> NotApplied | _Given | None:
    """One benefit of `p` on the cart as it stands: what it gives, refused by its own threshold, or
    None when it would give nothing."""
    if b.stage is Stage.GRANT:  # balance for later orders: this order's lines and shipping are untouched
        assert b.amount is not None
        units, capped_by = _capped(p, b, to_units(b.amount, ctx.currency), given, ctx)
        if units == 0:
            return None
        return _applied(p, b, from_units(units, ctx.currency), (), None, capped_by), state, None
    if b.stage is Stage.SHIPPING:
        return _apply_shipping(p, b, state, given, ctx)
    calculate = KINDS[b.type].calculate
    assert calculate is not None
    result = calculate(b, _lines(p, b, state, ctx), 0, ctx.currency)
    if isinstance(result, Short):
        return _short(p, result.variable, result.measured, result.required, "greater_than_or_equal_to", ctx)
    amount, capped_by = _capped(p, b, round_units(result.total(), result.denominator, ctx.ruleset.rounding), given,
                                ctx)
    if amount == 0:
        return None
    return _split(p, b, result, amount, capped_by, state, ctx) + (result.next_tier,)


def _applied(p: Promotion, b: Benefit, amount: Decimal, shares: tuple[LineShare, ...], shipping: Decimal | None,
             capped_by: tuple[str, ...], shipments: tuple[ShipmentShare, ...] | None = None) -> Applied:
    """The trace entry of one benefit given; `benefit` names its place only when the promotion has several."""
    return Applied(p.id, p.name, b.stage.value, b.type, p.code, amount, shares, shipping, capped_by, p.exclusive,
                   p.priority, b.index if len(p.benefits) > 1 else None, shipments)


def _capped(p: Promotion, b: Benefit, amount: int, given: int, ctx: _Context) -> tuple[int, tuple[str, ...]]:
    """Apply the benefit's cap, then what is left of the promotion's per-order cap and of its budget
    after its earlier benefits on this order (`given`, minor units), in that order."""
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
            amount = max(cap, 0)
            capped_by.append(name if name.startswith("limits.") else _benefit_path(p, b, name))
    return amount, tuple(capped_by)


def _benefit_path(p: Promotion, b: Benefit, name: str) -> str:
    return f"benefits[{b.index}].{name}"


def _split(p: Promotion, b: Benefit, result: Exact, amount: int, capped_by: tuple[str, ...], state: _State,
           ctx: _Context) -> tuple[Applied, _State]:
    """Put the rounded amount (minor units) on lines (largest remainder), and check nothing goes below zero."""
    currency = ctx.currency
    money = from_units(amount, currency)
    if result.shipping:
        raise InvariantError(f"{p.id}: a line benefit took {result.shipping} off shipping")
    ids = result.ids
    parts = allocate_units(amount, result.numerators, result.denominator, ids)
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


def _apply_shipping(p: Promotion, b: Benefit, state: _State, given: int, ctx: _Context) -> _Given | None:
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


def _threshold_refusal(p: Promotion, reason: Reason, thresholds: tuple[Threshold, ...],
                       failed_conditions: tuple[FailedCondition, ...], ctx: _Context) -> NotApplied:
    first = thresholds[0]
    return _refuse(p, reason, required=_shown(first, first.required, ctx), measured=_shown(first, first.measured, ctx),
                   shortfall=_shown(first, first.shortfall, ctx), thresholds=thresholds,
                   failed_conditions=failed_conditions)


def _near_miss_hints(p: Promotion, refusal: NotApplied, ctx: _Context) -> list[Hint]:
    if refusal.reason not in (Reason.MIN_SPEND_NOT_MET, Reason.MIN_QUANTITY_NOT_MET):
        return []
    return [_hint(p, t.variable, t.shortfall, ctx, next_tier=False) for t in refusal.thresholds]


def _next_tier_hint(p: Promotion, next_tier: NextTier, ctx: _Context) -> list[Hint]:
    shortfall = next_tier.required - next_tier.measured
    return [_hint(p, next_tier.variable, shortfall, ctx, next_tier=True)]


def _hint(p: Promotion, variable: str, shortfall: Decimal, ctx: _Context, next_tier: bool) -> Hint:
    if variable in QUANTITY_VARIABLES:
        kind = "next_tier_quantity" if next_tier else "quantity"
        shown = f"{shortfall:f}"
        text = hint(kind, shortfall=shown, plural="" if shortfall == 1 else "s", name=p.name)
        return Hint(p.id, "quantity", shortfall, text)
    kind = "next_tier_spend" if next_tier else ("cart_spend" if variable == "cart_subtotal" else "spend")
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
