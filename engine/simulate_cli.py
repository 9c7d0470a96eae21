"""`promo simulate --rules DIR --carts FILE --per-day N [--days D] [--start ISO] [--seed S] [--json]
[--on-error stop|skip] [--pool-codes ID=FILE ...] [--workers N | --scheduler ADDRESS] [--report FILE.html]`:
a corpus replayed as N carts a day with the ledger's limits, and when each budget and usage limit runs out.
The rule set, the corpus and the pool-code files are read here, the progress bar drawn here (on a terminal
only), and the report is printed here; the simulation is engine/simulate.py's, its run on a Dask cluster
engine/simulate_dask.py's, the HTML report (--report) engine/simulate_report.py's.

Exit codes: 0 when the corpus was replayed; 1 for bad input (a rule directory that is missing or does
not load; a missing, empty or unreadable corpus or pool-code file; a corpus with no carts; --per-day 0,
--days 0, a bad --start or --seed; a --report that is a directory, in a missing directory or cannot be
written; with --on-error stop, the first bad line); 2 for usage.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable

from .backtest_cli import check_report, cluster, count_lines, progress_bar
from .cli_support import Refused
from .corpus import ON_ERROR, read_corpus
from .corpus_cli import check_corpus, corpus_refusals
from .render import clean_lines, clean_text
from .ruleset import load_ruleset
from .simulate import Churn, SimulationResult, simulate
from .simulate_dask import ClusterStats

MAX_PER_DAY = 100_000_000
MAX_DAYS = 100_000
MAX_POOL_FILE_BYTES = 64 * 1024 * 1024
MAX_WORKERS = 256


def add_commands(commands: argparse._SubParsersAction) -> None:
    s = commands.add_parser("simulate", help="replay a cart corpus as daily traffic with the ledger's limits: "
                                             "uses, discount, and when each budget or limit runs out")
    s.add_argument("--rules", required=True, help="the rule directory")
    s.add_argument("--carts", required=True, help="the corpus: JSON Lines, one {cart, account, codes, now, id} a "
                                                  "line (promo carts generate / from-traces)")
    s.add_argument("--per-day", required=True, type=int, metavar="N", help="carts a simulated day")
    s.add_argument("--days", type=int, metavar="D", help="how many days (default: until the corpus is used up)")
    s.add_argument("--start", metavar="ISO", help="the first simulated day, e.g. 2026-11-27 (default: the first "
                                                  "cart's date)")
    s.add_argument("--seed", type=int, help="shuffle the corpus with this seed (default: corpus order)")
    s.add_argument("--pool-codes", action="append", default=[], metavar="ID=FILE",
                   help="single-use codes of a code_pool promotion (the file promo codes generate wrote); "
                        "repeatable")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.add_argument("--on-error", choices=ON_ERROR, default="stop",
                   help="a bad corpus line: stop (default, exit 1) or skip it, count it and go on")
    s.add_argument("--abandon-rate", metavar="R", help="the share of checkouts never placed (priced, then released: "
                                                       "nothing counted), e.g. 0.2; drawn per corpus line and --seed")
    s.add_argument("--cancel-rate", metavar="R", help="the share of orders cancelled --cancel-after days later, "
                                                      "giving back their budget (and uses and codes where the promotion "
                                                      "returns usage on cancel), e.g. 0.05")
    s.add_argument("--cancel-after", type=int, default=7, metavar="D",
                   help="days from an order to its cancellation (default 7)")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="price the carts on a local Dask cluster of N worker processes "
                                                   "(the same result as in one process)")
    where.add_argument("--scheduler", help="price the carts on an existing Dask cluster (tcp://host:8786); its "
                                           "workers need promo-engine installed")
    s.add_argument("--report", metavar="FILE.html",
                   help="also write the result, with the cost per day and each budget's burn-down as charts, as "
                        "one self-contained HTML file (an existing file is replaced)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
            raise Refused(f"promo simulate: --workers {args.workers}: give 1 to {MAX_WORKERS}", 2)
        if not 1 <= args.per_day <= MAX_PER_DAY:
            raise Refused(f"promo simulate: --per-day {args.per_day}: give 1 to {MAX_PER_DAY} carts a day")
        if args.days is not None and not 1 <= args.days <= MAX_DAYS:
            raise Refused(f"promo simulate: --days {args.days}: give 1 to {MAX_DAYS}")
        start = _start(args.start)
        churn = _churn(args)
        if not Path(args.rules).is_dir():
            raise Refused(f"promo simulate: --rules {clean_text(args.rules)}: rule directory not found")
        if args.report is not None:
            check_report(args.report, "simulate")
        check_corpus(args.carts)
        ruleset = load_ruleset(args.rules)
        pool = _pool_codes(args.pool_codes, ruleset)
        with corpus_refusals("simulate", args.carts), progress_bar(args.carts, lambda: _bar_total(args)) as advance:
            result, stats = replay(args, ruleset, start, pool, churn, advance)
        if result.carts == 0 and result.skipped == 0:
            raise Refused(f"promo simulate: --carts {clean_text(args.carts)} has no carts (only blank lines)")
    except Refused as exc:
        print(clean_lines(str(exc)), file=sys.stderr)
        return exc.code
    if args.report is not None:
        from .simulate_report import write_report   # matplotlib is loaded only for a report
        how = {"rules": args.rules, "carts": args.carts, "per_day": args.per_day, "days": args.days,
               "start": args.start, "seed": args.seed, "on_error": args.on_error, "pool_codes": args.pool_codes,
               "abandon_rate": args.abandon_rate, "cancel_rate": args.cancel_rate, "cancel_after": args.cancel_after}
        try:
            write_report(args.report, result, ruleset, how)
        except OSError as exc:
            print(f"promo simulate: --report {clean_text(args.report)}: cannot write: "
                  f"{exc.strerror or type(exc).__name__}", file=sys.stderr)
            return 1
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_simulation(result, stats))
    return 0


def _bar_total(args: argparse.Namespace) -> int | None:
    """How many carts the bar counts to: the corpus's lines, or --days of --per-day carts when fewer."""
    lines = count_lines(args.carts)
    if args.days is None:
        return lines
    most = args.days * args.per_day
    return most if lines is None else min(lines, most)


