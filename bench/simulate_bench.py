"""How fast `promo simulate` replays a corpus: carts a second in one process and priced on a local Dask
cluster, how many carts the client priced again because a limit's counts changed under them, and what
the client alone can feed (carts per second of its own CPU time: it reads, prepares each cart twice,
checks and counts, and evaluates only the carts it prices again).

    make bench-backtest          (runs this after bench/backtest_bench.py)
    .venv/bin/python bench/simulate_bench.py --carts 20000 --per-day 2000 --workers 2

Three rule sets: the bundled rules (large budgets, a few per-customer limits: the cluster's good case);
the bundled rules with every budget cut to a hundredth and every total-use limit to a tenth, so that
limits run out during the run and the client prices carts again near them (the case a speculative
design does not favour); and 1,000 generated promotions of bench/generate.py's "mixed" shape, 200 of
them limited (many counts to carry to the workers, an evaluation ten times dearer). Each run is in a fresh process. Not a test: the figures depend on
the machine, and on a 2-core machine the client shares its cores with the workers.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RULES = ROOT / "rules"


def tight_rules(directory: Path) -> Path:
    """The bundled rules with budgets cut to 1/100 and total-use limits to 1/10 (at least 1)."""
    out = directory / "tight"
    shutil.copytree(RULES, out)
    for path in out.glob("*.yaml"):
        text = path.read_text()
        text = re.sub(r'(\n  budget: ")([0-9.]+)(")',
                      lambda m: m[1] + format(Decimal(m[2]) / 100, "f") + m[3], text)
        text = re.sub(r"(\n  total_uses: )([0-9]+)", lambda m: m[1] + str(max(int(m[2]) // 10, 1)), text)
        path.write_text(text)
    return out


def mixed_rules(directory: Path) -> Path:
    """1,000 generated promotions of the "mixed" shape (bench/generate.py: region and tier sets, exclusives,
    codes), 200 of them with a limit: many counts to carry, and an evaluation ten times dearer."""
    from bench.generate import files_of, shape_docs
    for name, data in files_of(shape_docs("mixed", 1000, 11)).items():
        path = directory / "mixed" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return directory / "mixed" / "rules"


def make_corpus(directory: Path, count: int, rules: Path = RULES) -> Path:
    """A corpus generated against `rules` (its regions, categories, tiers and thresholds)."""
    from engine.cartgen import generate
    from engine.corpus_cli import write_corpus
    from engine.ruleset import load_ruleset
    out = directory / f"carts-{rules.parent.name}-{count}.jsonl"
    write_corpus(str(out), generate(load_ruleset(rules), count, 7, None), force=False)
    return out


def measure(mode: str, rules: str, corpus: str, per_day: int, workers: int) -> dict:
    """One simulation in this process (run as a child of the benchmark)."""
    from engine.corpus import read_corpus
    from engine.ruleset import load_ruleset
    from engine.simulate import simulate
    ruleset = load_ruleset(rules)
    label = "mixed" if Path(rules).parent.name == "mixed" else "tight" if Path(rules).name == "tight" else "bundled"
    out: dict = {"mode": mode, "rules": label, "workers": workers if mode == "cluster" else 0}
    if mode == "process":
        started = time.perf_counter()
        result = simulate(ruleset, read_corpus(corpus), per_day)
        elapsed = time.perf_counter() - started
    else:
        from engine.backtest_dask import cluster_client
        from engine.simulate_dask import simulate_on_cluster
        with cluster_client(workers=workers) as client:
            client.wait_for_workers(workers)
            cpu = _cpu()
            started = time.perf_counter()
            result, stats = simulate_on_cluster(client, ruleset, read_corpus(corpus), per_day)
            elapsed = time.perf_counter() - started
            cpu = _cpu() - cpu
        out.update(repriced=stats.repriced, client_cpu_s=round(cpu, 1), client_carts_per_cpu_s=round(result.carts / cpu))
    exhausted = sum(1 for _, p in result.by_promotion if p.exhausted is not None)
    out.update(carts=result.carts, seconds=round(elapsed, 1), carts_per_s=round(result.carts / elapsed),
               exhausted=exhausted, peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    return out


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(mode: str, rules: Path, corpus: Path, per_day: int, workers: int) -> dict:
    command = [sys.executable, __file__, "--measure", mode, str(rules), str(corpus), str(per_day), str(workers)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--carts", type=int, default=20_000)
    parser.add_argument("--per-day", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--measure", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        mode, rules, corpus, per_day, workers = args.measure
        print(json.dumps(measure(mode, rules, corpus, int(per_day), int(workers))))
        return
    print(f"promo simulate benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {args.carts:,} carts, "
          f"{args.per_day:,} a day", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="promo-simulate-bench-") as tmp:
        directory = Path(tmp)
        corpus = make_corpus(directory, args.carts)
        mixed = mixed_rules(directory)
        for rules, carts in ((RULES, corpus), (tight_rules(directory), corpus),
                             (mixed, make_corpus(directory, args.carts, mixed))):
            for mode in ("process", "cluster"):
                rows.append(_child(mode, rules, carts, args.per_day, args.workers))
                _show(rows[-1])
    print(json.dumps(rows))


def _show(row: dict) -> None:
    where = f"cluster of {row['workers']}" if row["workers"] else "one process"
    extra = "".join(f", {k} {row[k]}" for k in ("repriced", "client_cpu_s", "client_carts_per_cpu_s", "peak_rss_mib")
                    if k in row)
    print(f"  {row['rules']:<7} {where:<14} {row['carts']:>8,} carts  {row['seconds']:>6} s  "
          f"{row['carts_per_s']:>6,} carts/s, {row['exhausted']} limits exhausted{extra}", flush=True)


if __name__ == "__main__":
    main()
