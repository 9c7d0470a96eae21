"""The trace: the single record of what evaluate() decided, as frozen values with one JSON form.

`Trace.to_dict()` turns every amount into a string (exact, in the currency's minor unit), every
enum into its value, and `to_json()` sorts keys, so the same inputs give byte-identical JSON.
The shape is described by `schemas/trace.schema.json`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from .reasons import Reason

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
class LineShare:
    line: str
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
class Hint:
    promotion: str
    kind: str
    shortfall: Decimal
    message: str


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
class Trace:
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
    not_applied: tuple[NotApplied, ...]
    out_of_scope: tuple[tuple[str, int], ...]   # reason -> count of promotions not listed one by one
    hints: tuple[Hint, ...]
    totals: Totals

    def to_dict(self) -> dict[str, Any]:
        out = _plain(self)
        out["out_of_scope"] = {reason: count for reason, count in self.out_of_scope}
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, ensure_ascii=False) + "\n"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
