"""The kinds of thing a reservation holds, one small class each, registered in `KINDS`.

Every kind answers four questions on the rows it owns, inside the operation's transaction:
- `hold`: can this part of the order be held now? Then hold it (or say why not, changing nothing);
- `settle`: the order is paid: what was held becomes used;
- `undo`: the checkout was abandoned or expired: give the hold back;
- `give_back`: after a return or cancellation, what goes back (budget, a use, balance), given what
  the returned and kept units are worth (`Returned`, from engine.refund).

Rows are always locked in one order (promotions, customers, codes, balances, then grants) so two
checkouts never deadlock: `Hold.key()`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import Connection, bindparam, delete, select, update

from ..model import Promotion, RuleSet
from .codes import code_hash
from .common import add_to, insert_ignore, iso, minor, money, refusal, subject_text, us
from .errors import LedgerError, LedgerReason, Refusal
from .redemption import IssuedGrant, Redemption, UsedTender, instant_us, lot_pays_for
from .store import balances, codes as code_table, customer_counters, promotion_counters


@dataclass(frozen=True)
class Hold:
    """One thing a reservation holds on one row."""

    kind: str                  # a key of KINDS
    subject: tuple[str, ...]   # which row: (promotion,) (promotion, customer) (code hash, promotion) (account, kind, lot)
    uses: int
    amount: int                # minor units of the order's currency; points for points

    def key(self) -> tuple:
        return (KINDS[self.kind].rank, self.subject, self.kind)


@dataclass(frozen=True)
class Entry:
    """One thing a cancellation gave back (or recorded as forfeited or revoked)."""

    kind: str                  # usage | budget | code | promotional_balance | forfeited | gift_card | points |
    subject: str               # payment_method | grant_revoked | grant_spent
    amount: str                # money in the order's currency, points, or uses


@dataclass
class Counter:
    """A promotion's counter row as this transaction sees it: locked, with this transaction's changes."""

    uses: int
    held_uses: int
    spent: int
    held_spent: int


@dataclass
class Tx:
    """What every kind needs inside one operation's transaction."""

    conn: Connection
    when: datetime
    order_id: str
    ruleset: RuleSet
    currency: str
    code_hashes: tuple[str, ...] = ()
    audit: Any = None          # audit(action, subject, delta): the operation's audit log writer
    # Promotion counter rows this transaction has locked, kept up to date by `_bump`: a promotion with
    # a use limit and a budget is read once per reservation, not once per hold.
    counters: dict[str, Counter] = field(default_factory=dict)


@dataclass(frozen=True)
class Need:
    """A part of the order to hold, with what it is checked against."""

    hold: Hold
    promotion: Promotion | None = None
    tender: UsedTender | None = None
    grant: IssuedGrant | None = None


@dataclass(frozen=True)
class Returned:
    """What a return changes, as the kinds read it: every unit returned, each promotion's amount on the
    whole order and on the kept units, each grant the kept order still earns, and what the returned
    units are worth to each tender now and at the previous return."""

    everything: bool
    earned: Mapping[str, int]
    kept: Mapping[str, int]
    worth_after: Mapping[tuple, int]
    worth_before: Mapping[tuple, int]
    expired_lots: frozenset[str] = field(default_factory=frozenset)


class Kind:
    rank = 0

    def hold(self, tx: Tx, need: Need) -> Hold | Refusal:
        return need.hold

    def settle(self, tx: Tx, hold: Hold) -> None:
        pass

    def undo(self, tx: Tx, hold: Hold) -> None:
        pass

    def give_back(self, tx: Tx, hold: Hold, uses_back: int, amount_back: int,
                  returned: Returned) -> tuple[dict[str, int], list[Entry]]:
        return {}, []


_COUNTER = select(promotion_counters.c.uses, promotion_counters.c.held_uses, promotion_counters.c.spent,
                  promotion_counters.c.held_spent) \
    .where(promotion_counters.c.promotion_id == bindparam("pid")).with_for_update()


