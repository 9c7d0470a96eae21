"""What one evaluation works with: the checked inputs and the values fixed for the whole evaluation
(`Context`), and what is left to pay on each line and shipment as promotions run (`State`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from types import MappingProxyType
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from .conditions import Several
from .model import Account, Benefit, Cart, Line, Promotion, RuleSet, Shipment, Usage
from .money import format_money, quantum, to_units
from .reasons import Reason, message
from .trace import NotApplied
from .variables import MEASURED_PER_PROMOTION, VARIABLE_TYPES, WEEKDAYS, Facts, PromotionVariables


# --- context -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Context:
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
    shapes: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # caches of decide._shape and decide.what_if_members
    probes: list[int] = field(default_factory=lambda: [MAX_PROBES])   # left for this evaluation's hints
    probing: bool = False          # a what-if run for a hint (decide._spend_hint): it gives no hints itself

    @staticmethod
    def build(ruleset: RuleSet, cart: Cart, account: Account, now: datetime, usage: Mapping[str, Usage],
              previewed: frozenset[str], targeted: Mapping[str, tuple[Line, ...]]) -> "Context":
        local = now.astimezone(ZoneInfo(account.time_zone))
        currency = cart.currency
        subtotals = {line.id: to_units(line.unit_price, currency) * line.quantity for line in cart.lines}
        shipments = cart.all_shipments
        return Context(ruleset, cart, account, now, usage, previewed, targeted,
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


NO_USAGE = Usage()


def evaluation_order(promotion: Promotion) -> tuple:
    return promotion.order


def refuse(promotion: Promotion, reason: Reason, **values: Any) -> NotApplied:
    return NotApplied(promotion=promotion.id, name=promotion.name, stage=promotion.stage.value, reason=reason,
                      message=message(reason, name=promotion.name, **values), code=promotion.code,
                      **{k: v for k, v in values.items() if k in ("failed_conditions", "thresholds", "lost_to")})


@dataclass(frozen=True)
class State:
    """What is left to pay on each line and on each shipment (in `Context.shipments` order), in minor units.
    `lines` belongs to one run of promotions, which takes each line discount off it in place."""

    lines: dict[str, int]
    shipping: tuple[int, ...]


def initial_state(ctx: "Context") -> State:
    return State(lines=dict(ctx.subtotals), shipping=ctx.shipment_units)


def targeted_shipments(b: Benefit, ctx: Context) -> tuple[int, ...]:
    """The places (in `ctx.shipments`) of the shipments a shipping benefit discounts: those sent by
    one of its `shipping_methods`, or every shipment when it names none."""
    return tuple(i for i, s in enumerate(ctx.shipments)
                 if b.shipping_methods is None or s.method in b.shipping_methods)


def either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


MAX_PROBES = 4                  # what-if runs one evaluation may spend on its hints (decide._spend_hint)
PROBE_LINE = "probe:" + "x" * 64   # longer than any cart line id may be, so it names no real line

