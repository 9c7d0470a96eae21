"""Backtesting a rule change: replaying a cart corpus against two rule sets and summarising the difference.

`compare(base, head, entry)` evaluates one corpus entry with both rule sets and returns a `CartDiff`;
`DiffSummary` folds CartDiffs into the report `promo diff` prints. A summary is a frozen value, and
`merge` is associative and order-independent (sums, and a top-N kept by a total order), so that
partial summaries computed on many workers reduce to the same summary as one pass. Memory stays flat:
a summary holds counts per currency, per promotion and per reason pair, at most `top_n` carts, and a
histogram of the per-cart discount change over fixed bins (the same for every summary, so that they add).

A promotion's discount in a cart is the sum of its applied amounts; balance it grants for later
orders is counted apart, as `granted`. A promotion's outcome in a cart is "applied", the reason it
was not applied, "out_of_scope" (counted in the trace's out_of_scope, not listed) or "absent" (not in
that rule set). A cart touches a promotion when its outcome there differs; a promotion that is in one
rule set only and does not apply in the other's trace does not touch it.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Iterable, Mapping

from .corpus import CorpusEntry, CorpusError
from .errors import InputError
from .evaluate import evaluate
from .model import RuleSet
from .trace import Trace

APPLIED, OUT_OF_SCOPE, ABSENT = "applied", "out_of_scope", "absent"
DEFAULT_TOP = 10
MAX_ERRORS_KEPT = 5          # a skipping run keeps the first few messages, by line number
# The histogram's bin edges for the size of a cart's discount change, in currency units: 1-2-5 steps
# from 0.0001 (finer than any currency's minor unit) to 5 trillion. Fixed, not fitted to the data, so
# that histograms of parts of the corpus add up to the histogram of the whole.
HISTOGRAM_EDGES = tuple(Decimal(m).scaleb(e) for e in range(-4, 13) for m in (1, 2, 5))


@dataclass(frozen=True)
class Outcome:
    """One promotion in one cart's trace."""

    status: str                 # APPLIED, a reason code, OUT_OF_SCOPE or ABSENT
    discount: Decimal = Decimal(0)
    granted: Decimal = Decimal(0)


@dataclass(frozen=True)
class CartDiff:
    """One cart evaluated with both rule sets: its total discount before and after, and every promotion
    whose outcome differs."""

    line: int
    id: str | None
    currency: str
    before: Decimal
    after: Decimal
    promotions: tuple[tuple[str, Outcome, Outcome], ...]   # (id, before, after), sorted by id; only differing ones

    @property
    def delta(self) -> Decimal:
        return self.after - self.before

    @property
    def label(self) -> str:
        return self.id if self.id is not None else f"line {self.line}"

    def rank(self) -> tuple:
        """The top-N order, total: largest absolute change first, then label, then line number."""
        return (-abs(self.delta), self.label, self.line)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "line": self.line, "currency": self.currency, "discount_before": _s(self.before),
                "discount_after": _s(self.after), "discount_delta": _s(self.delta),
                "promotions": [p for p, _, _ in self.promotions]}


def outcomes(trace: Trace, ruleset: RuleSet) -> dict[str, Outcome]:
    """Every promotion of the rule set, as this trace decided it."""
    discount: dict[str, Decimal] = {}
    for a in trace.applied:
        discount[a.promotion] = discount.get(a.promotion, Decimal(0)) + a.amount
    granted: dict[str, Decimal] = {}
    for g in trace.grants:
        granted[g.promotion] = granted.get(g.promotion, Decimal(0)) + g.amount
    reasons = {n.promotion: n.reason.value for n in trace.not_applied}
    out: dict[str, Outcome] = {}
    for pid in ruleset.promotions:
        if pid in discount or pid in granted:
            out[pid] = Outcome(APPLIED, discount.get(pid, Decimal(0)), granted.get(pid, Decimal(0)))
        else:
            out[pid] = Outcome(reasons.get(pid, OUT_OF_SCOPE))
    return out


def compare_traces(entry: CorpusEntry, base: RuleSet, head: RuleSet, before: Trace, after: Trace) -> CartDiff:
    old, new = outcomes(before, base), outcomes(after, head)
    changed = []
    for pid in sorted(set(old) | set(new)):
        a, b = old.get(pid, Outcome(ABSENT)), new.get(pid, Outcome(ABSENT))
        # A promotion missing from one rule set that does not apply in the other did nothing to the cart.
        idle = (a.status == ABSENT and b.status != APPLIED) or (b.status == ABSENT and a.status != APPLIED)
        if a != b and not idle:
            changed.append((pid, a, b))
    return CartDiff(line=entry.line, id=entry.id, currency=before.currency, before=before.totals.discount,
                    after=after.totals.discount, promotions=tuple(changed))


def compare(base: RuleSet, head: RuleSet, entry: CorpusEntry, source: str = "corpus") -> CartDiff:
    """One entry evaluated against both rule sets, or CorpusError (its line number and the field) when
    either refuses it."""
    traces = []
    for ruleset in (base, head):
        try:
            traces.append(evaluate(ruleset, entry.cart, entry.account, codes=entry.codes, now=entry.now))
        except InputError as exc:
            first = exc.problems[0] if exc.problems else None
            raise CorpusError(source, entry.line, _field(first.file, first.path) if first else "$",
                              first.message if first else str(exc)) from None
    return compare_traces(entry, base, head, traces[0], traces[1])


