"""`promo ledger init|show` and `promo codes generate`: the ledger's command-line edge. The clock is read
here (the ledger itself is always handed `now`), and the plain codes are written here, once.

Only `promo ledger init` may create a database. The other commands first check that a SQLite ledger's
file exists, and turn whatever the database says (no tables yet, not a database, unreachable) into one
line naming the database and what to do. No message shows a URL's user name, password or query.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from ..render import clean_text, promotion_report_lines
from ..ruleset import load_ruleset
from . import codes as pool
from .errors import LedgerError, LedgerReason
from .ledger import Ledger
from .store import make_engine, migrate


SQLITE_HEADER = b"SQLite format 3\x00"


class _Refused(Exception):
    """One line for stderr; exit 1."""


def add_commands(commands: argparse._SubParsersAction) -> None:
    ledger = commands.add_parser("ledger", help="the redemption ledger: usage, budgets, codes, balances")
    verbs = ledger.add_subparsers(dest="ledger_command", required=True)
    init = verbs.add_parser("init", help="create or upgrade the ledger's tables (alembic upgrade head)")
    init.add_argument("--db", required=True, help="a SQLite file path, or postgresql://user@host/db")
    show = verbs.add_parser("show", help="a promotion's uses, budget and codes")
    show.add_argument("--db", required=True, help="a SQLite file path, or postgresql://user@host/db")
    show.add_argument("--promotion", required=True, help="the promotion's id")
    show.add_argument("--rules", default="rules", help="the rule directory (default: rules)")
    show.add_argument("--json", action="store_true", help="print the report as JSON")

    codes = commands.add_parser("codes", help="single-use codes")
    code_verbs = codes.add_subparsers(dest="codes_command", required=True)
    gen = code_verbs.add_parser("generate", help="create single-use codes for a code_pool promotion")
    gen.add_argument("--db", required=True, help="a SQLite file path, or postgresql://user@host/db")
    gen.add_argument("--promotion", required=True, help="the id of a promotion with code_pool: true")
    gen.add_argument("--count", type=_count, required=True, help=f"1 to {pool.MAX_COUNT}")
    gen.add_argument("--prefix", type=_prefix, help="1-12 upper-case letters and digits put before each code")
    gen.add_argument("--rules", default="rules", help="the rule directory (default: rules)")
    gen.add_argument("--out", help="file for the plain codes (default: codes-PROMOTION-TIME.txt); "
                                   "written once, never overwritten: the ledger keeps only their hashes")


def _count(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= pool.MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {pool.MAX_COUNT}; got {text!r}")
    return int(text)


def _prefix(text: str) -> str:
    if not pool.PREFIX.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be 1 to 12 upper-case letters and digits; got {text!r}")
    return text


def run(args: argparse.Namespace) -> int:
    """One ledger command; refusals and database problems are printed as one line, exit 1. Rule set
    problems (PromoError) are left to the caller, which prints them like every other command's."""
    try:
        _check_kind(args.db)
        if args.command == "ledger" and args.ledger_command == "init":
            return _init(args.db)
        _require_ledger(args.db)
        ruleset = load_ruleset(args.rules)
        if args.command == "codes":
            promotion = ruleset.promotions.get(args.promotion)
            if promotion is None or not promotion.code_pool:
                raise _Refused(f"promo: {clean_text(repr(args.promotion))} is not a promotion with code_pool: true "
                               f"in the rule set {clean_text(args.rules)}")
        ledger = Ledger(args.db, ruleset, actor=f"cli:{os.environ.get('USER', 'unknown')}")
        try:
            if args.command == "ledger":
                return _show(ledger, args)
            return _generate(ledger, args)
        finally:
            ledger.close()
    except _Refused as exc:
        print(exc, file=sys.stderr)
    except LedgerError as exc:
        if exc.reason is LedgerReason.NOT_INITIALISED:   # the same advice, however it is found
            print(_no_tables(args.db), file=sys.stderr)
        elif exc.reason is LedgerReason.UNAVAILABLE:
            print(f"promo: cannot use the ledger at {shown(args.db)}: {clean_text(_redacted(str(exc), args.db))}",
                  file=sys.stderr)
        else:
            print(f"promo: {clean_text(_redacted(str(exc), args.db))}", file=sys.stderr)
    except SQLAlchemyError as exc:
        print(_database_problem(exc, args.db), file=sys.stderr)
    return 1


def _init(db: str) -> int:
    from alembic.util.exc import CommandError
    path = _sqlite_path(db)
    if path is not None:
        if os.path.isdir(path):
            raise _Refused(f"promo: --db {shown(db)} is a directory; give a file path for the ledger")
        parent = Path(path).parent
        if not parent.is_dir():
            raise _Refused(f"promo: --db {shown(db)}: the directory {clean_text(parent)} does not exist")
    engine = make_engine(db, create=True)
    try:
        migrate(engine)
    except CommandError as exc:   # e.g. the database is at a revision this code does not know
        raise _Refused(f"promo: cannot upgrade the ledger at {shown(db)}: {clean_text(_redacted(_first_line(exc), db))}") from None
    finally:
        engine.dispose()
    print(f"ledger ready at {shown(db)}")
    return 0


def _check_kind(db: str) -> None:
    scheme = db.split("://", 1)[0].lower() if "://" in db else ""
    if scheme and not scheme.startswith(("sqlite", "postgresql", "postgres")):
        raise _Refused(f"promo: --db takes a SQLite file path or a postgresql:// URL; got {shown(db)}")


