"""Budget burn-down: replaying a cart corpus as traffic over days, with the ledger's limits (`promo simulate`).

`Simulation(ruleset, per_day=N)` takes corpus entries one at a time (`step`): the entry's `now` is
moved onto its simulated day (the k-th N carts are day k, counted from `start` or the first cart's
date; the time of day and the UTC offset are kept), it is evaluated with `usage=` the counts so far,
and what it applied is counted exactly as `Ledger.reserve` followed by `commit` would record it:

- one use of each applied promotion, in all and for the customer (the account's id), however many
  benefits it gave;
- its amount, discounts and grant together (`earned_by_promotion`), against its budget; whether an
  amount the budget cannot cover is capped or refused is evaluate()'s to decide (`budget_overrun`),
  exactly as at checkout, since the trace is priced with these counts;
- a `code_pool` promotion's single-use code: the entered codes listed in `pool_codes` (the files
  `promo codes generate` wrote) are resolved as `Ledger.resolve_codes` does: an unused one becomes
  its promotion's token, a used one is dropped; a promotion's pool token typed as it is (`POOL:ID`)
  is dropped too, as the ledger would refuse it (`code_not_presented`). An applied pool promotion uses
  one presented code, the one `reserve` would take (by hash order).

Nothing is stored: the counts live in the Simulation, and `result()` is a frozen `SimulationResult`.
The run is sequential by nature: each cart's usage depends on every cart before it.
"""
from __future__ import annotations

import hashlib
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping

from .corpus import ON_ERROR, CorpusEntry, CorpusError
from .errors import InputError
from .evaluate import evaluate
from .ledger.codes import canonical, code_hash
from .ledger.redemption import earned_by_promotion
from .model import POOL_TOKEN_PREFIX, Promotion, RuleSet, Usage
from .text import normalise_code
from .trace import Trace

MAX_ERRORS_KEPT = 5
# The limits a promotion can exhaust for everyone, in the order a tie on one cart is reported.
LIMITS = ("total_uses", "budget")
_LIMIT_REASONS = ("usage_limit_reached", "budget_exhausted", "budget_would_overrun")


@dataclass(frozen=True)
class Moment:
    """Where in the simulated traffic something happened: the day (ISO date), its index from 0, and the
    cart (its id, or `line N`) with its corpus line."""

    day: str
    day_index: int
    cart: str
    line: int

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day, "day_index": self.day_index, "cart": self.cart, "line": self.line}


@dataclass(frozen=True)
class LimitEvent:
    """A limit and the moment it was reached (exhausted) or first refused a cart (refused)."""

    limit: str                  # total_uses | budget | uses_per_customer
    at: Moment

    def to_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, **self.at.to_dict()}


@dataclass(frozen=True)
class PromotionResult:
    """One promotion over the whole run. `discount` and `granted` are per currency, sorted by currency.
    `exhausted` is the first limit that ran out for everyone (the cart whose commit used its last use or
    the last of its budget: the ledger refuses every later use); `first_refused` the first cart the
    ledger's counts refused it (a customer's own limit, a budget that could not cover a whole discount
    with `budget_overrun: refuse`, or an exhausted limit); `customers_at_limit` how many customers are at
    `uses_per_customer` at the end. `uses` are the ledger's count: the orders that used it, less those
    cancelled that gave their use back (`return_usage_on_cancel`; `uses_returned`). `cancelled` orders
    that used it were cancelled, giving back `discount_back` and `granted_back` (and their budget);
    `discount` and `granted` are what was given at checkout."""

    uses: int
    discount: tuple[tuple[str, Decimal], ...]
    granted: tuple[tuple[str, Decimal], ...]
    exhausted: LimitEvent | None
    first_refused: LimitEvent | None
    refused: int                # carts refused for a limit
    customers_at_limit: int
    cancelled: int = 0
    uses_returned: int = 0
    discount_back: tuple[tuple[str, Decimal], ...] = ()
    granted_back: tuple[tuple[str, Decimal], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"uses": self.uses, "discount": _money(self.discount), "granted": _money(self.granted),
                "exhausted": None if self.exhausted is None else self.exhausted.to_dict(),
                "first_refused": None if self.first_refused is None else self.first_refused.to_dict(),
                "refused": self.refused, "customers_at_limit": self.customers_at_limit,
                "cancelled": self.cancelled, "uses_returned": self.uses_returned,
                "discount_back": _money(self.discount_back), "granted_back": _money(self.granted_back)}


