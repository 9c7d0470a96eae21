"""`promo lint DIR [--catalog FILE] [--now ISO] [--json | --format sarif]`: the lint's command-line edge.
The clock is read here (the lint itself is handed `now`), the catalogue file is read and checked here,
and the report is printed here; the checks are engine/lint.py's.

Exit codes: 0 when no finding is an error; 1 when one is, and for bad input (a missing directory, a rule
set that does not load, printed as `promo validate` prints it, a bad catalogue, a bad --now); 2 for usage
(--json with --format sarif). Rule set problems (PromoError) are left to the caller, which prints them
like every other command's.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from .cli_support import Refused, input_file, now_option
from .errors import PromoError
from .inputs import decode_json
from .lint import CHECKS, Catalogue, Report, lint
from .render import clean_lines, clean_text
from .ruleset import load_ruleset
from .text import shorten, text_problem
from .yamlsafe import read_capped

MAX_CATALOGUE_BYTES = 8 * 1024 * 1024   # some 200,000 names
MAX_CATALOGUE_NAMES = 200_000
CATALOGUE_KINDS = {"category": "categories", "brand": "brands", "sku": "skus"}   # CSV kind -> JSON key


def add_commands(commands: argparse._SubParsersAction) -> None:
    lint_parser = commands.add_parser("lint", help="before launch: overlaps, worst-case discounts, dead rules and "
                                                   "suspicious values in a rule set")
    lint_parser.add_argument("directory", nargs="?", default="rules", help="rule directory (default: rules)")
    lint_parser.add_argument("--catalog", help="the catalogue's names: JSON {\"categories\": [...], \"brands\": "
                                               "[...], \"skus\": [...]} or CSV with the header kind,name")
    lint_parser.add_argument("--now", help="ISO 8601 time with offset to lint at (default: the current time)")
    lint_parser.add_argument("--json", action="store_true", help="print {\"findings\": [...], \"worst_case\": [...]}")
    lint_parser.add_argument("--format", choices=("text", "sarif"), default="text",
                             help="text (default) or sarif (SARIF 2.1.0 JSON, for code-review tools)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.json and args.format == "sarif":
            raise Refused("promo: --json and --format sarif are two forms of the report; give one of them", 2)
        now = _now(args.now)
        catalogue = read_catalogue(args.catalog) if args.catalog else None
        if not Path(args.directory).is_dir():
            raise Refused(f"promo: rule directory {clean_text(args.directory)} not found")
        report = lint(load_ruleset(args.directory), now, catalogue)
    except Refused as exc:
        print(clean_lines(str(exc)), file=sys.stderr)
        return exc.code
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    elif args.format == "sarif":
        sys.stdout.write(json.dumps(report.to_sarif(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_report(report, args.directory))
    return 1 if report.errors else 0


def render_report(report: Report, directory: str) -> str:
    """The report for a terminal: one line per finding, `file:line: severity: check: message`, then the
    worst case of every subject, then the counts."""
    out = [f"{clean_text(f.file)}:{f.line}: {f.severity}: {f.check.value}: {clean_text(f.message)}"
           for f in report.findings]
    if report.worst_case:
        out.append("")
        out.append(f"Worst case per line (error above {report.max_discount_percent}%):")
        for w in report.worst_case:
            name = "any other category" if w.name == "lint-other" else f"{w.kind} {w.name}"
            out.append(f"  {clean_text(name)} ({w.currency}): {w.shown_percent}% = {w.discount} off {w.quantity} × "
                       f"{w.unit_price}, from {clean_text(', '.join(w.promotions))}"
                       + (f" (codes {clean_text(', '.join(w.codes))})" if w.codes else ""))
    out.append("")
    out.append(f"{clean_text(directory)}: {report.errors} error{'s' if report.errors != 1 else ''}, "
               f"{report.warnings} warning{'s' if report.warnings != 1 else ''} "
               f"({len(CHECKS)} checks; `promo lint --json` for every field)")
    return "\n".join(out) + "\n"


def _now(text: str | None) -> datetime:
    """--now as every command reads it (engine/cli_support.py), as an aware datetime."""
    return datetime.fromisoformat(now_option(text).replace("Z", "+00:00"))


def read_catalogue(path: str) -> Catalogue:
    """The catalogue's names from a JSON or CSV file, or `Refused` naming the file and what to fix."""
    p = input_file(path, "--catalog", give="a JSON or CSV file", empty="the catalogue's names")
    shown = f"--catalog {clean_text(p)}"
    suffix = p.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise Refused(f"promo: {shown}: give a .json file ({{\"categories\": [...], \"brands\": [...], "
                       f"\"skus\": [...]}}) or a .csv file with the header kind,name")
    try:
        data = read_capped(p, MAX_CATALOGUE_BYTES)
    except OSError as exc:
        raise Refused(f"promo: {shown}: cannot read: {exc.strerror or 'not a regular file'}") from None
    if data is None:
        raise Refused(f"promo: {shown}: is larger than {MAX_CATALOGUE_BYTES // (1024 * 1024)} MiB")
    names = _from_json(data, shown) if suffix == ".json" else _from_csv(data, shown)
    total = sum(len(v) for v in names.values())
    if total == 0:
        raise Refused(f"promo: {shown}: names no category, brand or SKU")
    if total > MAX_CATALOGUE_NAMES:
        raise Refused(f"promo: {shown}: has {total} names; at most {MAX_CATALOGUE_NAMES} are read")
    return Catalogue(**{k: frozenset(v) for k, v in names.items()})


def _from_json(data: bytes, shown: str) -> dict[str, list[str]]:
    try:
        doc = decode_json(data, shown)
    except PromoError as exc:
        first = exc.problems[0] if exc.problems else None
        raise Refused(f"promo: {shown}: {clean_text(first.message if first else str(exc))}") from None
    keys = set(CATALOGUE_KINDS.values())
    if not isinstance(doc, dict) or not set(doc) <= keys:
        raise Refused(f"promo: {shown}: must be one JSON object with only the keys categories, brands and skus, "
                       f"each a list of names")
    out: dict[str, list[str]] = {}
    for key in sorted(keys):
        values = doc.get(key, [])
        if not isinstance(values, list):
            raise Refused(f"promo: {shown}: {key} must be a list of names")
        for value in values:
            _check_name(value, f"{key}", shown)
        out[key] = values
    return out


def _from_csv(data: bytes, shown: str) -> dict[str, list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Refused(f"promo: {shown}: is not UTF-8 text") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(rows, None)
        if header is None or [h.strip() for h in header] != ["kind", "name"]:
            raise Refused(f"promo: {shown}: the first line must be the header kind,name; got "
                           f"{clean_text(shorten(','.join(header or [])))}")
        out: dict[str, list[str]] = {key: [] for key in CATALOGUE_KINDS.values()}
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != 2 or row[0].strip() not in CATALOGUE_KINDS:
                raise Refused(f"promo: {shown} (line {number}): each line is kind,name with kind one of category, "
                               f"brand, sku; got {clean_text(shorten(','.join(row)))}")
            _check_name(row[1].strip(), f"line {number}", shown)
            out[CATALOGUE_KINDS[row[0].strip()]].append(row[1].strip())
    except csv.Error as exc:
        raise Refused(f"promo: {shown}: not valid CSV ({clean_text(shorten(str(exc)))})") from None
    return out


def _check_name(value: Any, where: str, shown: str) -> None:
    problem = text_problem(value, 64, identifier=True)
    if problem is None and not value:
        problem = "must not be empty"
    if problem is not None:
        raise Refused(f"promo: {shown}: {where}: a name {clean_text(problem)}")