def _counter(tx: Tx, pid: str) -> Counter:
    """The promotion's counter row, locked (created by the first checkout that needs it)."""
    found = tx.counters.get(pid)
    if found is not None:
        return found
    row = tx.conn.execute(_COUNTER, {"pid": pid}).first()
    if row is None:
        insert_ignore(tx.conn, promotion_counters, promotion_id=pid, uses=0, held_uses=0, spent=0, held_spent=0)
        row = tx.conn.execute(_COUNTER, {"pid": pid}).one()
    tx.counters[pid] = found = Counter(*row)
    return found


def _bump(tx: Tx, pid: str, **deltas: int) -> None:
    """Add `deltas` to the promotion's counter columns (one UPDATE), and to the row this transaction read."""
    add_to(tx.conn, promotion_counters, {"promotion_id": pid}, **deltas)
    seen = tx.counters.get(pid)
    if seen is not None:
        for col, d in deltas.items():
            setattr(seen, col, getattr(seen, col) + d)


def _returns_usage(tx: Tx, pid: str, returned: Returned) -> bool:
    """A use goes back when the order no longer uses the promotion and the promotion says so."""
    promotion = tx.ruleset.promotions.get(pid)
    return promotion is not None and promotion.limits.return_usage_on_cancel and \
        (returned.everything or pid not in returned.kept)


class Use(Kind):
    """One use of a promotion with limits, counted against `total_uses`."""

    def hold(self, tx: Tx, need: Need) -> Hold | Refusal:
        pid, limit = need.hold.subject[0], need.promotion.limits.total_uses
        row = _counter(tx, pid)
        if limit is not None and row.uses + row.held_uses + 1 > limit:
            return refusal("promotion", pid, LedgerReason.USAGE_LIMIT_REACHED, limit=f"{limit} uses in all")
        _bump(tx, pid, held_uses=1)
        return need.hold

    def settle(self, tx: Tx, hold: Hold) -> None:
        _bump(tx, hold.subject[0], uses=1, held_uses=-1)

    def undo(self, tx: Tx, hold: Hold) -> None:
        _bump(tx, hold.subject[0], held_uses=-1)

    def give_back(self, tx, hold, uses_back, amount_back, returned):
        if uses_back or not _returns_usage(tx, hold.subject[0], returned):
            return {}, []
        _bump(tx, hold.subject[0], uses=-1)
        return {"uses_back": 1}, [Entry("usage", hold.subject[0], "1")]


class Budget(Kind):
    """A promotion's amount on this order, counted against its `budget`."""

    def hold(self, tx: Tx, need: Need) -> Hold | Refusal:
        p, amount = need.promotion, need.hold.amount
        row = _counter(tx, p.id)
        left = (_budget_units(p) or 0) - row.spent - row.held_spent
        if amount > left:
            return refusal("promotion", p.id, LedgerReason.BUDGET_EXHAUSTED, left=money(max(left, 0), p.currency),
                           needed=money(amount, p.currency))
        _bump(tx, p.id, held_spent=amount)
        return need.hold

    def settle(self, tx: Tx, hold: Hold) -> None:
        _bump(tx, hold.subject[0], spent=hold.amount, held_spent=-hold.amount)

    def undo(self, tx: Tx, hold: Hold) -> None:
        _bump(tx, hold.subject[0], held_spent=-hold.amount)

    def give_back(self, tx, hold, uses_back, amount_back, returned):
        pid = hold.subject[0]
        target = returned.earned.get(pid, 0) - returned.kept.get(pid, 0)
        # Budget only ever goes back: charging it again could overrun what others have since used.
        delta = max(0, max(0, min(target, hold.amount)) - amount_back)
        if not delta:
            return {}, []
        _bump(tx, pid, spent=-delta)
        return {"amount_back": amount_back + delta}, [Entry("budget", pid, money(delta, tx.currency))]


def _budget_units(p: Promotion) -> int | None:
    return None if p.limits.budget is None else minor(p.limits.budget, p.currency)


