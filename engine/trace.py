"""The trace: the single record of what evaluate() decided, as frozen values with one JSON form.

`Trace.to_dict()` turns every amount into a string (exact, in the currency's minor unit), every
enum into its value, and `to_json()` sorts keys, so the same inputs give byte-identical JSON.
The shape is described by `schemas/trace.schema.json`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property
from decimal import Decimal
from enum import Enum
from typing import Any

from .model import Account, Cart, Usage
from .reasons import Reason, TenderReason

TRACE_FORMAT = 1


@dataclass(frozen=True)
class LineDiscount:
    promotion: str
    stage: str
    amount: Decimal


@dataclass(frozen=True)
class LineTrace:
    id: str
    sku: str
    name: str
    category: str
    seller: str
    product_type: str
    unit_price: Decimal
    quantity: int
    subtotal: Decimal
    discounts: tuple[LineDiscount, ...]
    discount: Decimal
    total: Decimal


@dataclass(frozen=True)
class ShippingTrace:
    method: str
    price: Decimal
    discounts: tuple[LineDiscount, ...]
    discount: Decimal
    total: Decimal


@dataclass(frozen=True)
class ShipmentTrace:
    """One shipment of a cart written with `shipments`: its price, the discounts on it, what is left."""

    id: str
    method: str
    lines: tuple[str, ...]
    price: Decimal
    discounts: tuple[LineDiscount, ...]
    discount: Decimal
    total: Decimal


@dataclass(frozen=True)
class LineShare:
    line: str
    amount: Decimal


@dataclass(frozen=True)
class ShipmentShare:
    """The part of an amount (a shipping discount, a tender) that went to one shipment."""

    shipment: str
    amount: Decimal


@dataclass(frozen=True)
class Applied:
    promotion: str
    name: str
    stage: str
    reward: str
    code: str | None
    amount: Decimal
    lines: tuple[LineShare, ...]
    shipping: Decimal | None
    capped_by: tuple[str, ...]
    exclusive: bool
    priority: int
    benefit: int | None = None    # the benefit's place in the promotion's list, when it has several
    lost_lines: "tuple[LostLine, ...] | None" = None   # best_per_line: lines another of its class took
    # With `shipments`: each shipment's part of `shipping` (those it took something off), in cart order.
    shipments: tuple[ShipmentShare, ...] | None = None


@dataclass(frozen=True)
class LostLine:
    """A line a promotion would have discounted by `amount`, given instead to `lost_to` (best_per_line)."""

    line: str
    amount: Decimal
    lost_to: str


@dataclass(frozen=True)
class FailedCondition:
    variable: str
    operator: str
    expected: Any
    actual: Any


@dataclass(frozen=True)
class Threshold:
    """A spend or quantity threshold not reached: measured against required, and the shortfall."""

    variable: str
    measured: Decimal
    required: Decimal
    shortfall: Decimal


@dataclass(frozen=True)
class NotApplied:
    promotion: str
    name: str
    stage: str
    reason: Reason
    message: str
    code: str | None
    failed_conditions: tuple[FailedCondition, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    lost_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class HintItem:
    """What to add, for a storefront's "add to cart" button: a SKU, or any item of a category or brand."""

    kind: str      # sku | category | brand
    name: str


@dataclass(frozen=True)
class Hint:
    promotion: str
    kind: str                      # spend | quantity | item
    shortfall: Decimal             # money, or units
    message: str
    item: HintItem | None = None   # kind "item": what to add


@dataclass(frozen=True)
class CodeResult:
    entered: str
    code: str
    status: str                  # matched | unknown_code
    promotions: tuple[str, ...]
    message: str | None


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    item_discount: Decimal
    order_discount: Decimal
    shipping: Decimal
    shipping_discount: Decimal
    discount: Decimal
    total: Decimal


@dataclass(frozen=True)
class TenderUse:
    """One source of money paying for the order, and which lines (and shipping) it paid for."""

    kind: str                          # promotional_balance | gift_card | points | payment_method
    amount: Decimal
    lines: tuple[LineShare, ...]
    shipping: Decimal | None           # set only when it paid part of shipping
    id: str | None = None              # a promotional balance lot's id
    balance_before: Decimal | None = None
    balance_left: Decimal | None = None
    expires_at: str | None = None
    points: int | None = None          # points: how many were used, how many are left, worth each
    points_left: int | None = None
    point_value: Decimal | None = None
    shipments: tuple[ShipmentShare, ...] | None = None   # with `shipments`: each one's part of `shipping`


