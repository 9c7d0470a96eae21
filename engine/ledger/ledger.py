"""The redemption ledger: makes usage limits, budgets, single-use codes and balances hold when many
checkouts run at once. evaluate() stays pure and reads usage as input; the ledger is where it is kept.

Operations, each one database transaction, each idempotent under the caller's order id:

- `reserve(trace, order_id, customer_id, ttl, now, codes=)` holds everything the trace uses: a use of
  each applied promotion with limits (in all and for the customer), its amount against the budget, each
  single-use code, and each promotional balance lot, gift card and points amount. All or nothing: if a
  part no longer fits, nothing is held and `ReservationRefused` names every part and its reason.
- `commit(order_id, now)` turns the holds into uses; `release(order_id, now)` gives them back (checkout
  abandoned, payment failed); a reservation whose `expires_at <= now` is released by whichever operation
  comes next (and by `expire(now)`), and can no longer be committed.
- `cancel(order_id, now, returned=)` after commit gives back, through `engine.refund`, the budget the
  kept order no longer uses, usage (when the promotion says `return_usage_on_cancel`), gift card and
  points, and promotional balance to lots that have not expired at `now` (the rest is recorded as
  forfeited).
- `usage_snapshot(customer_id, now)`: the counts evaluate() reads (holds included), so the trace says
  `usage_limit_reached` before checkout.

Every change appends to the audit log (who, what, when, which order); nothing else writes there.
Time is always passed in; the ledger never reads the clock.
"""
from __future__ import annotations

import hashlib
import json
import random
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from .. import schemas
from ..inputs import parse_now
from ..model import POOL_TOKEN_PREFIX, Promotion, RuleSet, Usage
from ..money import quantum
from ..refund import evaluate_kept, refund
from ..text import normalise_code
from ..trace import Trace
from . import codes as pool
from .errors import LedgerError, LedgerReason, Refusal, ReservationRefused, message
from .store import (audit_log, balances, codes as code_table, customer_counters, make_engine, promotion_counters,
                    reading, reservation_items as items, reservations)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_ATTEMPTS = 12          # serialization failures, deadlocks, a lost race to insert the same order id
MAX_TTL = timedelta(days=7)   # a checkout that holds a promotion longer than this is a bug, not a checkout
KIND_ORDER = {"promotion": 0, "customer": 1, "code": 2, "balance": 3}   # the one order rows are locked in
STATE_HELD, STATE_COMMITTED, STATE_RELEASED, STATE_EXPIRED, STATE_CANCELLED = \
    "held", "committed", "released", "expired", "cancelled"


@dataclass(frozen=True)
class Hold:
    """One thing a reservation holds: a use and budget of a promotion, a customer's use, a code, a balance."""

    kind: str                  # promotion | customer | code | balance
    subject: tuple[str, ...]   # (promotion,) (promotion, customer) (code hash, promotion) (account, kind, lot id)
    uses: int
    amount: int                # minor units of the currency; points for points


@dataclass(frozen=True)
class Reservation:
    order_id: str
    customer_id: str
    state: str                 # held | committed | released | expired | cancelled
    ruleset_version: str
    trace_hash: str
    created_at: str
    expires_at: str
    holds: tuple[Hold, ...]


@dataclass(frozen=True)
class Entry:
    """One thing a cancellation gave back (or recorded as forfeited)."""

    kind: str                  # usage | budget | code | promotional_balance | forfeited | gift_card | points | payment_method
    subject: str
    amount: str                # money in the order's currency, points, or uses


