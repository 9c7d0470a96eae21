"""What a verified trace asks the ledger to keep, as one typed record shared by reserve and cancel.

The ledger never reads a trace as loose string-keyed data: `Redemption.of(trace, ruleset, order_id)`
takes a `Trace` that engine.verify has re-derived from its own inputs and lists the promotions it
uses (discounts and grants, with their amounts in minor units), the balances its tenders draw on
(with the terms the trace was priced with), and the grants the order will issue as lots.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from ..model import Lot, Promotion, RuleSet
from ..trace import Trace, _plain, scope_of
from .common import minor, us
from .errors import LedgerError, LedgerReason


@dataclass(frozen=True)
class UsedPromotion:
    promotion: Promotion
    amount: int                     # minor units taken off (or granted)


@dataclass(frozen=True)
class UsedTender:
    """A balance the order draws on, and what the trace was priced with."""

    kind: str                       # promotional_balance | gift_card | points
    lot_id: str                     # "" for the gift card and points
    amount: int                     # minor units; points for points
    before: int                     # what the trace saw available (minor units; points)
    lot: Lot | None = None          # a lot's terms as the trace's inputs gave them
    point_value: str | None = None


@dataclass(frozen=True)
class IssuedGrant:
    """Promotional balance the order earns, issued as a lot of the ledger's when the order is committed."""

    promotion: str
    lot_id: str
    amount: int
    expires_at: str
    pays_for: str                   # JSON, the account file's words


@dataclass(frozen=True)
class Redemption:
    trace: Trace
    account_id: str
    currency: str
    promotions: tuple[UsedPromotion, ...]
    tenders: tuple[UsedTender, ...]
    grants: tuple[IssuedGrant, ...]

    @staticmethod
    def of(trace: Trace, ruleset: RuleSet, order_id: str) -> "Redemption":
        currency = trace.currency
        used = []
        for pid, amount in earned_by_promotion(trace).items():   # one use however many benefits it gave
            promotion = ruleset.promotions.get(pid)
            if promotion is None:   # a verified trace cannot name one; kept as a guard, never an exception
                raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"the trace applies {pid!r}, which this rule "
                                                                   "set does not have")
            used.append(UsedPromotion(promotion, amount))
        lots = {lot.id: lot for lot in trace.inputs.account.lots}
        tenders = []
        for t in trace.tenders.used:
            if t.kind == "points":
                tenders.append(UsedTender("points", "", t.points or 0, (t.points or 0) + (t.points_left or 0),
                                          point_value=f"{t.point_value:f}"))
            else:
                tenders.append(UsedTender(t.kind, t.id or "", minor(t.amount, currency),
                                          minor(t.balance_before, currency), lot=lots.get(t.id or "")))
        grants = tuple(IssuedGrant(g.promotion, grant_lot_id(order_id, g.promotion), minor(g.amount, currency),
                                   g.expires_at, pays_for_json(_plain(g.pays_for))) for g in trace.grants)
        return Redemption(trace, trace.account_id, currency, tuple(used), tuple(tenders), grants)


def earned_by_promotion(trace: Trace) -> dict[str, int]:
    """What each promotion gave the order in minor units, its benefits (discounts and grant) summed, in
    the trace's order: the ledger counts a promotion once, however many benefits it has."""
    out: dict[str, int] = {}
    for pid, amount in [(a.promotion, a.amount) for a in trace.applied] + [(g.promotion, g.amount)
                                                                         for g in trace.grants]:
        out[pid] = out.get(pid, 0) + minor(amount, trace.currency)
    return out


def grant_lot_id(order_id: str, promotion: str) -> str:
    """The lot a committed order's grant becomes: one per order and promotion, within the 128-character id."""
    return f"grant-{promotion}-{hashlib.sha256(order_id.encode()).hexdigest()[:16]}"


def pays_for_json(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def lot_pays_for(lot: Lot) -> str:
    return pays_for_json(_plain(scope_of(lot.pays_for)))


def instant_us(moment: datetime | None) -> int | None:
    return None if moment is None else us(moment)
