"""Why a promotion did not apply, and how close it came: the reason from its failed conditions or its
own threshold, and the hints. Builds `NotApplied` and `Hint` records; decides nothing."""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

from .benefits import Missing, NextTier
from .conditions import LeafResult
from .context import Context, State, either, refuse, targeted_shipments
from .model import Benefit, Promotion, Stage, Targets
from .money import quantum, to_units
from .reasons import Reason, hint
from .trace import FailedCondition, Hint, HintItem, NotApplied, Threshold
from .variables import MONEY_VARIABLES, QUANTITY_VARIABLES, REGION_VARIABLES, SPEND_VARIABLES


def lost_every_line(p: Promotion, winners: tuple[str, ...], ctx: Context) -> NotApplied:
    names = ", ".join(ctx.ruleset.promotions[w].name for w in winners)
    return refuse(p, Reason.NOT_BEST_ON_ANY_LINE, winner=names, stacking_class=p.stacking_class, lost_to=winners)


def nothing_on_shipping(p: Promotion, b: Benefit, state: State, ctx: Context) -> NotApplied | None:
    """Why shipping benefit `b` takes nothing off, when shipping is why: no shipment it targets, or
    what they have left is already nothing (or, for a fixed price, at or below the price). None
    when the cause is elsewhere (a cap, or an amount that rounds to nothing)."""
    methods = sorted(b.shipping_methods) if b.shipping_methods is not None else None
    by = "" if methods is None else " by " + either(methods)
    targeted = targeted_shipments(b, ctx)
    if not targeted:
        return refuse(p, Reason.NO_ELIGIBLE_SHIPMENT, shipments="shipments" + by)
    left = [state.shipping[i] for i in targeted]
    if not any(left):
        return refuse(p, Reason.NOTHING_LEFT_ON_SHIPPING, shipping="shipping" + by, cost="nothing")
    if b.type == "shipping_fixed_price" and b.price is not None and \
            all(units <= to_units(b.price, ctx.currency) for units in left):
        return refuse(p, Reason.NOTHING_LEFT_ON_SHIPPING, shipping="shipping" + by,
                       cost=f"{ctx.money(b.price)} or less")
    return None


def gives_nothing_on_shipping(p: Promotion, state: State, ctx: Context) -> bool:
    """A promotion whose only benefit is a shipping benefit that would take nothing off the cart as it
    stands: meeting its terms changes nothing, so no hint tells the customer to."""
    return len(p.benefits) == 1 and p.benefits[0].stage is Stage.SHIPPING and \
        nothing_on_shipping(p, p.benefits[0], state, ctx) is not None


# --- why not, and how close ----------------------------------------------------------------------

def condition_failure(p: Promotion, leaves: tuple[LeafResult, ...], ctx: Context) -> NotApplied:
    """The reason a failed condition tree gets: the first row of CONDITION_REASONS whose failed leaves,
    made to pass together with every row above it, would make the whole tree pass; else
    `condition_failed`. Every failed leaf is listed whatever the reason."""
    outcomes = [leaf.passed for leaf in leaves]
    failed = set(p.condition.blame(outcomes))
    thresholds = {leaf.index for leaf in p.condition.threshold_leaves()}
    failed_conditions = tuple(FailedCondition(leaves[i].variable, leaves[i].operator, _plain_value(leaves[i].expected),
                                              _measured_value(leaves[i])) for i in sorted(failed))
    forced: set[int] = set()
    for takes, explain in CONDITION_REASONS:
        chosen = {i for i in failed if takes(leaves[i], i in thresholds)}
        forced |= chosen
        if chosen and p.condition.passes_if([ok or i in forced for i, ok in enumerate(outcomes)]):
            return explain(p, [leaves[i] for i in sorted(chosen)], failed_conditions, ctx)
    return refuse(p, Reason.CONDITION_FAILED, failed_conditions=failed_conditions)


def _near_miss(p: Promotion, chosen: list[LeafResult], failed: tuple[FailedCondition, ...], ctx: Context) -> NotApplied:
    measured = tuple(measured_threshold(leaf, ctx) for leaf in chosen)
    spend = any(t.variable in SPEND_VARIABLES for t in measured)
    return _threshold_refusal(p, Reason.MIN_SPEND_NOT_MET if spend else Reason.MIN_QUANTITY_NOT_MET, measured,
                              failed, ctx)


def _region(p: Promotion, chosen: list[LeafResult], failed: tuple[FailedCondition, ...], ctx: Context) -> NotApplied:
    return refuse(p, Reason.REGION_NOT_ELIGIBLE, region=ctx.account.region, failed_conditions=failed)


# Reasons for a failed condition tree, in order: (which failed leaves the row takes, given the leaf and
# whether it is a threshold; how it explains them). A near miss on spend or quantity beats a region,
# which beats `condition_failed`. A new reason is one row, at the place it should win.
CONDITION_REASONS: tuple[tuple[Callable[[LeafResult, bool], bool], Callable[..., NotApplied]], ...] = (
    (lambda leaf, threshold: threshold, _near_miss),
    (lambda leaf, threshold: leaf.variable in REGION_VARIABLES, _region),
)