def replay(args: argparse.Namespace, ruleset, start: date | None, pool: dict[str, str], churn: Churn,
           advance: Callable[[int], None] | None) -> tuple[SimulationResult, ClusterStats | None]:
    """The simulation in this process, or priced on the Dask cluster --workers / --scheduler names."""
    options = dict(days=args.days, start=start, seed=args.seed, on_error=args.on_error, pool_codes=pool,
                   source=args.carts, advance=advance, churn=churn)
    if args.workers is None and args.scheduler is None:
        return simulate(ruleset, read_corpus(args.carts), args.per_day, **options), None
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise Refused("promo simulate: --workers and --scheduler need Dask: pip install 'dask[distributed]'") \
            from None
    from .simulate_dask import simulate_on_cluster
    with cluster(args, "simulate") as client:
        return simulate_on_cluster(client, ruleset, read_corpus(args.carts), args.per_day, **options)


RATE = re.compile(r"0(\.[0-9]{1,6})?|1(\.0{1,6})?|\.[0-9]{1,6}")


def _churn(args: argparse.Namespace) -> Churn:
    """--abandon-rate, --cancel-rate (exact decimals from 0 to 1, at most six places) and --cancel-after."""
    rates = {}
    for option, value in (("--abandon-rate", args.abandon_rate), ("--cancel-rate", args.cancel_rate)):
        if value is None:
            rates[option] = Decimal(0)
        elif not RATE.fullmatch(value):
            raise Refused(f"promo simulate: {option} {clean_text(repr(value))}: give a decimal from 0 to 1, e.g. 0.05")
        else:
            rates[option] = Decimal(value)
    if not 1 <= args.cancel_after <= MAX_DAYS:
        raise Refused(f"promo simulate: --cancel-after {args.cancel_after}: give 1 to {MAX_DAYS} days")
    return Churn(rates["--abandon-rate"], rates["--cancel-rate"], args.cancel_after, args.seed or 0)


