"""`promo new KIND ID [--rules DIR] [--force]`: a new rule file from its kind's template
(engine/templates.py), written as DIR/ID.yaml. The clock (the template's window starts next month) and
the shop's `_settings.yaml` (its currency and region) are read here.

Every refusal is one line and exit 1: a file that is already there (unless --force), an id the schema
does not allow, a kind that is not a benefit kind, a --rules that is missing or not a directory, a file
that cannot be written. Usage errors are argparse's (exit 2).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import date
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.numbers import get_territory_currencies

from .cli_support import Refused
from .benefits import KINDS
from .money import known_currency
from .render import clean_lines, clean_text
from .ruleset import SETTINGS_FILE
from .schemas import schema
from .templates import render
from .text import shorten
from .yamlsafe import MAX_FILE_BYTES, load, read_capped

DEFAULT_CURRENCY, DEFAULT_REGION = "JPY", "JP"   # a directory without settings: the bundled shop's home
ID_RULE = "1 to 64 characters: lower-case letters a-z, digits 0-9, '-' and '_', starting with a letter or digit"


def add_commands(commands: argparse._SubParsersAction) -> None:
    new = commands.add_parser("new", help="write a commented draft rule file for a benefit kind")
    new.add_argument("kind", metavar="KIND", help=f"one of: {', '.join(KINDS)}")
    new.add_argument("id", metavar="ID", help="the promotion's id, and the file's name without .yaml")
    new.add_argument("--rules", default="rules", help="rule directory (default: rules)")
    new.add_argument("--force", action="store_true", help="replace DIR/ID.yaml if it exists")


def run(args: argparse.Namespace) -> int:
    try:
        path = _write(args.kind, args.id, Path(args.rules), args.force)
    except Refused as exc:
        print(clean_lines(str(exc)), file=sys.stderr)
        return 1
    print(f"{clean_text(path)}: a draft {args.kind} promotion; edit it, then `promo validate {clean_text(args.rules)}`")
    return 0


def _write(kind: str, promotion_id: str, rules: Path, force: bool) -> Path:
    if kind not in KINDS:
        raise Refused(f"promo new: unknown kind {clean_text(shorten(kind))}; one of: {', '.join(KINDS)}")
    if re.fullmatch(schema("promotion")["properties"]["id"]["pattern"], promotion_id) is None:
        raise Refused(f"promo new: {clean_text(shorten(promotion_id))} is not a promotion id: use {ID_RULE}")
    try:
        is_dir = rules.is_dir()
        exists = os.path.lexists(rules)
    except (OSError, ValueError):
        is_dir = exists = False
    if not is_dir:
        why = "is not a directory" if exists else "does not exist"
        raise Refused(f"promo new: --rules {clean_text(rules)} {why}; give the rule directory")
    path = rules / f"{promotion_id}.yaml"
    other = rules / f"{promotion_id}.yml"
    if os.path.lexists(other):   # two files of one id never load
        raise Refused(f"promo new: {clean_text(other)} already exists with that id; edit it or choose another id")
    if os.path.lexists(path) and not force:
        raise Refused(f"promo new: {clean_text(path)} already exists; edit it, choose another id, or give --force")
    if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):   # --force never writes through a link
        raise Refused(f"promo new: {clean_text(path)} is not a regular file; it is left as it is")
    currency, region, found = _shop(rules)
    text = render(kind, promotion_id, currency, region, date.today(), from_settings=found)
    try:
        with open(path, "w" if force else "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise Refused(f"promo new: {clean_text(path)} already exists; edit it, choose another id, or give --force") from None
    except OSError as exc:
        raise Refused(f"promo new: cannot write {clean_text(path)}: {exc.strerror or type(exc).__name__}") from None
    return path


def _shop(rules: Path) -> tuple[str, str | None, bool]:
    """The currency and region of the shop's settings: the locale's country and its currency when the
    shop takes it (en_US and USD), else the first currency and the country of that name (JPY: JP).
    (currency, region or None, whether settings were found)."""
    try:
        data = read_capped(rules / SETTINGS_FILE, MAX_FILE_BYTES, follow_links=False)   # never a FIFO's wait
        settings = load(data, SETTINGS_FILE)[0] if data is not None else None
    except Exception:  # noqa: BLE001 - no or unreadable settings: the template says to change its guess
        return DEFAULT_CURRENCY, DEFAULT_REGION, False
    settings = settings if isinstance(settings, dict) else {}
    currencies = [c for c in settings.get("currencies") or [] if known_currency(c)]   # others: validate says
    if not currencies:
        return DEFAULT_CURRENCY, DEFAULT_REGION, False
    territory = None
    try:
        territory = Locale.parse(str(settings.get("locale", ""))).territory
    except (UnknownLocaleError, ValueError, TypeError):
        pass
    home = get_territory_currencies(territory)[:1] if territory else []
    if home and home[0] in currencies:
        return home[0], territory, True
    currency = currencies[0]
    region = currency[:2] if currency in get_territory_currencies(currency[:2]) else None
    return currency, region, True
