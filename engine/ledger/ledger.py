"""The redemption ledger: makes usage limits, budgets, single-use codes and balances hold when many
checkouts run at once. evaluate() stays pure and reads usage as input; the ledger is where it is kept.

Operations, each one database transaction, each idempotent under the caller's order id:

- `reserve(trace, order_id, customer_id, ttl, now, codes=)` first re-derives the trace from its own
  inputs (engine.verify) and refuses one that differs, previews, or was priced too long ago; then it
  holds everything the verified trace uses, each part through its kind in holds.py (a use, the
  customer's use, the budget, a single-use code, a promotional balance lot, the gift card, points, a
  grant to issue). All or nothing: if a part no longer fits, nothing is held and `ReservationRefused`
  names every part and its reason.
- `commit(order_id, now)` turns the holds into uses and issues the order's grants as lots;
  `release(order_id, now)` gives them back; a reservation whose `expires_at <= now` is released by the
  next write (and by `expire(now)`), and can no longer be committed.
- `cancel(order_id, now, returned=)` after commit gives back, priced by engine.refund (returns.py),
  what the kept order no longer uses.
- Balances are opened only by `credit_lot`, `load_gift_card` / `adjust_gift_card`, `set_points` /
  `add_points` (accounts.py) and by committed grants; `account_balances` reads them back in the
  account file's words for evaluate().
- Reads (reports.py) never write.

Every change appends to the audit log; nothing else writes there. Time is passed in; the ledger
compares it with the database's own clock (`max_clock_skew`) so that one caller with a wrong clock
cannot expire everyone's checkout.
"""
from __future__ import annotations

import hashlib
import json
import re
import random
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence

from sqlalchemy import Connection, Engine, bindparam, insert, select, text, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..errors import InputError
from ..model import POOL_TOKEN_PREFIX, RuleSet, Usage
from ..text import normalise_code, shorten, text_problem
from ..trace import Trace
from ..verify import TraceMismatch, rederived_with_document, trace_document
from . import accounts, archive, codes as pool, reports
from .common import check_id, check_now, iso, money, money_decimal, us
from .errors import LedgerError, LedgerReason, Refusal, ReservationRefused
from .holds import KINDS, Entry, Hold, Tx, code_hashes, hold_of, item_values, needs
from .redemption import Redemption
from .returns import cumulative, line_quantities, returned_value
from .store import (HEAD_REVISION, audit_log, balances, codes as code_table, make_engine, reading,
                    reservation_items as items, reservations)

MAX_ATTEMPTS = 12          # serialization failures, deadlocks, a lost race to insert the same order id
UNAVAILABLE_ATTEMPTS = 6   # a lost connection or a restarting server: about 3 s of retries in all
MAX_TTL = timedelta(days=7)   # a checkout that holds a promotion longer than this is a bug, not a checkout
MAX_CODES = 20             # codes per resolve_codes / reserve call
MAX_LOTS = 100             # lots account_balances returns (the account schema's bound)
FUTURE_TOLERANCE = timedelta(seconds=60)   # a trace priced this far after reserve's `now` is still accepted
MAX_REBUILT = 8            # older rule sets built again from the archive, kept compiled (least recently used go)
STATE_HELD, STATE_COMMITTED, STATE_RELEASED, STATE_EXPIRED, STATE_CANCELLED = \
    "held", "committed", "released", "expired", "cancelled"


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


VERSION = re.compile(r"sha256:[0-9a-f]{64}")   # what ruleset.build_ruleset names a rule set


