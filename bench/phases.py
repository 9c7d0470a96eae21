"""Where evaluate()'s time goes at one size.

Two costs that no evaluation with a full trace can go below, measured on the benchmark's own carts: checking
the cart and account (`parse_cart` + `parse_account`), and constructing the trace's own records
(every line share, line discount, line, applied and not-applied record) from values already computed,
with no arithmetic at all. Then evaluate()'s phases, timed by wrapping each once.
"""
from __future__ import annotations

import statistics
import sys
import time

from bench import generate
from engine import evaluate
from engine.inputs import parse_account, parse_cart
from engine.trace import Applied, LineDiscount, LineShare, LineTrace, NotApplied

PHASES = ("parse_cart", "parse_account", "indexed_scope", "gate", "resolve", "priced", "pay", "trace")


def _rebuild(trace) -> None:
    """Construct the same records the trace holds, from its own values."""
    for a in trace.applied:
        shares = tuple(LineShare(s.line, s.amount) for s in a.lines)
        Applied(a.promotion, a.name, a.stage, a.reward, a.code, a.amount, shares, a.shipping, a.capped_by,
                a.exclusive, a.priority)
    for line in trace.lines:
        discounts = tuple(LineDiscount(d.promotion, d.stage, d.amount) for d in line.discounts)
        LineTrace(line.id, line.sku, line.name, line.category, line.seller, line.product_type, line.unit_price,
                  line.quantity, line.subtotal, discounts, line.discount, line.total)
    for n in trace.not_applied:
        NotApplied(n.promotion, n.name, n.stage, n.reason, n.message, n.code, n.failed_conditions, n.thresholds,
                   n.lost_to)


def _median_ms(fn, inputs, runs: int = 1000) -> float:
    times = []
    for i in range(runs):
        args = inputs[i % len(inputs)]
        t0 = time.perf_counter_ns()
        fn(*args)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(times)


def phases(rules, inputs, runs: int = 500) -> dict[str, float]:
    """Milliseconds per evaluate() spent in each phase (the wrappers add a little to each)."""
    module = sys.modules["engine.evaluate"]   # `engine.evaluate` is also the name of the function
    spent = dict.fromkeys(PHASES, 0.0)
    originals = {name: getattr(module, name) for name in PHASES}

    def timed(name, fn):
        def run(*args, **kwargs):
            t0 = time.perf_counter_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += (time.perf_counter_ns() - t0) / 1e6
        return run

    for name, fn in originals.items():
        setattr(module, name, timed(name, fn))
    try:
        t0 = time.perf_counter_ns()
        for i in range(runs):
            cart, account, codes = inputs[i % len(inputs)]
            evaluate(rules, cart, account, codes=codes, now=generate.NOW)
        total = (time.perf_counter_ns() - t0) / 1e6
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)
    out = {name: ms / runs for name, ms in spent.items()}
    out["everything else"] = total / runs - sum(out.values())
    return out


def report(rules, inputs, runs: int = 500) -> None:
    traces = [evaluate(rules, c, a, codes=k, now=generate.NOW) for c, a, k in inputs]
    shares = statistics.mean(sum(len(a.lines) for a in t.applied) for t in traces)
    applied = statistics.mean(len(t.applied) for t in traces)
    refused = statistics.mean(len(t.not_applied) for t in traces)
    print(f"| the trace's records alone ({shares:.0f} line shares, {applied:.0f} applied, {refused:.0f} not applied, "
          f"{len(traces[0].lines)} lines), built from ready values | {_median_ms(_rebuild, [(t,) for t in traces], runs):.3f} |")
    print(f"| checking the cart and account alone | "
          f"{_median_ms(lambda c, a, k: (parse_cart(c, rules), parse_account(a, rules)), inputs, runs):.3f} |")
    for name, ms in phases(rules, inputs, runs).items():
        print(f"| evaluate(): {name} | {ms:.3f} |")
