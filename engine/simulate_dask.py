"""`promo simulate --workers N` / `--scheduler ADDRESS`: the simulation priced on a Dask cluster, with the
in-process result exactly.

A simulation is sequential: each cart is priced with the counts of every cart before it. Pricing
(evaluate(), nearly all of the time) is spread anyway, by pricing ahead and checking in order:

1. The client prepares carts in order (`Simulation.prepare`: their day, their codes as the ledger
   resolves them, the counts so far) and sends them in chunks to the workers (each cart as its corpus
   line), several chunks ahead of what it has counted. Those counts are a snapshot: carts still in
   flight are not in them.
2. Workers price each cart with its snapshot and send back its `Outcome` (what the simulation counts),
   not its trace.
3. The client takes the outcomes in corpus order and prepares each cart again, with the true counts.
   The snapshot's outcome is the true one when nothing evaluate() reads differs in a way that can
   change it (`same_decision`): the same day, `now` and codes, and for every limited promotion the
   trace lists (one refused before the usage gates read no counts), the same verdict of each usage
   gate and either the same budget left or, on both sides, more left than the promotion could take
   from this cart (what the cart costs before discounts, plus its grants): a cap that cannot bind
   changes nothing. Otherwise the client prices the cart again itself, with the true counts.
4. It counts the outcome (`Simulation.commit`), as the in-process run does.

So the result is the in-process result exactly (tested), and the client prices again only the carts
near a limit that runs out, and the few after it that were priced before it ran out (`ClusterStats`).
The rule set travels once, as its files' bytes, as for `promo diff`; a worker builds it once. What
bounds the run is the client, which reads, decodes, prepares and counts every cart in order: about
150 us of its CPU a cart (README, "Budget burn-down").
"""
from __future__ import annotations

import json
import pickle
from collections import deque
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Mapping

from .backtest_dask import _ruleset
from .corpus import CorpusEntry, CorpusError
from .errors import InputError
from .evaluate import evaluate
from .model import Promotion, RuleSet, Stage, Usage
from .simulate import Churn, Outcome, Priced, Simulation, SimulationResult, price_error, traffic, usage_of

CHUNK_CARTS = 200            # about a quarter of a second of one worker's time
IN_FLIGHT_PER_THREAD = 2     # enough to keep a worker busy; more would price more carts on stale counts


@dataclass(frozen=True)
class ClusterStats:
    """How the cluster run went: carts priced on the workers, and how many of them the client priced
    again because the counts had changed under them in a way that could matter."""

    priced: int
    repriced: int


def simulate_on_cluster(client: Any, ruleset: RuleSet, entries: Iterable[CorpusEntry | CorpusError], per_day: int,
                        *, days: int | None = None, start: date | None = None, seed: int | None = None,
                        on_error: str = "stop", pool_codes: Mapping[str, str] | None = None,
                        source: str = "corpus", chunk_carts: int = CHUNK_CARTS,
                        advance: Callable[[int], None] | None = None,
                        churn: Churn | None = None) -> tuple[SimulationResult, ClusterStats]:
    """`simulate()`'s result for the same arguments, priced on the client's cluster."""
    sim = Simulation(ruleset, per_day, start=start, pool_codes=pool_codes, source=source, churn=churn)
    limit = None if days is None else days * per_day
    stream: Iterator[CorpusEntry | CorpusError] = iter(traffic(entries, seed, sim.refuser(on_error)))
    # In a list: a dict given to scatter() is scattered value by value under its own keys (the file names,
    # the same in every run). hash=False: each run its own key (see backtest_dask.diff_on_cluster).
    [files] = client.scatter([dict(ruleset.sources)], broadcast=True, hash=False)
    most = {pid: grants_bound(p) for pid, p in ruleset.promotions.items()}
    threads = max(sum(client.nthreads().values()), 1)
    window: deque[tuple[Any, list[Priced | CorpusError]]] = deque()
    ahead = 0                    # carts prepared and sent, not yet counted
    ended = False
    priced = repriced = 0

    def send() -> bool:
        """Prepare the next chunk on the counts as they are now and send it; False when there is none."""
        nonlocal ahead, ended
        slots: list[Priced | CorpusError] = []
        carts: list[Priced] = []
        while len(carts) < chunk_carts and not ended:
            if limit is not None and sim.carts + ahead >= limit:
                break
            item = next(stream, None)
            if item is None:
                ended = True
                break
            if isinstance(item, CorpusError):
                slots.append(item)
                continue
            try:
                slot = sim.prepare(item, ahead)
            except CorpusError as exc:
                slots.append(exc)
                continue
            slots.append(slot)
            carts.append(slot)
            ahead += 1
        if not slots:
            return False
        # One pickled bytes object (Dask walks every list, dict and tuple it is given, looking for futures),
        # with each cart as its corpus line: bytes pickle for nothing, decoded carts cost more to pickle
        # than the worker takes to decode them again.
        future = None
        if carts:
            # The totals snapshots the carts share (one, unless a count moved while the chunk was prepared)
            # travel once; each cart names its snapshot and brings only its customer's own uses.
            tables: dict[int, int] = {}          # id of a snapshot -> its place in `snapshots`
            snapshots: list[Mapping[str, tuple]] = []
            for p in carts:
                if id(p.totals) not in tables:
                    tables[id(p.totals)] = len(snapshots)
                    snapshots.append(p.totals)
            chunk = pickle.dumps((snapshots, [(p.entry.line, p.entry.line_bytes(), p.codes, p.now, p.mine,
                                               tables[id(p.totals)]) for p in carts]),
                                 protocol=pickle.HIGHEST_PROTOCOL)
            future = client.submit(price_chunk, files, ruleset.version, chunk, source, pure=False)
        window.append((future, slots))
        return True

    try:
        while True:
            while len(window) < threads * IN_FLIGHT_PER_THREAD and send():
                pass
            if not window:
                break
            future, slots = window.popleft()
            outcomes = iter(future.result() if future is not None else ())
            if future is not None:
                future.release()
            for slot in slots:
                if limit is not None and sim.carts >= limit:
                    break
                if isinstance(slot, CorpusError):
                    sim.refuse(slot, on_error)
                    continue
                spec = next(outcomes)
                ahead -= 1
                priced += 1
                true = sim.prepare(slot.entry)       # its `now` was read once already: this cannot fail
                if same_inputs(slot, true):
                    if isinstance(spec, CorpusError):     # refused for its inputs, whatever the counts
                        sim.refuse(spec, on_error)
                        continue
                    if same_decision(slot, true, spec, ruleset, most):
                        sim.commit(true, spec)
                        continue
                repriced += 1
                try:
                    sim.commit(true, Outcome.of(sim.price(true)))
                except CorpusError as exc:
                    sim.refuse(exc, on_error)
            if advance is not None:
                advance(len(slots))
            if limit is not None and sim.carts >= limit:
                break
    finally:
        pending = [f for f, _ in window if f is not None]
        if pending:
            client.cancel(pending)
    return sim.result(), ClusterStats(priced, repriced)