def _start(text: str | None) -> date | None:
    """--start: a date (2026-11-27) or a date and time (its date is taken, in its own offset)."""
    if text is None:
        return None
    shown = clean_text(repr(text))
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
        else:
            day = datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        raise Refused(f"promo simulate: --start {shown} is not an ISO 8601 date; e.g. 2026-11-27") from None
    if not 1971 <= day.year <= 2199:
        raise Refused(f"promo simulate: --start {shown} is out of range; give a date from 1971 to 2199")
    return day


def _pool_codes(options: list[str], ruleset) -> dict[str, str]:
    """--pool-codes ID=FILE, each: the code_pool promotion and its codes, one a line."""
    out: dict[str, str] = {}
    for option in options:
        pid, sep, path = option.partition("=")
        if not sep or not pid or not path:
            raise Refused(f"promo simulate: --pool-codes {clean_text(option)}: give PROMOTION=FILE", 2)
        promotion = ruleset.promotions.get(pid)
        if promotion is None or not promotion.code_pool:
            raise Refused(f"promo simulate: --pool-codes {clean_text(pid)}: not a code_pool promotion of "
                          "the rule set")
        p = Path(path)
        try:
            if not p.is_file():
                raise Refused(f"promo simulate: --pool-codes {clean_text(option)}: not a file")
            if p.stat().st_size > MAX_POOL_FILE_BYTES:
                raise Refused(f"promo simulate: --pool-codes {clean_text(option)}: larger than 64 MiB")
            text = p.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            raise Refused(f"promo simulate: --pool-codes {clean_text(option)}: cannot read: "
                          f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
        for line in text.splitlines():
            code = line.strip()
            if code and not code.startswith("#"):
                out[code] = pid
    return out


def render_simulation(result: SimulationResult, stats: ClusterStats | None = None) -> str:
    """The result for a terminal: per promotion, then the cost per day."""
    data = result.to_dict()
    out = [f"{data['carts']} carts over {data['days']} days ({data['per_day_carts']} a day from "
           f"{data['start']})" + (f", {data['skipped']} skipped" if data["skipped"] else "")]
    if data["abandoned"] or data["cancelled"] or data["cancellations_after"]:
        out.append(f"  {data['abandoned']} checkouts abandoned, {data['cancelled']} orders cancelled"
                   + (f" ({data['cancellations_after']} more due after the last day)" if data["cancellations_after"]
                      else ""))
    if stats is not None:
        out.append(f"  priced on the cluster: {stats.priced} carts, {stats.repriced} of them priced again here "
                   "because a limit's counts had changed under them")
    for message in data["errors"]:
        out.append(f"  skipped: {clean_text(message)}")
    out += ["", f"  {'promotion':<34} {'uses':>7}  {'discount':<28} exhausted"]
    for pid, p in data["by_promotion"].items():
        money = "; ".join(f"{c} {a}" for c, a in p["discount"].items()) or "-"
        if p["granted"]:
            money += " (granted " + "; ".join(f"{c} {a}" for c, a in p["granted"].items()) + ")"
        e = p["exhausted"]
        ran_out = f"{e['limit']} on {e['day']} at {clean_text(e['cart'])}" if e else "-"
        f = p["first_refused"]
        if f and (not e or (f["limit"], f["line"]) != (e["limit"], e["line"])):
            refused = f"first refused ({f['limit']}) on {f['day']} at {clean_text(f['cart'])}"
            ran_out = refused if ran_out == "-" else f"{ran_out}; {refused}"
        out.append(f"  {clean_text(pid):<34} {p['uses']:>7}  {money:<28} {ran_out}")
    out += ["", "Cost per day (discount; granted apart):"]
    for d in data["per_day"]:
        money = "; ".join(f"{c} {a}" for c, a in d["discount"].items()) or "-"
        granted = "; ".join(f"{c} {a}" for c, a in d["granted"].items())
        out.append(f"  {d['day']}  {d['carts']:>7} carts  {money}" + (f"  (granted {granted})" if granted else ""))
    return "\n".join(out) + "\n"