@dataclass(frozen=True)
class Cancellation:
    order_id: str
    return_id: str
    cancelled: bool            # every unit of the order is now returned
    returned: tuple[tuple[str, int], ...]   # line id -> units returned so far, this return included
    entries: tuple[Entry, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> "Cancellation":
        return Cancellation(doc["order_id"], doc["return_id"], doc["cancelled"],
                            tuple((line, qty) for line, qty in doc["returned"]),
                            tuple(Entry(**e) for e in doc["entries"]))


@dataclass(frozen=True)
class _Need:
    """A part of the trace to hold, with what it is checked against."""

    kind: str
    subject: tuple[str, ...]
    uses: int
    amount: int
    promotion: Promotion | None = None
    expected: int | None = None        # balances: what the trace says was available
    currency: str | None = None

    def key(self) -> tuple:
        return (KIND_ORDER[self.kind], self.subject)


class Ledger:
    """The ledger for one rule set (the one `reserve` accepts traces from). `history` holds earlier rule
    sets, so that orders priced with them can still be cancelled."""

    def __init__(self, db: str | Engine, ruleset: RuleSet, *, actor: str = "promo-engine",
                 history: Iterable[RuleSet] = (), pool_size: int = 8):
        self.engine = make_engine(db, pool_size) if isinstance(db, str) else db
        self.ruleset = ruleset
        self.rulesets = {r.version: r for r in (*history, ruleset)}
        self.actor = actor

    def close(self) -> None:
        self.engine.dispose()

    # --- codes ---------------------------------------------------------------------------------------

    def resolve_codes(self, entered: Sequence[str], now: datetime | str) -> pool.CodeResolution:
        """Before evaluate(): shared codes pass through; an unused single-use code becomes its promotion's
        token (and is kept for reserve()); unknown, used and expired ones are dropped, each with its reason."""
        when = parse_now(now)
        if isinstance(entered, (str, bytes)) or not isinstance(entered, Sequence) or \
                not all(isinstance(c, str) for c in entered):
            raise LedgerError(LedgerReason.BAD_REQUEST, detail="entered codes are a list of strings")
        if any(pool.looks_like_pool_code(raw) for raw in entered):
            self.expire(when)   # a code held by an abandoned checkout is free again
        out, pooled, checks = [], [], []
        for raw in entered:
            code = normalise_code(raw)
            if code in self.ruleset.codes and not code.startswith(POOL_TOKEN_PREFIX):
                out.append(raw)
                checks.append(pool.CodeCheck(raw, pool.CodeStatus.SHARED, self.ruleset.codes[code][0]))
                continue
            row = None
            if pool.looks_like_pool_code(raw):
                with reading(self.engine) as conn:
                    row = conn.execute(select(code_table.c.promotion_id, code_table.c.state)
                                       .where(code_table.c.code_hash == pool.code_hash(raw))).first()
            promotion = self.ruleset.promotions.get(row.promotion_id) if row is not None else None
            if promotion is None or not promotion.code_pool:
                checks.append(pool.CodeCheck(raw, pool.CodeStatus.UNKNOWN_CODE))
            elif row.state != "unused":
                checks.append(pool.CodeCheck(raw, pool.CodeStatus.CODE_ALREADY_USED, promotion.id))
            else:
                over = promotion.ends is not None and when >= promotion.ends
                checks.append(pool.CodeCheck(raw, pool.CodeStatus.EXPIRED if over else pool.CodeStatus.POOL,
                                             promotion.id))
                out.append(promotion.code)   # evaluate() sees the token and reports the window itself
                pooled.append(raw)
        return pool.CodeResolution(tuple(out), tuple(pooled), tuple(checks))

    def generate_codes(self, promotion_id: str, count: int, now: datetime | str, prefix: str | None = None,
                       actor: str | None = None) -> list[str]:
        """Create `count` single-use codes for a `code_pool` promotion and return them in plain text: the
        only time they exist outside the customer's hands. The ledger keeps their hashes."""
        when = parse_now(now)
        promotion = self.ruleset.promotions.get(promotion_id)
        if promotion is None or not promotion.code_pool:
            raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{promotion_id!r} is not a promotion with "
                                                               f"code_pool: true in this rule set")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= pool.MAX_COUNT:
            raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"count must be 1 to {pool.MAX_COUNT}; got {count!r}")
        if prefix is not None and (not isinstance(prefix, str) or not pool.PREFIX.match(prefix)):
            raise LedgerError(LedgerReason.BAD_REQUEST, detail="a prefix is 1 to 12 upper-case letters and digits")
        batch = secrets.token_hex(6)
        plain = pool.generate(count, prefix)

        def work(conn: Connection) -> list[str]:
            rows = [{"code_hash": pool.code_hash(c), "promotion_id": promotion_id, "state": "unused",
                     "order_id": None, "batch": batch, "created_at": _iso(when)} for c in plain]
            for start in range(0, len(rows), 1000):
                conn.execute(insert(code_table), rows[start:start + 1000])
            self._audit(conn, when, actor, "codes_generated", None, f"promotion {promotion_id}",
                        {"count": count, "batch": batch, "prefix": prefix})
            return plain
        return self._run(work)

    # --- reserve, commit, release, expire --------------------------------------------------------------

    def reserve(self, trace: Trace | Mapping[str, Any], order_id: str, customer_id: str,
                ttl: timedelta | int | float, now: datetime | str, codes: Sequence[str] = (),
                actor: str | None = None) -> Reservation:
        when = parse_now(now)
        _check_id(order_id, "order_id")
        _check_id(customer_id, "customer_id")
        seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
                not 0 < seconds <= MAX_TTL.total_seconds():
            raise LedgerError(LedgerReason.BAD_TTL, order_id, ttl=ttl)
        doc = _trace_doc(trace)
        if doc["ruleset_version"] != self.ruleset.version:
            raise LedgerError(LedgerReason.WRONG_RULESET, order_id, got=doc["ruleset_version"],
                              expected=self.ruleset.version)
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(text.encode()).hexdigest()
        expires = when + timedelta(seconds=seconds)
        needs = sorted(self._needs(doc, customer_id), key=_Need.key)
        hashes = sorted({pool.code_hash(c) for c in codes})

        def work(conn: Connection) -> Reservation:
            self._sweep(conn, when, actor)
            row = conn.execute(select(reservations).where(reservations.c.order_id == order_id)
                               .with_for_update()).first()
            if row is not None:
                if row.trace_hash != digest or row.customer_id != customer_id:
                    raise LedgerError(LedgerReason.ORDER_REUSED, order_id)
                _refuse_closed(row)
                return self._reservation(conn, row)
            conn.execute(insert(reservations).values(
                order_id=order_id, customer_id=customer_id, account_id=doc["account_id"],
                ruleset_version=doc["ruleset_version"], trace_hash=digest, trace=text, state=STATE_HELD,
                created_at=_iso(when), expires_at_us=_us(expires), expires_at=_iso(expires), closed_at=None,
                returned="{}", returns="{}"))
            refusals: list[Refusal] = []
            holds: list[Hold] = []
            for need in needs:
                refusal, hold = self._hold(conn, need, hashes, order_id, when)
                if refusal is not None:
                    refusals.append(refusal)
                elif hold is not None:
                    holds.append(hold)
            if refusals:
                raise ReservationRefused(order_id, tuple(refusals))   # rolls the whole transaction back
            for hold in holds:
                conn.execute(insert(items).values(order_id=order_id, kind=hold.kind, subject=_subject(hold.subject),
                                                  uses=hold.uses, amount=hold.amount, uses_back=0, amount_back=0,
                                                  forfeited=0))
                self._audit(conn, when, actor, "reserve", order_id, _subject(hold.subject),
                            {"kind": hold.kind, "held_uses": hold.uses, "held_amount": hold.amount})
            self._audit(conn, when, actor, "reserve", order_id, None,
                        {"state": STATE_HELD, "expires_at": _iso(expires), "trace_hash": digest})
            return Reservation(order_id, customer_id, STATE_HELD, doc["ruleset_version"], digest, _iso(when),
                               _iso(expires), tuple(holds))
        return self._run(work)

    def commit(self, order_id: str, now: datetime | str, actor: str | None = None) -> Reservation:
        when = parse_now(now)

        def work(conn: Connection) -> Reservation:
            self._sweep(conn, when, actor)
            row = self._locked(conn, order_id)
            if row.state in (STATE_COMMITTED, STATE_CANCELLED):
                return self._reservation(conn, row)       # committing twice is harmless
            _refuse_closed(row)
            for hold in self._holds(conn, order_id):
                self._settle(conn, hold, order_id)
                self._audit(conn, when, actor, "commit", order_id, _subject(hold.subject),
                            {"kind": hold.kind, "uses": hold.uses, "amount": hold.amount})
            self._close(conn, order_id, STATE_COMMITTED, when, actor)
            return self._reservation(conn, self._locked(conn, order_id))
        return self._run(work)

    def release(self, order_id: str, now: datetime | str, actor: str | None = None) -> Reservation:
        when = parse_now(now)

        def work(conn: Connection) -> Reservation:
            self._sweep(conn, when, actor)
            row = self._locked(conn, order_id)
            if row.state in (STATE_COMMITTED, STATE_CANCELLED):
                raise LedgerError(LedgerReason.ORDER_COMMITTED, order_id)
            if row.state == STATE_HELD:
                self._undo(conn, order_id, when, actor, "release")
                self._close(conn, order_id, STATE_RELEASED, when, actor)
            return self._reservation(conn, self._locked(conn, order_id))   # released or expired: harmless
        return self._run(work)

    def expire(self, now: datetime | str, actor: str | None = None) -> tuple[str, ...]:
        """Release every reservation whose time is up at `now`; returns their order ids."""
        when = parse_now(now)
        return tuple(self._run(lambda conn: self._sweep(conn, when, actor)))

    # --- cancel ----------------------------------------------------------------------------------------

    def cancel(self, order_id: str, now: datetime | str, returned: Mapping[str, int] | None = None,
               return_id: str | None = None, actor: str | None = None) -> Cancellation:
        """Give back what a committed order no longer uses. `returned` (line id -> units) is a partial
        return; None cancels whatever is not yet returned. Each return is applied once per `return_id`
        (default: "cancel" for a full cancellation, else the returned quantities), so repeating a call
        is harmless. Successive returns are priced cumulatively: each gives back the difference between
        what all returns so far are worth and what the earlier ones were."""
        when = parse_now(now)
        if returned is not None and (not isinstance(returned, Mapping) or not returned):
            raise LedgerError(LedgerReason.BAD_RETURN, order_id, detail="name the lines returned and how many units")
        if returned is not None and (return_id is None or return_id == "cancel"):
            raise LedgerError(LedgerReason.BAD_RETURN, order_id,
                              detail="a partial return needs its own return_id (the caller's key for this return)")
        rid = return_id or "cancel"
        request = None if returned is None else dict(returned)

        def work(conn: Connection) -> Cancellation:
            self._sweep(conn, when, actor)
            row = self._locked(conn, order_id)
            if row.state not in (STATE_COMMITTED, STATE_CANCELLED):
                raise LedgerError(LedgerReason.ORDER_NOT_COMMITTED, order_id, state=row.state)
            done = json.loads(row.returns)
            if rid in done:
                if done[rid].get("request") != request:
                    raise LedgerError(LedgerReason.BAD_RETURN, order_id,
                                      detail=f"return id {rid!r} was already used for other lines")
                return Cancellation.from_dict(done[rid])
            doc = json.loads(row.trace)
            ruleset = self.rulesets.get(doc["ruleset_version"])
            if ruleset is None:
                raise LedgerError(LedgerReason.WRONG_RULESET, order_id, got=doc["ruleset_version"],
                                  expected=", ".join(sorted(self.rulesets)))
            lines = {line["id"]: line["quantity"] for line in doc["lines"]}
            before = json.loads(row.returned)
            after = _cumulative(order_id, lines, before, returned)
            result = self._give_back(conn, ruleset, doc, order_id, before, after, when, actor, rid)
            done[rid] = dict(result.to_dict(), request=request)
            conn.execute(update(reservations).where(reservations.c.order_id == order_id).values(
                returned=json.dumps(after, sort_keys=True), returns=json.dumps(done, sort_keys=True),
                state=STATE_CANCELLED if result.cancelled else STATE_COMMITTED))
            self._audit(conn, when, actor, "cancel" if result.cancelled else "return", order_id, None,
                        {"return_id": rid, "returned": after})
            return result
        return self._run(work)

    def _give_back(self, conn: Connection, ruleset: RuleSet, doc: dict, order_id: str, before: dict, after: dict,
                   when: datetime, actor: str | None, rid: str) -> Cancellation:
        currency = doc["currency"]
        lines = {line["id"]: line["quantity"] for line in doc["lines"]}
        everything = after == lines
        worth_after = _worth(ruleset, doc, after, when)
        worth_before = _worth(ruleset, doc, before, when)
        kept = {} if everything else _kept_amounts(ruleset, doc, after)
        earned = {a["promotion"]: a["amount"] for a in doc["applied"] + doc["grants"]}
        entries: list[Entry] = []
        for hold in self._holds(conn, order_id, with_back=True):
            item_id, uses_back, amount_back = hold.pop("id"), hold.pop("uses_back"), hold.pop("amount_back")
            h = Hold(**hold)
            changes: dict[str, int] = {}
            if h.kind == "promotion":
                pid = h.subject[0]
                target = _minor(earned[pid], currency) - (_minor(kept[pid], currency) if pid in kept else 0)
                # Budget only ever goes back: charging it again could overrun what others have since used.
                delta = max(0, max(0, min(target, h.amount)) - amount_back)
                if delta:
                    conn.execute(update(promotion_counters).where(promotion_counters.c.promotion_id == pid)
                                 .values(spent=promotion_counters.c.spent - delta))
                    entries.append(Entry("budget", pid, _money(delta, currency)))
                    changes["amount_back"] = amount_back + delta
            if h.kind in ("promotion", "customer", "code") and uses_back == 0 and \
                    self._usage_returns(ruleset, h, kept, everything):
                changes["uses_back"] = 1
                if h.kind == "promotion":
                    conn.execute(update(promotion_counters).where(promotion_counters.c.promotion_id == h.subject[0])
                                 .values(uses=promotion_counters.c.uses - 1))
                    entries.append(Entry("usage", h.subject[0], "1"))
                elif h.kind == "customer":
                    conn.execute(update(customer_counters).where(
                        customer_counters.c.promotion_id == h.subject[0],
                        customer_counters.c.customer_id == h.subject[1]).values(uses=customer_counters.c.uses - 1))
                else:
                    conn.execute(update(code_table).where(code_table.c.code_hash == h.subject[0])
                                 .values(state="unused", order_id=None))
                    entries.append(Entry("code", h.subject[0][:12], "1"))
            if h.kind == "balance":
                account, kind, lot = h.subject
                key = (kind, lot or None)
                delta = worth_after.get(key, 0) - worth_before.get(key, 0)
                if delta < 0:
                    raise LedgerError(LedgerReason.RETURN_NEEDS_REVIEW, order_id, tender=f"{kind} {lot}".strip(),
                                      amount=-delta)
                expired = kind == "promotional_balance" and _lot_expired(doc, lot, when)
                if delta and expired:
                    conn.execute(update(items).where(items.c.id == item_id)
                                 .values(forfeited=items.c.forfeited + delta))
                    entries.append(Entry("forfeited", lot, _money(delta, currency)))
                elif delta:
                    conn.execute(update(balances).where(balances.c.account_id == account, balances.c.kind == kind,
                                                        balances.c.lot_id == lot)
                                 .values(amount=balances.c.amount + delta))
                    entries.append(Entry(kind, lot, str(delta) if kind == "points" else _money(delta, currency)))
                if delta:
                    changes["amount_back"] = amount_back + delta
            if changes:
                conn.execute(update(items).where(items.c.id == item_id).values(**changes))
                self._audit(conn, when, actor, "give_back", order_id, _subject(h.subject),
                            {"kind": h.kind, "return_id": rid, "uses_back": changes.get("uses_back", uses_back) - uses_back,
                             "amount_back": changes.get("amount_back", amount_back) - amount_back})
        paid_back = worth_after.get(("payment_method", None), 0) - worth_before.get(("payment_method", None), 0)
        if paid_back:
            entries.append(Entry("payment_method", "", _money(paid_back, currency)))
        return Cancellation(order_id, rid, everything, tuple(sorted(after.items())), tuple(entries))

    @staticmethod
    def _usage_returns(ruleset: RuleSet, hold: Hold, kept: dict, everything: bool) -> bool:
        """A use goes back when the order no longer uses the promotion and the promotion says so."""
        pid = hold.subject[1] if hold.kind == "code" else hold.subject[0]
        promotion = ruleset.promotions.get(pid)
        return promotion is not None and promotion.limits.return_usage_on_cancel and (everything or pid not in kept)

    # --- reading -------------------------------------------------------------------------------------

    def usage_snapshot(self, customer_id: str, now: datetime | str,
                       promotions: Iterable[str] | None = None) -> dict[str, Usage]:
        """The counts evaluate() reads, for `customer_id`: committed uses and live holds together, so a
        promotion whose last use is held by another checkout already shows `usage_limit_reached`."""
        when = parse_now(now)
        wanted = sorted(promotions) if promotions is not None else \
            sorted(pid for pid, p in self.ruleset.promotions.items() if _limited(p))

        def work(conn: Connection) -> dict[str, Usage]:
            self._sweep(conn, when, None)
            totals = {r.promotion_id: r for r in conn.execute(
                select(promotion_counters).where(promotion_counters.c.promotion_id.in_(wanted)))}
            mine = {r.promotion_id: r.uses + r.held_uses for r in conn.execute(
                select(customer_counters).where(customer_counters.c.promotion_id.in_(wanted),
                                                customer_counters.c.customer_id == customer_id))}
            out = {}
            for pid in wanted:
                promotion = self.ruleset.promotions.get(pid)
                row = totals.get(pid)
                spent = row.spent + row.held_spent if row is not None else 0
                out[pid] = Usage(total_uses=row.uses + row.held_uses if row is not None else 0,
                                 customer_uses=mine.get(pid, 0),
                                 budget_spent=_money_decimal(spent, promotion.currency)
                                 if promotion is not None and promotion.currency else Decimal(0))
            return out
        return self._run(work)

    def balances(self, account_id: str, now: datetime | str) -> dict[tuple[str, str], Decimal | int]:
        """What the ledger holds for an account: (kind, lot id) -> available at `now` (money, or points),
        after releasing holds whose time is up."""
        when = parse_now(now)

        def work(conn: Connection) -> list:
            self._sweep(conn, when, None)
            return conn.execute(select(balances).where(balances.c.account_id == account_id)).all()
        rows = self._run(work)
        return {(r.kind, r.lot_id): (r.amount - r.held if r.kind == "points"
                                     else _money_decimal(r.amount - r.held, r.currency)) for r in rows}

    def reservation(self, order_id: str) -> Reservation:
        with reading(self.engine) as conn:
            row = conn.execute(select(reservations).where(reservations.c.order_id == order_id)).first()
            if row is None:
                raise LedgerError(LedgerReason.UNKNOWN_ORDER, order_id)
            return self._reservation(conn, row)

    def audit(self, order_id: str | None = None) -> list[dict[str, Any]]:
        query = select(audit_log).order_by(audit_log.c.id)
        if order_id is not None:
            query = query.where(audit_log.c.order_id == order_id)
        with reading(self.engine) as conn:
            return [dict(r._mapping, delta=json.loads(r.delta)) for r in conn.execute(query)]

    def promotion_report(self, promotion_id: str, now: datetime | str) -> dict[str, Any]:
        """A promotion's counters, limits and code pool at `now` (holds whose time is up released first),
        for `promo ledger show`."""
        promotion = self.ruleset.promotions.get(promotion_id)
        self.expire(now)
        with reading(self.engine) as conn:
            row = conn.execute(select(promotion_counters)
                               .where(promotion_counters.c.promotion_id == promotion_id)).first()
            customers = conn.execute(select(func.count()).select_from(customer_counters)
                                     .where(customer_counters.c.promotion_id == promotion_id,
                                            customer_counters.c.uses + customer_counters.c.held_uses > 0)).scalar()
            states = dict(conn.execute(select(code_table.c.state, func.count()).where(
                code_table.c.promotion_id == promotion_id).group_by(code_table.c.state)).all())
        currency = promotion.currency if promotion is not None else None
        money = (lambda n: str(_money_decimal(n, currency))) if currency else str
        limits = promotion.limits if promotion is not None else None
        return {"promotion": promotion_id, "in_rule_set": promotion is not None,
                "uses": row.uses if row else 0, "held_uses": row.held_uses if row else 0,
                "budget_spent": money(row.spent if row else 0), "budget_held": money(row.held_spent if row else 0),
                "total_uses_limit": limits.total_uses if limits else None,
                "uses_per_customer_limit": limits.uses_per_customer if limits else None,
                "budget": str(limits.budget) if limits and limits.budget is not None else None,
                "customers_with_uses": customers, "codes": {s: states.get(s, 0) for s in ("unused", "held", "redeemed")}}

    # --- inside a transaction --------------------------------------------------------------------------

    def _run(self, work: Callable[[Connection], Any]) -> Any:
        """One transaction; retried, with a bounded, jittered backoff, when the database says two
        transactions collided (serialization failure, deadlock, a busy SQLite file, the same order id
        inserted twice at once). Refusals and bad requests are never retried."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except DBAPIError as exc:
                if not _retryable(exc):
                    raise
                if attempt == MAX_ATTEMPTS - 1:
                    raise LedgerError(LedgerReason.BUSY) from exc
                time.sleep(random.uniform(0, min(0.25, 0.004 * 2 ** attempt)))
        raise AssertionError("unreachable")

    def _needs(self, doc: dict, customer_id: str) -> list[_Need]:
        """Everything the trace uses that the ledger keeps, in the one order rows are locked in."""
        currency = doc["currency"]
        needs: list[_Need] = []
        used = [(a["promotion"], a["amount"]) for a in doc["applied"]] + \
               [(g["promotion"], g["amount"]) for g in doc["grants"]]
        for pid, amount in used:
            promotion = self.ruleset.promotions.get(pid)
            if promotion is None:
                raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"the trace applies {pid!r}, which this rule set "
                                                                   "does not have")
            if promotion.code_pool:
                needs.append(_Need("code", (pid,), 1, 0, promotion))
            if not _limited(promotion):
                continue
            needs.append(_Need("promotion", (pid,), 1, _minor(amount, currency), promotion))
            if promotion.limits.uses_per_customer is not None:
                needs.append(_Need("customer", (pid, customer_id), 1, 0, promotion))
        account = doc["account_id"]
        for tender in doc["tenders"]["used"]:
            kind = tender["kind"]
            if kind == "points":
                needs.append(_Need("balance", (account, kind, ""), 1, tender["points"],
                                   expected=tender["points"] + tender["points_left"], currency=currency))
            else:
                needs.append(_Need("balance", (account, kind, tender.get("id", "")), 1, _minor(tender["amount"], currency),
                                   expected=_minor(tender["balance_before"], currency), currency=currency))
        return needs

    def _hold(self, conn: Connection, need: _Need, hashes: list[str], order_id: str,
              when: datetime) -> tuple[Refusal | None, Hold | None]:
        """Hold one part of a reservation, or say why it no longer fits (then nothing is changed by it)."""
        p = need.promotion
        if need.kind == "promotion":
            pid = need.subject[0]
            _insert_ignore(conn, promotion_counters, promotion_id=pid, uses=0, held_uses=0, spent=0, held_spent=0)
            row = conn.execute(select(promotion_counters).where(promotion_counters.c.promotion_id == pid)
                               .with_for_update()).one()
            if p.limits.total_uses is not None and row.uses + row.held_uses + 1 > p.limits.total_uses:
                return _refusal("promotion", pid, LedgerReason.USAGE_LIMIT_REACHED,
                                limit=f"{p.limits.total_uses} uses in all"), None
            if p.limits.budget is not None:
                left = _minor(p.limits.budget, p.currency) - row.spent - row.held_spent
                if need.amount > left:
                    return _refusal("promotion", pid, LedgerReason.BUDGET_EXHAUSTED,
                                    left=_money(max(left, 0), p.currency), needed=_money(need.amount, p.currency)), None
            conn.execute(update(promotion_counters).where(promotion_counters.c.promotion_id == pid).values(
                held_uses=promotion_counters.c.held_uses + 1, held_spent=promotion_counters.c.held_spent + need.amount))
            return None, Hold("promotion", need.subject, 1, need.amount)
        if need.kind == "customer":
            pid, customer = need.subject
            _insert_ignore(conn, customer_counters, promotion_id=pid, customer_id=customer, uses=0, held_uses=0)
            where = (customer_counters.c.promotion_id == pid, customer_counters.c.customer_id == customer)
            row = conn.execute(select(customer_counters).where(*where).with_for_update()).one()
            if row.uses + row.held_uses + 1 > p.limits.uses_per_customer:
                return _refusal("promotion", pid, LedgerReason.USAGE_LIMIT_REACHED,
                                limit=f"{p.limits.uses_per_customer} per customer"), None
            conn.execute(update(customer_counters).where(*where).values(held_uses=customer_counters.c.held_uses + 1))
            return None, Hold("customer", need.subject, 1, 0)
        if need.kind == "code":
            pid = need.subject[0]
            mine = conn.execute(select(code_table.c.code_hash).where(
                code_table.c.code_hash.in_(hashes), code_table.c.promotion_id == pid)
                .order_by(code_table.c.code_hash)).scalars().all() if hashes else []
            if not mine:
                return _refusal("code", pid, LedgerReason.CODE_NOT_PRESENTED), None
            for digest in mine:   # a conditional update: of two checkouts racing for a code, exactly one wins
                taken = conn.execute(update(code_table).where(code_table.c.code_hash == digest,
                                                              code_table.c.state == "unused")
                                     .values(state="held", order_id=order_id)).rowcount
                if taken == 1:
                    return None, Hold("code", (digest, pid), 1, 0)
            return _refusal("code", pid, LedgerReason.CODE_ALREADY_USED), None
        account, kind, lot = need.subject
        opened = _insert_ignore(conn, balances, account_id=account, kind=kind, lot_id=lot, currency=need.currency,
                                amount=need.expected, held=0, opened_at=_iso(when))
        where = (balances.c.account_id == account, balances.c.kind == kind, balances.c.lot_id == lot)
        row = conn.execute(select(balances).where(*where).with_for_update()).one()
        available = row.amount - row.held
        what = f"{kind.replace('_', ' ')} {lot}".strip() + f" of {account}"
        if available != need.expected or need.amount > available:
            shown = (lambda n: f"{n} points") if kind == "points" else (lambda n: _money(n, row.currency))
            return _refusal("balance", f"{kind} {lot}".strip(), LedgerReason.BALANCE_CHANGED, what=what,
                            available=shown(available), expected=shown(need.expected)), None
        if opened:
            self._audit(conn, when, None, "balance_opened", order_id, _subject(need.subject),
                        {"amount": need.expected, "currency": row.currency})
        conn.execute(update(balances).where(*where).values(held=balances.c.held + need.amount))
        return None, Hold("balance", need.subject, 1, need.amount)

    def _settle(self, conn: Connection, hold: Hold, order_id: str) -> None:
        """Commit one hold: what was held becomes used."""
        if hold.kind == "promotion":
            t = promotion_counters
            conn.execute(update(t).where(t.c.promotion_id == hold.subject[0]).values(
                uses=t.c.uses + hold.uses, held_uses=t.c.held_uses - hold.uses,
                spent=t.c.spent + hold.amount, held_spent=t.c.held_spent - hold.amount))
        elif hold.kind == "customer":
            t = customer_counters
            conn.execute(update(t).where(t.c.promotion_id == hold.subject[0], t.c.customer_id == hold.subject[1])
                         .values(uses=t.c.uses + hold.uses, held_uses=t.c.held_uses - hold.uses))
        elif hold.kind == "code":
            conn.execute(update(code_table).where(code_table.c.code_hash == hold.subject[0],
                                                  code_table.c.order_id == order_id).values(state="redeemed"))
        else:
            t, (account, kind, lot) = balances, hold.subject
            conn.execute(update(t).where(t.c.account_id == account, t.c.kind == kind, t.c.lot_id == lot)
                         .values(amount=t.c.amount - hold.amount, held=t.c.held - hold.amount))

    def _undo(self, conn: Connection, order_id: str, when: datetime, actor: str | None, action: str) -> None:
        """Give back everything a held reservation holds."""
        for hold in self._holds(conn, order_id):
            if hold.kind == "promotion":
                t = promotion_counters
                conn.execute(update(t).where(t.c.promotion_id == hold.subject[0]).values(
                    held_uses=t.c.held_uses - hold.uses, held_spent=t.c.held_spent - hold.amount))
            elif hold.kind == "customer":
                t = customer_counters
                conn.execute(update(t).where(t.c.promotion_id == hold.subject[0], t.c.customer_id == hold.subject[1])
                             .values(held_uses=t.c.held_uses - hold.uses))
            elif hold.kind == "code":
                conn.execute(update(code_table).where(code_table.c.code_hash == hold.subject[0],
                                                      code_table.c.order_id == order_id)
                             .values(state="unused", order_id=None))
            else:
                t, (account, kind, lot) = balances, hold.subject
                conn.execute(update(t).where(t.c.account_id == account, t.c.kind == kind, t.c.lot_id == lot)
                             .values(held=t.c.held - hold.amount))
            self._audit(conn, when, actor, action, order_id, _subject(hold.subject),
                        {"kind": hold.kind, "held_uses": -hold.uses, "held_amount": -hold.amount})

    def _sweep(self, conn: Connection, when: datetime, actor: str | None) -> list[str]:
        """Release every reservation whose time is up, so that no expired hold blocks anyone and none can be
        committed. A conditional update decides who releases each one, so two operations sweeping at once
        never release it twice."""
        due = conn.execute(select(reservations.c.order_id).where(
            reservations.c.state == STATE_HELD, reservations.c.expires_at_us <= _us(when))
            .order_by(reservations.c.order_id)).scalars().all()
        freed = []
        for order_id in due:
            won = conn.execute(update(reservations).where(reservations.c.order_id == order_id,
                                                          reservations.c.state == STATE_HELD)
                               .values(state=STATE_EXPIRED, closed_at=_iso(when))).rowcount
            if won == 1:
                self._undo(conn, order_id, when, actor, "expire")
                self._audit(conn, when, actor, "expire", order_id, None, {"state": STATE_EXPIRED})
                freed.append(order_id)
        return freed

    def _close(self, conn: Connection, order_id: str, state: str, when: datetime, actor: str | None) -> None:
        conn.execute(update(reservations).where(reservations.c.order_id == order_id)
                     .values(state=state, closed_at=_iso(when)))
        self._audit(conn, when, actor, state, order_id, None, {"state": state})

    def _locked(self, conn: Connection, order_id: str) -> Any:
        row = conn.execute(select(reservations).where(reservations.c.order_id == order_id).with_for_update()).first()
        if row is None:
            raise LedgerError(LedgerReason.UNKNOWN_ORDER, order_id)
        return row

    def _holds(self, conn: Connection, order_id: str, with_back: bool = False) -> list:
        rows = conn.execute(select(items).where(items.c.order_id == order_id)).all()
        rows = sorted(rows, key=lambda r: (KIND_ORDER[r.kind], tuple(json.loads(r.subject))))
        if with_back:
            return [{"id": r.id, "kind": r.kind, "subject": tuple(json.loads(r.subject)), "uses": r.uses,
                     "amount": r.amount, "uses_back": r.uses_back, "amount_back": r.amount_back} for r in rows]
        return [Hold(r.kind, tuple(json.loads(r.subject)), r.uses, r.amount) for r in rows]

    def _reservation(self, conn: Connection, row: Any) -> Reservation:
        return Reservation(row.order_id, row.customer_id, row.state, row.ruleset_version, row.trace_hash,
                           row.created_at, row.expires_at, tuple(self._holds(conn, row.order_id)))

    def _audit(self, conn: Connection, when: datetime, actor: str | None, action: str, order_id: str | None,
               subject: str | None, delta: Mapping[str, Any]) -> None:
        conn.execute(insert(audit_log).values(at=_iso(when), actor=actor or self.actor, action=action,
                                              order_id=order_id, subject=subject,
                                              delta=json.dumps(delta, sort_keys=True, default=str)))


# --- small pure helpers ------------------------------------------------------------------------------

def _limited(promotion: Promotion) -> bool:
    """Promotions the ledger counts: those with a limit. Counting the others would make every checkout
    queue on the same rows for nothing."""
    lim = promotion.limits
    return lim.total_uses is not None or lim.uses_per_customer is not None or lim.budget is not None \
        or lim.return_usage_on_cancel


def _trace_doc(trace: Trace | Mapping[str, Any]) -> dict:
    if isinstance(trace, Trace):
        return json.loads(trace.to_json(indent=None))
    if not isinstance(trace, Mapping):
        raise LedgerError(LedgerReason.BAD_REQUEST, detail="a trace is a Trace or its JSON form")
    problems = list(schemas.check("trace", trace))
    if problems:
        where, what = problems[0]
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"not a trace: {list(where)}: {what}")
    return json.loads(json.dumps(trace))


def _check_id(value: object, name: str) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= 128 or value != value.strip():
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{name} must be 1 to 128 characters without "
                                                           f"surrounding spaces; got {value!r}")


def _refuse_closed(row: Any) -> None:
    if row.state == STATE_RELEASED:
        raise LedgerError(LedgerReason.ORDER_RELEASED, row.order_id)
    if row.state == STATE_EXPIRED:
        raise LedgerError(LedgerReason.ORDER_EXPIRED, row.order_id, expires_at=row.expires_at)


def _cumulative(order_id: str, lines: Mapping[str, int], before: Mapping[str, int],
                returned: Mapping[str, int] | None) -> dict[str, int]:
    if returned is None:
        return dict(lines)
    if not isinstance(returned, Mapping) or not returned:
        raise LedgerError(LedgerReason.BAD_RETURN, order_id, detail="name the lines returned and how many units")
    after = dict(before)
    for line, qty in returned.items():
        if line not in lines:
            raise LedgerError(LedgerReason.BAD_RETURN, order_id, detail=f"the order has no line {line!r}")
        left = lines[line] - before.get(line, 0)
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= left:
            raise LedgerError(LedgerReason.BAD_RETURN, order_id,
                              detail=f"line {line} has {left} units left to return; got {qty!r}")
        after[line] = before.get(line, 0) + qty
    return after


def _worth(ruleset: RuleSet, doc: dict, quantities: Mapping[str, int], when: datetime) -> dict[tuple, int]:
    """What the returned units are worth to each tender (minor units; points for points), before any lot's
    expiry is applied: refund() priced at `when` for all units returned so far."""
    if not quantities:
        return {}
    r = refund(ruleset, doc, quantities, when)
    out: dict[tuple, int] = {}
    for part in r.parts:
        if part.kind == "points":
            out[("points", None)] = part.points or 0
        else:
            out[(part.kind, part.id)] = _minor(part.amount + (part.forfeited or 0), r.currency)
    return out


def _kept_amounts(ruleset: RuleSet, doc: dict, returned: Mapping[str, int]) -> dict[str, str]:
    kept = evaluate_kept(ruleset, doc, returned)
    return {a.promotion: f"{a.amount:f}" for a in kept.applied + tuple(kept.grants)}


def _lot_expired(doc: dict, lot: str, when: datetime) -> bool:
    for tender in doc["tenders"]["used"]:
        if tender["kind"] == "promotional_balance" and tender["id"] == lot and "expires_at" in tender:
            return when >= datetime.fromisoformat(tender["expires_at"])
    return False


def _insert_ignore(conn: Connection, table: Any, **values: Any) -> int:
    """Insert a row unless its key exists (the first checkout to touch a counter creates it)."""
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    return conn.execute(dialect_insert(table).values(**values).on_conflict_do_nothing()).rowcount


def _retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    if code in ("40001", "40P01", "23505"):
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "database is busy" in text


def _refusal(kind: str, subject: str, reason: LedgerReason, **values: Any) -> Refusal:
    values.setdefault("subject", subject)
    return Refusal(kind, subject, reason, message(reason, **values))


def _subject(parts: tuple[str, ...]) -> str:
    return json.dumps(list(parts), ensure_ascii=False)


def _minor(amount: Decimal | str, currency: str) -> int:
    """Money as a whole number of minor units; an amount finer than the currency is refused, never cut off."""
    units = Decimal(amount) / quantum(currency)
    if units != units.to_integral_value():
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{amount} is finer than {currency} allows")
    return int(units)


def _money_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor) * quantum(currency)


def _money(minor: int, currency: str) -> str:
    return f"{_money_decimal(minor, currency):f} {currency}"


def _us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()



