"""The straightforward path, kept only as a test oracle: scope found by scanning every promotion and
every line, with the required region / channel leaves decided by business-rules' own engine.

`evaluate_plainly` must give the same trace, byte for byte, as `engine.evaluate` (which uses the
rule set's candidate index); tests/test_index.py checks that over generated rule sets and carts.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any

from business_rules.engine import check_condition

from engine.conditions import AllOf, Leaf
from engine.evaluate import evaluate_with
from engine.index import Scope
from engine.model import Account, Cart, Promotion, RuleSet
from engine.variables import Facts, PromotionVariables


def _required(node: Any) -> list[Leaf]:
    if isinstance(node, Leaf):
        return [node]
    if isinstance(node, AllOf):
        return [leaf for child in node.children for leaf in _required(child)]
    return []


def _holds(leaf: Leaf, account: Account, cart: Cart) -> bool:
    facts = Facts(region=account.region, customer_id=account.id, customer_tier=account.tier,
                  customer_segments=account.segments,
                  order_count=account.order_count, sales_channel=cart.channel,
                  shipping_method="", cart_subtotal=Decimal(0),   # only region and channel leaves are asked
                  order_total=Decimal(0), cart_quantity=0, eligible_subtotal=Decimal(0), eligible_quantity=0, local_date="",
                  local_weekday="", local_hour=0)
    return bool(check_condition({"name": leaf.variable, "operator": leaf.operator, "value": leaf.value},
                                PromotionVariables(facts)))


def _out_of_scope_reason(p: Promotion, account: Account, cart: Cart, now: datetime) -> str | None:
    if p.currency is not None and p.currency != cart.currency:
        return "currency_mismatch"
    if p.starts is not None and now < p.starts:
        return "not_started"
    if p.ends is not None and now >= p.ends:
        return "expired"
    required = _required(p.condition.root)
    if any(leaf.variable == "region" and not _holds(leaf, account, cart) for leaf in required):
        return "region_not_eligible"
    if any(leaf.variable == "sales_channel" and not _holds(leaf, account, cart) for leaf in required):
        return "channel_not_eligible"
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
