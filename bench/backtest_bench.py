"""How fast `promo diff` replays a corpus, and how much memory the client keeps while it does: carts a
second in one process and on a local Dask cluster, the cluster both ways (the client reads the corpus and
ships it in chunks; with --read-on-workers the workers read their own byte ranges), the client's peak RSS
(and, on the cluster, where the client evaluates nothing, its tracemalloc peak) for corpora of growing
length, both ways, and the ceilings that are not evaluation: what the client can read and ship (lines
read, chunked and pickled a second), and what one worker can read of its ranges (lines counted, read
and decoded a second).

    make bench-backtest
    .venv/bin/python bench/backtest_bench.py --carts 100000 --memory 100000 1000000 --workers 2

The corpora are generated to temporary files (`promo carts generate`'s generator, written line by line,
never held in memory) against the bundled rules; the head raises the books promotion's minimum from
3,000 to 3,500. Each measurement runs in a fresh process, so that peak RSS is that run's own. Not a test:
the figures depend on the machine, and on a 2-core machine the client shares its cores with the workers.
On a machine shared with other work, carts a second move with its load; the workers' CPU time a cart
and the client's CPU time hardly do.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RULES = ROOT / "rules"


def make_head(directory: Path, shape: str = "bundled") -> Path:
    """The head rule set, in directory/head; for --shape mixed the base is written beside it, in
    directory/base, which `measure` then reads instead of the bundled rules."""
    head = directory / "head"
    if shape == "mixed":       # 1,000 generated promotions (bench/generate.py), ten of them given other amounts
        from bench.generate import files_of, shape_docs
        for name, data in files_of(shape_docs("mixed", 1000, 11), folder=".").items():
            for side in ("base", "head"):
                (directory / side / name).parent.mkdir(parents=True, exist_ok=True)
                (directory / side / name).write_bytes(data)
        for path in sorted(head.glob("p*.yaml"))[:10]:
            path.write_text(re.sub(r'(\n +amount: ")[0-9]+', r"\g<1>100",
                                   re.sub(r"(\n +percent: )[0-9]+", r"\g<1>5", path.read_text())))
        return head
    shutil.copytree(RULES, head)
    books = head / "books-500-off-over-3000.yaml"
    books.write_text(books.read_text().replace('value: "3000"', 'value: "3500"'))
    return head


def base_of(head: Path) -> Path:
    base = head.parent / "base"
    return base if base.is_dir() else RULES


def make_corpus(directory: Path, count: int, rules: Path = RULES) -> Path:
    from engine.cartgen import generate
    from engine.corpus_cli import write_corpus
    from engine.ruleset import load_ruleset
    out = directory / f"carts-{count}.jsonl"
    if not out.exists():
        write_corpus(str(out), generate(load_ruleset(rules), count, 3, None), force=False)
    return out


def measure(mode: str, corpus: str, head: str, workers: int, trace: bool, read: str = "client") -> dict:
    """One replay in this process (run as a child of the benchmark): its time and memory. `read`, on the
    cluster: "client" (the client reads and ships the lines) or "workers" (--read-on-workers)."""
    import tracemalloc

    from engine.backtest import diff
    from engine.corpus import read_corpus, read_lines
    from engine.ruleset import load_ruleset
    base, changed = load_ruleset(base_of(Path(head))), load_ruleset(head)
    out: dict = {"mode": mode, "workers": workers if mode == "cluster" else 0}
    if mode == "cluster":
        out["read"] = read
    if mode == "process":
        rss_before = _rss_now()
        started = time.perf_counter()
        summary = diff(base, changed, read_corpus(corpus))
    else:
        from engine.backtest_dask import cluster_client, diff_on_cluster, diff_on_ranges, plan_ranges
        started = time.perf_counter()
        with cluster_client(workers=workers) as client:
            client.wait_for_workers(workers)
            out["cluster_start_s"] = round(time.perf_counter() - started, 2)
            rss_before = _rss_now()
            workers_cpu, client_cpu = sum(client.run(_cpu_s).values()), _cpu_s()
            if trace:
                tracemalloc.start()
            started = time.perf_counter()
            if read == "workers":
                plan = plan_ranges(client, os.path.abspath(corpus), os.path.getsize(corpus))
                out["count_s"] = round(time.perf_counter() - started, 2)
                out["ranges"] = len(plan.ranges)
                summary = diff_on_ranges(client, base, changed, plan, top_n=10, source=corpus)
            else:
                with open(corpus, "rb") as stream:
                    summary = diff_on_cluster(client, base, changed, read_lines(stream, corpus), top_n=10,
                                              source=corpus)
            elapsed = time.perf_counter() - started
            out["client_cpu_s"] = round(_cpu_s() - client_cpu, 1)
            out["workers_cpu_ms_per_cart"] = round((sum(client.run(_cpu_s).values()) - workers_cpu) * 1000
                                                   / max(summary.carts, 1), 2)
            if trace:
                out["tracemalloc_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
                tracemalloc.stop()
    if mode == "process":
        elapsed = time.perf_counter() - started
    out.update(carts=summary.carts, changed=summary.changed, seconds=round(elapsed, 1),
               carts_per_s=round(summary.carts / elapsed), rss_before_mib=round(rss_before / 2**20, 1),
               peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    return out


def client_ceiling(corpus: Path, chunk_lines: int) -> dict:
    """What the client alone can feed: lines read, chunked and pickled (what shipping a chunk costs on
    this side) a second, with no evaluation and no network."""
    from engine.backtest_dask import _chunks
    from engine.corpus import read_lines
    started = time.perf_counter()
    lines = shipped = 0
    with open(corpus, "rb") as stream:
        for chunk in _chunks(read_lines(stream, str(corpus)), chunk_lines):
            shipped += len(pickle.dumps(chunk, protocol=5))
            lines += len(chunk)
    elapsed = time.perf_counter() - started
    return {"mode": "client ceiling", "carts": lines, "seconds": round(elapsed, 2),
            "carts_per_s": round(lines / elapsed), "mib_shipped": round(shipped / 2**20, 1)}


def range_ceiling(corpus: Path) -> dict:
    """What one worker can read with --read-on-workers, with no evaluation: the corpus cut into ranges as
    for a 2-worker cluster, each range's lines counted (phase 1), then read and decoded (phase 2), a second."""
    from engine.backtest_dask import cut_ranges
    from engine.corpus import CorpusError, count_line_starts, parse_line, read_range
    size = corpus.stat().st_size
    cuts = cut_ranges(size, 2)
    started = time.perf_counter()
    counts = [count_line_starts(corpus, start, end, size=size) for start, end in cuts]
    counted = time.perf_counter() - started
    lines, first = 0, 1
    for (start, end), count in zip(cuts, counts):
        for item in read_range(corpus, start, end, first, str(corpus), size=size, lines=count):
            if not isinstance(item, CorpusError):
                parse_line(item[1], str(corpus), item[0])
            lines += 1
        first += count
    elapsed = time.perf_counter() - started
    return {"mode": "a worker alone: count, read, decode", "carts": lines, "seconds": round(elapsed, 2),
            "carts_per_s": round(lines / elapsed), "count_s": round(counted, 3), "ranges": len(cuts)}