def _field(what: str, path: str) -> str:
    """An evaluate() problem's place as a path in the corpus line: `$.cart.lines[0].unit_price`."""
    root = {"cart": "$.cart", "account": "$.account", "codes": "$.codes", "now": "$.now"}.get(what, "$")
    return root if path in ("$", "") else root + path[1:]


@dataclass(frozen=True)
class PromotionChange:
    """One promotion across the corpus: the carts whose outcome for it changed, and its discount and
    granted balance before and after in those carts, per currency."""

    carts: int = 0
    discount_before: tuple[tuple[str, Decimal], ...] = ()
    discount_after: tuple[tuple[str, Decimal], ...] = ()
    granted_before: tuple[tuple[str, Decimal], ...] = ()
    granted_after: tuple[tuple[str, Decimal], ...] = ()

    def merge(self, other: "PromotionChange") -> "PromotionChange":
        return PromotionChange(self.carts + other.carts, _sum(self.discount_before, other.discount_before),
                               _sum(self.discount_after, other.discount_after),
                               _sum(self.granted_before, other.granted_before),
                               _sum(self.granted_after, other.granted_after))


@dataclass(frozen=True)
class DiffSummary:
    """What a rule change does to a corpus. Build it with `DiffSummary(top_n=N)`, then `add` each
    CartDiff (or `skip` each CorpusError), or `merge` summaries of parts of the corpus."""

    top_n: int = DEFAULT_TOP
    carts: int = 0
    changed: int = 0
    skipped: int = 0
    errors: tuple[CorpusError, ...] = ()            # the first few, by line number
    discount_before: tuple[tuple[str, Decimal], ...] = ()
    discount_after: tuple[tuple[str, Decimal], ...] = ()
    promotions: tuple[tuple[str, PromotionChange], ...] = ()
    reasons: tuple[tuple[tuple[str, str, str], int], ...] = ()      # (promotion, before, after) -> carts
    top: tuple[CartDiff, ...] = ()
    # currency -> ((bin, carts), ...): the per-cart discount change, bins as `delta_bin` numbers them
    histogram: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()

    def add(self, cart: CartDiff) -> "DiffSummary":
        return self.merge(self.of(cart))

    def skip(self, error: CorpusError) -> "DiffSummary":
        return self.merge(DiffSummary(top_n=self.top_n, skipped=1, errors=(error,)))

    def of(self, cart: CartDiff) -> "DiffSummary":
        """One cart's result as a summary of its own."""
        cur = cart.currency
        promotions = []
        reasons = []
        for pid, a, b in cart.promotions:
            promotions.append((pid, PromotionChange(1, _one(cur, a.discount), _one(cur, b.discount),
                                                    _one(cur, a.granted), _one(cur, b.granted))))
            if a.status != b.status:
                reasons.append(((pid, a.status, b.status), 1))
        moved = cart.before != cart.after or bool(cart.promotions)
        return DiffSummary(top_n=self.top_n, carts=1, changed=1 if cart.before != cart.after else 0,
                           discount_before=((cur, cart.before),), discount_after=((cur, cart.after),),
                           promotions=tuple(promotions), reasons=tuple(reasons),
                           top=(cart,) if moved and self.top_n else (),
                           histogram=((cur, ((delta_bin(cart.delta), 1),)),))

    def merge(self, other: "DiffSummary") -> "DiffSummary":
        if other.top_n != self.top_n:
            raise ValueError("summaries with different top_n do not merge")
        promotions = dict(self.promotions)
        for pid, change in other.promotions:
            promotions[pid] = promotions[pid].merge(change) if pid in promotions else change
        reasons = dict(self.reasons)
        for key, count in other.reasons:
            reasons[key] = reasons.get(key, 0) + count
        errors = tuple(sorted(set(self.errors) | set(other.errors), key=lambda e: (e.line, e.source, e.field,
                                                                                    e.message))[:MAX_ERRORS_KEPT])
        top = tuple(sorted(self.top + other.top, key=CartDiff.rank)[:self.top_n])
        histogram = {currency: dict(bins) for currency, bins in self.histogram}
        for currency, bins in other.histogram:
            mine = histogram.setdefault(currency, {})
            for b, count in bins:
                mine[b] = mine.get(b, 0) + count
        return replace(self, carts=self.carts + other.carts, changed=self.changed + other.changed,
                       skipped=self.skipped + other.skipped, errors=errors,
                       discount_before=_sum(self.discount_before, other.discount_before),
                       discount_after=_sum(self.discount_after, other.discount_after),
                       promotions=tuple(sorted(promotions.items())), reasons=tuple(sorted(reasons.items())),
                       top=top, histogram=tuple((c, tuple(sorted(bins.items()))) for c, bins in sorted(histogram.items())))

    def delta(self) -> tuple[tuple[str, Decimal], ...]:
        before, after = dict(self.discount_before), dict(self.discount_after)
        return tuple((c, after.get(c, Decimal(0)) - before.get(c, Decimal(0))) for c in sorted(set(before) | set(after)))

    def to_dict(self, kinds: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The JSON report. `kinds` (promotion id -> added, removed, changed) says what the rule change did
        to each promotion (`rule_changes`); a promotion the change left alone but whose outcome moved
        (stacking, exclusivity) is "unchanged"."""
        kinds = kinds or {}
        by_promotion: dict[str, Any] = {}
        for pid in sorted(set(dict(self.promotions)) | set(kinds)):
            c = dict(self.promotions).get(pid, PromotionChange())
            by_promotion[pid] = {"change": kinds.get(pid, "unchanged"), "carts": c.carts,
                                 "discount_before": _map(c.discount_before), "discount_after": _map(c.discount_after),
                                 "granted_before": _map(c.granted_before), "granted_after": _map(c.granted_after)}
        return {"carts": self.carts, "changed": self.changed, "skipped": self.skipped,
                "errors": [str(e) for e in self.errors],
                "discount_before": _map(self.discount_before), "discount_after": _map(self.discount_after),
                "discount_delta": _map(self.delta()), "by_promotion": by_promotion,
                "reasons_changed": [{"promotion": p, "before": a, "after": b, "carts": n}
                                    for (p, a, b), n in self.reasons],
                "top": [c.to_dict() for c in self.top],
                "delta_histogram": {currency: [dict(zip(("from", "to"), bin_range(b)), carts=n) for b, n in bins]
                                    for currency, bins in self.histogram}}


def delta_bin(delta: Decimal) -> int:
    """The histogram bin of a discount change: 0 for no change; i > 0 for a rise of at least
    HISTOGRAM_EDGES[i-1] and less than HISTOGRAM_EDGES[i] (the last bin has no upper edge); -i for the
    same fall."""
    if delta == 0:
        return 0
    i = max(bisect_right(HISTOGRAM_EDGES, abs(delta)), 1)
    return i if delta > 0 else -i


def bin_range(b: int) -> tuple[str | None, str | None]:
    """A bin's edges as amount strings (`from` inclusive for rises, `to` inclusive for falls); None
    where the outermost bins are open."""
    if b == 0:
        return "0", "0"
    i = abs(b)
    low, high = _s(HISTOGRAM_EDGES[i - 1]), _s(HISTOGRAM_EDGES[i]) if i < len(HISTOGRAM_EDGES) else None
    return (low, high) if b > 0 else (None if high is None else "-" + high, "-" + low)


def rule_changes(base: RuleSet, head: RuleSet) -> dict[str, str]:
    """Promotion id -> "added", "removed" or "changed": what the head did to the base's promotions. Two
    promotions are the same when everything but the file they came from is."""
    out = {}
    for pid in sorted(set(base.promotions) | set(head.promotions)):
        a, b = base.promotions.get(pid), head.promotions.get(pid)
        if a is None:
            out[pid] = "added"
        elif b is None:
            out[pid] = "removed"
        elif replace(a, source="") != replace(b, source=""):
            out[pid] = "changed"
    return out


def diff(base: RuleSet, head: RuleSet, entries: Iterable[CorpusEntry | CorpusError], *, on_error: str = "stop",
         top_n: int = DEFAULT_TOP, source: str = "corpus") -> DiffSummary:
    """Replays the corpus in one pass. With on_error "stop" the first bad line raises its CorpusError;
    with "skip" it is counted (and the first few kept) and the run goes on."""
    summary, stopped = summarise(base, head, entries, on_error=on_error, top_n=top_n, source=source)
    if stopped is not None:
        raise stopped
    return summary


def summarise(base: RuleSet, head: RuleSet, entries: Iterable[CorpusEntry | CorpusError], *, on_error: str,
              top_n: int, source: str) -> tuple[DiffSummary, CorpusError | None]:
    """The summary of some carts (a whole corpus, or a worker's chunk), and with on_error "stop" the first
    bad line, where it stopped (the summary then covers the lines before it)."""
    summary = DiffSummary(top_n=top_n)
    for item in entries:
        if isinstance(item, CorpusEntry):
            try:
                summary = summary.add(compare(base, head, item, source))
                continue
            except CorpusError as exc:
                item = exc
        if on_error == "stop":
            return summary, item
        summary = summary.skip(item)
    return summary, None


def _one(currency: str, amount: Decimal) -> tuple[tuple[str, Decimal], ...]:
    return ((currency, amount),)


def _sum(a: tuple[tuple[str, Decimal], ...], b: tuple[tuple[str, Decimal], ...]) -> tuple[tuple[str, Decimal], ...]:
    out = dict(a)
    for currency, amount in b:
        out[currency] = out.get(currency, Decimal(0)) + amount
    return tuple(sorted(out.items()))


def _map(pairs: tuple[tuple[str, Decimal], ...]) -> dict[str, str]:
    return {currency: _s(amount) for currency, amount in pairs}


def _s(amount: Decimal) -> str:
    return f"{amount:f}"