def _measured_value(leaf: LeafResult) -> Any:
    """The measured value in the form the rule file writes it: counts as whole numbers, money as text."""
    if isinstance(leaf.actual, Decimal) and leaf.variable not in MONEY_VARIABLES:
        return int(leaf.actual)
    return _plain_value(leaf.actual)


def _plain_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


def measured_threshold(leaf: LeafResult, ctx: Context) -> Threshold:
    measured, required = Decimal(leaf.actual), Decimal(leaf.expected)
    step = quantum(ctx.currency) if leaf.variable in SPEND_VARIABLES else Decimal(1)
    # "greater than" needs one step more than the threshold: one minor unit of money, or one unit.
    shortfall = required - measured + (step if leaf.operator == "greater_than" else 0)
    if leaf.variable in SPEND_VARIABLES:
        measured, required, shortfall = (v.quantize(step) for v in (measured, required, shortfall))
    return Threshold(leaf.variable, measured, required, shortfall)


def short_refusal(p: Promotion, variable: str, measured: Decimal, required: Decimal, operator: str,
           ctx: Context) -> NotApplied:
    leaf = LeafResult(variable, operator, required, measured, False)
    threshold = measured_threshold(leaf, ctx)
    reason = Reason.MIN_SPEND_NOT_MET if variable in SPEND_VARIABLES else Reason.MIN_QUANTITY_NOT_MET
    return _threshold_refusal(p, reason, (threshold,), (), ctx)


def _shown(t: Threshold, value: Decimal, ctx: Context) -> str:
    return ctx.money(value) if t.variable in SPEND_VARIABLES else f"{value:f}"


# What each threshold's variable measures, in the refusal's words ("needs ¥3,000 of eligible items").
MEASURES = {"eligible_subtotal": "of eligible items", "cart_subtotal": "in the cart",
            "order_total": "as its order total with shipping", "eligible_quantity": "eligible items",
            "cart_quantity": "items in the cart"}


def _threshold_refusal(p: Promotion, reason: Reason, thresholds: tuple[Threshold, ...],
                       failed_conditions: tuple[FailedCondition, ...], ctx: Context) -> NotApplied:
    first = thresholds[0]
    return refuse(p, reason, what=MEASURES[first.variable], required=_shown(first, first.required, ctx),
                   measured=_shown(first, first.measured, ctx),
                   shortfall=_shown(first, first.shortfall, ctx), thresholds=thresholds,
                   failed_conditions=failed_conditions)


def missing_refusal(p: Promotion, b: Benefit, missing: Missing) -> NotApplied:
    """Too few of the units a buy-X-get-Y benefit gives are in the cart (a free gift not added). The
    shortfall is listed, and hinted, only when those units alone are missing: the units bought are
    there, so adding that many of the selection makes the promotion apply."""
    assert b.targets is not None   # without targets of its own, what it gives is what it counts (Short)
    short = missing.required - missing.measured
    thresholds = (Threshold("get_quantity", Decimal(missing.measured), Decimal(missing.required), Decimal(short)),) \
        if missing.hint else ()
    return refuse(p, Reason.GET_ITEMS_MISSING, what=_selection_text(b.targets), required=missing.required,
                   measured=missing.measured, thresholds=thresholds)


def _selection_text(t: Targets) -> str:
    """A benefit's own selection in words, for messages: "SKU TEE-W or category t-shirts"."""
    if t.include_all:
        return "eligible items"
    parts = [f"{label} {', '.join(sorted(names))}" for label, names in
             (("SKU", t.skus), ("category", t.categories), ("brand", t.brands)) if names]
    return " or ".join(parts)


def item_to_add(t: Targets) -> HintItem | None:
    """One thing a customer can add that the selection takes: its first SKU, else category, else
    brand, not excluded by name (None for `include: all`)."""
    for kind, names, excluded in (("sku", t.skus, t.exclude_skus), ("category", t.categories, t.exclude_categories),
                                  ("brand", t.brands, t.exclude_brands)):
        for name in sorted(names - excluded):
            return HintItem(kind, name)
    return None


ITEM_WORDS = {"sku": "SKU {name}", "category": "item from {name}", "brand": "item of brand {name}"}


def next_tier_hint(p: Promotion, next_tier: NextTier, ctx: Context) -> list[Hint]:
    shortfall = next_tier.required - next_tier.measured
    return [threshold_hint(p, next_tier.variable, shortfall, ctx, next_tier=True)]


def threshold_hint(p: Promotion, variable: str, shortfall: Decimal, ctx: Context, next_tier: bool) -> Hint:
    if variable in QUANTITY_VARIABLES:
        kind = "next_tier_quantity" if next_tier else "quantity"
        shown = f"{shortfall:f}"
        text = hint(kind, shortfall=shown, plural="" if shortfall == 1 else "s", name=p.name)
        return Hint(p.id, "quantity", shortfall, text)
    kind = "next_tier_spend" if next_tier else ("cart_spend" if variable in ("cart_subtotal", "order_total")
                                                 else "spend")
    return Hint(p.id, "spend", shortfall, hint(kind, shortfall=ctx.money(shortfall), name=p.name))