class CustomerUse(Kind):
    """One of the customer's uses of a promotion, counted against `uses_per_customer`."""

    rank = 1

    def hold(self, tx: Tx, need: Need) -> Hold | Refusal:
        pid, customer = need.hold.subject
        limit = need.promotion.limits.uses_per_customer
        key = {"pid": pid, "customer": customer}
        row = tx.conn.execute(_CUSTOMER_COUNTER, key).first()
        if row is None:   # the customer's first order with this promotion
            insert_ignore(tx.conn, customer_counters, promotion_id=pid, customer_id=customer, uses=0, held_uses=0)
            row = tx.conn.execute(_CUSTOMER_COUNTER, key).one()
        if row.uses + row.held_uses + 1 > limit:
            return refusal("promotion", pid, LedgerReason.USAGE_LIMIT_REACHED, limit=f"{limit} per customer")
        add_to(tx.conn, customer_counters, _customer(pid, customer), held_uses=1)
        return need.hold

    def settle(self, tx: Tx, hold: Hold) -> None:
        add_to(tx.conn, customer_counters, _customer(*hold.subject), uses=1, held_uses=-1)

    def undo(self, tx: Tx, hold: Hold) -> None:
        add_to(tx.conn, customer_counters, _customer(*hold.subject), held_uses=-1)

    def give_back(self, tx, hold, uses_back, amount_back, returned):
        if uses_back or not _returns_usage(tx, hold.subject[0], returned):
            return {}, []
        add_to(tx.conn, customer_counters, _customer(*hold.subject), uses=-1)
        return {"uses_back": 1}, []


_CUSTOMER_COUNTER = select(customer_counters.c.uses, customer_counters.c.held_uses).where(
    customer_counters.c.promotion_id == bindparam("pid"), customer_counters.c.customer_id == bindparam("customer")) \
    .with_for_update()


def _customer(pid: str, customer: str) -> dict[str, str]:
    return {"promotion_id": pid, "customer_id": customer}


class Code(Kind):
    """A single-use code of a `code_pool` promotion: held, then redeemed. Of two checkouts racing for one
    code, a conditional update lets exactly one win."""

    rank = 2

    def hold(self, tx: Tx, need: Need) -> Hold | Refusal:
        pid = need.hold.subject[-1]
        mine = tx.conn.execute(select(code_table.c.code_hash).where(
            code_table.c.code_hash.in_(tx.code_hashes), code_table.c.promotion_id == pid)
            .order_by(code_table.c.code_hash)).scalars().all() if tx.code_hashes else []
        if not mine:
            return refusal("code", pid, LedgerReason.CODE_NOT_PRESENTED)
        for digest in mine:
            taken = tx.conn.execute(update(code_table).where(code_table.c.code_hash == digest,
                                                             code_table.c.state == "unused")
                                    .values(state="held", order_id=tx.order_id)).rowcount
            if taken == 1:
                return Hold("code", (digest, pid), 1, 0)
        return refusal("code", pid, LedgerReason.CODE_ALREADY_USED)

    def settle(self, tx: Tx, hold: Hold) -> None:
        tx.conn.execute(update(code_table).where(code_table.c.code_hash == hold.subject[0],
                                                 code_table.c.order_id == tx.order_id).values(state="redeemed"))

    def undo(self, tx: Tx, hold: Hold) -> None:
        tx.conn.execute(update(code_table).where(code_table.c.code_hash == hold.subject[0],
                                                 code_table.c.order_id == tx.order_id)
                        .values(state="unused", order_id=None))

    def give_back(self, tx, hold, uses_back, amount_back, returned):
        if uses_back or not _returns_usage(tx, hold.subject[1], returned):
            return {}, []
        tx.conn.execute(update(code_table).where(code_table.c.code_hash == hold.subject[0])
                        .values(state="unused", order_id=None))
        return {"uses_back": 1}, [Entry("code", hold.subject[0][:12], "1")]


def _balance(account: str, kind: str, lot: str) -> tuple:
    return (balances.c.account_id == account, balances.c.kind == kind, balances.c.lot_id == lot)


def _balance_key(account: str, kind: str, lot: str) -> dict[str, str]:
    return {"account_id": account, "kind": kind, "lot_id": lot}


_BALANCE = select(balances).where(balances.c.account_id == bindparam("account_id"), balances.c.kind == bindparam("kind"),
                                  balances.c.lot_id == bindparam("lot_id")).with_for_update()