class Ledger:
    """The ledger for one rule set (the one `reserve` accepts traces from). Every rule set `reserve` has
    priced orders with is kept in the database (archive.py), so an order priced before a reload or a
    restart can still be cancelled; `history` may still name earlier rule sets, which are then not built
    again (and orders reserved before the ledger kept rule sets need it). `max_trace_age`: how long after pricing
    a trace may be reserved. `max_clock_skew`: how far a write's `now` may be from the database's clock
    (None turns the comparison off: for replays and tests with fixed dates, never for a live checkout)."""

    def __init__(self, db: str | Engine, ruleset: RuleSet, *, actor: str = "promo-engine",
                 history: Iterable[RuleSet] = (), pool_size: int = 8,
                 max_trace_age: timedelta = timedelta(minutes=15),
                 max_clock_skew: timedelta | None = timedelta(minutes=5)):
        self.engine = make_engine(db, pool_size) if isinstance(db, str) else db
        self.ruleset = ruleset
        self.rulesets = {r.version: r for r in (*history, ruleset)}   # given: always at hand
        self._rebuilt: OrderedDict[str, RuleSet] = OrderedDict()      # from the archive, least recent first
        self._rebuilding = threading.Lock()
        self._archived: set[str] = set()                               # versions known to be stored
        self.actor = _actor(actor) or "promo-engine"
        self.max_trace_age = max_trace_age
        self.max_clock_skew = max_clock_skew
        self._check_initialised()

    def close(self) -> None:
        self.engine.dispose()

    # --- codes ---------------------------------------------------------------------------------------

    def resolve_codes(self, entered: Sequence[str], now: datetime | str) -> pool.CodeResolution:
        """Before evaluate(): shared codes pass through; an unused single-use code becomes its promotion's
        token (and is kept for reserve()); unknown, used and expired ones are dropped, each with its reason.
        At most MAX_CODES codes, looked up in one query."""
        when = check_now(now)
        entered = _codes(entered)
        pooled_hashes = {raw: pool.code_hash(raw) for raw in entered if pool.looks_like_pool_code(raw)}
        states = self._read(lambda conn: reports.code_states(conn, pooled_hashes.values(), when)) \
            if pooled_hashes else {}
        out, pooled, checks = [], [], []
        for raw in entered:
            code = normalise_code(raw)
            if code in self.ruleset.codes and not code.startswith(POOL_TOKEN_PREFIX):
                out.append(raw)
                checks.append(pool.CodeCheck(raw, pool.CodeStatus.SHARED, self.ruleset.codes[code][0]))
                continue
            found = states.get(pooled_hashes.get(raw, ""))
            promotion = self.ruleset.promotions.get(found[0]) if found is not None else None
            if promotion is None or not promotion.code_pool:
                checks.append(pool.CodeCheck(raw, pool.CodeStatus.UNKNOWN_CODE))
            elif found[1] != "unused":
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
        when = check_now(now)
        actor = _actor(actor)
        promotion = self.ruleset.promotions.get(promotion_id) if isinstance(promotion_id, str) else None
        if promotion is None or not promotion.code_pool:
            raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{shorten(promotion_id)} is not a promotion with "
                                                               f"code_pool: true in this rule set")
        if type(count) is not int or not 1 <= count <= pool.MAX_COUNT:
            raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"count must be 1 to {pool.MAX_COUNT}; got {shorten(count)}")
        if prefix is not None and (not isinstance(prefix, str) or not pool.PREFIX.fullmatch(prefix)):
            raise LedgerError(LedgerReason.BAD_REQUEST, detail="a prefix is 1 to 12 upper-case letters and digits")
        batch = secrets.token_hex(6)
        plain = pool.generate(count, prefix)

        def work(conn: Connection) -> list[str]:
            rows = [{"code_hash": pool.code_hash(c), "promotion_id": promotion_id, "state": "unused",
                     "order_id": None, "batch": batch, "created_at": iso(when)} for c in plain]
            for start in range(0, len(rows), 1000):
                conn.execute(insert(code_table), rows[start:start + 1000])
            self._audit(conn, when, actor, "codes_generated", None, f"promotion {promotion_id}",
                        {"count": count, "batch": batch, "prefix": prefix})
            return plain
        # Not retried after a lost connection: a second batch would be generated (harmless, but not asked for).
        return self._run(work, when, retry_unavailable=False)

    # --- reserve, commit, release, expire --------------------------------------------------------------

    def reserve(self, trace: Trace | Mapping[str, Any], order_id: str, customer_id: str,
                ttl: timedelta | int | float, now: datetime | str, codes: Sequence[str] = (),
                actor: str | None = None) -> Reservation:
        check_id(order_id, "order_id")
        check_id(customer_id, "customer_id")
        when = check_now(now)
        ttl_us = _ttl_us(ttl, order_id)
        presented = _codes(codes)
        actor = _actor(actor)
        order, doc = self._verified(trace, self.ruleset, order_id)
        redemption = Redemption.of(order, self.ruleset, order_id)
        text_ = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(text_.encode()).hexdigest()
        expires = when + timedelta(microseconds=ttl_us)
        wanted = needs(redemption, customer_id)
        stored: list[str] = []   # the version, when the transaction stored its rule set (kept once it commits)

        def work(conn: Connection) -> Reservation:
            row = conn.execute(_RESERVATION, {"order_id": order_id}).first()
            if row is not None:   # a retry: the same reservation, whatever has happened to the clock since
                if row.trace_hash != digest or row.customer_id != customer_id:
                    raise LedgerError(LedgerReason.ORDER_REUSED, order_id)
                _refuse_closed(row)
                return self._reservation(conn, row)
            self._admissible(order, when, order_id)
            self._sweep(conn, when, actor)
            conn.execute(_NEW_RESERVATION, dict(
                order_id=order_id, customer_id=customer_id, account_id=redemption.account_id,
                ruleset_version=order.ruleset_version, trace_hash=digest, trace=text_, state=STATE_HELD,
                created_at=iso(when), expires_at_us=us(expires), expires_at=iso(expires), closed_at=None,
                returned="{}", returns="{}"))
            if order.ruleset_version not in self._archived and archive.record(conn, self.ruleset, when):
                stored.append(order.ruleset_version)
            tx = self._tx(conn, when, order_id, actor, redemption.currency, code_hashes(presented))
            refusals: list[Refusal] = []
            holds: list[Hold] = []
            for need in wanted:
                got = KINDS[need.hold.kind].hold(tx, need)
                (refusals if isinstance(got, Refusal) else holds).append(got)
            if refusals:
                raise ReservationRefused(order_id, tuple(refusals))   # rolls the whole transaction back
            if holds:
                conn.execute(_NEW_ITEM, [item_values(hold, order_id) for hold in holds])
            for hold in holds:
                tx.audit("reserve", _subject(hold), {"kind": hold.kind, "held_uses": hold.uses,
                                                     "held_amount": hold.amount})
            tx.audit("reserve", None, {"state": STATE_HELD, "expires_at": iso(expires), "trace_hash": digest})
            return Reservation(order_id, customer_id, STATE_HELD, order.ruleset_version, digest, iso(when),
                               iso(expires), tuple(holds))
        result = self._run(work, when)
        self._archived.update(stored)
        return result

    def commit(self, order_id: str, now: datetime | str, actor: str | None = None) -> Reservation:
        check_id(order_id, "order_id")
        when = check_now(now)
        actor = _actor(actor)

        def work(conn: Connection) -> Reservation:
            row = self._locked(conn, order_id)
            if row.state in (STATE_COMMITTED, STATE_CANCELLED):
                return self._reservation(conn, row)       # committing twice is harmless
            _not_before(row, when)
            if order_id in self._sweep(conn, when, actor):   # its time was up: the sweep just expired it
                row = self._locked(conn, order_id)
            _refuse_closed(row)
            tx = self._tx(conn, when, order_id, actor, json.loads(row.trace)["currency"])
            holds = self._holds(conn, order_id)
            for hold in holds:
                KINDS[hold.kind].settle(tx, hold)
                tx.audit("commit", _subject(hold), {"kind": hold.kind, "uses": hold.uses, "amount": hold.amount})
            self._close(conn, order_id, STATE_COMMITTED, when, actor)
            # the row is locked, and closing it changed only its state (and closed_at, not shown)
            return Reservation(row.order_id, row.customer_id, STATE_COMMITTED, row.ruleset_version, row.trace_hash,
                               row.created_at, row.expires_at, tuple(holds))
        return self._run(work, when)

    def release(self, order_id: str, now: datetime | str, actor: str | None = None) -> Reservation:
        check_id(order_id, "order_id")
        when = check_now(now)
        actor = _actor(actor)

        def work(conn: Connection) -> Reservation:
            row = self._locked(conn, order_id)
            if row.state in (STATE_COMMITTED, STATE_CANCELLED):
                raise LedgerError(LedgerReason.ORDER_COMMITTED, order_id)
            if row.state == STATE_HELD:
                _not_before(row, when)
                self._undo(conn, row, when, actor, "release")
                self._close(conn, order_id, STATE_RELEASED, when, actor)
            return self._reservation(conn, self._locked(conn, order_id))   # released or expired: harmless
        return self._run(work, when)

    def expire(self, now: datetime | str, actor: str | None = None) -> tuple[str, ...]:
        """Release every reservation whose time is up at `now`; returns their order ids."""
        when = check_now(now)
        actor = _actor(actor)
        return tuple(self._run(lambda conn: self._sweep(conn, when, actor), when))

    # --- cancel ----------------------------------------------------------------------------------------

    def cancel(self, order_id: str, now: datetime | str, returned: Mapping[str, int] | None = None,
               return_id: str | None = None, actor: str | None = None) -> Cancellation:
        """Give back what a committed order no longer uses. `returned` (line id -> units) is a partial
        return; None cancels whatever is not yet returned. Each return is applied once per `return_id`
        (a full cancellation's is "cancel"), so repeating a call is harmless. Successive returns are
        priced cumulatively: each gives back the difference between what all returns so far are worth
        and what the earlier ones were."""
        check_id(order_id, "order_id")
        when = check_now(now)
        actor = _actor(actor)
        if returned is not None and (not isinstance(returned, Mapping) or not returned):
            raise LedgerError(LedgerReason.BAD_RETURN, order_id, detail="name the lines returned and how many units")
        if returned is not None and (return_id is None or return_id == "cancel"):
            raise LedgerError(LedgerReason.BAD_RETURN, order_id,
                              detail="a partial return needs its own return_id (the caller's key for this return)")
        if return_id is not None:
            check_id(return_id, "return_id")
        rid = return_id or "cancel"
        request = None if returned is None else dict(returned)
        self._prepare_ruleset(order_id)

        def work(conn: Connection) -> Cancellation:
            row = self._locked(conn, order_id)
            if row.state not in (STATE_COMMITTED, STATE_CANCELLED):
                raise LedgerError(LedgerReason.ORDER_NOT_COMMITTED, order_id, state=row.state)
            done = json.loads(row.returns)
            if rid in done:
                if done[rid].get("request") != request:
                    raise LedgerError(LedgerReason.BAD_RETURN, order_id,
                                      detail=f"return id {rid!r} was already used for other lines")
                return Cancellation.from_dict(done[rid])
            _not_before(row, when)
            doc = json.loads(row.trace)
            ruleset = self.ruleset_for(doc["ruleset_version"], order_id, conn)
            order, _ = self._verified(doc, ruleset, order_id)
            before = json.loads(row.returned)
            after = cumulative(order_id, line_quantities(order), before, returned)
            holds = self._holds(conn, order_id, with_back=True)
            worth = returned_value(ruleset, order, before, after, when, self._expired_lots(conn, order, holds, when))
            tx = self._tx(conn, when, order_id, actor, order.currency)
            entries: list[Entry] = []
            for item_id, hold, uses_back, amount_back, forfeited in holds:
                changes, given = KINDS[hold.kind].give_back(tx, hold, uses_back, amount_back, worth)
                entries.extend(given)
                if changes:
                    if "forfeited" in changes:
                        changes["forfeited"] += forfeited
                    conn.execute(update(items).where(items.c.id == item_id).values(**changes))
                    tx.audit("give_back", _subject(hold),
                             {"kind": hold.kind, "return_id": rid,
                              "uses_back": changes.get("uses_back", uses_back) - uses_back,
                              "amount_back": changes.get("amount_back", amount_back) - amount_back})
            paid_back = worth.worth_after.get(("payment_method", None), 0) - \
                worth.worth_before.get(("payment_method", None), 0)
            if paid_back:
                entries.append(Entry("payment_method", "", money(paid_back, order.currency)))
            result = Cancellation(order_id, rid, worth.everything, tuple(sorted(after.items())), tuple(entries))
            done[rid] = dict(result.to_dict(), request=request)
            conn.execute(update(reservations).where(reservations.c.order_id == order_id).values(
                returned=json.dumps(after, sort_keys=True), returns=json.dumps(done, sort_keys=True),
                state=STATE_CANCELLED if result.cancelled else STATE_COMMITTED))
            tx.audit("cancel" if result.cancelled else "return", None, {"return_id": rid, "returned": after})
            return result
        return self._run(work, when)

    @staticmethod
    def _expired_lots(conn: Connection, order: Trace, holds: list, when: datetime) -> frozenset[str]:
        """Lots of this order that have expired at `when`, by the ledger's own terms (for balances opened
        before the ledger kept terms, by the trace's)."""
        lots = {h.subject[2] for _, h, *_ in holds if h.kind == "promotional_balance"}
        if not lots:
            return frozenset()
        rows = {r.lot_id: r for r in conn.execute(select(balances).where(
            balances.c.account_id == order.account_id, balances.c.kind == "promotional_balance",
            balances.c.lot_id.in_(sorted(lots))))}
        priced = {t.id: t.expires_at for t in order.tenders.used if t.kind == "promotional_balance"}
        out = set()
        for lot in lots:
            row = rows.get(lot)
            if row is not None and row.expires_at_us is not None:
                if row.expires_at_us <= us(when):
                    out.add(lot)
            elif priced.get(lot) is not None and when >= datetime.fromisoformat(priced[lot]):
                out.add(lot)
        return frozenset(out)

    # --- rule sets -----------------------------------------------------------------------------------

    def ruleset_for(self, version: str, order_id: str | None = None, conn: Connection | None = None) -> RuleSet:
        """The rule set of `version`: the current one, one given as `history`, or one this ledger stored
        when it priced an order with it, built again (and kept compiled). LedgerError(WRONG_RULESET) when
        the ledger never priced with it."""
        if not isinstance(version, str) or VERSION.fullmatch(version) is None:   # checked before any SQL
            raise LedgerError(LedgerReason.WRONG_RULESET, order_id, got=shorten(version), expected=self.ruleset.version)
        found = self.rulesets.get(version)
        if found is not None:
            return found
        with self._rebuilding:   # one build per version, however many cancels want it at once
            found = self._rebuilt.get(version)
            if found is None:
                found = archive.rebuilt(conn, version) if conn is not None else \
                    self._read(lambda c: archive.rebuilt(c, version))
            if found is None:
                raise LedgerError(LedgerReason.WRONG_RULESET, order_id, got=shorten(version),
                                  expected=f"{self.ruleset.version} (and no stored rule set of that version)")
            self._rebuilt[version] = found
            self._rebuilt.move_to_end(version)
            while len(self._rebuilt) > MAX_REBUILT:
                self._rebuilt.popitem(last=False)
            return found

    def ruleset_versions(self) -> list[tuple[str, str]]:
        """(version, first priced at) of every rule set the ledger keeps, oldest first."""
        return self._read(archive.stored_versions)

    def _prepare_ruleset(self, order_id: str) -> None:
        """Build an order's older rule set before the write transaction that needs it, so that the
        build does not run while the order's row is locked. (An unknown order or version is left for
        the transaction to report.)"""
        version = self._read(lambda conn: conn.execute(select(reservations.c.ruleset_version)
                                                       .where(reservations.c.order_id == order_id)).scalar())
        if version is not None and version not in self.rulesets:
            try:
                self.ruleset_for(version, order_id)
            except LedgerError:
                pass

    # --- balances ------------------------------------------------------------------------------------

    def credit_lot(self, account_id: str, lot_id: str, amount: str, currency: str, now: datetime | str, *,
                   expires_at: str | None = None, granted_at: str | None = None,
                   pays_for: Mapping[str, Any] | None = None, op_id: str | None = None,
                   actor: str | None = None) -> None:
        """Credit a promotional balance lot with its terms (usable from `granted_at`, default `now`, until
        `expires_at`; `pays_for` in the account file's words). A lot id is credited once."""
        check_id(account_id, "account_id")
        check_id(lot_id, "lot_id")
        when = check_now(now)
        actor = _actor(actor)
        lot = accounts.checked_lot(self.ruleset, account_id, lot_id, amount, currency, granted_at, expires_at,
                                   pays_for, when)
        request = {"lot": lot_id, "amount": amount, "currency": currency, "expires_at": expires_at,
                   "granted_at": granted_at, "pays_for": pays_for}

        def work(conn: Connection) -> None:
            if accounts.once(conn, op_id, account_id, "credit_lot", request, when):
                accounts.credit_lot(conn, lot, account_id, when, self._auditor(conn, when, actor, None))
        self._run(work, when, retry_unavailable=op_id is not None)

    def load_gift_card(self, account_id: str, amount: str, currency: str, now: datetime | str, *,
                       op_id: str | None = None, actor: str | None = None) -> None:
        """Add `amount` to the account's gift card (opened on the first load)."""
        self._change_money(account_id, amount, currency, now, op_id, actor, "load_gift_card", signed=False)

    def adjust_gift_card(self, account_id: str, delta: str, now: datetime | str, *, op_id: str | None = None,
                         actor: str | None = None) -> None:
        """Correct the gift card by `delta` ("-500" takes 500 off); never below what checkouts hold."""
        self._change_money(account_id, delta, None, now, op_id, actor, "adjust_gift_card", signed=True)

    def _change_money(self, account_id: str, amount: object, currency: object, now: datetime | str,
                      op_id: str | None, actor: str | None, action: str, signed: bool) -> None:
        check_id(account_id, "account_id")
        when = check_now(now)
        actor = _actor(actor)
        request = {"amount": amount, "currency": currency}

        def work(conn: Connection) -> None:
            cur = currency if currency is not None else self._currency_of(conn, account_id, "gift_card")
            units = accounts.money_amount(self.ruleset, account_id, amount, cur, signed=signed)
            if accounts.once(conn, op_id, account_id, action, request, when):
                accounts.change(conn, account_id, "gift_card", currency, units, when,
                                self._auditor(conn, when, actor, None))
        self._run(work, when, retry_unavailable=op_id is not None)

    def set_points(self, account_id: str, balance: int, value: str, currency: str, now: datetime | str, *,
                   op_id: str | None = None, actor: str | None = None) -> None:
        """Set the account's points to `balance`, each worth `value` in `currency`."""
        check_id(account_id, "account_id")
        when = check_now(now)
        actor = _actor(actor)
        accounts.points_count(balance, "balance")
        points = accounts._account(self.ruleset, account_id, points={"balance": balance, "value": value,
                                                                     "currency": currency, "use": 0}).points
        request = {"balance": balance, "value": value, "currency": currency}

        def work(conn: Connection) -> None:
            if accounts.once(conn, op_id, account_id, "set_points", request, when):
                accounts.change(conn, account_id, "points", points.currency, 0, when,
                                self._auditor(conn, when, actor, None), point_value=f"{points.value:f}", set_to=balance)
        self._run(work, when, retry_unavailable=op_id is not None)

    def add_points(self, account_id: str, points: int, now: datetime | str, *, op_id: str | None = None,
                   actor: str | None = None) -> None:
        """Add `points` (negative takes them off; never below what checkouts hold)."""
        check_id(account_id, "account_id")
        when = check_now(now)
        actor = _actor(actor)
        accounts.points_count(points, "points", signed=True)

        def work(conn: Connection) -> None:
            if accounts.once(conn, op_id, account_id, "add_points", {"points": points}, when):
                accounts.change(conn, account_id, "points", None, points, when, self._auditor(conn, when, actor, None))
        self._run(work, when, retry_unavailable=op_id is not None)

    def account_balances(self, account_id: str, now: datetime | str,
                         points_use: int | str = "as_needed") -> dict[str, Any]:
        """Exactly the `promotional_balance` / `gift_card` / `points` part of an account dict, with what the
        ledger has available at `now`: `dict(account, **ledger.account_balances(id, now))` prices an
        order with the ledger's balances."""
        check_id(account_id, "account_id")
        when = check_now(now)
        if points_use != "as_needed" and (type(points_use) is not int or not 0 <= points_use <= accounts.MAX_POINTS):
            raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"points_use is a whole number of points or "
                                                               f"\"as_needed\"; got {shorten(points_use)}")
        return self._read(lambda conn: reports.account_balances(conn, account_id, when, points_use, MAX_LOTS))

    def balances(self, account_id: str, now: datetime | str) -> dict[tuple[str, str], Decimal | int]:
        """What the ledger holds for an account: (kind, lot id) -> available at `now` (money, or points)."""
        check_id(account_id, "account_id")
        when = check_now(now)
        rows = self._read(lambda conn: reports.balance_rows(conn, account_id, when))
        return {(r.kind, r.lot_id): (available if r.kind == "points" else money_decimal(available, r.currency))
                for r, available in rows}

    # --- reading -------------------------------------------------------------------------------------

    def usage_snapshot(self, customer_id: str, now: datetime | str,
                       promotions: Iterable[str] | None = None) -> dict[str, Usage]:
        """The counts evaluate() reads, for `customer_id`: committed uses and live holds together, so a
        promotion whose last use is held by another checkout already shows `usage_limit_reached`."""
        check_id(customer_id, "customer_id")
        when = check_now(now)
        if promotions is None:
            wanted = sorted(pid for pid, p in self.ruleset.promotions.items() if _limited(p))
        else:
            wanted = sorted(p for p in promotions if isinstance(p, str) and p in self.ruleset.promotions)
        return self._read(lambda conn: reports.usage_snapshot(conn, self.ruleset, customer_id, when, wanted))

    def reservation(self, order_id: str) -> Reservation:
        check_id(order_id, "order_id")

        def work(conn: Connection) -> Reservation:
            row = conn.execute(select(reservations).where(reservations.c.order_id == order_id)).first()
            if row is None:
                raise LedgerError(LedgerReason.UNKNOWN_ORDER, order_id)
            return self._reservation(conn, row)
        return self._read(work)

    def order_trace(self, order_id: str) -> dict[str, Any]:
        """The trace an order was reserved with, as JSON data (what a service shows for the order and
        what a retried checkout is compared with)."""
        check_id(order_id, "order_id")

        def work(conn: Connection) -> dict[str, Any]:
            row = conn.execute(select(reservations.c.trace).where(reservations.c.order_id == order_id)).first()
            if row is None:
                raise LedgerError(LedgerReason.UNKNOWN_ORDER, order_id)
            return json.loads(row.trace)
        return self._read(work)

    def audit(self, order_id: str | None = None) -> list[dict[str, Any]]:
        if order_id is not None:
            check_id(order_id, "order_id")
        query = select(audit_log).order_by(audit_log.c.id)
        if order_id is not None:
            query = query.where(audit_log.c.order_id == order_id)
        return self._read(lambda conn: [dict(r._mapping, delta=json.loads(r.delta)) for r in conn.execute(query)])

    def promotion_report(self, promotion_id: str, now: datetime | str) -> dict[str, Any]:
        """A promotion's counters, limits and code pool at `now` (holds whose time is up count as
        released), for `promo ledger show`."""
        if text_problem(promotion_id, 64, identifier=True) is not None:
            raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"not a promotion id: {shorten(promotion_id)}")
        when = check_now(now)
        return self._read(lambda conn: reports.promotion_report(conn, self.ruleset, promotion_id, when))

    # --- inside a transaction --------------------------------------------------------------------------

    def _run(self, work: Callable[[Connection], Any], when: datetime | None = None, *,
             retry_unavailable: bool = True) -> Any:
        """One write transaction. Retried, with a bounded, jittered backoff, when the database says two
        transactions collided (serialization failure, deadlock, a busy SQLite file, the same order id
        inserted twice at once) and, for operations that are idempotent, when the connection was lost or
        the server is restarting. No database exception ever leaves: each becomes a LedgerError."""
        collisions = lost = 0
        while True:
            try:
                with self.engine.begin() as conn:
                    conn.info[_AUDIT_ROWS] = rows = []
                    try:
                        if when is not None:
                            self._check_clock(conn, when)
                        result = work(conn)
                        if rows:   # the operation's audit rows, in the order written, in one statement
                            conn.execute(_NEW_AUDIT, rows)
                        return result
                    finally:
                        conn.info.pop(_AUDIT_ROWS, None)
            except LedgerError:
                raise
            except (DBAPIError, SQLAlchemyError) as exc:
                kind = _classify(exc)
                if kind == "collision" and collisions < MAX_ATTEMPTS - 1:
                    collisions += 1
                    time.sleep(random.uniform(0, min(0.25, 0.004 * 2 ** collisions)))
                    continue
                if kind == "unavailable" and retry_unavailable and lost < UNAVAILABLE_ATTEMPTS - 1:
                    lost += 1
                    time.sleep(min(1.0, 0.05 * 2 ** lost))
                    continue
                raise _ledger_error(kind, exc) from None

    def _read(self, work: Callable[[Connection], Any]) -> Any:
        """One read: no write, no write lock (SQLite: a deferred transaction); retried like `_run`."""
        lost = 0
        while True:
            try:
                with reading(self.engine) as conn:
                    return work(conn)
            except LedgerError:
                raise
            except (DBAPIError, SQLAlchemyError) as exc:
                kind = _classify(exc)
                if kind in ("collision", "unavailable") and lost < UNAVAILABLE_ATTEMPTS - 1:
                    lost += 1
                    time.sleep(min(1.0, 0.05 * 2 ** lost))
                    continue
                raise _ledger_error(kind, exc) from None

    def _check_initialised(self) -> None:
        def work(conn: Connection) -> None:
            try:
                version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except (DBAPIError, SQLAlchemyError):
                version = None
            if version != HEAD_REVISION:
                state = "has no ledger tables" if version is None else f"is at revision {version}, not {HEAD_REVISION}"
                raise LedgerError(LedgerReason.NOT_INITIALISED, detail=f"the ledger database {state}")
        try:
            self._read(work)
        except LedgerError as exc:
            if exc.reason is LedgerReason.UNAVAILABLE and "unable to open" in str(exc):
                raise LedgerError(LedgerReason.NOT_INITIALISED, detail="there is no ledger database there") from None
            raise

    def _check_clock(self, conn: Connection, when: datetime) -> None:
        """One caller with a wrong clock must not expire every checkout in flight: a write whose `now` is
        further than `max_clock_skew` from the database server's clock is refused."""
        if self.max_clock_skew is None:
            return
        value = conn.execute(_DB_CLOCK).scalar()
        db_now = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if db_now.tzinfo is None:
            db_now = db_now.replace(tzinfo=timezone.utc)   # SQLite's CURRENT_TIMESTAMP is UTC without an offset
        if abs(when - db_now) > self.max_clock_skew:
            raise LedgerError(LedgerReason.CLOCK_SKEW, detail=f"now {when.isoformat()} is {abs(when - db_now)} from the "
                                                              f"database's clock ({iso(db_now)}); at most "
                                                              f"{self.max_clock_skew} is allowed. Nothing was changed.")

    def _verified(self, trace: Trace | Mapping[str, Any], ruleset: RuleSet, order_id: str) -> tuple[Trace, dict]:
        """The trace re-derived from its inputs, and as JSON data; refused as the ledger's errors."""
        try:
            doc = trace_document(trace)
            if doc["ruleset_version"] != ruleset.version:
                raise LedgerError(LedgerReason.WRONG_RULESET, order_id, got=shorten(doc["ruleset_version"]),
                                  expected=ruleset.version)
            return rederived_with_document(ruleset, doc)
        except TraceMismatch as exc:
            raise LedgerError(LedgerReason.TRACE_MISMATCH, order_id, field=exc.field) from None
        except InputError as exc:
            first = exc.problems[0] if exc.problems else None
            raise LedgerError(LedgerReason.BAD_REQUEST, order_id,
                              detail=f"not a trace: {first.path}: {first.message}" if first else "not a trace") \
                from None

    def _admissible(self, order: Trace, when: datetime, order_id: str) -> None:
        """A preview is never an order; a trace priced long ago (or in the future) is not today's price."""
        if order.inputs.preview:
            raise LedgerError(LedgerReason.PREVIEW_TRACE, order_id, preview=", ".join(order.inputs.preview))
        priced = datetime.fromisoformat(order.now)
        age = when - priced
        if age > self.max_trace_age or -age > FUTURE_TOLERANCE:
            raise LedgerError(LedgerReason.STALE_TRACE, order_id, priced=order.now, now=when.isoformat(),
                              age=str(abs(age)), limit=str(self.max_trace_age))

    def _tx(self, conn: Connection, when: datetime, order_id: str, actor: str | None, currency: str,
            hashes: tuple[str, ...] = ()) -> Tx:
        return Tx(conn, when, order_id, self.ruleset, currency, hashes, self._auditor(conn, when, actor, order_id))

    def _auditor(self, conn: Connection, when: datetime, actor: str | None, order_id: str | None) -> Callable:
        return lambda action, subject, delta: self._audit(conn, when, actor, action, order_id, subject, delta)

    def _undo(self, conn: Connection, row: Any, when: datetime, actor: str | None, action: str) -> None:
        """Give back everything a held reservation holds."""
        tx = self._tx(conn, when, row.order_id, actor, json.loads(row.trace)["currency"])
        for hold in self._holds(conn, row.order_id):
            KINDS[hold.kind].undo(tx, hold)
            tx.audit(action, _subject(hold), {"kind": hold.kind, "held_uses": -hold.uses, "held_amount": -hold.amount})

    def _sweep(self, conn: Connection, when: datetime, actor: str | None) -> list[str]:
        """Release every reservation whose time is up, so that no expired hold blocks anyone and none can be
        committed. A conditional update decides who releases each one, so two operations sweeping at once
        never release it twice."""
        due = conn.execute(_DUE, {"now_us": us(when)}).all()
        freed = []
        for row in due:
            won = conn.execute(update(reservations).where(reservations.c.order_id == row.order_id,
                                                          reservations.c.state == STATE_HELD)
                               .values(state=STATE_EXPIRED, closed_at=iso(when))).rowcount
            if won == 1:
                self._undo(conn, row, when, actor, "expire")
                self._audit(conn, when, actor, "expire", row.order_id, None, {"state": STATE_EXPIRED})
                freed.append(row.order_id)
        return freed

    def _close(self, conn: Connection, order_id: str, state: str, when: datetime, actor: str | None) -> None:
        conn.execute(_CLOSE, {"key": order_id, "state": state, "closed_at": iso(when)})
        self._audit(conn, when, actor, state, order_id, None, {"state": state})

    def _locked(self, conn: Connection, order_id: str) -> Any:
        row = conn.execute(_RESERVATION, {"order_id": order_id}).first()
        if row is None:
            raise LedgerError(LedgerReason.UNKNOWN_ORDER, order_id)
        return row

    def _holds(self, conn: Connection, order_id: str, with_back: bool = False) -> list:
        rows = sorted(conn.execute(_ITEMS, {"order_id": order_id}).all(), key=lambda r: hold_of(r).key())
        if with_back:
            return [(r.id, hold_of(r), r.uses_back, r.amount_back, r.forfeited) for r in rows]
        return [hold_of(r) for r in rows]

    def _reservation(self, conn: Connection, row: Any) -> Reservation:
        return Reservation(row.order_id, row.customer_id, row.state, row.ruleset_version, row.trace_hash,
                           row.created_at, row.expires_at, tuple(self._holds(conn, row.order_id)))

    def _currency_of(self, conn: Connection, account_id: str, kind: str) -> str:
        row = conn.execute(select(balances.c.currency).where(balances.c.account_id == account_id,
                                                             balances.c.kind == kind, balances.c.lot_id == "")).first()
        if row is None:
            raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{account_id} has no {kind.replace('_', ' ')} in the "
                                                               "ledger")
        return row.currency

    def _audit(self, conn: Connection, when: datetime, actor: str | None, action: str, order_id: str | None,
               subject: str | None, delta: Mapping[str, Any]) -> None:
        """An audit row, written with the operation's others when its work is done (in `_run`, inside
        the same transaction: a rolled-back operation leaves none)."""
        row = {"at": iso(when), "actor": actor or self.actor, "action": action, "order_id": order_id,
               "subject": subject, "delta": json.dumps(delta, sort_keys=True, default=str)}
        pending = conn.info.get(_AUDIT_ROWS)
        if pending is None:
            conn.execute(insert(audit_log).values(**row))
        else:
            pending.append(row)