@dataclass(frozen=True)
class TenderNotUsed:
    kind: str
    reason: TenderReason
    message: str
    id: str | None = None
    balance: Decimal | None = None
    points: int | None = None


@dataclass(frozen=True)
class Tenders:
    """The payment waterfall after all discounts: promotional balance lots, gift card, points, and the
    rest to the payment method. `used` amounts plus `payment_method.amount` equal `due`."""

    due: Decimal
    used: tuple[TenderUse, ...]
    not_used: tuple[TenderNotUsed, ...]
    payment_method: TenderUse


@dataclass(frozen=True)
class Scope:
    """What a promotional balance lot pays for, in the account file's words."""

    categories: tuple[str, ...] | None
    excludes: tuple[str, ...]
    shipping: bool


@dataclass(frozen=True)
class Grant:
    """Promotional balance that the order system issues once the order is placed: a post-order effect,
    not a discount on this order."""

    promotion: str
    name: str
    amount: Decimal
    currency: str
    expires_at: str
    pays_for: Scope


@dataclass(frozen=True)
class Inputs:
    """What was evaluated, after checking: enough to evaluate the order again (refunds, replays)."""

    cart: Cart
    account: Account
    codes: tuple[str, ...]
    usage: tuple[tuple[str, Usage], ...]
    preview: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Trace:
    """The record of one evaluation. `not_applied` and `hints` are worked out the first time they are
    read (`why`, see engine/assemble.py): evaluate() decides, and explains only when asked. Two traces
    are equal when everything in them is, those two included."""

    format: int
    ruleset_version: str
    now: str
    currency: str
    minor_unit: int
    rounding: str
    cart_id: str | None
    account_id: str
    codes: tuple[CodeResult, ...]
    lines: tuple[LineTrace, ...]
    shipping: ShippingTrace | None
    applied: tuple[Applied, ...]
    out_of_scope: tuple[tuple[str, int], ...]   # reason -> count of promotions not listed one by one
    totals: Totals
    tenders: Tenders
    grants: tuple[Grant, ...]
    inputs: Inputs
    # A cart written with `shipments` has this instead of `shipping` (None then), one entry a shipment.
    shipments: tuple[ShipmentTrace, ...] | None = None
    why: Any = field(default=None, repr=False)   # gives not_applied and hints: engine/assemble.py Why

    @cached_property
    def not_applied(self) -> tuple[NotApplied, ...]:
        return self.why.not_applied()

    @cached_property
    def hints(self) -> tuple[Hint, ...]:
        return self.why.hints()

    def _everything(self) -> tuple:
        return tuple(getattr(self, name) for name in TRACE_KEYS)

    def __eq__(self, other: object) -> bool:
        return self is other or (type(other) is Trace and self._everything() == other._everything())

    def __hash__(self) -> int:
        return hash((self.ruleset_version, self.now, self.account_id, self.cart_id, self.totals))

    def to_dict(self, view: str = "full") -> dict[str, Any]:
        """The trace as JSON data. `view` is one of VIEWS: "full" (the default) is everything, and is
        what the ledger, refunds and golden files take; "compact" is what a checkout page needs."""
        if view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}")
        compact = view == "compact"
        out = {name: _plain(value) for name in TRACE_KEYS if name not in ("inputs", "not_applied")
               and (value := getattr(self, name)) is not None}
        listed = self.customer_not_applied() if compact else self.not_applied
        out["not_applied"] = _plain(listed)
        out["out_of_scope"] = {reason: count for reason, count in self.out_of_scope}
        if compact:
            out["view"] = "compact"
            out["not_applied_omitted"] = len(self.not_applied) - len(listed)
        else:
            out["inputs"] = inputs_to_dict(self.inputs)
        return out

    def customer_not_applied(self) -> tuple[NotApplied, ...]:
        """The not-applied entries that matter to the customer: a code they entered, or a near miss
        that has a hint ("add 500 more")."""
        if "not_applied" not in self.__dict__ and self.why is not None:
            return self.why.customer()   # explains only these
        hinted = {h.promotion for h in self.hints}
        return tuple(n for n in self.not_applied if n.code is not None or n.promotion in hinted)

    def to_json(self, indent: int | None = 2, view: str = "full") -> str:
        """The trace as JSON with sorted keys. `indent=None` writes it compact, several times faster
        (Python's json module uses its C encoder only then): the form for a service's responses."""
        return json.dumps(self.to_dict(view), sort_keys=True, indent=indent, ensure_ascii=False) + "\n"