@dataclass(frozen=True)
class DayPromotion:
    """One promotion on one day it applied or had an order cancelled: its uses, discount and granted that
    day (per currency, sorted), its orders cancelled that day, and where its limits stood at the end of
    the day: `budget_spent`, what its budget has counted so far (discounts and grants, less what
    cancellations gave back), and `uses_so_far`, its uses so far; each None when it has no such limit."""

    uses: int
    discount: tuple[tuple[str, Decimal], ...]
    granted: tuple[tuple[str, Decimal], ...]
    budget_spent: Decimal | None
    uses_so_far: int | None
    cancelled: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"uses": self.uses, "discount": _money(self.discount), "granted": _money(self.granted),
                "budget_spent": None if self.budget_spent is None else f"{self.budget_spent:f}",
                "uses_so_far": self.uses_so_far, "cancelled": self.cancelled}


@dataclass(frozen=True)
class DayResult:
    """One simulated day: its carts (abandoned checkouts among them), what its orders were given, and the
    orders cancelled that day with what they gave back."""

    day: str
    carts: int
    discount: tuple[tuple[str, Decimal], ...]
    granted: tuple[tuple[str, Decimal], ...]
    by_promotion: tuple[tuple[str, DayPromotion], ...] = ()    # the promotions that applied that day, by id
    abandoned: int = 0
    cancelled: int = 0
    discount_back: tuple[tuple[str, Decimal], ...] = ()
    granted_back: tuple[tuple[str, Decimal], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day, "carts": self.carts, "discount": _money(self.discount),
                "granted": _money(self.granted), "by_promotion": {pid: p.to_dict() for pid, p in self.by_promotion},
                "abandoned": self.abandoned, "cancelled": self.cancelled,
                "discount_back": _money(self.discount_back), "granted_back": _money(self.granted_back)}


@dataclass(frozen=True)
class SimulationResult:
    carts: int
    skipped: int
    errors: tuple[str, ...]
    per_day_carts: int
    start: str | None
    by_promotion: tuple[tuple[str, PromotionResult], ...]     # sorted by id
    per_day: tuple[DayResult, ...]
    abandoned: int = 0          # checkouts priced and never placed: nothing counted
    cancelled: int = 0          # orders cancelled within the simulated days
    cancellations_after: int = 0   # orders to be cancelled after the last simulated day: not given back

    @property
    def days(self) -> int:
        return len(self.per_day)

    def promotion(self, pid: str) -> PromotionResult:
        return dict(self.by_promotion)[pid]

    def to_dict(self) -> dict[str, Any]:
        return {"carts": self.carts, "days": self.days, "skipped": self.skipped, "errors": list(self.errors),
                "per_day_carts": self.per_day_carts, "start": self.start,
                "by_promotion": {pid: p.to_dict() for pid, p in self.by_promotion},
                "per_day": [d.to_dict() for d in self.per_day], "abandoned": self.abandoned,
                "cancelled": self.cancelled, "cancellations_after": self.cancellations_after}


@dataclass(frozen=True)
class Step:
    """One cart of the simulation: where it fell, the `now` it was priced at, the codes evaluate() saw,
    and its trace."""

    at: Moment
    now: str
    codes: tuple[str, ...]
    pool_codes: tuple[str, ...]   # the single-use codes it used (what reserve() would be given)
    trace: Trace


@dataclass(frozen=True)
class Priced:
    """What one corpus entry is priced with (Simulation.prepare): its place in the traffic, its `now` moved
    onto its day, the customer, the codes evaluate() is given and the single-use codes behind them (per
    pool promotion), and the counts so far of every limited promotion."""

    entry: CorpusEntry
    at: Moment
    now: str
    customer: str
    codes: tuple[str, ...]
    presented: tuple[tuple[str, tuple[str, ...]], ...]
    totals: Mapping[str, tuple[int, Decimal]]   # every limited promotion: uses and budget spent (Simulation.totals)
    mine: Mapping[str, int]                     # the customer's uses, of the promotions with any

    @property
    def usage(self) -> dict[str, Usage]:
        """The counts evaluate() is given, as `Ledger.usage_snapshot` would give them."""
        return usage_of(self.totals, self.mine)


