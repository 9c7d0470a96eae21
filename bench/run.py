"""`make bench`: evaluate() against business-rules' own engine on the same seeded rule sets and carts.

Reports, for 10 / 100 / 1,000 / 10,000 promotions and carts of 5 / 50 / 500 lines: evaluate()'s
median and p99 (the full Trace, as frozen objects), the business-rules baseline's median on the same
carts in the same run, their ratio (baseline median / evaluate() median), the median with the trace
also serialized by to_json(indent=None) (compact, as a service sends it), and evaluate()'s peak memory
(tracemalloc, in a separate pass so it does not distort the timings). Then: 10,000 promotions of
which 9,000 are out of scope against the 1,000 in scope alone, the time to load and validate 10,000
rule files from disk, and where the time goes at 1,000 x 50 (bench/floor.py). Each rule set is
exempted from the cyclic garbage collector after it is built, as RuleSetHolder does in a service.
Not a test: nothing here passes or fails; the figures go in the README.
"""
from __future__ import annotations

import gc
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime
from pathlib import Path

from bench import baseline, floor, generate
from engine import evaluate, load_ruleset
from engine.holder import exempt_from_gc
from engine.ruleset import build_ruleset

SIZES = (10, 100, 1_000, 10_000)
LINES = (5, 50, 500)
CARTS = 20                 # distinct carts per line count, cycled through
BUDGET = 1.5               # seconds of timed evaluate() calls per cell (at least MIN_RUNS calls)
MIN_RUNS = 20
BASELINE_BUDGET = 1.5      # the baseline is timed for this long per cell, at least once
SEED = 20261121


def carts(lines: int, docs: list[dict]) -> list[tuple[dict, dict, list[str]]]:
    rnd = random.Random(SEED + lines)
    return [(generate.cart(rnd, lines), generate.account(rnd), generate.codes_for(rnd, docs)) for _ in range(CARTS)]


def timed(fn, inputs, budget: float, min_runs: int, warm_up: bool = True) -> list[float]:
    if warm_up:   # untimed: the first call of a rule set builds its market for this stretch of time
        fn(*inputs[0])
    times: list[float] = []
    start = time.perf_counter()
    i = 0
    while i < min_runs or (time.perf_counter() - start < budget and i < 5000):
        args = inputs[i % len(inputs)]
        t0 = time.perf_counter_ns()
        fn(*args)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        i += 1
    return times


def p99(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def ours(rules):
    def run(cart, account, codes):
        return evaluate(rules, cart, account, codes=codes, now=generate.NOW)
    return run


def ours_json(rules):
    def run(cart, account, codes):
        return evaluate(rules, cart, account, codes=codes, now=generate.NOW).to_json(indent=None)
    return run


def peak_kib(fn, args) -> float:
    gc.collect()
    tracemalloc.start()
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1024


def retained_mib(build) -> tuple[object, float]:
    gc.collect()
    tracemalloc.start()
    value = build()
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return value, current / 2**20


def main() -> int:
    print(f"promo-engine benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} cores, seed {SEED}\n")
    now = datetime.fromisoformat(generate.NOW)
    rows = []
    loaded = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            docs = generate.ruleset_docs(size, SEED)
            files = generate.files_of(docs)
            if size == 10_000:   # also the disk-load figure: write the files, time load_ruleset()
                folder = Path(tmp) / "rules"
                folder.mkdir()
                for name, data in files.items():
                    (Path(tmp) / name).write_bytes(data)
                t0 = time.perf_counter()
                rules = load_ruleset(folder)
                loaded["seconds"] = time.perf_counter() - t0
                loaded["files"] = len(files)
            else:
                rules = build_ruleset(files)
            _, ruleset_mib = retained_mib(lambda: build_ruleset(files)) if size <= 1_000 else (None, float("nan"))
            prepared = baseline.prepare(docs)
            exempt_from_gc()   # as RuleSetHolder does after every load: see engine/holder.py
            for lines in LINES:
                inputs = carts(lines, docs)
                mine = timed(ours(rules), inputs, BUDGET, MIN_RUNS)
                with_json = timed(ours_json(rules), inputs, BUDGET / 3, MIN_RUNS // 2)
                theirs = timed(lambda c, a, k: baseline.evaluate_with_business_rules(prepared, c, a, k, now),
                               inputs, BASELINE_BUDGET, 1, warm_up=False)
                memory = peak_kib(ours(rules), inputs[0])
                rows.append((size, lines, statistics.median(mine), p99(mine), len(mine), statistics.median(with_json),
                             statistics.median(theirs),
                             len(theirs), memory, ruleset_mib))
                print(f"  measured {size:>6} promotions x {lines:>3} lines", file=sys.stderr)

    print("| promotions | lines | evaluate() median ms | p99 ms | runs | + to_json(indent=None) median ms | "
          "business-rules median ms | runs | ratio | peak KiB / evaluate | rule set MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, lines, med, tail, n, jmed, base, bn, memory, mib in rows:
        mib_text = "" if mib != mib else f"{mib:.1f}"
        print(f"| {size:,} | {lines} | {med:.3f} | {tail:.3f} | {n} | {jmed:.3f} | {base:.1f} | {bn} | "
              f"{base / med:.1f}x | {memory:,.0f} | {mib_text} |")

    print("\nOut of scope: 1,000 promotions in scope, alone and with 9,000 that no cart can get: for other regions"
          " and categories, or past campaigns (windows ended) in the same regions and categories")
    print("| 9,000 added | lines | 1,000 median ms | 1,000 + 9,000 median ms | ratio | 1,000 p99 ms | "
          "1,000 + 9,000 p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    docs = generate.ruleset_docs(1_000, SEED, out_of_scope=9_000)
    narrow = build_ruleset(generate.files_of(docs[:1_000]))
    for kind, wide_docs in (("other markets", docs), ("ended campaigns", generate.ruleset_docs(1_000, SEED, ended=9_000))):
        wide = build_ruleset(generate.files_of(wide_docs))
        exempt_from_gc()
        for lines in LINES:
            inputs = carts(lines, docs[:1_000])
            a = timed(ours(narrow), inputs, BUDGET, MIN_RUNS)
            b = timed(ours(wide), inputs, BUDGET, MIN_RUNS)
            print(f"| {kind} | {lines} | {statistics.median(a):.3f} | {statistics.median(b):.3f} | "
                  f"{statistics.median(b) / statistics.median(a):.2f}x | {p99(a):.3f} | {p99(b):.3f} |")
        del wide

    print(f"\nLoad and validate {loaded['files']:,} rule files from disk (load_ruleset): {loaded['seconds']:.2f} s")

    print("\nWhere the time goes, 1,000 promotions x 50 lines (median ms per evaluate())")
    print("| part | ms |")
    print("|---|---:|")
    floor.report(narrow, carts(50, docs[:1_000]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