class Balance(Kind):
    """A balance the ledger holds for the account (a promotional balance lot, the gift card, points). The
    trace's tender must name a balance the ledger holds, in the order's currency, on the terms the
    ledger has, with exactly what the ledger has available."""

    rank = 3

    def hold(self, tx: Tx, need: Need) -> Hold | Refusal:
        account, kind, lot = need.hold.subject
        tender = need.tender
        name = f"{kind} {lot}".strip()
        what = f"{kind.replace('_', ' ')} {lot}".strip() + f" of {account}"
        row = tx.conn.execute(_BALANCE, _balance_key(account, kind, lot)).first()
        if row is None or row.currency != tx.currency or (kind == "promotional_balance" and row.granted_at_us is None):
            held_in = f" (it holds {row.currency})" if row is not None and row.currency != tx.currency else ""
            return refusal("balance", name, LedgerReason.UNKNOWN_BALANCE, what=what, currency=tx.currency,
                           held_in=held_in)
        changed = self.terms_differ(row, tender, tx.when)
        available = row.amount - row.held
        shown = (lambda n: f"{n} points") if kind == "points" else (lambda n: money(n, row.currency))
        if changed or available != tender.before or tender.amount > available:
            return refusal("balance", name, LedgerReason.BALANCE_CHANGED, what=what,
                           available=shown(available) + (f" ({changed})" if changed else ""),
                           expected=shown(tender.before))
        add_to(tx.conn, balances, _balance_key(account, kind, lot), held=tender.amount)
        return need.hold

    @staticmethod
    def terms_differ(row: Any, tender: UsedTender, when: datetime) -> str | None:
        """What differs between the ledger's terms for the balance and the trace's, or None."""
        if tender.kind == "points":
            return None if row.point_value == tender.point_value else f"a point is worth {row.point_value}"
        if tender.kind != "promotional_balance":
            return None
        lot = tender.lot
        if lot is None:
            return "the trace's account does not list the lot"
        if row.expires_at_us is not None and row.expires_at_us <= us(when):
            return f"it expired at {row.expires_at}"
        if instant_us(lot.granted_at) != row.granted_at_us or instant_us(lot.expires_at) != row.expires_at_us \
                or lot_pays_for(lot) != row.pays_for:
            return "its terms (granted, expires, pays for) differ"
        return None

    def settle(self, tx: Tx, hold: Hold) -> None:
        add_to(tx.conn, balances, _balance_key(*hold.subject), amount=-hold.amount, held=-hold.amount)

    def undo(self, tx: Tx, hold: Hold) -> None:
        add_to(tx.conn, balances, _balance_key(*hold.subject), held=-hold.amount)

    def give_back(self, tx, hold, uses_back, amount_back, returned):
        account, kind, lot = hold.subject
        key = (kind, lot or None)
        delta = returned.worth_after.get(key, 0) - returned.worth_before.get(key, 0)
        if delta < 0:
            raise LedgerError(LedgerReason.RETURN_NEEDS_REVIEW, tx.order_id, tender=f"{kind} {lot}".strip(),
                              amount=-delta)
        if not delta:
            return {}, []
        if kind == "promotional_balance" and lot in returned.expired_lots:
            return {"amount_back": amount_back + delta, "forfeited": delta}, [Entry("forfeited", lot, money(delta, tx.currency))]
        add_to(tx.conn, balances, _balance_key(account, kind, lot), amount=delta)
        shown = str(delta) if kind == "points" else money(delta, tx.currency)
        return {"amount_back": amount_back + delta}, [Entry(kind, lot, shown)]