def _cpu_s() -> float:
    """This process's CPU seconds (run on each worker too): unlike carts a second, hardly moved by other
    work sharing the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child(mode: str, corpus: Path, head: Path, workers: int, trace: bool, read: str = "client") -> dict:
    command = [sys.executable, __file__, "--measure", mode, str(corpus), str(head), str(workers), read] + \
              (["--trace"] if trace else [])
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--carts", type=int, default=100_000, help="the throughput corpus")
    parser.add_argument("--memory", type=int, nargs="*", default=[100_000, 1_000_000],
                        help="corpus lengths replayed on the cluster for the client's memory")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modes", nargs="*", default=["process", "cluster"], choices=["process", "cluster"],
                        help="which throughput runs to make (both by default)")
    parser.add_argument("--shape", choices=["bundled", "mixed"], default="bundled",
                        help="the rule sets: the bundled rules with the books minimum raised (default), or 1,000 "
                             "generated promotions of the mixed shape with ten of them changed (evaluation ten "
                             "times dearer, and a rule set each worker takes seconds to build)")
    parser.add_argument("--measure", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        mode, corpus, head, workers, read = args.measure
        print(json.dumps(measure(mode, corpus, head, int(workers), args.trace, read)))
        return
    from engine.backtest_dask import CHUNK_LINES, RANGE_BYTES
    print(f"promo diff benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}, chunks of {CHUNK_LINES} "
          f"lines, ranges of {RANGE_BYTES // 2**20} MiB", flush=True)
    with tempfile.TemporaryDirectory(prefix="promo-backtest-bench-") as tmp:
        directory = Path(tmp)
        head = make_head(directory, args.shape)
        corpus = make_corpus(directory, args.carts, base_of(head))
        rows = [client_ceiling(corpus, CHUNK_LINES), range_ceiling(corpus)]
        for row in rows:
            _show(row)
        for mode in args.modes:
            for read in (("client", "workers") if mode == "cluster" else ("client",)):
                rows.append(_child(mode, corpus, head, args.workers, trace=False, read=read))
                _show(rows[-1])
        for count in args.memory:
            for read in ("client", "workers"):
                rows.append(_child("cluster", make_corpus(directory, count, base_of(head)), head, args.workers,
                                   trace=True, read=read))
                _show(rows[-1])
    print(json.dumps(rows))


def _show(row: dict) -> None:
    extra = "".join(f", {k} {row[k]}" for k in ("cluster_start_s", "ranges", "count_s", "workers_cpu_ms_per_cart",
                                                 "client_cpu_s", "rss_before_mib", "peak_rss_mib",
                                                 "tracemalloc_peak_mib", "mib_shipped") if k in row)
    where = f"cluster of {row['workers']}, {row['read']} read" if row.get("workers") else row["mode"]
    print(f"  {where:<36} {row['carts']:>9,} carts  {row['seconds']:>7} s  {row['carts_per_s']:>7,} carts/s{extra}",
          flush=True)


if __name__ == "__main__":
    main()