# Reasons decided before the usage gates (scope, then status, currency and window): a promotion refused
# for one of them was refused whatever its counts were.
BEFORE_USAGE = frozenset({"not_active", "currency_mismatch", "not_started", "expired", "code_not_entered",
                          "region_not_eligible", "channel_not_eligible", "tier_not_eligible",
                          "segment_not_eligible", "first_order_not_eligible"})


@dataclass(frozen=True)
class Outcome:
    """What the simulation counts of one priced cart, taken from its trace: discounts and grants per
    promotion (in the trace's order), the promotions it used (`earned_by_promotion`'s order), those the
    counts refused and why. `counts_read` are the limited promotions whose counts could have changed the
    trace (every one it lists, a grant too, unless refused before the usage gates), and `cost` what the cart costs
    before any discount, lines and shipping: no promotion takes more off it than that (nothing goes below
    zero). Small and picklable: a Dask worker sends it back instead of the trace."""

    currency: str
    applied: tuple[tuple[str, Decimal], ...]
    grants: tuple[tuple[str, Decimal], ...]
    earned: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]
    counts_read: frozenset[str]
    cost: Decimal

    @classmethod
    def of(cls, trace: Trace) -> "Outcome":
        listed = [(a.promotion, None) for a in trace.applied] + [(g.promotion, None) for g in trace.grants] + \
                 [(n.promotion, n.reason.value) for n in trace.not_applied]
        cart = trace.inputs.cart
        cost = sum((line.subtotal for line in cart.lines), Decimal(0)) + \
            sum((s.price for s in cart.all_shipments), Decimal(0))
        return cls(trace.currency, tuple((a.promotion, a.amount) for a in trace.applied),
                   tuple((g.promotion, g.amount) for g in trace.grants), tuple(earned_by_promotion(trace)),
                   tuple((n.promotion, n.reason.value) for n in trace.not_applied if n.reason.value in _LIMIT_REASONS),
                   frozenset(pid for pid, reason in listed if reason not in BEFORE_USAGE), cost)

    def charged(self, pid: str) -> Decimal:
        """What the promotion took on this cart, discounts and grant together: what its budget counts."""
        return sum((a for p, a in self.applied if p == pid), Decimal(0)) + \
            sum((a for p, a in self.grants if p == pid), Decimal(0))


@dataclass(frozen=True)
class Churn:
    """Checkouts that are never placed and orders cancelled later, drawn per corpus line (its number and
    id, with the seed: the same cart is abandoned or cancelled in every run, in any order, on any
    machine). An abandoned checkout is priced, then released, as `Ledger.release` does: it counts for
    nothing but the day's traffic. A cancelled order is cancelled whole `cancel_after` days later, before
    that day's first cart, as `Ledger.cancel` does: its budget goes back, and its uses (in all and the
    customer's) and single-use code too where the promotion says `return_usage_on_cancel`. Rates are exact
    decimals from 0 to 1."""

    abandon_rate: Decimal = Decimal(0)
    cancel_rate: Decimal = Decimal(0)
    cancel_after: int = 7
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("abandon_rate", "cancel_rate"):
            rate = getattr(self, name)
            if not isinstance(rate, Decimal) or not rate.is_finite() or not 0 <= rate <= 1:
                raise ValueError(f"{name} must be a Decimal from 0 to 1")
        if not isinstance(self.cancel_after, int) or self.cancel_after < 1:
            raise ValueError("cancel_after must be at least 1 day")

    def abandons(self, entry: CorpusEntry) -> bool:
        return self._draw("abandon", entry, self.abandon_rate)

    def cancels(self, entry: CorpusEntry) -> bool:
        return self._draw("cancel", entry, self.cancel_rate)

    def _draw(self, what: str, entry: CorpusEntry, rate: Decimal) -> bool:
        if not rate:
            return False
        digest = hashlib.sha256(f"{what}\0{self.seed}\0{entry.line}\0{entry.id or ''}".encode()).digest()
        # a uniform draw in [0, 1) against the rate, as exact fractions (a Decimal product would round)
        return Fraction(int.from_bytes(digest[:8], "big"), 1 << 64) < Fraction(rate)


@dataclass(frozen=True)
class _Order:
    """A committed order to be cancelled on day `due`: what each promotion it used gave it."""

    due: int
    customer: str
    outcome: "Outcome"
    codes: tuple[str, ...]      # the single-use codes it redeemed