# --- small pure helpers ------------------------------------------------------------------------------

def _limited(promotion: Any) -> bool:
    """Promotions the ledger counts: those with a limit."""
    lim = promotion.limits
    return lim.total_uses is not None or lim.uses_per_customer is not None or lim.budget is not None \
        or lim.return_usage_on_cancel


def _subject(hold: Hold) -> str:
    return json.dumps(list(hold.subject[:3] if hold.kind == "grant" else hold.subject), ensure_ascii=False)


def _ttl_us(ttl: object, order_id: str) -> int:
    """A TTL in whole milliseconds, more than zero and at most 7 days, as microseconds."""
    if isinstance(ttl, timedelta):
        micro = ttl // timedelta(microseconds=1)
    elif type(ttl) is int:
        micro = ttl * 1_000_000
    elif type(ttl) is float and ttl == ttl and abs(ttl) < 1e12:
        micro = round(Decimal(repr(ttl)) * 1_000_000) if Decimal(repr(ttl)) * 1000 == \
            (Decimal(repr(ttl)) * 1000).to_integral_value() else -1
    else:
        micro = -1
    if not 1000 <= micro <= MAX_TTL // timedelta(microseconds=1) or micro % 1000:
        raise LedgerError(LedgerReason.BAD_TTL, order_id, ttl=shorten(ttl))
    return micro


