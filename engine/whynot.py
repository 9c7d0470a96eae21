"""`promo explain`: the whole chain of checks for one promotion on one cart, in the order evaluate()
makes them, for a marketer asking "why did this customer not get X?".

`explain_promotion()` evaluates the cart as usual (the verdict and reason are the trace's own), then
walks the one promotion through every step: the scope (its code, currency, window, what it requires of
the account and channel, the lines its targets select), the gates (status, usage limits, budget), each
condition leaf with expected and actual, each threshold with its shortfall, each benefit, and the
combination decision that beat it. Every step is worked out, also those after the first that fails
(`reached: false`), so one run lists everything that stands between the promotion and the cart; and
`fixes` says, for each failing step, what would change the verdict.

Where a step is measured matters: conditions read the cart as earlier promotions left it. A promotion
that ran is measured where `resolve` ran it (`decide.state_before`); one that was ruled out before it
could run (out of scope, or refused by a gate) is measured on the cart before any discount, and says so.
Pure, like evaluate(): no clock, no files.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Mapping

from .context import Context, State, initial_state, refuse
from .decide import GATES, _values, state_before, try_benefits
from .errors import InputError, InvariantError, Problem
from .evaluate import Checked, check_inputs, evaluate, gate_all, indexed_scope
from .explain import ITEM_WORDS, condition_failure, item_to_add, measured_threshold
from .index import SCOPE_ORDER, SCOPE_VARIABLES, scope_requirements, scope_values
from .model import Promotion, RuleSet
from .reasons import Reason, message
from .trace import Applied, Hint, NotApplied, Trace, _plain
from .variables import SPEND_VARIABLES

STAGES = ("scope", "gate", "conditions", "benefit", "combination")   # a step's stage, in pipeline order

# What each scope variable is called in a message.
FACT_WORDS = {"region": "the account's region", "sales_channel": "the cart's sales channel",
              "customer_tier": "the account's tier", "customer_segments": "the account's segments",
              "first_order": "whether this is the account's first order"}


@dataclass(frozen=True)
class Step:
    """One check the promotion went through. `reached`: whether evaluate() got this far with it (after the
    first failing step, the rest are worked out all the same, so that every problem is listed)."""

    stage: str            # one of STAGES
    check: str            # what was checked: code, currency, window, region, targets, status, a leaf...
    passed: bool
    reached: bool
    message: str
    reason: str | None = None     # the reason code this step gives when it fails
    expected: Any = None
    actual: Any = None
    shortfall: Decimal | None = None


@dataclass(frozen=True)
class Explanation:
    promotion: str
    name: str
    applies: bool
    reason: str | None        # the trace's reason code, or the scope reason; None when it applies
    message: str
    amount: Decimal | None    # what it took off (or granted) when it applies
    currency: str
    steps: tuple[Step, ...]
    hints: tuple[Hint, ...]   # the trace's hints for it
    fixes: tuple[str, ...]    # what would make it apply, one per failing step
    measured_on: str          # "the cart as earlier promotions left it" or "the cart before any discount"

    def to_dict(self) -> dict[str, Any]:
        out = {"promotion": self.promotion, "name": self.name, "applies": self.applies, "reason": self.reason,
               "message": self.message, "currency": self.currency, "measured_on": self.measured_on,
               "steps": _plain(self.steps), "hints": _plain(self.hints), "fixes": list(self.fixes)}
        if self.amount is not None:
            out["amount"] = f"{self.amount:f}"
        return out


def explain_promotion(ruleset: RuleSet, cart: Mapping[str, Any], account: Mapping[str, Any], promotion: str, *,
                      codes: Iterable[str] = (), now: Any, usage: Mapping[str, Any] | None = None,
                      preview: Iterable[str] = ()) -> Explanation:
    """Why `promotion` applies or not to this cart and account at `now` with these codes. InputError for an
    unknown promotion id or any input evaluate() refuses."""
    p = ruleset.promotions.get(promotion) if isinstance(promotion, str) else None
    if p is None:
        raise InputError([Problem("promotion", 0, 0, "$", f"no promotion with id {promotion!r} in this rule set")],
                         "promotion")
    codes = tuple(codes) if not isinstance(codes, (str, bytes)) else codes
    trace = evaluate(ruleset, cart, account, codes=codes, now=now, usage=usage, preview=preview)
    checked = check_inputs(ruleset, cart, account, codes=codes, now=now, usage=usage, preview=preview)
    scope = indexed_scope(ruleset, checked.cart, checked.account, checked.entered_codes, checked.now)
    targeted = dict(scope.targeted)
    matched = tuple(line for line in checked.cart.lines if p.targets.matches(line))
    targeted.setdefault(p.id, matched)
    ctx = checked.context(ruleset, targeted)
    live, _ = gate_all(scope.considered, ctx)
    ran = any(q is p for q in live)
    state = state_before(p, live, ctx) if ran else initial_state(ctx)
    steps = _scope_steps(p, checked, ctx, matched) + _gate_steps(p, ctx, matched)
    steps += _condition_steps(p, state, ctx)
    conditions_pass = all(s.passed for s in steps if s.check == "conditions")
    applied = tuple(a for a in trace.applied if a.promotion == p.id)
    granted = tuple(g for g in trace.grants if g.promotion == p.id)
    listed = next((n for n in trace.not_applied if n.promotion == p.id), None)
    steps += _benefit_steps(p, state, ctx, applied, granted, conditions_pass and bool(matched))
    if listed is not None and listed.reason in (Reason.LOST_TO_EXCLUSIVE, Reason.NOT_BEST_ON_ANY_LINE):
        steps.append(Step("combination", "combination", False, True, listed.message, listed.reason.value,
                          actual=list(listed.lost_to)))
    elif applied or granted:
        others = sorted({a.promotion for a in trace.applied if a.promotion != p.id} |
                        {g.promotion for g in trace.grants if g.promotion != p.id})
        steps.append(Step("combination", "combination", True, True,
                          f"Applied in the winning set, with {', '.join(others)}." if others else
                          "Applied in the winning set, alone.", actual=others))
    steps = _reached(steps, ran and listed is None and not (applied or granted))
    applies = bool(applied or granted)
    reason, text = _verdict(p, trace, listed, steps, applies)
    amount = sum((a.amount for a in applied), ctx.zero) + sum((g.amount for g in granted), ctx.zero) if applies else None
    hints = tuple(h for h in trace.hints if h.promotion == p.id)
    fixes = _fixes(p, steps, hints, ctx)
    measured_on = "the cart as earlier promotions left it" if ran else "the cart before any discount"
    return Explanation(p.id, p.name, applies, reason, text, amount, ctx.currency, tuple(steps), hints, fixes,
                       measured_on)


def similar_ids(ruleset: RuleSet, wanted: str) -> list[str]:
    """Up to three ids close to `wanted`, for "did you mean": those it begins, else the closest spellings."""
    ids = sorted(ruleset.promotions)
    return [i for i in ids if wanted and i.startswith(wanted)][:3] or difflib.get_close_matches(wanted, ids, n=3)


# --- the steps -----------------------------------------------------------------------------------

def _scope_steps(p: Promotion, checked: Checked, ctx: Context, matched: tuple) -> list[Step]:
    steps: list[Step] = []
    if p.code is not None:
        entered = any(p.id in ctx.ruleset.codes.get(code, ()) for code in checked.entered_codes)
        shown = "a single-use code from its pool" if p.code_pool else f"the code {p.code}"
        steps.append(Step("scope", "code", entered, True,
                          f"Needs {shown}: {'entered' if entered else 'not entered'}.", Reason.CODE_NOT_ENTERED.value,
                          expected=None if p.code_pool else p.code, actual=sorted(checked.entered_codes)))
        return steps      # an entered code's promotion is always considered: its gates say the rest
    steps.append(Step("scope", "code", True, True, "Automatic: needs no code."))
    steps += _currency_and_window(p, ctx, "scope")
    requirements = scope_requirements(p)
    for variable, req, value in zip(SCOPE_ORDER, requirements, scope_values(checked.cart, checked.account)):
        if req is None:
            continue
        ok = req.holds(value)
        expected = sorted(req.accepted, key=str) if req.accepted is not None else None
        wanted = ", ".join(map(str, expected)) if expected is not None else "what its conditions on it say"
        shown = list(value) if isinstance(value, tuple) else value
        steps.append(Step("scope", variable, ok, True,
                          f"Requires {FACT_WORDS[variable]} to be {wanted}; it is {_words(shown)}.",
                          SCOPE_VARIABLES[variable].value, expected=expected, actual=shown))
    steps.append(_targets_step(p, ctx, matched, "scope"))
    return steps


def _currency_and_window(p: Promotion, ctx: Context, stage: str) -> list[Step]:
    steps = []
    if p.currency is not None:
        steps.append(Step(stage, "currency", p.currency == ctx.currency, True,
                          f"For carts in {p.currency}; this cart is in {ctx.currency}.", Reason.CURRENCY_MISMATCH.value,
                          expected=p.currency, actual=ctx.currency))
    if p.starts is not None:
        ok = ctx.now >= p.starts
        steps.append(Step(stage, "starts", ok, True, f"Starts at {p.starts.isoformat()}; now is {ctx.now.isoformat()}.",
                          Reason.NOT_STARTED.value, expected=p.starts.isoformat(), actual=ctx.now.isoformat()))
    if p.ends is not None:
        ok = ctx.now < p.ends
        steps.append(Step(stage, "ends", ok, True, f"Ends at {p.ends.isoformat()}; now is {ctx.now.isoformat()}.",
                          Reason.EXPIRED.value, expected=p.ends.isoformat(), actual=ctx.now.isoformat()))
    return steps


def _targets_step(p: Promotion, ctx: Context, matched: tuple, stage: str) -> Step:
    ids = [line.id for line in matched]
    if matched:
        text = f"Its targets select {len(ids)} of the cart's {len(ctx.cart.lines)} lines: {', '.join(ids)}."
    else:
        kinds = sorted({line.category for line in ctx.cart.lines})
        text = (f"Its targets select none of the cart's {len(ctx.cart.lines)} lines (the cart has "
                f"{_words(kinds) if kinds else 'no lines'}).")
    return Step(stage, "targets", bool(matched), True, text, Reason.NO_ELIGIBLE_ITEMS.value, actual=ids)


def _gate_steps(p: Promotion, ctx: Context, matched: tuple) -> list[Step]:
    steps: list[Step] = []
    previewed = p.id in ctx.previewed
    status_ok = p.status == "active" or previewed
    steps.append(Step("gate", "status", status_ok, True,
                      f"Status {p.status}" + (" (previewed: treated as active)." if previewed and p.status != "active"
                                              else "."), Reason.NOT_ACTIVE.value, expected="active", actual=p.status))
    if p.code is not None:
        steps += _currency_and_window(p, ctx, "gate")
    for reason, check in GATES:
        if reason not in (Reason.USAGE_LIMIT_REACHED, Reason.BUDGET_EXHAUSTED):
            continue
        values = check(p, ctx)
        limit = "limits.budget" if reason is Reason.BUDGET_EXHAUSTED else "limits"
        if values is not None:
            steps.append(Step("gate", limit, False, True, message(reason, name=p.name, **values), reason.value))
    used = ctx.usage.get(p.id)
    limits = p.limits
    if not any(s.stage == "gate" and s.check.startswith("limits") for s in steps) and \
            (limits.total_uses is not None or limits.uses_per_customer is not None or limits.budget is not None):
        parts = []
        if limits.total_uses is not None:
            parts.append(f"{used.total_uses if used else 0} of {limits.total_uses} uses")
        if limits.uses_per_customer is not None:
            parts.append(f"{used.customer_uses if used else 0} of {limits.uses_per_customer} for this customer")
        if limits.budget is not None:
            spent = used.budget_spent if used else Decimal(0)
            parts.append(f"{ctx.money(spent)} of its {ctx.money(limits.budget)} budget spent")
        steps.append(Step("gate", "limits", True, True, "Within its limits: " + ", ".join(parts) + "."))
    if p.code is not None:
        steps.append(_targets_step(p, ctx, matched, "gate"))
    return steps


def _condition_steps(p: Promotion, state: State, ctx: Context) -> list[Step]:
    if not p.condition.variables:
        return [Step("conditions", "conditions", True, True, "No eligibility conditions.")]
    values = _values(p, state, ctx)
    leaves = p.condition.every_leaf(values)
    money = p.currency is None or p.currency == ctx.currency   # else its amounts are not the cart's money
    steps = [Step("conditions", _leaf_words(leaf, ctx, money), bool(leaf.passed), True,
                  f"Measured {_value(leaf.variable, leaf.actual, ctx, True)}: {'passes' if leaf.passed else 'fails'}.", expected=_shown(leaf.expected), actual=_shown(leaf.actual))
             for leaf in leaves]
    passed, _ = p.condition.measure(values)
    if passed:
        steps.append(Step("conditions", "conditions", True, True, "Its conditions hold."))
        return steps
    refusal = condition_failure(p, leaves, ctx)
    # Every threshold not reached, with its shortfall, whether or not it is what the reason names.
    reached = {leaf.index for leaf in p.condition.threshold_leaves() if leaves[leaf.index].passed}
    thresholds = [measured_threshold(leaves[leaf.index], ctx) for leaf in p.condition.threshold_leaves()
                  if leaf.index not in reached] if money else []
    for t in thresholds:
        steps.append(Step("conditions", f"threshold {t.variable}", False, True,
                          f"{t.variable}: needs {_amount(t.variable, t.required, ctx)}, has "
                          f"{_amount(t.variable, t.measured, ctx)}: {_amount(t.variable, t.shortfall, ctx)} short.",
                          refusal.reason.value, expected=t.required, actual=t.measured, shortfall=t.shortfall))
    steps.append(Step("conditions", "conditions", False, True, refusal.message, refusal.reason.value))
    return steps


def _benefit_steps(p: Promotion, state: State, ctx: Context, applied: tuple[Applied, ...], granted: tuple,
                   conditions_pass: bool) -> list[Step]:
    if applied or granted:
        steps = [Step("benefit", a.reward, True, True,
                      f"{a.reward} took {ctx.money(a.amount)} off" +
                      (f" ({', '.join(f'{s.line} {ctx.money(s.amount)}' for s in a.lines)})." if a.lines else "."),
                      actual=a.amount) for a in applied]
        steps += [Step("benefit", "grant_promotional_balance", True, True,
                       f"grants {ctx.money(g.amount)} of promotional balance, expiring {g.expires_at}.", actual=g.amount)
                  for g in granted]
        return steps
    if not conditions_pass:
        return []
    steps = []
    for b, result in try_benefits(p, state, ctx):
        if isinstance(result, Applied):
            steps.append(Step("benefit", b.type, True, True, f"{b.type} would take {ctx.money(result.amount)} off "
                              f"the cart as it stands.", actual=result.amount))
        elif isinstance(result, NotApplied):
            steps.append(Step("benefit", b.type, False, True, result.message, result.reason.value))
        else:
            reason, values = result
            steps.append(Step("benefit", b.type, False, True, refuse(p, reason, **values).message, reason.value))
    return steps


def _reached(steps: list[Step], ran: bool) -> list[Step]:
    """Mark the steps after the first that fails as not reached (evaluate() stops there), keeping
    benefits and combination reached when the promotion ran."""
    out, stopped = [], False
    for s in steps:
        if stopped and not (ran and s.stage in ("benefit", "combination")):
            s = Step(s.stage, s.check, s.passed, False, s.message, s.reason, s.expected, s.actual, s.shortfall)
        out.append(s)
        if not s.passed and s.stage in ("scope", "gate") or (s.check == "conditions" and not s.passed):
            stopped = True
    return out


def _verdict(p: Promotion, trace: Trace, listed: NotApplied | None, steps: list[Step],
             applies: bool) -> tuple[str | None, str]:
    if applies:
        return None, f"{p.name} applies."
    if listed is not None:
        return listed.reason.value, listed.message
    failing = next((s for s in steps if not s.passed and s.stage == "scope"), None)
    counted = dict(trace.out_of_scope)
    if failing is None or failing.reason is None or not counted.get(failing.reason):
        raise InvariantError(f"{p.id}: neither applied, listed nor accounted for out of scope")
    return failing.reason, failing.message


def _fixes(p: Promotion, steps: list[Step], hints: tuple[Hint, ...], ctx: Context) -> tuple[str, ...]:
    """What would make it apply: for each failing step, the change that would pass it."""
    fixes: list[str] = []
    thresholds = {s.check.split()[1] for s in steps if s.check.startswith("threshold ")}
    scoped = {s.check for s in steps if s.stage == "scope" and not s.passed}
    for s in steps:
        if s.passed:
            continue
        if s.check == "code":
            fixes.append("Enter its code." if p.code_pool else f"Enter the code {p.code}.")
        elif s.check == "currency":
            fixes.append(f"Only carts in {p.currency} can get it.")
        elif s.check == "starts":
            fixes.append(f"It starts at {s.expected}: wait, or change `window.starts`.")
        elif s.check == "ends":
            fixes.append(f"It ended at {s.expected}: change `window.ends` to run it again.")
        elif s.check in SCOPE_VARIABLES:
            fixes.append(_only_for(s.check, s.expected))
        elif s.check == "targets":
            item = item_to_add(p.targets)
            fixes.append(f"Add an {ITEM_WORDS[item.kind].format(name=item.name)}." if item is not None
                         else "Add an item its targets select.")
        elif s.check == "status":
            fixes.append("Set `status: active` (or preview it with --preview).")
        elif s.check.startswith("limits"):
            fixes.append(f"{s.message} Raise the limit in `limits` to let it apply again.")
        elif s.check.startswith("threshold"):
            hinted = next((h.message for h in hints if h.kind in ("spend", "quantity")), None)
            fixes.append(hinted or f"Add {_amount(s.check.split()[1], s.shortfall, ctx)} more to reach {s.check.split()[1]}.")
        elif s.stage == "conditions" and s.check != "conditions" and s.check.split()[0] not in thresholds | scoped:
            fixes.append(f"Make `{s.check}` hold: it measured {_words(s.actual)}.")
        elif s.stage in ("benefit", "combination"):
            fixes.append(s.message)
    return tuple(dict.fromkeys(fixes))


# --- words ---------------------------------------------------------------------------------------

def _only_for(variable: str, expected: list | None) -> str:
    """Who a promotion requiring something of `variable` is for, as a fix: the customer cannot change it."""
    if variable == "first_order":
        if expected == [True]:
            return "Only for a customer's first order."
        if expected == [False]:
            return "Only for customers who have ordered before."
    if expected is None:
        return f"Only for {FACT_WORDS[variable].replace('the account', 'accounts').replace('the cart', 'carts')} " \
               "its conditions accept."
    values = ", ".join(map(str, expected)) or "none"
    return {"region": f"Only for accounts in {values}.", "sales_channel": f"Only on the {values} channel.",
            "customer_tier": f"Only for customers of tier {values}."}.get(
        variable, f"Only for accounts whose {variable.replace('_', ' ')} is {values}.")


def _shown(value: Any) -> Any:
    if isinstance(value, (tuple, list, frozenset, set)):
        return sorted(map(str, value))
    return value


def _words(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]" if value else "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def _leaf_words(leaf: Any, ctx: Context, money: bool) -> str:
    """A leaf as the rule file says it: `eligible_subtotal greater_than_or_equal_to ¥3,000`."""
    if leaf.expected is None:
        return f"{leaf.variable} {leaf.operator}"
    return f"{leaf.variable} {leaf.operator} {_value(leaf.variable, leaf.expected, ctx, money)}"


def _value(variable: str, value: Any, ctx: Context, money: bool) -> str:
    """A leaf's expected or measured value in words: money formatted in the cart's currency."""
    if money and variable in SPEND_VARIABLES and isinstance(value, (Decimal, str, int)):
        try:
            return ctx.money(Decimal(value))
        except ArithmeticError:
            pass
    return _words(_shown(value))


def _amount(variable: str, value: Decimal, ctx: Context) -> str:
    return ctx.money(value) if variable in SPEND_VARIABLES else f"{value:f}"
