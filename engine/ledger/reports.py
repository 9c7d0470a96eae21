"""The ledger's read side: usage for evaluate(), an account's balances, a promotion's counters, code
look-ups. Reads never write and never take SQLite's write lock. A hold whose reservation has expired
but that no write has swept yet is counted as released, exactly as the next write would release it,
so that one reader with a clock far ahead cannot expire anyone's checkout."""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import Connection, func, select

from ..model import RuleSet, Usage
from .common import money_decimal, us
from .holds import hold_of
from .store import (balances, codes as code_table, customer_counters, promotion_counters, reservation_items as items,
                    reservations)

STATE_HELD = "held"


def expired_holds(conn: Connection, when: datetime) -> dict[tuple[str, tuple], tuple[int, int]]:
    """(kind, subject) -> (uses, amount) still counted as held by reservations whose time is up at `when`."""
    rows = conn.execute(select(items).join(reservations, items.c.order_id == reservations.c.order_id).where(
        reservations.c.state == STATE_HELD, reservations.c.expires_at_us <= us(when))).all()
    out: dict[tuple[str, tuple], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        hold = hold_of(row)
        out[(hold.kind, hold.subject)][0] += hold.uses
        out[(hold.kind, hold.subject)][1] += hold.amount
    return {k: (u, a) for k, (u, a) in out.items()}


def usage_snapshot(conn: Connection, ruleset: RuleSet, customer_id: str, when: datetime,
                   wanted: list[str]) -> dict[str, Usage]:
    stale = expired_holds(conn, when)
    totals = {r.promotion_id: r for r in conn.execute(
        select(promotion_counters).where(promotion_counters.c.promotion_id.in_(wanted)))}
    mine = {r.promotion_id: r.uses + r.held_uses for r in conn.execute(
        select(customer_counters).where(customer_counters.c.promotion_id.in_(wanted),
                                        customer_counters.c.customer_id == customer_id))}
    out = {}
    for pid in wanted:
        promotion = ruleset.promotions.get(pid)
        row = totals.get(pid)
        uses = row.uses + row.held_uses - stale.get(("use", (pid,)), (0, 0))[0] if row is not None else 0
        spent = row.spent + row.held_spent - stale.get(("budget", (pid,)), (0, 0))[1] if row is not None else 0
        customer = mine.get(pid, 0) - stale.get(("customer_use", (pid, customer_id)), (0, 0))[0]
        out[pid] = Usage(total_uses=uses, customer_uses=customer,
                         budget_spent=money_decimal(spent, promotion.currency)
                         if promotion is not None and promotion.currency else Decimal(0))
    return out


def balance_rows(conn: Connection, account_id: str, when: datetime) -> list[tuple[Any, int]]:
    """Each of the account's balance rows with what is available at `when` (amount less live holds)."""
    stale = expired_holds(conn, when)
    rows = conn.execute(select(balances).where(balances.c.account_id == account_id)
                        .order_by(balances.c.kind, balances.c.lot_id)).all()
    return [(r, r.amount - r.held + stale.get((r.kind, (r.account_id, r.kind, r.lot_id)), (0, 0))[1]) for r in rows]


def account_balances(conn: Connection, account_id: str, when: datetime, points_use: Any,
                     max_lots: int) -> dict[str, Any]:
    """The `promotional_balance` / `gift_card` / `points` part of an account dict, from the ledger alone:
    live lots with something left (earliest expiry first, as the waterfall spends them), the gift card and
    points with what is available."""
    out: dict[str, Any] = {}
    lots = []
    for row, available in balance_rows(conn, account_id, when):
        if row.kind == "promotional_balance":
            live = row.expires_at_us is None or row.expires_at_us > us(when)
            if available > 0 and live and row.granted_at is not None:
                lot = {"id": row.lot_id, "amount": f"{money_decimal(available, row.currency):f}",
                       "currency": row.currency, "granted_at": row.granted_at, "pays_for": json.loads(row.pays_for)}
                if row.expires_at is not None:
                    lot["expires_at"] = row.expires_at
                lots.append((row.expires_at_us is None, row.expires_at_us or 0, row.lot_id, lot))
        elif row.kind == "gift_card":
            out["gift_card"] = {"amount": f"{money_decimal(available, row.currency):f}", "currency": row.currency}
        elif row.kind == "points" and row.point_value is not None:
            out["points"] = {"balance": available, "value": row.point_value, "currency": row.currency,
                             "use": points_use}
    if lots:
        out["promotional_balance"] = [lot for *_, lot in sorted(lots, key=lambda t: t[:3])][:max_lots]
    return out


def code_states(conn: Connection, hashes: Iterable[str], when: datetime) -> dict[str, tuple[str, str]]:
    """code hash -> (promotion, state) in one query; a code held by a checkout whose time is up is unused."""
    rows = conn.execute(select(code_table.c.code_hash, code_table.c.promotion_id, code_table.c.state,
                               reservations.c.state.label("order_state"), reservations.c.expires_at_us)
                        .outerjoin(reservations, code_table.c.order_id == reservations.c.order_id)
                        .where(code_table.c.code_hash.in_(sorted(set(hashes))))).all()
    out = {}
    for r in rows:
        freed = r.state == "held" and r.order_state == STATE_HELD and r.expires_at_us <= us(when)
        out[r.code_hash] = (r.promotion_id, "unused" if freed else r.state)
    return out


def promotion_report(conn: Connection, ruleset: RuleSet, promotion_id: str, when: datetime) -> dict[str, Any]:
    promotion = ruleset.promotions.get(promotion_id)
    stale = expired_holds(conn, when)
    row = conn.execute(select(promotion_counters).where(promotion_counters.c.promotion_id == promotion_id)).first()
    customers = conn.execute(select(customer_counters.c.customer_id, customer_counters.c.uses,
                                    customer_counters.c.held_uses)
                             .where(customer_counters.c.promotion_id == promotion_id)).all()
    with_uses = sum(1 for c in customers
                    if c.uses + c.held_uses - stale.get(("customer_use", (promotion_id, c.customer_id)), (0, 0))[0] > 0)
    states = {"unused": 0, "held": 0, "redeemed": 0}
    for (_, state), n in _code_counts(conn, promotion_id, when).items():
        states[state] += n
    stale_uses = stale.get(("use", (promotion_id,)), (0, 0))[0]
    stale_spent = stale.get(("budget", (promotion_id,)), (0, 0))[1]
    currency = promotion.currency if promotion is not None else None
    shown = (lambda n: str(money_decimal(n, currency))) if currency else str
    limits = promotion.limits if promotion is not None else None
    return {"promotion": promotion_id, "in_rule_set": promotion is not None,
            "uses": row.uses if row else 0, "held_uses": row.held_uses - stale_uses if row else 0,
            "budget_spent": shown(row.spent if row else 0),
            "budget_held": shown(row.held_spent - stale_spent if row else 0),
            "total_uses_limit": limits.total_uses if limits else None,
            "uses_per_customer_limit": limits.uses_per_customer if limits else None,
            "budget": str(limits.budget) if limits and limits.budget is not None else None,
            "customers_with_uses": with_uses, "codes": states}


def _code_counts(conn: Connection, promotion_id: str, when: datetime) -> dict[tuple[str, str], int]:
    rows = conn.execute(select(code_table.c.state, reservations.c.state.label("order_state"),
                               reservations.c.expires_at_us, func.count().label("n"))
                        .outerjoin(reservations, code_table.c.order_id == reservations.c.order_id)
                        .where(code_table.c.promotion_id == promotion_id)
                        .group_by(code_table.c.state, reservations.c.state, reservations.c.expires_at_us)).all()
    out: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        freed = r.state == "held" and r.order_state == STATE_HELD and r.expires_at_us <= us(when)
        out[(promotion_id, "unused" if freed else r.state)] += r.n
    return out