# What a trace holds, as its JSON's keys (`why` is how, not what).
TRACE_KEYS = ("format", "ruleset_version", "now", "currency", "minor_unit", "rounding", "cart_id", "account_id",
              "codes", "lines", "shipping", "applied", "not_applied", "out_of_scope", "hints", "totals", "tenders",
              "grants", "inputs", "shipments")

# The ways a trace is written out. "compact" leaves out the not-applied entries that are neither an
# entered code nor a near miss with a hint (counted in `not_applied_omitted`) and the inputs, so it
# cannot be verified, reserved or refunded from: a view for responses, never a record.
VIEWS = ("full", "compact")


_PLAIN_TYPES = (str, int, bool, float, type(None))   # exact types: a str-valued Enum is not a plain str
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _plain(value: Any) -> Any:
    """A trace value as JSON data: records as objects without their None fields, amounts as exact
    strings, enums as their values, sequences as lists. (Called for every value of every trace a
    service returns: the usual types are tested first, and a record's own fields inline.)"""
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return value
    if kind is Decimal:
        return f"{value:f}"
    if kind is tuple or kind is list:
        return [_plain(v) for v in value]
    names = _FIELD_NAMES.get(kind)
    if names is None:
        if dataclasses.is_dataclass(kind):
            names = _field_names(kind)
        elif isinstance(value, Enum):
            return value.value
        elif isinstance(value, dict):
            return {str(k): _plain(v) for k, v in value.items()}
        else:
            return value
    out = {}
    for name in names:
        v = getattr(value, name)
        if v is None:
            continue
        t = type(v)
        if t is str or t is int or t is bool:
            out[name] = v
        elif t is Decimal:
            out[name] = f"{v:f}"
        else:
            out[name] = _plain(v)
    return out


def inputs_to_dict(inputs: Inputs) -> dict[str, Any]:
    """The checked inputs in the form `evaluate()` accepts (schemas/cart, account), so that a trace
    alone is enough to evaluate its order again."""
    cart = inputs.cart
    lines = []
    for line in cart.lines:
        raw = {"id": line.id, "sku": line.sku, "name": line.name, "category": line.category, "seller": line.seller,
               "product_type": line.product_type, "unit_price": f"{line.unit_price:f}", "quantity": line.quantity}
        if line.brand is not None:
            raw["brand"] = line.brand
        lines.append(raw)
    cart_out: dict[str, Any] = {"currency": cart.currency, "channel": cart.channel, "lines": lines}
    if cart.id is not None:
        cart_out["id"] = cart.id
    if cart.shipping is not None:
        cart_out["shipping"] = {"method": cart.shipping.method, "price": f"{cart.shipping.price:f}"}
    if cart.shipments is not None:
        cart_out["shipments"] = [{"id": s.id, "method": s.method, "price": f"{s.price:f}", "lines": list(s.lines)}
                                 for s in cart.shipments]
    a = inputs.account
    account: dict[str, Any] = {"id": a.id, "region": a.region, "tier": a.tier, "segments": list(a.segments),
                               "order_count": a.order_count, "time_zone": a.time_zone}
    if a.lots:
        account["promotional_balance"] = [_lot(lot) for lot in a.lots]
    if a.gift_card is not None:
        account["gift_card"] = {"amount": f"{a.gift_card.amount:f}", "currency": a.gift_card.currency}
    if a.points is not None:
        p = a.points
        account["points"] = {"balance": p.balance, "value": f"{p.value:f}", "currency": p.currency,
                             "use": "as_needed" if p.use is None else p.use}
    usage = {pid: {"total_uses": u.total_uses, "customer_uses": u.customer_uses, "budget_spent": f"{u.budget_spent:f}"}
             for pid, u in inputs.usage}
    return {"cart": cart_out, "account": account, "codes": list(inputs.codes), "usage": usage,
            "preview": list(inputs.preview)}


def _lot(lot: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": lot.id, "amount": f"{lot.amount:f}", "currency": lot.currency,
                           "granted_at": lot.granted_at.isoformat(),
                           "pays_for": _plain(scope_of(lot.pays_for))}
    if lot.expires_at is not None:
        out["expires_at"] = lot.expires_at.isoformat()
    return out


def scope_of(pays_for: Any) -> Scope:
    categories = tuple(sorted(pays_for.categories)) if pays_for.categories is not None else None
    return Scope(categories, tuple(sorted(pays_for.excludes)), pays_for.shipping)
