"""The eligibility vocabulary: every variable a rule's condition tree may name.

Variables are business-rules `BaseVariables` methods, so `business_rules.export_rule_data()` lists
them and `business_rules.engine` can evaluate the same trees (the tests use it as an oracle).
Each method reads one field of `Facts`, the values measured for one promotion at the moment it is
evaluated. The schema's enums are checked against this class by `tests/test_schema_vocabulary.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from business_rules.variables import (BaseVariables, boolean_rule_variable, numeric_rule_variable,
                                      select_multiple_rule_variable, string_rule_variable)

# Operators rule authors may not use. `matches_regex` would let a rule file run an arbitrary
# regular expression on every cart: a denial-of-service door.
FORBIDDEN_OPERATORS = frozenset({"matches_regex"})

# Numeric variables whose values are money in the promotion's currency (written as decimal strings);
# the other numeric variables are whole counts (written as integers).
MONEY_VARIABLES = frozenset({"cart_subtotal", "eligible_subtotal", "order_total"})
# Thresholds a customer can reach by adding to the cart: failing only these is a near miss.
SPEND_VARIABLES = frozenset({"cart_subtotal", "eligible_subtotal", "order_total"})
QUANTITY_VARIABLES = frozenset({"cart_quantity", "eligible_quantity"})
REGION_VARIABLES = frozenset({"region"})
# Measured for each promotion on the cart as earlier promotions left it (and its own targeted lines);
# every other variable has one value for the whole evaluation.
MEASURED_PER_PROMOTION = frozenset({"cart_subtotal", "eligible_subtotal", "eligible_quantity", "order_total"})

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SALES_CHANNELS = ("web", "app", "store", "phone", "marketplace")


@dataclass(frozen=True)
class Facts:
    """What the variables read: account facts, and the cart as it stands for one promotion."""

    region: str
    customer_id: str
    customer_tier: str
    customer_segments: tuple[str, ...]
    order_count: int
    sales_channel: str
    shipping_method: str | tuple[str, ...]   # "" when the cart has no shipping; several methods: a Several
    cart_subtotal: Decimal
    order_total: Decimal          # cart subtotal plus shipping, both after earlier discounts
    cart_quantity: int
    eligible_subtotal: Decimal
    eligible_quantity: int
    local_date: str
    local_weekday: str
    local_hour: int


class PromotionVariables(BaseVariables):
    """Cart and account variables, as business-rules sees them."""

    def __init__(self, facts: Facts):
        self.facts = facts

    @string_rule_variable(label="Account region (ISO 3166 country code)")
    def region(self):
        return self.facts.region

    @string_rule_variable(label="Customer (account) id")
    def customer_id(self):
        return self.facts.customer_id

    @string_rule_variable(label="Customer tier or membership")
    def customer_tier(self):
        return self.facts.customer_tier

    @select_multiple_rule_variable(label="Customer segments")
    def customer_segments(self):
        return list(self.facts.customer_segments)

    @boolean_rule_variable(label="First order (no earlier orders)")
    def first_order(self):
        return self.facts.order_count == 0

    @numeric_rule_variable(label="Number of earlier orders")
    def order_count(self):
        return Decimal(self.facts.order_count)

    @string_rule_variable(label="Sales channel")
    def sales_channel(self):
        return self.facts.sales_channel

    @string_rule_variable(label="Shipping method chosen (empty when nothing is shipped)")
    def shipping_method(self):
        return self.facts.shipping_method

    @numeric_rule_variable(label="Cart subtotal, all lines, after earlier discounts")
    def cart_subtotal(self):
        return self.facts.cart_subtotal

    @numeric_rule_variable(label="Order total: cart subtotal plus shipping, after earlier discounts")
    def order_total(self):
        return self.facts.order_total

    @numeric_rule_variable(label="Units in the cart")
    def cart_quantity(self):
        return Decimal(self.facts.cart_quantity)

    @numeric_rule_variable(label="Subtotal of the promotion's targeted lines, after earlier discounts")
    def eligible_subtotal(self):
        return self.facts.eligible_subtotal

    @numeric_rule_variable(label="Units of the promotion's targeted lines")
    def eligible_quantity(self):
        return Decimal(self.facts.eligible_quantity)

    @string_rule_variable(label="Local date in the customer's time zone (YYYY-MM-DD)")
    def local_date(self):
        return self.facts.local_date

    @string_rule_variable(label="Local weekday in the customer's time zone (mon..sun)")
    def local_weekday(self):
        return self.facts.local_weekday

    @numeric_rule_variable(label="Local hour in the customer's time zone (0-23)")
    def local_hour(self):
        return Decimal(self.facts.local_hour)


def variable_types() -> dict[str, str]:
    """Variable name -> business-rules field type name (numeric, string, boolean, select_multiple)."""
    return {v["name"]: v["field_type"] for v in PromotionVariables.get_all_variables()}


VARIABLE_TYPES = variable_types()