@dataclass
class _Day:
    carts: int = 0
    abandoned: int = 0
    cancelled: int = 0
    discount: dict[str, Decimal] = field(default_factory=dict)
    granted: dict[str, Decimal] = field(default_factory=dict)
    discount_back: dict[str, Decimal] = field(default_factory=dict)
    granted_back: dict[str, Decimal] = field(default_factory=dict)
    promotions: dict[str, "_DayTally"] = field(default_factory=dict)


@dataclass
class _Tally:
    uses: int = 0
    spent: Decimal = Decimal(0)      # what the budget counts: discounts and grants
    discount: dict[str, Decimal] = field(default_factory=dict)
    granted: dict[str, Decimal] = field(default_factory=dict)
    exhausted: LimitEvent | None = None
    first_refused: LimitEvent | None = None
    refused: int = 0
    at_limit: int = 0
    cancelled: int = 0
    uses_returned: int = 0
    discount_back: dict[str, Decimal] = field(default_factory=dict)
    granted_back: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class _DayTally:
    uses: int = 0
    discount: dict[str, Decimal] = field(default_factory=dict)
    granted: dict[str, Decimal] = field(default_factory=dict)
    budget_spent: Decimal | None = None     # at the end of the day (the last cart of the day sets it)
    uses_so_far: int | None = None
    cancelled: int = 0


