"""`promo diff --base DIR --head DIR --carts FILE [--json] [--on-error stop|skip] [--top N]`: which carts
a rule change touches, and by how much. Both rule sets are loaded here, the corpus is streamed here
(engine/corpus.py), and the report is printed here; the comparison and the summary are
engine/backtest.py's.

Exit codes: 0 when the corpus was replayed (changed or not); 1 for bad input (a rule directory that is
missing or does not load, printed as `promo validate` prints it; a missing, empty or unreadable corpus;
a corpus with no carts; with --on-error stop, the first bad line); 2 for usage.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .backtest import DEFAULT_TOP, DiffSummary, diff, rule_changes
from .cli_support import Refused
from .corpus import ON_ERROR, CorpusError, read_corpus
from .corpus_cli import check_corpus
from .render import clean_lines, clean_text
from .ruleset import load_ruleset

MAX_TOP = 1000


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


def run(args: argparse.Namespace) -> int:
    try:
        if not 0 <= args.top <= MAX_TOP:
            raise Refused(f"promo diff: --top {args.top}: give 0 to {MAX_TOP}", 2)
        for option, directory in (("--base", args.base), ("--head", args.head)):
            if not Path(directory).is_dir():
                raise Refused(f"promo diff: {option} {clean_text(directory)}: rule directory not found")
        check_corpus(args.carts)
        base, head = load_ruleset(args.base), load_ruleset(args.head)
        try:
            summary = diff(base, head, read_corpus(args.carts), on_error=args.on_error, top_n=args.top,
                           source=args.carts)
        except CorpusError as exc:
            raise Refused(f"promo diff: {clean_text(exc)} (--on-error skip counts bad lines and goes on)") from None
        except OSError as exc:
            raise Refused(f"promo diff: --carts {clean_text(args.carts)}: cannot read: {exc.strerror}") from None
        if summary.carts == 0 and summary.skipped == 0:
            raise Refused(f"promo diff: --carts {clean_text(args.carts)} has no carts (only blank lines)")
    except Refused as exc:
        print(clean_lines(str(exc)), file=sys.stderr)
        return exc.code
    kinds = rule_changes(base, head)
    if args.json:
        sys.stdout.write(json.dumps(summary.to_dict(kinds), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_summary(summary, kinds, args.base, args.head))
    return 0


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
