"""The straightforward path, kept only as a test oracle: scope found by scanning every promotion and
every line, with the required region, channel, tier, segment and first-order conditions (a leaf, or an
`any` / `all` of leaves on that one variable, reached through `all`s only) decided by business-rules'
own engine on the account's and cart's real values.

`evaluate_plainly` must give the same trace, byte for byte, as `engine.evaluate` (which uses the
rule set's candidate index); tests/test_index.py checks that over generated rule sets and carts.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any

from business_rules.engine import check_conditions_recursively

from engine.conditions import AllOf, Leaf
from engine.evaluate import evaluate_with
from engine.index import Scope
from engine.model import Account, Cart, Promotion, RuleSet
from engine.variables import Facts, PromotionVariables


def _required(node: Any) -> list[Any]:
    """The nodes the tree cannot pass without: children of `all`s reached through `all`s, or the root."""
    if node is None:
        return []
    if isinstance(node, AllOf):
        return [n for child in node.children for n in _required(child)]
    return [node]


def _variables(node: Any) -> set[str]:
    if isinstance(node, Leaf):
        return {node.variable}
    return {v for child in node.children for v in _variables(child)}


def _tree(node: Any) -> dict:
    if isinstance(node, Leaf):
        return {"name": node.variable, "operator": node.operator, "value": node.value}
    return {"all" if isinstance(node, AllOf) else "any": [_tree(child) for child in node.children]}


def _holds(node: Any, account: Account, cart: Cart) -> bool:
    facts = Facts(region=account.region, customer_id=account.id, customer_tier=account.tier,
                  customer_segments=account.segments,
                  order_count=account.order_count, sales_channel=cart.channel,
                  shipping_method="", cart_subtotal=Decimal(0),   # only the facts of SCOPE below are asked
                  order_total=Decimal(0), cart_quantity=0, eligible_subtotal=Decimal(0), eligible_quantity=0, local_date="",
                  local_weekday="", local_hour=0)
    return bool(check_conditions_recursively(_tree(node), PromotionVariables(facts)))


# Each variable fixed for the evaluation that rules out an automatic promotion requiring it, in the
# order that names the reason (written out here, not imported from engine.index, so a change there
# must be made here too).
SCOPE = (("region", "region_not_eligible"), ("sales_channel", "channel_not_eligible"),
         ("customer_tier", "tier_not_eligible"), ("customer_segments", "segment_not_eligible"),
         ("first_order", "first_order_not_eligible"))


def _out_of_scope_reason(p: Promotion, account: Account, cart: Cart, now: datetime) -> str | None:
    if p.currency is not None and p.currency != cart.currency:
        return "currency_mismatch"
    if p.starts is not None and now < p.starts:
        return "not_started"
    if p.ends is not None and now >= p.ends:
        return "expired"
    required = _required(p.condition.root)
    for variable, reason in SCOPE:
        if any(_variables(node) == {variable} and not _holds(node, account, cart) for node in required):
            return reason
    return None


def scanned_scope(ruleset: RuleSet, cart: Cart, account: Account, entered_codes: set[str], now: datetime) -> Scope:
    considered: list[Promotion] = []
    targeted = {}
    out: Counter = Counter()
    for p in ruleset.promotions.values():
        lines = tuple(line for line in cart.lines if p.targets.matches(line))
        if p.code is not None:
            if p.code not in entered_codes:
                out["code_not_entered"] += 1
                continue
        else:
            reason = _out_of_scope_reason(p, account, cart, now)
            if reason is not None:
                out[reason] += 1
                continue
            if not lines:
                out["no_eligible_items"] += 1
                continue
        considered.append(p)
        targeted[p.id] = lines
    return Scope(tuple(considered), targeted, out)


def evaluate_plainly(ruleset: RuleSet, cart: Any, account: Any, **kwargs: Any):
    return evaluate_with(scanned_scope, ruleset, cart, account, **kwargs)
