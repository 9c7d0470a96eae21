"""`promo ledger init|show` and `promo codes generate`: the ledger's command-line edge. The clock is read
here (the ledger itself is always handed `now`), and the plain codes are written here, once."""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from ..ruleset import load_ruleset
from .errors import LedgerError
from .ledger import Ledger
from .store import database_url, make_engine, migrate


def add_commands(commands: argparse._SubParsersAction) -> None:
    ledger = commands.add_parser("ledger", help="the redemption ledger: usage, budgets, codes, balances")
    verbs = ledger.add_subparsers(dest="ledger_command", required=True)
    init = verbs.add_parser("init", help="create or upgrade the ledger's tables (alembic upgrade head)")
    init.add_argument("--db", required=True, help="a SQLite file path, or postgresql://user@host/db")
    show = verbs.add_parser("show", help="a promotion's uses, budget and codes")
    show.add_argument("--db", required=True)
    show.add_argument("--promotion", required=True)
    show.add_argument("--rules", default="rules")
    show.add_argument("--json", action="store_true")

    codes = commands.add_parser("codes", help="single-use codes")
    code_verbs = codes.add_subparsers(dest="codes_command", required=True)
    gen = code_verbs.add_parser("generate", help="create single-use codes for a code_pool promotion")
    gen.add_argument("--db", required=True)
    gen.add_argument("--promotion", required=True)
    gen.add_argument("--count", type=int, required=True)
    gen.add_argument("--prefix", help="1-12 upper-case letters and digits put before each code")
    gen.add_argument("--rules", default="rules")
    gen.add_argument("--out", help="file for the plain codes (default: codes-PROMOTION-TIME.txt); "
                                   "written once, never overwritten: the ledger keeps only their hashes")


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "ledger" and args.ledger_command == "init":
            engine = make_engine(args.db, create=True)
            migrate(engine)
            engine.dispose()
            print(f"ledger ready at {_shown(args.db)}")
            return 0
        ledger = Ledger(args.db, load_ruleset(args.rules), actor=f"cli:{os.environ.get('USER', 'unknown')}")
        try:
            if args.command == "ledger":
                return _show(ledger, args)
            return _generate(ledger, args)
        finally:
            ledger.close()
    except LedgerError as exc:
        print(f"promo: {exc}", file=sys.stderr)
        return 1


def _show(ledger: Ledger, args: argparse.Namespace) -> int:
    report = ledger.promotion_report(args.promotion, datetime.now(timezone.utc))
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    limit = lambda value: "no limit" if value is None else str(value)  # noqa: E731
    print(f"{report['promotion']}" + ("" if report["in_rule_set"] else " (not in this rule set)"))
    print(f"  uses          {report['uses']} committed, {report['held_uses']} held; limit {limit(report['total_uses_limit'])}")
    print(f"  per customer  {report['customers_with_uses']} customers; limit {limit(report['uses_per_customer_limit'])}")
    print(f"  budget        {report['budget_spent']} spent, {report['budget_held']} held; budget {limit(report['budget'])}")
    c = report["codes"]
    if any(c.values()):
        print(f"  codes         {c['unused']} unused, {c['held']} held, {c['redeemed']} redeemed")
    return 0


def _generate(ledger: Ledger, args: argparse.Namespace) -> int:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    out = Path(args.out or f"codes-{args.promotion}-{now.strftime('%Y%m%dT%H%M%SZ')}.txt")
    if out.exists():
        print(f"promo: {out} exists; codes are written once, to a new file", file=sys.stderr)
        return 2
    # The file is created before the codes are, so a failure to write it cannot lose codes already stored.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        plain = ledger.generate_codes(args.promotion, args.count, now, prefix=args.prefix)
    except BaseException:
        os.close(fd)
        out.unlink()
        raise
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(plain) + "\n")
    print(f"{len(plain)} codes for {args.promotion} written to {out} (mode 600); the ledger keeps only their "
          f"hashes, so this file is the only copy")
    return 0


def _shown(db: str) -> str:
    url = database_url(db)
    return url.split("@", 1)[-1] if "@" in url else url