def price_chunk(files: Mapping[str, bytes], version: str, chunk: bytes, source: str) -> list[Outcome | CorpusError]:
    """Runs on a worker: each cart of the chunk (pickled by the client) priced with the counts it was sent
    with, as its Outcome, or the CorpusError of an input evaluate() refuses. A cart comes as its corpus
    line, which the client decoded and checked strictly already (corpus.parse_line), so plain json.loads
    gives the very same objects here."""
    ruleset = _ruleset(files, version)
    out: list[Outcome | CorpusError] = []
    snapshots, carts = pickle.loads(chunk)
    for line, raw, codes, now, mine, which in carts:
        usage = usage_of(snapshots[which], mine)
        doc = json.loads(raw)
        cart, account = doc["cart"], doc["account"]
        try:
            out.append(Outcome.of(evaluate(ruleset, cart, account, codes=codes, now=now, usage=usage)))
        except InputError as exc:
            out.append(price_error(exc, source, line))
    return out


def same_inputs(spec: Priced, true: Priced) -> bool:
    """The cart was sent with the place, `now` and codes it has now (the codes depend on which
    single-use codes were redeemed; the day on how many carts were counted before it)."""
    return (spec.at, spec.now, spec.codes, spec.presented) == (true.at, true.now, true.codes, true.presented)


def same_decision(spec: Priced, true: Priced, outcome: Outcome, ruleset: RuleSet, most: Mapping[str, Decimal]) -> bool:
    """Whether evaluate() decides the same with the true counts as with the snapshot's, for every
    limited promotion whose counts it read on this cart."""
    if spec.totals is true.totals and spec.mine == true.mine:   # nothing was counted in between
        return True
    for pid in outcome.counts_read:
        s_total, t_total = spec.totals.get(pid), true.totals.get(pid)
        if s_total is None or t_total is None:      # not a limited promotion: it reads no counts
            continue
        s = Usage(s_total[0], spec.mine.get(pid, 0), s_total[1])
        t = Usage(t_total[0], true.mine.get(pid, 0), t_total[1])
        if s != t and not same_verdicts(ruleset.promotions[pid], s, t, outcome.cost + most[pid]):
            return False
    return True


def same_verdicts(p: Promotion, s: Usage, t: Usage, could_take: Decimal) -> bool:
    """The usage gates say the same on both counts, and the budget either has the same left or, on both,
    more than the promotion could take from the cart (its cap cannot bind, and it is not exhausted)."""
    lim = p.limits
    if lim.total_uses is not None and (s.total_uses < lim.total_uses) != (t.total_uses < lim.total_uses):
        return False
    if lim.uses_per_customer is not None and \
            (s.customer_uses < lim.uses_per_customer) != (t.customer_uses < lim.uses_per_customer):
        return False
    if lim.budget is not None and s.budget_spent != t.budget_spent:
        left_s, left_t = lim.budget - s.budget_spent, lim.budget - t.budget_spent
        if not (left_s > 0 and left_t > 0 and left_s >= could_take and left_t >= could_take):
            return False
    return True


def grants_bound(p: Promotion) -> Decimal:
    """What the promotion grants on an order at most: its grant benefits' amounts (a grant is a fixed
    amount, and takes nothing off the order)."""
    return sum((b.amount for b in p.benefits if b.stage is Stage.GRANT and b.amount is not None), Decimal(0))
