"""`make bench`: evaluate() against a hand-tuned floor and business-rules, on the same seeded rule sets and carts.

For each workload shape (bench/generate.py SHAPES), 10 / 100 / 1,000 / 10,000 promotions and carts of
5 / 50 / 500 lines, in one run on the same carts: evaluate()'s median and p99 (the full Trace, as
frozen objects), the same with the trace serialized by to_json(indent=None) (no indentation, as a
service sends it), the same for the compact view (`view="compact"`), the floor's median (bench/floor.py: the same decisions and amounts, no trace; checked
against evaluate() for the same total discount on every cart, and the run stops on a difference),
the business-rules baseline's median (bench/baseline.py), their ratios, and evaluate()'s peak memory
(tracemalloc, in a separate pass). Then: 1,000 promotions alone against 1,000 plus 9,000 that no cart
can get (other region sets, other tiers, ended windows; each kind separately), the time to load and
validate 10,000 rule files from disk, and where the time goes at 1,000 x 50 (bench/phases.py).

Each rule set is exempted from the cyclic garbage collector after it is built, as RuleSetHolder does.
`--quick` runs a CI-sized grid in seconds; `--profile` prints cProfile's top lines for 1,000 x 50 of
the region-sets shape. Not a test: nothing here passes or fails (except a floor that disagrees).
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime
from pathlib import Path

from bench import baseline, floor, generate, phases
from engine import evaluate, load_ruleset
from engine.holder import exempt_from_gc
from engine.money import to_units
from engine.ruleset import build_ruleset

SIZES = (10, 100, 1_000, 10_000)
LINES = (5, 50, 500)
CARTS = 20                 # distinct carts per line count, cycled through
BUDGET = 0.6               # seconds of timed evaluate() calls per cell (at least MIN_RUNS calls)
MIN_RUNS = 10
BASELINE_LIMIT = 1_000_000   # promotions x lines above which the baseline is not run (25 s a call at 10,000 x 500)
SEED = 20261121


class Config:
    def __init__(self, quick: bool):
        self.quick = quick
        self.sizes = (10, 100) if quick else SIZES
        self.lines = (5, 50) if quick else LINES
        self.budget = 0.02 if quick else BUDGET
        self.min_runs = 2 if quick else MIN_RUNS
        self.carts = 4 if quick else CARTS
        self.added = 90 if quick else 9_000      # out-of-scope promotions added to the in-scope ones
        self.in_scope = 10 if quick else 1_000
        self.load = 200 if quick else 10_000


def carts(shape: str, lines: int, docs: list[dict], count: int = CARTS) -> list[tuple[dict, dict, list[str]]]:
    rnd = random.Random(SEED + lines)
    return [(generate.cart(rnd, lines), generate.account(rnd, shape), generate.codes_for(rnd, docs))
            for _ in range(count)]


def timed(fn, inputs, budget: float, min_runs: int, warm_up: bool = True, results: list | None = None) -> list[float]:
    """Milliseconds per call, cycling through `inputs`; `results` (if given) keeps the first result for each input."""
    if warm_up:   # untimed: the first call of a rule set builds its market for this stretch of time
        fn(*inputs[0])
    times: list[float] = []
    start = time.perf_counter()
    i = 0
    while i < min_runs or (time.perf_counter() - start < budget and i < 5000):
        args = inputs[i % len(inputs)]
        t0 = time.perf_counter_ns()
        out = fn(*args)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        if results is not None and i < len(inputs):
            results.append(out)
        i += 1
    return times


def p99(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def ours(rules):
    def run(cart, account, codes):
        return evaluate(rules, cart, account, codes=codes, now=generate.NOW)
    return run


def ours_json(rules, view: str = "full"):
    def run(cart, account, codes):
        return evaluate(rules, cart, account, codes=codes, now=generate.NOW).to_json(indent=None, view=view)
    return run


def peak_kib(fn, args) -> float:
    gc.collect()
    tracemalloc.start()
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1024


class FloorDisagrees(AssertionError):
    pass


def check_floor(rules, the_floor: floor.Floor, inputs, traces=None) -> None:
    """The floor is a floor only if it decides the same: the same total discount on every cart."""
    if traces is None:
        traces = [evaluate(rules, c, a, codes=k, now=generate.NOW) for c, a, k in inputs]
    for (cart, account, codes), trace in zip(inputs, traces, strict=True):
        want = to_units(trace.totals.discount, "JPY")
        got = the_floor.total(cart, account, codes)
        if got != want:
            raise FloorDisagrees(f"floor gives {got}, evaluate() {want} on {cart['id']} for {account['id']}")


def measure(shape: str, size: int, docs: list[dict], rules, config: Config) -> list[dict]:
    now = datetime.fromisoformat(generate.NOW)
    prepared = baseline.prepare(docs)
    the_floor = floor.Floor(rules, "JPY", now)
    rows = []
    for lines in config.lines:
        big = size * lines > 500_000     # a second or more per evaluate() call: fewer carts, fewer runs
        inputs = carts(shape, lines, docs, 3 if big else config.carts)
        traces: list = []
        mine = timed(ours(rules), inputs, config.budget, max(len(inputs), config.min_runs), results=traces)
        check_floor(rules, the_floor, inputs, traces)   # every cart timed is checked
        with_json = timed(ours_json(rules), inputs, config.budget / 2, 3 if big else config.min_runs)
        compact = timed(ours_json(rules, "compact"), inputs, config.budget / 2, 3 if big else config.min_runs)
        low = timed(the_floor.total, inputs, config.budget / 2, config.min_runs)
        if size * lines <= BASELINE_LIMIT:
            theirs = timed(lambda c, a, k: baseline.evaluate_with_business_rules(prepared, c, a, k, now),
                           inputs, config.budget, 1, warm_up=False)
        else:
            theirs = []
        rows.append({"shape": shape, "size": size, "lines": lines, "median": statistics.median(mine), "p99": p99(mine),
                     "runs": len(mine), "json": statistics.median(with_json), "json_p99": p99(with_json),
                     "compact": statistics.median(compact),
                     "floor": statistics.median(low), "baseline": statistics.median(theirs) if theirs else None,
                     "kib": peak_kib(ours(rules), inputs[0])})
        print(f"  measured {shape} {size:>6} promotions x {lines:>3} lines", file=sys.stderr)
    return rows


def print_grid(rows: list[dict]) -> None:
    print("| shape | promotions | lines | evaluate() median ms | p99 | + to_json median ms | p99 | + compact view ms | "
          "floor median ms | evaluate / floor | + to_json / floor | business-rules median ms | business-rules / evaluate | "
          "peak KiB / evaluate | runs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        base = r["baseline"]
        base_text = "not run" if base is None else f"{base:.1f}"
        ratio = "" if base is None else f"{base / r['median']:.1f}x"
        print(f"| {r['shape']} | {r['size']:,} | {r['lines']} | {r['median']:.3f} | {r['p99']:.3f} | {r['json']:.3f} | "
              f"{r['json_p99']:.3f} | {r['compact']:.3f} | {r['floor']:.3f} | {r['median'] / r['floor']:.1f}x | {r['json'] / r['floor']:.1f}x | "
              f"{base_text} | {ratio} | {r['kib']:,.0f} | {r['runs']} |")


def out_of_scope(shape: str, config: Config) -> None:
    narrow_docs = generate.shape_docs(shape, config.in_scope, SEED)
    narrow = build_ruleset(generate.files_of(narrow_docs))
    for kind in generate.OUT_OF_SCOPE:
        wide_docs = generate.shape_docs(shape, config.in_scope, SEED, added=kind, extra=config.added)
        assert wide_docs[:config.in_scope] == narrow_docs
        wide = build_ruleset(generate.files_of(wide_docs))
        exempt_from_gc()
        for lines in config.lines:
            inputs = carts(shape, lines, narrow_docs, config.carts)
            a = timed(ours(narrow), inputs, config.budget, config.min_runs)
            b = timed(ours(wide), inputs, config.budget, 3 if lines >= 500 else config.min_runs)
            print(f"| {shape} | {kind} | {lines} | {statistics.median(a):.3f} | {statistics.median(b):.3f} | "
                  f"{statistics.median(b) / statistics.median(a):.2f}x | {p99(a):.3f} | {p99(b):.3f} |")
        del wide


def load_time(shape: str, count: int) -> tuple[int, float]:
    files = generate.files_of(generate.shape_docs(shape, count, SEED))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "rules"
        folder.mkdir()
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        t0 = time.perf_counter()
        load_ruleset(folder)
        return len(files), time.perf_counter() - t0


def profile(shape: str = "region-sets", size: int = 1_000, lines: int = 50, runs: int = 200, top: int = 25) -> str:
    docs = generate.shape_docs(shape, size, SEED)
    rules = build_ruleset(generate.files_of(docs))
    inputs = carts(shape, lines, docs)
    run = ours(rules)
    run(*inputs[0])
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(runs):
        run(*inputs[i % len(inputs)])
    profiler.disable()
    out = io.StringIO()
    for key in ("cumulative", "tottime"):
        out.write(f"\n--- {shape} {size:,} x {lines}, {runs} evaluate() calls, sorted by {key}\n")
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a CI-sized grid: seconds, not minutes")
    parser.add_argument("--profile", action="store_true", help="only cProfile's top lines at 1,000 x 50, region-sets")
    args = parser.parse_args(argv)
    if args.profile:
        print(profile())
        return 0
    config = Config(args.quick)
    print(f"promo-engine benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} cores, seed {SEED}"
          f"{' (quick)' if config.quick else ''}\n")
    rows = []
    for shape in generate.SHAPES:
        for size in config.sizes:
            docs = generate.shape_docs(shape, size, SEED)
            rules = build_ruleset(generate.files_of(docs))
            exempt_from_gc()   # as RuleSetHolder does after every load: see engine/holder.py
            rows.extend(measure(shape, size, docs, rules, config))
            del rules
    print_grid(rows)

    print(f"\nOut of scope: {config.in_scope:,} promotions alone, and with {config.added:,} added that no benchmark "
          f"cart can get (for other region sets in the same categories; for tiers no account has; windows ended)")
    print(f"| shape | {config.added:,} added | lines | alone median ms | with them median ms | ratio | alone p99 | "
          f"with them p99 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for shape in ("one-region", "region-sets"):
        out_of_scope(shape, config)

    print()
    for shape in ("one-region", "mixed"):
        files, seconds = load_time(shape, config.load)
        print(f"Load and validate {files:,} rule files from disk (load_ruleset), {shape}: {seconds:.2f} s")

    size = 100 if config.quick else 1_000
    print(f"\nWhere the time goes, region-sets, {size:,} promotions x 50 lines (median ms per evaluate())")
    print("| part | ms |")
    print("|---|---:|")
    docs = generate.shape_docs("region-sets", size, SEED)
    phases.report(build_ruleset(generate.files_of(docs)), carts("region-sets", 50, docs, config.carts),
                  runs=20 if config.quick else 300)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