class Grant(Kind):
    """Promotional balance the order earns. Reserve opens the lot with nothing in it (so its terms are
    the ledger's from the start), commit puts the grant in, release or expiry removes the empty lot; a
    return revokes what the kept order no longer earns, as far as it is still unspent."""

    rank = 4

    def hold(self, tx: Tx, need: Need) -> Hold | Refusal:
        account, _, lot, _ = need.hold.subject
        g = need.grant
        inserted = insert_ignore(tx.conn, balances, account_id=account, kind="promotional_balance", lot_id=lot,
                                 currency=tx.currency, amount=0, held=0, opened_at=iso(tx.when),
                                 granted_at=iso(tx.when), granted_at_us=us(tx.when), expires_at=g.expires_at,
                                 expires_at_us=us(datetime.fromisoformat(g.expires_at)), pays_for=g.pays_for,
                                 origin=f"order:{tx.order_id}")
        if not inserted:   # a lot id is one order's and one promotion's: taken means another order has it
            return refusal("balance", f"promotional_balance {lot}", LedgerReason.UNKNOWN_BALANCE,
                           what=f"grant lot {lot} of {account}", currency=tx.currency, held_in=" (already issued)")
        return need.hold

    def settle(self, tx: Tx, hold: Hold) -> None:
        account, _, lot, promotion = hold.subject
        tx.conn.execute(update(balances).where(*_balance(account, "promotional_balance", lot))
                        .values(amount=hold.amount))
        tx.audit("balance_opened", subject_text(hold.subject[:3]),
                 {"amount": hold.amount, "currency": tx.currency, "grant_of": promotion})

    def undo(self, tx: Tx, hold: Hold) -> None:
        account, _, lot, _ = hold.subject
        tx.conn.execute(delete(balances).where(*_balance(account, "promotional_balance", lot), balances.c.amount == 0))

    def give_back(self, tx, hold, uses_back, amount_back, returned):
        account, _, lot, pid = hold.subject
        target = hold.amount - (0 if returned.everything else returned.kept.get(pid, 0))
        delta = max(0, target - amount_back)
        if not delta:
            return {}, []
        row = tx.conn.execute(_BALANCE, _balance_key(account, "promotional_balance", lot)).first()
        taken = min(delta, max(0, row.amount - row.held) if row is not None else 0)
        entries = []
        if taken:
            add_to(tx.conn, balances, _balance_key(account, "promotional_balance", lot), amount=-taken)
            entries.append(Entry("grant_revoked", lot, money(taken, tx.currency)))
        if delta - taken:   # already spent by a later order: reported for the merchant, never taken below zero
            entries.append(Entry("grant_spent", lot, money(delta - taken, tx.currency)))
        return {"amount_back": amount_back + delta}, entries


KINDS: dict[str, Kind] = {
    "use": Use(), "budget": Budget(), "customer_use": CustomerUse(), "code": Code(),
    "promotional_balance": Balance(), "gift_card": Balance(), "points": Balance(), "grant": Grant(),
}


def needs(redemption: Redemption, customer_id: str) -> list[Need]:
    """Everything the order uses that the ledger keeps, in the one order rows are locked in."""
    out: list[Need] = []
    for used in redemption.promotions:
        p = used.promotion
        if p.code_pool:
            out.append(Need(Hold("code", (p.id,), 1, 0), p))
        lim = p.limits
        if lim.total_uses is None and lim.uses_per_customer is None and lim.budget is None \
                and not lim.return_usage_on_cancel:
            continue   # counting promotions without limits would make every checkout queue on one row for nothing
        out.append(Need(Hold("use", (p.id,), 1, 0), p))
        if lim.budget is not None:
            out.append(Need(Hold("budget", (p.id,), 0, used.amount), p))
        if lim.uses_per_customer is not None:
            out.append(Need(Hold("customer_use", (p.id, customer_id), 1, 0), p))
    account = redemption.account_id
    for t in redemption.tenders:
        out.append(Need(Hold(t.kind, (account, t.kind, t.lot_id), 1, t.amount), tender=t))
    for g in redemption.grants:
        out.append(Need(Hold("grant", (account, "promotional_balance", g.lot_id, g.promotion), 0, g.amount), grant=g))
    return sorted(out, key=lambda n: n.hold.key())


def item_values(hold: Hold, order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "kind": hold.kind, "subject": subject_text(hold.subject), "uses": hold.uses,
            "amount": hold.amount, "uses_back": 0, "amount_back": 0, "forfeited": 0}


def hold_of(row: Any) -> Hold:
    return Hold(row.kind, tuple(json.loads(row.subject)), row.uses, row.amount)


def code_hashes(codes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({code_hash(c) for c in codes}))