def _codes(codes: object) -> list[str]:
    if isinstance(codes, (str, bytes)) or not isinstance(codes, (list, tuple)) or len(codes) > MAX_CODES:
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"codes are a list of at most {MAX_CODES} strings")
    for code in codes:
        problem = text_problem(code, 64, identifier=True)
        if problem is not None:
            raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"a code {problem}")
    return list(codes)


def _actor(actor: object) -> str | None:
    if actor is None:
        return None
    if text_problem(actor, 128, identifier=True) is not None or not actor:
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"actor must be 1 to 128 characters; got {shorten(actor)}")
    return actor  # type: ignore[return-value]


def _not_before(row: Any, when: datetime) -> None:
    created = datetime.fromisoformat(row.created_at)
    if when < created:
        raise LedgerError(LedgerReason.CLOCK_SKEW, row.order_id,
                          detail=f"now {when.isoformat()} is before order {row.order_id} was reserved "
                                 f"({row.created_at}): a clock is wrong. Nothing was changed.")


def _refuse_closed(row: Any) -> None:
    if row.state == STATE_RELEASED:
        raise LedgerError(LedgerReason.ORDER_RELEASED, row.order_id)
    if row.state == STATE_EXPIRED:
        raise LedgerError(LedgerReason.ORDER_EXPIRED, row.order_id, expires_at=row.expires_at)


