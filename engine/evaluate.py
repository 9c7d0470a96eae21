"""evaluate(): a cart and an account, against a rule set, into a Trace. Pure: no clock, no files,
no mutation of its inputs; the same inputs give the same trace, byte for byte.

The order of work, which the README states for users:
1. Check the inputs (a bad cart, account, code list or `now` raises InputError; nothing is decided).
2. Scope: a promotion is considered when its code was entered, or it is automatic, for the cart's
   currency, within its window, its required region, channel, tier, segments and first order match,
   and it targets at least one line; the rest are only counted, by reason. The rule set's candidate
   index (engine/index.py) finds them without a scan.
3. Gates that do not depend on other promotions: status, currency, window, usage limits, budget,
   targeted lines.
4. Stages, in order: item, order, shipping; within a stage, priority (higher first), then id.
   A promotion measures its conditions on the cart as earlier promotions left it, before its first
   benefit; each benefit, in its own stage, is computed exactly, rounded once, capped, and split over
   its lines. A promotion with several benefits is one promotion: one eligibility, one use.
   A shipping benefit works on the shipments its `shipping_methods` name (all when it names none):
   per shipment, or once across them for `shipping_amount_off`.
5. Combination: every maximal set of promotions that may combine (classes and `combines_with`;
   without them, all non-exclusive promotions together and each exclusive one alone) is run; the
   rule set's `exclusive_resolution` policy (RESOLUTIONS) picks the winner, and every promotion
   outside it that applied in its own set lost to it, with the criterion that decided.
6. Pay: the payment waterfall (engine/tenders.py) pays what is left, then the trace is assembled.
   Why each refused promotion did not apply, and the hints, are worked out when the trace's
   `not_applied` or `hints` is first read (to_dict / to_json read them): the same bytes either way.

This module is the pipeline, top to bottom; deciding is engine/decide.py, the explanation of
failures and hints engine/explain.py, the trace's records engine/assemble.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

from .assemble import priced, trace
from .context import Context, evaluation_order
from .decide import gate, resolve
from .errors import InputError, Problem
from .index import Scope, scope_values
from .inputs import parse_account, parse_cart, parse_codes, parse_now, parse_usage
from .model import Account, Cart, Line, Promotion, RuleSet, Usage
from .reasons import Reason, message
from .tenders import pay
from .text import normalise_code, text_problem
from .trace import CodeResult, Inputs, NotApplied, Trace

MAX_PREVIEW = 100   # promotions one evaluation may preview


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
    return ruleset.index.scope(ruleset.promotions, ruleset.codes, cart.lines, cart.currency,
                               scope_values(cart, account), entered_codes, now)


def evaluate_with(find_scope: ScopeFinder, ruleset: RuleSet, cart: Mapping[str, Any], account: Mapping[str, Any], *,
                  codes: Iterable[str] = (), now: datetime | str, usage: Mapping[str, Any] | None = None,
                  preview: Iterable[str] = ()) -> Trace:
    """`evaluate`, with the scope step given: the tests pass a plain scan of every promotion and line
    (tests/oracle.py) and check that it gives the same trace as the index."""
    checked = check_inputs(ruleset, cart, account, codes=codes, now=now, usage=usage, preview=preview)
    scope = find_scope(ruleset, checked.cart, checked.account, checked.entered_codes, checked.now)
    ctx = checked.context(ruleset, scope.targeted)
    live, gated = gate_all(scope.considered, ctx)
    outcome = resolve(live, ctx)
    refused = sorted(gated + outcome.not_applied, key=lambda n: evaluation_order(ruleset.promotions[n.promotion]))
    records = priced(ctx, outcome)
    tenders = pay(checked.cart, checked.account, checked.now, records.line_totals(), records.shipment_totals(),
                  ruleset.locale)
    inputs = Inputs(checked.cart, checked.account, checked.entered, tuple(sorted(checked.usage.items())),
                    tuple(sorted(checked.previewed)))
    return trace(ctx, records, checked.codes, outcome, refused, scope.out_of_scope, tenders, inputs)


@dataclass(frozen=True)
class Checked:
    """evaluate()'s inputs, checked (step 1): what every later step works from."""

    cart: Cart
    account: Account
    now: datetime
    entered: tuple[str, ...]             # the codes as entered
    usage: Mapping[str, Usage]
    previewed: frozenset[str]
    codes: tuple[CodeResult, ...]        # each entered code, matched or unknown
    entered_codes: set[str]              # normalised

    def context(self, ruleset: RuleSet, targeted: Mapping[str, tuple[Line, ...]]) -> Context:
        return Context.build(ruleset, self.cart, self.account, self.now, self.usage, self.previewed, targeted)


def check_inputs(ruleset: RuleSet, cart: Mapping[str, Any], account: Mapping[str, Any], *, codes: Iterable[str] = (),
                 now: datetime | str, usage: Mapping[str, Any] | None = None, preview: Iterable[str] = ()) -> Checked:
    """Step 1: every input checked against the rule set (InputError lists what is wrong; nothing is decided)."""
    when = parse_now(now)
    the_cart = parse_cart(cart, ruleset)
    the_account = parse_account(account, ruleset)
    entered = parse_codes(codes)
    used = parse_usage(usage, ruleset)
    previewed = _parse_preview(preview, ruleset)
    code_results, entered_codes = _match_codes(ruleset, entered)
    return Checked(the_cart, the_account, when, entered, used, previewed, code_results, entered_codes)


def gate_all(considered: Iterable[Promotion], ctx: Context) -> tuple[list[Promotion], list[NotApplied]]:
    """Step 3: the considered promotions that pass every gate, and the refusals of the others."""
    live: list[Promotion] = []
    gated: list[NotApplied] = []
    for promotion in considered:
        refusal = gate(promotion, ctx)
        if refusal is None:
            live.append(promotion)
        else:
            gated.append(refusal)
    return live, gated



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