class Simulation:
    """The ledger's counts, kept in memory, fed one corpus entry at a time (`step`)."""

    def __init__(self, ruleset: RuleSet, per_day: int, start: date | None = None,
                 pool_codes: Mapping[str, str] | None = None, source: str = "corpus", churn: Churn | None = None):
        if per_day < 1:
            raise ValueError("per_day must be at least 1")
        self.ruleset, self.per_day, self.source = ruleset, per_day, source
        self.start = start
        # canonical single-use code -> its promotion; a code leaves this map when it is redeemed
        self._pool = {canonical(c): pid for c, pid in (pool_codes or {}).items()}
        self._redeemed: set[str] = set()
        self._tally = {pid: _Tally() for pid in ruleset.promotions}
        self._customer: dict[str, dict[str, int]] = {}     # customer -> promotion -> uses
        self._totals: dict[str, tuple[int, Decimal]] | None = None   # the snapshot totals() gives, until a count moves
        self._days: list[_Day] = []
        self.churn = churn or Churn()
        self._to_cancel: deque[_Order] = deque()     # in commit order, so in order of their day
        self.abandoned = self.cancelled = 0
        self.carts = 0
        self.skipped = 0
        self._errors: list[str] = []
        self._limited = tuple(sorted(pid for pid, p in ruleset.promotions.items() if _limited(p)))

    # --- one cart ---------------------------------------------------------------------------------

    def usage(self, customer: str) -> dict[str, Usage]:
        """The counts evaluate() reads for this customer now, as `Ledger.usage_snapshot` would give them."""
        return usage_of(self.totals(), self._customer.get(customer, {}))

    def totals(self) -> Mapping[str, tuple[int, Decimal]]:
        """Uses and budget spent of every limited promotion now. The same object until a count moves, so
        that carts prepared between two counts share it (and travel to the workers once, not per cart)."""
        if self._totals is None:
            self._totals = {pid: (self._tally[pid].uses, self._tally[pid].spent) for pid in self._limited}
        return self._totals

    def step(self, entry: CorpusEntry) -> Step:
        """Price one entry on its simulated day with the counts so far, then count what it applied.
        Raises CorpusError (naming the line and field) for an entry evaluate() refuses; nothing is
        counted then."""
        priced = self.prepare(entry)
        trace = self.price(priced)
        used_codes = self.commit(priced, Outcome.of(trace))
        return Step(priced.at, priced.now, priced.codes, used_codes, trace)

    def prepare(self, entry: CorpusEntry, ahead: int = 0) -> "Priced":
        """What the entry is priced with: its day (the carts counted so far, plus `ahead` priced but not
        yet counted, give its place in the traffic), its `now` moved onto that day, its codes as the
        ledger resolves them and the counts so far. Raises CorpusError for a `now` that is not a time."""
        index = (self.carts + ahead) // self.per_day
        when = _parse_now(entry, self.source)
        if ahead == 0:       # every cart before it is counted: the cancellations due by its day can be made
            self.settle(index)
        if self.start is None:
            self.start = when.date()
        try:
            day = self.start + timedelta(days=index)
        except OverflowError:
            # Only a cart priced ahead (`ahead`) can land here: counted carts have times before 2200, so a start
            # near year 9999 counts none and keeps every cart on day 0. evaluate() refuses the date, and the
            # cart's place is checked again before anything is counted.
            day = date.max
        moved = datetime.combine(day, when.timetz()).isoformat()
        customer = entry.account.get("id")
        customer = customer if isinstance(customer, str) else ""
        codes, presented = self._resolve(entry.codes)
        mine = self._customer.get(customer)
        return Priced(entry, Moment(day.isoformat(), index, entry.label, entry.line), moved, customer, codes,
                      tuple((pid, tuple(keys)) for pid, keys in presented.items()), self.totals(),
                      dict(mine) if mine else {})

    def price(self, priced: "Priced") -> Trace:
        """evaluate() on what `prepare` gave; an input it refuses is a CorpusError naming the line and field."""
        entry = priced.entry
        try:
            return evaluate(self.ruleset, entry.cart, entry.account, codes=priced.codes, now=priced.now,
                            usage=priced.usage)
        except InputError as exc:
            raise price_error(exc, self.source, entry.line) from None

    def commit(self, priced: "Priced", outcome: "Outcome") -> tuple[str, ...]:
        """Count what the cart applied, as reserve() and commit() would; returns the single-use codes it used."""
        entry = priced.entry
        if self.churn.abandons(entry):
            day = self._day(priced.at.day_index)
            day.carts += 1
            day.abandoned += 1
            self.abandoned += 1
            self.carts += 1
            return ()
        used_codes = self._count(outcome, priced.customer, priced.at, dict(priced.presented))
        self.carts += 1
        if outcome.earned and self.churn.cancels(entry):
            self._to_cancel.append(_Order(priced.at.day_index + self.churn.cancel_after, priced.customer, outcome,
                                          used_codes))
        return used_codes

    def settle(self, day_index: int) -> None:
        """Make the cancellations due by this day, as `Ledger.cancel` of the whole order would: each
        promotion it used gets its budget back, and its uses and code where it returns usage on cancel."""
        while self._to_cancel and self._to_cancel[0].due <= day_index:
            order = self._to_cancel.popleft()
            self._totals = None
            day, outcome = self._day(day_index), order.outcome
            currency = outcome.currency
            day.cancelled += 1
            self.cancelled += 1
            for pid, amount in outcome.applied:
                _add(self._tally[pid].discount_back, currency, amount)
                _add(day.discount_back, currency, amount)
            for pid, amount in outcome.grants:
                _add(self._tally[pid].granted_back, currency, amount)
                _add(day.granted_back, currency, amount)
            codes = set(order.codes)
            for pid in outcome.earned:
                p, t = self.ruleset.promotions[pid], self._tally[pid]
                d = day.promotions.setdefault(pid, _DayTally())
                t.cancelled += 1
                d.cancelled += 1
                if p.limits.budget is not None:     # spent budget always goes back
                    t.spent -= outcome.charged(pid)
                    d.budget_spent = t.spent
                if not p.limits.return_usage_on_cancel:
                    continue
                t.uses -= 1
                t.uses_returned += 1
                if p.limits.total_uses is not None:
                    d.uses_so_far = t.uses
                if p.limits.uses_per_customer is not None:
                    mine = self._customer[order.customer]
                    if mine[pid] == p.limits.uses_per_customer:
                        t.at_limit -= 1
                    mine[pid] -= 1
                if p.code_pool:
                    for code in [c for c in codes if self._pool.get(c) == pid]:
                        self._redeemed.discard(code)

    def refuse(self, error: CorpusError, on_error: str) -> None:
        """A bad line: raised with on_error "stop", counted with "skip" (anything else is a ValueError)."""
        if _on_error(on_error) == "stop":
            raise error
        self.skip(error)

    def refuser(self, on_error: str) -> Callable[[CorpusError], None]:
        """`refuse` for one on_error, checked now (before the run meets its first bad line)."""
        _on_error(on_error)
        return lambda error: self.refuse(error, on_error)

    def skip(self, error: CorpusError) -> None:
        """Count a bad line and go on (the first few messages are kept)."""
        self.skipped += 1
        if len(self._errors) < MAX_ERRORS_KEPT:
            self._errors.append(str(error))

    def _resolve(self, entered: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, list[str]]]:
        """Entered codes as `Ledger.resolve_codes` turns them for evaluate(): a listed single-use code
        that is still unused becomes its promotion's token; a used one, and a pool token typed as it is,
        are dropped; anything else passes through (evaluate() reports an unknown code itself)."""
        out: list[str] = []
        presented: dict[str, list[str]] = {}
        for raw in entered:
            key = canonical(raw)
            pid = self._pool.get(key)
            if pid is not None:
                if key not in self._redeemed and pid in self.ruleset.promotions:
                    out.append(self.ruleset.promotions[pid].code)
                    presented.setdefault(pid, []).append(key)
                continue
            try:
                if normalise_code(raw).startswith(POOL_TOKEN_PREFIX):
                    continue
            except Exception:   # noqa: BLE001 - a malformed code is evaluate()'s to report, with its field
                pass
            out.append(raw)
        return tuple(dict.fromkeys(out)), presented

    def _count(self, outcome: "Outcome", customer: str, at: Moment,
               presented: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
        day = self._day(at.day_index)
        day.carts += 1
        currency = outcome.currency
        used_codes: list[str] = []
        on_day = day.promotions
        for pid, amount in outcome.applied:
            t, d = self._tally[pid], on_day.setdefault(pid, _DayTally())
            t.discount[currency] = t.discount.get(currency, Decimal(0)) + amount
            d.discount[currency] = d.discount.get(currency, Decimal(0)) + amount
            _add(day.discount, currency, amount)
        for pid, amount in outcome.grants:
            t, d = self._tally[pid], on_day.setdefault(pid, _DayTally())
            t.granted[currency] = t.granted.get(currency, Decimal(0)) + amount
            d.granted[currency] = d.granted.get(currency, Decimal(0)) + amount
            _add(day.granted, currency, amount)
        if outcome.earned:
            self._totals = None
        for pid in outcome.earned:
            p, t, d = self.ruleset.promotions[pid], self._tally[pid], on_day.setdefault(pid, _DayTally())
            t.uses += 1
            d.uses += 1
            if p.limits.budget is not None:   # the ledger keeps budget counts only where there is a budget
                t.spent += outcome.charged(pid)
                d.budget_spent = t.spent
            if p.limits.total_uses is not None:
                d.uses_so_far = t.uses
            if p.limits.uses_per_customer is not None:   # per-customer counts only where there is such a limit
                mine = self._customer.setdefault(customer, {})
                mine[pid] = mine.get(pid, 0) + 1
                if mine[pid] == p.limits.uses_per_customer:
                    t.at_limit += 1
            if p.code_pool and presented.get(pid):
                code = min(presented[pid], key=code_hash)   # reserve() takes the first unused one by hash
                self._redeemed.add(code)
                used_codes.append(code)
            if t.exhausted is None:
                reached = [name for name in LIMITS if _reached(p, t, name)]
                if reached:
                    t.exhausted = LimitEvent(reached[0], at)
        for pid, reason in outcome.refused:
            t = self._tally[pid]
            t.refused += 1
            if t.first_refused is None:
                t.first_refused = LimitEvent(self._refusing_limit(pid, reason), at)
        return tuple(used_codes)

    def _refusing_limit(self, pid: str, reason: str) -> str:
        if reason != "usage_limit_reached":
            return "budget"
        p = self.ruleset.promotions[pid]
        return "total_uses" if _reached(p, self._tally[pid], "total_uses") else "uses_per_customer"

    def _day(self, index: int) -> _Day:
        while len(self._days) <= index:
            self._days.append(_Day())
        return self._days[index]

    # --- the report -------------------------------------------------------------------------------

    def result(self) -> SimulationResult:
        promotions = tuple((pid, PromotionResult(t.uses, _sorted(t.discount), _sorted(t.granted), t.exhausted,
                                                 t.first_refused, t.refused, t.at_limit, t.cancelled, t.uses_returned,
                                                 _sorted(t.discount_back), _sorted(t.granted_back)))
                           for pid, t in sorted(self._tally.items()))
        start = self.start
        days = tuple(DayResult((start + timedelta(days=i)).isoformat(), d.carts, _sorted(d.discount),
                               _sorted(d.granted),
                               tuple((pid, DayPromotion(t.uses, _sorted(t.discount), _sorted(t.granted),
                                                        t.budget_spent, t.uses_so_far, t.cancelled))
                                     for pid, t in sorted(d.promotions.items())),
                               d.abandoned, d.cancelled, _sorted(d.discount_back), _sorted(d.granted_back))
                     for i, d in enumerate(self._days)) if start is not None else ()
        return SimulationResult(self.carts, self.skipped, tuple(self._errors), self.per_day,
                                None if start is None else start.isoformat(), promotions, days, self.abandoned,
                                self.cancelled, len(self._to_cancel))


def simulate(ruleset: RuleSet, entries: Iterable[CorpusEntry | CorpusError], per_day: int, *,
             days: int | None = None, start: date | None = None, seed: int | None = None, on_error: str = "stop",
             pool_codes: Mapping[str, str] | None = None, source: str = "corpus",
             advance: Callable[[int], None] | None = None, churn: Churn | None = None) -> SimulationResult:
    """The whole run: entries in corpus order, or shuffled by `seed` (the corpus is then read whole
    first, and bad lines are met in file order); at most `days` days of `per_day` carts. With
    on_error="stop" the first bad line is raised as CorpusError; with "skip" it is counted. `advance`
    is told of each entry met (the progress bar). `churn`: abandoned checkouts and cancelled orders."""
    sim = Simulation(ruleset, per_day, start=start, pool_codes=pool_codes, source=source, churn=churn)
    limit = None if days is None else days * per_day
    for item in traffic(entries, seed, sim.refuser(on_error)):
        if limit is not None and sim.carts >= limit:
            break
        if advance is not None:
            advance(1)
        if isinstance(item, CorpusError):
            sim.refuse(item, on_error)
            continue
        try:
            sim.step(item)
        except CorpusError as exc:
            sim.refuse(exc, on_error)
    return sim.result()


def traffic(entries: Iterable[CorpusEntry | CorpusError], seed: int | None,
            bad: Callable[[CorpusError], None]) -> Iterable[CorpusEntry | CorpusError]:
    """The entries in the order the simulation meets them: as they come, or, with a seed, read whole
    (bad lines handed to `bad` in file order) and shuffled by it."""
    if seed is None:
        return entries
    good: list[CorpusEntry] = []
    for item in entries:
        if isinstance(item, CorpusError):
            bad(item)
        else:
            good.append(item)
    random.Random(seed).shuffle(good)
    return good


def usage_of(totals: Mapping[str, tuple[int, Decimal]], mine: Mapping[str, int]) -> dict[str, Usage]:
    """evaluate()'s `usage=` from a snapshot of the totals and one customer's uses."""
    return {pid: Usage(uses, mine.get(pid, 0), spent) for pid, (uses, spent) in totals.items()}


def _on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be stop or skip, not {on_error!r}")
    return on_error


def price_error(exc: InputError, source: str, line: int) -> CorpusError:
    """evaluate()'s refusal of a corpus entry, as the CorpusError naming its line and field."""
    first = exc.problems[0]
    return CorpusError(source, line, _field(first.file, first.path), first.message)


def _limited(p: Promotion) -> bool:
    lim = p.limits
    return lim.total_uses is not None or lim.uses_per_customer is not None or lim.budget is not None


def _reached(p: Promotion, t: _Tally, limit: str) -> bool:
    if limit == "total_uses":
        return p.limits.total_uses is not None and t.uses >= p.limits.total_uses
    return p.limits.budget is not None and t.spent >= p.limits.budget


def _parse_now(entry: CorpusEntry, source: str) -> datetime:
    try:
        when = datetime.fromisoformat(entry.now.replace("Z", "+00:00"))
    except ValueError:
        raise CorpusError(source, entry.line, "$.now", "must be an ISO 8601 time with a UTC offset") from None
    if when.utcoffset() is None:
        raise CorpusError(source, entry.line, "$.now", "has no UTC offset")
    return when


def _field(what: str, path: str) -> str:
    root = {"cart": "$.cart", "account": "$.account", "codes": "$.codes", "now": "$.now"}.get(what, "$")
    return root if path in ("$", "") else root + path[1:]


def _add(amounts: dict[str, Decimal], currency: str, amount: Decimal) -> None:
    amounts[currency] = amounts.get(currency, Decimal(0)) + amount


def _sorted(amounts: Mapping[str, Decimal]) -> tuple[tuple[str, Decimal], ...]:
    return tuple(sorted((c, a) for c, a in amounts.items() if a))


def _money(amounts: tuple[tuple[str, Decimal], ...]) -> dict[str, str]:
    return {c: f"{a:f}" for c, a in amounts}
