"""`promo diff --base DIR --head DIR --carts FILE [--json] [--on-error stop|skip] [--top N]
[--workers N | --scheduler ADDRESS [--read-on-workers]] [--report FILE.html]`: which carts a rule change
touches, and by how much. Both rule sets are loaded here, the corpus is streamed here (engine/corpus.py)
or, with --read-on-workers, only its size is taken here and the workers read it, the progress bar is
drawn here (on a terminal only), and the report is printed here; the comparison and the summary are
engine/backtest.py's, the run on a Dask cluster engine/backtest_dask.py's and the HTML report
engine/backtest_report.py's.

Exit codes: 0 when the corpus was replayed (changed or not); 1 for bad input (a rule directory that is
missing or does not load, printed as `promo validate` prints it; a missing, empty or unreadable corpus;
a corpus the workers cannot read, or that changed while it was replayed; a corpus with no carts; with
--on-error stop, the first bad line); 2 for usage (--read-on-workers without a cluster).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from .backtest import DEFAULT_TOP, DiffSummary, diff, rule_changes
from .cli_support import Refused
from .backtest_dask import CorpusUnreadable
from .corpus import ON_ERROR, CorpusChanged, read_corpus, read_lines
from .corpus_cli import check_corpus, corpus_refusals
from .render import clean_lines, clean_text
from .ruleset import load_ruleset

MAX_TOP = 1000
MAX_WORKERS = 256
COUNT_LINES_UP_TO = 512 * 1024 * 1024   # counting a corpus's lines for the progress bar's total reads it at
                                        # about 1 GB/s; past this size the bar shows the rate only
T = TypeVar("T")


def add_commands(commands: argparse._SubParsersAction) -> None:
    d = commands.add_parser("diff", help="replay a cart corpus against two rule sets: which carts a change "
                                         "touches, and by how much")
    d.add_argument("--base", required=True, help="the rule directory as it is (e.g. main's rules/)")
    d.add_argument("--head", required=True, help="the rule directory with the change")
    d.add_argument("--carts", required=True, help="the corpus: JSON Lines, one {cart, account, codes, now, id} a "
                                                  "line (promo carts generate / from-traces)")
    d.add_argument("--json", action="store_true", help="print the summary as JSON")
    d.add_argument("--on-error", choices=ON_ERROR, default="stop",
                   help="a bad corpus line: stop (default, exit 1) or skip it, count it and go on")
    d.add_argument("--top", type=int, default=DEFAULT_TOP, help=f"how many of the most changed carts to list "
                                                                f"(default {DEFAULT_TOP}, at most {MAX_TOP})")
    where = d.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="replay on a local Dask cluster of N worker processes")
    where.add_argument("--scheduler", help="replay on an existing Dask cluster (tcp://host:8786); its workers "
                                           "need promo-engine installed")
    d.add_argument("--read-on-workers", action="store_true",
                   help="with --workers or --scheduler: each worker reads its own byte range of --carts, which "
                        "must be at the same absolute path on storage every worker can open; the client reads "
                        "none of it")
    d.add_argument("--report", help="also write the summary, with charts, as one self-contained HTML file")


def run(args: argparse.Namespace) -> int:
    try:
        if not 0 <= args.top <= MAX_TOP:
            raise Refused(f"promo diff: --top {args.top}: give 0 to {MAX_TOP}", 2)
        if args.read_on_workers and args.workers is None and args.scheduler is None:
            raise Refused("promo diff: --read-on-workers needs --workers N or --scheduler ADDRESS (the workers of "
                          "a Dask cluster read the corpus)", 2)
        for option, directory in (("--base", args.base), ("--head", args.head)):
            if not Path(directory).is_dir():
                raise Refused(f"promo diff: {option} {clean_text(directory)}: rule directory not found")
        if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
            raise Refused(f"promo diff: --workers {args.workers}: give 1 to {MAX_WORKERS}", 2)
        if args.report is not None:
            check_report(args.report)
        check_corpus(args.carts)
        if args.report is not None and _same_file(args.report, args.carts):
            raise Refused(f"promo diff: --report {clean_text(args.report)} is the corpus --carts names; give "
                          f"another file to write")
        base, head = load_ruleset(args.base), load_ruleset(args.head)
        with corpus_refusals("diff", args.carts), worker_refusals(args.carts):
            summary = replay(args, base, head)
        if summary.carts == 0 and summary.skipped == 0:
            raise Refused(f"promo diff: --carts {clean_text(args.carts)} has no carts (only blank lines)")
    except Refused as exc:
        print(clean_lines(str(exc)), file=sys.stderr)
        return exc.code
    kinds = rule_changes(base, head)
    if args.report is not None:
        from .backtest_report import write_report
        try:
            write_report(args.report, summary, kinds, args.base, args.head)
        except OSError as exc:
            print(f"promo diff: --report {clean_text(args.report)}: cannot write: {exc.strerror}", file=sys.stderr)
            return 1
    if args.json:
        sys.stdout.write(json.dumps(summary.to_dict(kinds), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_summary(summary, kinds, args.base, args.head))
    return 0


def replay(args: argparse.Namespace, base, head) -> DiffSummary:
    """The corpus replayed in this process, or on the Dask cluster --workers / --scheduler names: read
    here and shipped in chunks, or with --read-on-workers read by the workers themselves."""
    if args.workers is None and args.scheduler is None:
        with progress_bar(args.carts) as advance:
            entries = read_corpus(args.carts)
            return diff(base, head, entries if advance is None else _counted(entries, advance),
                        on_error=args.on_error, top_n=args.top, source=args.carts)
    try:
        importlib.import_module("distributed")
    except ImportError:
        raise Refused("promo diff: --workers and --scheduler need Dask: pip install 'dask[distributed]'") from None
    from .backtest_dask import diff_on_cluster, diff_on_ranges, plan_ranges
    if args.read_on_workers:
        path, size = worker_path(args.carts), os.path.getsize(args.carts)
        with cluster(args) as client:
            plan = plan_ranges(client, path, size)          # the workers count each range's lines
            with progress_bar(args.carts, lambda: plan.lines) as advance:
                return diff_on_ranges(client, base, head, plan, on_error=args.on_error, top_n=args.top,
                                      source=args.carts, advance=advance)
    with open(args.carts, "rb") as stream, cluster(args) as client, progress_bar(args.carts) as advance:
        return diff_on_cluster(client, base, head, read_lines(stream, args.carts), on_error=args.on_error,
                               top_n=args.top, source=args.carts, advance=advance)


def worker_path(carts: str) -> str:
    """The path the workers open with --read-on-workers: --carts made absolute here, on the client."""
    return os.path.abspath(carts)


@contextmanager
def worker_refusals(carts: str) -> Iterator[None]:
    """What a worker refused of the corpus with --read-on-workers, as one line (exit 1)."""
    try:
        yield
    except CorpusUnreadable as exc:
        raise Refused(f"promo diff: --carts {clean_text(carts)}: the workers cannot read {clean_text(exc.path)}: "
                      f"{clean_text(exc.reason)} (--read-on-workers needs the corpus at that path on storage "
                      f"every worker can open)") from None
    except CorpusChanged as exc:
        raise Refused(f"promo diff: --carts {clean_text(carts)}: the corpus changed while it was replayed "
                      f"({clean_text(exc.detail)}); replay a file nothing is writing to") from None


@contextmanager
def cluster(args: argparse.Namespace, command: str = "diff") -> Iterator[object]:
    """The Dask client of --workers N (a local cluster) or --scheduler ADDRESS; an address that does not
    answer is refused in one line."""
    from .backtest_dask import cluster_client
    from .backtest_dask import SchedulerUnreachable
    try:
        with cluster_client(args.workers, args.scheduler) as client:
            yield client
    except SchedulerUnreachable as exc:
        raise Refused(f"promo {command}: --scheduler {clean_text(exc)}") from None


@contextmanager
def progress_bar(corpus: str, lines: Callable[[], int | None] | None = None) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on standard error while the corpus is replayed, when that is a terminal (never in
    pipes, files or CI logs): lines a second, and the time left when the corpus's length is known.
    `lines` gives that length (or None), asked only when the bar is drawn; without it the corpus's lines
    are counted here (count_lines), which --read-on-workers does not do: the workers counted them."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, \
        TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:,.0f} carts/s" if task.speed else "… carts/s")

    total = lines() if lines is not None else count_lines(corpus)
    columns = [TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), Rate(), TimeElapsedColumn()]
    if total is not None:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("replay", total=total)
        yield lambda lines: bar.advance(task, lines)


def count_lines(path: str) -> int | None:
    """The corpus's line count (blank lines too: an upper bound on its carts), or None when the file is
    too large to count quickly."""
    try:
        if os.path.getsize(path) > COUNT_LINES_UP_TO:
            return None
        count, last = 0, b"\n"
        with open(path, "rb") as stream:
            while block := stream.read(1 << 20):
                count += block.count(b"\n")
                last = block[-1:]
        return count + (last != b"\n")
    except OSError:
        return None


def check_report(path: str, command: str = "diff") -> None:
    """--report: a file name in a directory that exists (an existing report is replaced)."""
    p = Path(path)
    try:
        if p.is_dir():
            raise Refused(f"promo {command}: --report {clean_text(p)} is a directory; give a file to write")
        if not (p.parent if str(p.parent) else Path(".")).is_dir():
            raise Refused(f"promo {command}: --report {clean_text(p)}: its directory does not exist")
    except OSError as exc:          # a name the system refuses to look up (too long, say)
        raise Refused(f"promo {command}: --report {clean_text(p)}: cannot write: "
                      f"{exc.strerror or type(exc).__name__}") from None


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one existing file (a link or another spelling included)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _counted(items: Iterable[T], advance: Callable[[int], None]) -> Iterator[T]:
    for item in items:
        advance(1)
        yield item


def render_summary(summary: DiffSummary, kinds: dict[str, str], base: str, head: str) -> str:
    """The summary for a terminal: totals per currency, then promotions, reason changes and top carts."""
    data = summary.to_dict(kinds)
    out = [f"{clean_text(base)} -> {clean_text(head)}: {data['carts']} carts, {data['changed']} with a different "
           f"total discount" + (f", {data['skipped']} skipped" if data["skipped"] else "")]
    for message in data["errors"]:
        out.append(f"  skipped: {clean_text(message)}")
    out += ["", f"  {'currency':<8} {'before':>16} {'after':>16} {'delta':>16}"]
    for currency in sorted(data["discount_before"]):
        out.append(f"  {currency:<8} {data['discount_before'][currency]:>16} {data['discount_after'][currency]:>16} "
                   f"{_signed(data['discount_delta'][currency]):>16}")
    if data["by_promotion"]:
        out += ["", "Promotions (discount in the carts it changed, per currency):"]
        for pid, p in data["by_promotion"].items():
            money = "; ".join(f"{c} {p['discount_before'].get(c, '0')} -> {p['discount_after'].get(c, '0')}"
                              for c in sorted(set(p["discount_before"]) | set(p["discount_after"])))
            granted = "; ".join(f"{c} {p['granted_before'].get(c, '0')} -> {p['granted_after'].get(c, '0')}"
                                for c in sorted(set(p["granted_before"]) | set(p["granted_after"]))
                                if p['granted_before'].get(c, '0') != '0' or p['granted_after'].get(c, '0') != '0')
            out.append(f"  {clean_text(pid)} ({p['change']}): {p['carts']} carts" + (f", {money}" if money else "")
                       + (f", granted {granted}" if granted else ""))
    if data["reasons_changed"]:
        out += ["", "Outcomes that changed (promotion: before -> after, carts):"]
        out += [f"  {clean_text(r['promotion'])}: {r['before']} -> {r['after']}, {r['carts']}"
                for r in data["reasons_changed"]]
    if data["top"]:
        out += ["", f"Most changed carts (top {summary.top_n}):"]
        for c in data["top"]:
            label = c["id"] if c["id"] is not None else f"line {c['line']}"
            out.append(f"  {clean_text(label)} (line {c['line']}, {c['currency']}): {c['discount_before']} -> "
                       f"{c['discount_after']} ({_signed(c['discount_delta'])})")
    return "\n".join(out) + "\n"


def _signed(amount: str) -> str:
    return amount if amount.startswith("-") else f"+{amount}"