# Statements every checkout runs, built once (see common.py: building one costs more than running it).
_RESERVATION = select(reservations).where(reservations.c.order_id == bindparam("order_id")).with_for_update()
_DUE = select(reservations).where(reservations.c.state == STATE_HELD, reservations.c.expires_at_us <= bindparam("now_us")) \
    .order_by(reservations.c.order_id)
_NEW_RESERVATION = insert(reservations)
_CLOSE = update(reservations).where(reservations.c.order_id == bindparam("key")) \
    .values(state=bindparam("state"), closed_at=bindparam("closed_at"))
_ITEMS = select(items).where(items.c.order_id == bindparam("order_id"))
_NEW_ITEM = insert(items)
_NEW_AUDIT = insert(audit_log)
_DB_CLOCK = text("SELECT CURRENT_TIMESTAMP")
_AUDIT_ROWS = "promo_audit_rows"   # conn.info key: the running operation's audit rows, not yet written
_COLLISION_STATES = ("40001", "40P01", "23505")


def _classify(exc: Exception) -> str:
    """collision | unavailable | bad_request | not_initialised, from what the database said."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or ""
    message = str(orig if orig is not None else exc).lower()
    if code in _COLLISION_STATES or "database is locked" in message or "database is busy" in message:
        return "collision"
    if code == "42P01" or "no such table" in message:
        return "not_initialised"
    if code.startswith("22") or code.startswith("54"):   # data exception; a value or statement too large
        return "bad_request"
    return "unavailable"   # a lost connection, a server shutting down or starting (08xxx, 57Pxx), a pool timeout


def _ledger_error(kind: str, exc: Exception) -> LedgerError:
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None)
    detail = f"{type(orig or exc).__name__}{f' {code}' if code else ''}"
    if kind == "collision":
        return LedgerError(LedgerReason.BUSY)
    if kind == "not_initialised":
        return LedgerError(LedgerReason.NOT_INITIALISED, detail="the ledger database has no ledger tables")
    if kind == "bad_request":
        return LedgerError(LedgerReason.BAD_REQUEST, detail=f"the database refused a value ({detail})")
    text_ = str(orig if orig is not None else exc).lower()
    if "unable to open" in text_:
        detail += ": unable to open the database file"
    return LedgerError(LedgerReason.UNAVAILABLE, detail=detail)
