"""The baseline: the same promotions evaluated with business-rules' own engine, the obvious way.

For each promotion: skip it if it is not active, its code was not entered or `now` is outside its
window; for each line, `check_conditions_recursively` on its targets written as a business-rules tree
over line variables; then `check_conditions_recursively` on its eligibility tree over the cart and
account variables; then a naive discount on the targeted lines. No compounding, no exclusivity, no
trace: this is the least a business-rules evaluation has to do, so the comparison flatters it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from business_rules.engine import check_conditions_recursively
from business_rules.variables import BaseVariables, select_multiple_rule_variable

from engine.variables import VARIABLE_TYPES, WEEKDAYS, Facts, PromotionVariables

SELECTORS = {"categories": "line_category", "skus": "line_sku", "brands": "line_brand", "sellers": "line_seller",
             "product_types": "line_product_type"}


class LineVariables(BaseVariables):
    """One cart line, for the targets tree."""

    def __init__(self, line: dict):
        self.line = line

    @select_multiple_rule_variable(label="category")
    def line_category(self):
        return [self.line["category"]]

    @select_multiple_rule_variable(label="sku")
    def line_sku(self):
        return [self.line["sku"]]

    @select_multiple_rule_variable(label="brand")
    def line_brand(self):
        return [self.line["brand"]] if "brand" in self.line else []

    @select_multiple_rule_variable(label="seller")
    def line_seller(self):
        return [self.line["seller"]]

    @select_multiple_rule_variable(label="product type")
    def line_product_type(self):
        return [self.line["product_type"]]


def targets_tree(targets: dict) -> dict | None:
    terms = []
    if targets["include"] != "all":
        terms.append({"any": [{"name": SELECTORS[key], "operator": "shares_at_least_one_element_with", "value": values}
                              for key, values in targets["include"].items()]})
    for key, values in targets.get("exclude", {}).items():
        terms.append({"name": SELECTORS[key], "operator": "shares_no_elements_with", "value": values})
    return {"all": terms} if terms else None


def eligibility_tree(node: dict) -> dict:
    """Numbers as Decimal and a value on every leaf, as business-rules wants them."""
    for key in ("all", "any"):
        if key in node:
            return {key: [eligibility_tree(child) for child in node[key]]}
    value = node.get("value")
    if VARIABLE_TYPES[node["name"]] == "numeric" and value is not None:
        value = Decimal(str(value))
    return {"name": node["name"], "operator": node["operator"], "value": value}


@dataclass(frozen=True)
class Prepared:
    doc: dict
    targets: dict | None
    eligibility: dict | None
    starts: datetime | None
    ends: datetime | None


def prepare(docs: list[dict]) -> list[Prepared]:
    """Done once, outside the timings: trees in business-rules' form, windows parsed."""
    out = []
    for doc in docs:
        window = doc.get("window", {})
        out.append(Prepared(doc, targets_tree(doc["targets"]),
                            eligibility_tree(doc["eligibility"]) if "eligibility" in doc else None,
                            datetime.fromisoformat(window["starts"]) if "starts" in window else None,
                            datetime.fromisoformat(window["ends"]) if "ends" in window else None))
    return out


def _discount(reward: dict, lines: list[dict], shipping: Decimal) -> Decimal:
    subtotal = sum(Decimal(line["unit_price"]) * line["quantity"] for line in lines)
    units = sum(line["quantity"] for line in lines)
    kind = reward["type"]
    if kind in ("percent_off", "tiered", "buy_x_get_y"):
        return subtotal * Decimal(str(reward.get("percent", 10))) / 100
    if kind == "amount_off":
        amount = Decimal(reward["amount"])
        if reward["scope"] == "per_unit":
            return amount * units
        return min(amount * (len(lines) if reward["scope"] == "per_line" else 1), subtotal)
    if kind == "fixed_price":
        return max(Decimal(0), subtotal - Decimal(reward["price"]))
    if kind == "shipping_percent_off":
        return shipping * Decimal(str(reward["percent"])) / 100
    if kind == "shipping_amount_off":
        return min(shipping, Decimal(reward["amount"]))
    return shipping


def evaluate_with_business_rules(promotions: list[Prepared], cart: dict, account: dict, codes: list[str],
                                 now: datetime) -> Decimal:
    entered = {c.strip().upper() for c in codes}
    local = now.astimezone(ZoneInfo(account["time_zone"]))
    lines = cart["lines"]
    shipping = Decimal(cart["shipping"]["price"]) if "shipping" in cart else Decimal(0)
    cart_subtotal = sum(Decimal(line["unit_price"]) * line["quantity"] for line in lines)
    cart_quantity = sum(line["quantity"] for line in lines)
    line_variables = [LineVariables(line) for line in lines]
    total = Decimal(0)
    for p in promotions:
        doc = p.doc
        if doc["status"] != "active" or ("code" in doc and doc["code"].upper() not in entered):
            continue
        if (p.starts is not None and now < p.starts) or (p.ends is not None and now >= p.ends):
            continue
        targeted = [line for line, variables in zip(lines, line_variables)
                    if p.targets is None or check_conditions_recursively(p.targets, variables)]
        if not targeted:
            continue
        if p.eligibility is not None:
            facts = Facts(region=account["region"], customer_id=account["id"], customer_tier=account["tier"],
                          customer_segments=tuple(account.get("segments", ())), order_count=account["order_count"],
                          sales_channel=cart["channel"],
                          shipping_method=cart["shipping"]["method"] if "shipping" in cart else "",
                          cart_subtotal=cart_subtotal, order_total=cart_subtotal + shipping,
                          cart_quantity=cart_quantity,
                          eligible_subtotal=sum(Decimal(line["unit_price"]) * line["quantity"] for line in targeted),
                          eligible_quantity=sum(line["quantity"] for line in targeted),
                          local_date=local.date().isoformat(), local_weekday=WEEKDAYS[local.weekday()],
                          local_hour=local.hour)
            if not check_conditions_recursively(p.eligibility, PromotionVariables(facts)):
                continue
        total += _discount(doc["benefits"][0], targeted, shipping)
    return total