def _require_ledger(db: str) -> None:
    """A read or a change needs a ledger that `promo ledger init` made. A SQLite file is never created
    here, and a file that is not SQLite is never opened (SQLite would write to an empty one)."""
    path = _sqlite_path(db)
    if path is None:
        return
    try:
        info = os.stat(path) if path else None
    except (OSError, ValueError):
        info = None
    advice = f"run `promo ledger init --db {shown(db)}` first"
    if info is None or not stat.S_ISREG(info.st_mode):
        what = " (it is a directory)" if info is not None and stat.S_ISDIR(info.st_mode) else ""
        raise _Refused(f"promo: no ledger at {shown(db)}{what}; {advice}")
    if info.st_size == 0:
        raise _Refused(f"promo: no ledger at {shown(db)} (the file is empty); {advice}")
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise _Refused(f"promo: cannot read the ledger at {shown(db)}: {exc.strerror or type(exc).__name__}") from None
    if header != SQLITE_HEADER:
        raise _Refused(f"promo: {shown(db)} is not a ledger database (not SQLite)")


def _show(ledger: Ledger, args: argparse.Namespace) -> int:
    report = ledger.promotion_report(args.promotion, datetime.now(timezone.utc))
    if not report["in_rule_set"] and not _has_records(report):
        raise _Refused(f"promo: no promotion {clean_text(repr(args.promotion))} in the rule set {clean_text(args.rules)}, "
                       f"and the ledger has nothing recorded for it")
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print("\n".join(promotion_report_lines(report)))
    return 0


def _has_records(report: dict[str, Any]) -> bool:
    def nonzero(value: object) -> bool:
        try:
            return Decimal(str(value)) != 0
        except InvalidOperation:
            return True
    counts = [report["uses"], report["held_uses"], report["customers_with_uses"], report["budget_spent"],
              report["budget_held"], *report["codes"].values()]
    return any(nonzero(v) for v in counts)


def _generate(ledger: Ledger, args: argparse.Namespace) -> int:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    out = Path(args.out or f"codes-{args.promotion}-{now.strftime('%Y%m%dT%H%M%SZ')}.txt")
    where = clean_text(out)
    if os.path.lexists(out):
        raise _Refused(f"promo: --out {where} exists; codes are written once, to a new file")
    if not out.parent.is_dir():
        raise _Refused(f"promo: --out {where}: the directory {clean_text(out.parent)} does not exist")
    # The file is created before the codes are, so a failure to write it cannot lose codes already stored.
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise _Refused(f"promo: --out {where}: cannot create it: {exc.strerror or type(exc).__name__}") from None
    try:
        plain = ledger.generate_codes(args.promotion, args.count, now, prefix=args.prefix)
    except BaseException:
        os.close(fd)
        out.unlink()
        raise
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(plain) + "\n")
    except OSError as exc:
        raise _Refused(f"promo: writing {where} failed ({exc.strerror or type(exc).__name__}): the "
                       f"{len(plain)} codes are in the ledger, but the file may not hold them all; "
                       f"generate a new batch") from None
    print(f"{len(plain)} codes for {clean_text(args.promotion)} written to {where} (mode 600); the ledger keeps "
          f"only their hashes, so this file is the only copy")
    return 0


def _database_problem(exc: SQLAlchemyError, db: str) -> str:
    """What the database said, as advice: the usual cases named, anything else as the driver's first line."""
    if isinstance(exc, ArgumentError) or type(exc).__name__ == "NoSuchModuleError":
        return f"promo: --db takes a SQLite file path or a postgresql:// URL; got {shown(db)}"
    said = str(getattr(exc, "orig", None) or exc)
    if "no such table" in said or getattr(getattr(exc, "orig", None), "sqlstate", None) == "42P01":
        return _no_tables(db)
    if "file is not a database" in said:
        return f"promo: {shown(db)} is not a ledger database (not SQLite)"
    if isinstance(exc, DBAPIError):
        return f"promo: cannot use the ledger at {shown(db)}: {clean_text(_redacted(_first_line(said), db))}"
    return f"promo: cannot use the ledger at {shown(db)} ({type(exc).__name__})"


def _no_tables(db: str) -> str:
    return f"promo: the ledger at {shown(db)} has no tables yet; run `promo ledger init --db {shown(db)}` first"


def _sqlite_path(db: str) -> str | None:
    """The file of a SQLite ledger (`""` for an in-memory one), or None for a server database."""
    if "://" not in db:
        return db
    if not db.lower().startswith("sqlite"):
        return None
    rest = db.split("://", 1)[1]
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    return "" if path in ("", ":memory:") else path


def shown(db: str) -> str:
    """A --db value fit for a message: a file path as given; a URL without its user, password and query."""
    if "://" not in db:
        return clean_text(db)
    scheme, rest = db.split("://", 1)
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    return clean_text(f"{scheme}://{rest.rsplit('@', 1)[-1]}")


def _redacted(message: str, db: str) -> str:
    """Text from the driver or the ledger with the URL's credentials taken out, wherever they appear as a
    whole word (our own messages show a URL only through `shown`)."""
    if "://" in db and "@" in db.split("://", 1)[1]:
        userinfo = db.split("://", 1)[1].rsplit("@", 1)[0]
        for hidden in filter(None, (userinfo, *userinfo.split(":", 1)[1:])):   # user:password, then password
            message = re.sub(rf"(?<![\w]){re.escape(hidden)}(?![\w])", "***", message)
    return message


def _first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""
