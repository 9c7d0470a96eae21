"""Loading a rule set: a directory of promotion files plus `_settings.yaml`, checked as a whole.

Each file passes safe YAML reading, the JSON Schema, then the checks a schema cannot express
(the id is the file name, ends after starts, amounts fit the currency, tiers ascend, codes are
unique among active promotions). Every problem in every file is collected; if there is any, the
rule set does not load and `RuleFileError` lists them all as `file:line:column: path: message`.
"""
from __future__ import annotations

import gc
import hashlib
import os
import re
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from babel import Locale, UnknownLocaleError

from . import schemas
from .conditions import compile_condition
from .errors import Problem, RuleFileError
from .benefits import KINDS
from .index import CandidateIndex
from .model import (POLICY_CHOICES, STAGE_ORDER, Benefit, LintSettings, Limits, PaysFor, Policies, Promotion,
                    RuleSet, Stage,                    Targets, Tier, Units, pool_token)
from .money import DEFAULT_ROUNDING, MoneyError, known_currency, parse_decimal, parse_money
from .text import instant_problem, normalise_code, shorten
from .variables import MONEY_VARIABLES
from .yamlsafe import MAX_FILE_BYTES, YAML11_BOOL_WORDS, Positions, YamlProblems, json_path, load, read_capped

SETTINGS_FILE = "_settings.yaml"
MAX_FILES = 50_000
MAX_CONDITION_DEPTH = 8
MAX_CONDITION_LEAVES = 200


RULE_SUFFIXES = (".yaml", ".yml")
# Where the checks across a rule set's files (duplicate codes, unknown classes) point in a promotion file.
CROSS_FILE_PATHS = (("code",), ("stacking", "combines_with"))


def load_ruleset(directory: str | Path) -> RuleSet:
    """Read and check every rule file in `directory`; raise RuleFileError listing all problems.

    What the directory may hold: rule files `*.yaml` / `*.yml` (lower case) and `_settings.yaml`,
    each a regular file of at most yamlsafe.MAX_FILE_BYTES (checked before it is read). Names that
    start with a dot (`.DS_Store`, `.x.yaml.swp`, `.git`) are ignored. Anything else is a problem
    naming it: another extension (`notes.txt`, `x.YAML`, `x.json`), a directory, a symbolic link
    (never followed: a rule set is exactly the files in its directory), a device or FIFO. The
    directory itself may be a link."""
    root = Path(directory)
    if not root.is_dir():
        raise RuleFileError([Problem(str(root), 1, 1, "$", "rule directory not found")])
    files: dict[str, bytes] = {}
    refused: list[Problem] = []
    count = 0
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            count += 1
            if count > MAX_FILES:
                raise RuleFileError([Problem(str(root), 1, 1, "$", f"more than {MAX_FILES} rule files")])
            path = root / entry.name
            problem = _entry_problem(entry)
            if problem is None:
                try:
                    data = read_capped(path, MAX_FILE_BYTES, follow_links=False)
                except OSError as exc:
                    problem = f"cannot read the file: {exc.strerror or 'not a regular file'}"
                else:
                    if data is None:
                        problem = f"file is larger than {MAX_FILE_BYTES // 1024} KiB"
                    else:
                        files[str(path)] = data
            if problem is not None:
                refused.append(Problem(str(path), 1, 1, "$", problem))
    if refused:     # the other files are checked all the same: every problem is listed in one run
        try:
            build_ruleset(files)
        except RuleFileError as exc:
            refused += exc.problems
        raise RuleFileError(sorted(refused, key=lambda p: (p.file, p.line, p.column)))
    return build_ruleset(files)


def _entry_problem(entry: os.DirEntry) -> str | None:
    """Why a directory entry is not a rule file, or None. Links are looked at, never followed."""
    if entry.is_symlink():
        return "is a symbolic link; rule files must be regular files in the rules directory (links are not followed)"
    if entry.is_dir(follow_symlinks=False):
        return "is a directory; the rules directory holds rule files only (rules are not read from sub-directories)"
    if not entry.is_file(follow_symlinks=False):
        return "is not a regular file"
    suffix = Path(entry.name).suffix
    if suffix not in RULE_SUFFIXES:
        hint = f"; rename it to {Path(entry.name).stem}{suffix.lower()}" if suffix.lower() in RULE_SUFFIXES else \
            " (rule files end in .yaml or .yml; move other files out of the rules directory)"
        return f"unexpected file {entry.name!r}{hint}"
    try:
        if entry.stat(follow_symlinks=False).st_size > MAX_FILE_BYTES:
            return f"file is larger than {MAX_FILE_BYTES // 1024} KiB"
    except OSError as exc:
        return f"cannot read the file: {exc.strerror}"
    return None


def build_ruleset(files: Mapping[str, bytes]) -> RuleSet:
    """Check rule files given as {path: bytes} (one folder's worth) and build the RuleSet.

    The same checks as `load_ruleset`, for callers that hold rule files in memory (tests, a service
    receiving an upload). The settings file is the one named `_settings.yaml`."""
    with _collector_paused():
        return _build_ruleset(files)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a rule set is built, then back as it was (an
    application that turned it off keeps it off). Checking a rule file leaves no reference cycles: what it
    discards is freed by reference counting. Yet the collector would walk the growing rule set again and
    again, half a dozen full collections in a load of 10,000 files (a seventh of its time), each a pause
    for every other thread too. Cycles that other threads leave meanwhile are collected after the load
    (RuleSetHolder collects at once)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build_ruleset(files: Mapping[str, bytes]) -> RuleSet:
    problems: list[Problem] = []
    paths = sorted(Path(name) for name in files)
    raw = {path: files[str(path)] for path in paths}
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + raw[path] + b"\0")
    settings_path = next((p for p in paths if p.name == SETTINGS_FILE), Path(SETTINGS_FILE))

    settings, settings_where = _load_settings(settings_path, raw.get(settings_path), problems)
    promotions: dict[str, Promotion] = {}
    where: dict[str, Positions] = {}
    seen_ids: dict[str, str] = {}
    for path in paths:
        if path == settings_path:
            continue
        if path.suffix not in RULE_SUFFIXES:
            problems.append(Problem(str(path), 1, 1, "$", f"unexpected file {path.name!r} (rule files end in .yaml or .yml)"))
            continue
        if path.name.startswith("_"):
            problems.append(Problem(str(path), 1, 1, "$", f"unknown settings file; the only one is {SETTINGS_FILE}"))
            continue
        promotion, positions = _load_promotion(path, raw[path], settings, problems)
        if promotion is None:
            continue
        if promotion.id in seen_ids:
            problems.append(_problem(path, positions, ("id",),
                                     f"duplicate id {promotion.id!r}: also {seen_ids[promotion.id]}"))
            continue
        seen_ids[promotion.id] = str(path)
        promotions[promotion.id] = promotion
        # what the checks across files below point at; not all of a file's positions: 10,000 files
        # hold half a million, which the garbage collector would walk again and again during the load
        where[promotion.id] = positions.only(*CROSS_FILE_PATHS)

    active_codes: dict[str, list[Promotion]] = {}
    codes: dict[str, tuple[str, ...]] = {}
    for promotion in sorted(promotions.values(), key=lambda p: p.id):
        if promotion.code is None:
            continue
        codes[promotion.code] = codes.get(promotion.code, ()) + (promotion.id,)
        if promotion.status != "active":
            continue
        # One code may name several campaigns whose windows do not overlap (this year's and next year's
        # WELCOME); at any instant it names at most one active promotion.
        clash = next((other for other in active_codes.get(promotion.code, ()) if _overlap(other, promotion)), None)
        if clash is not None:
            problems.append(_problem(Path(promotion.source), where[promotion.id], ("code",),
                                     f"duplicate code: {promotion.code!r} (codes are compared trimmed, NFKC and "
                                     f"case-folded) is already used by active promotion {clash.id!r} in an "
                                     f"overlapping window; a code names one active promotion at a time (give "
                                     f"both windows, ending one before the other starts)"))
        active_codes.setdefault(promotion.code, []).append(promotion)
    _check_classes(promotions, where, settings, settings_path, settings_where, problems)
    if problems:
        raise RuleFileError(problems)
    assert settings is not None
    ordered = dict(sorted(promotions.items()))
    policies = Policies(**{key: settings[key] for key in POLICY_CHOICES if key in settings})
    return RuleSet(promotions=ordered, currencies=frozenset(settings["currencies"]), policies=policies,
                   rounding=settings.get("rounding", DEFAULT_ROUNDING), locale=settings.get("locale", "en_US"),
                   version="sha256:" + digest.hexdigest(), codes=codes,
                   exclusive_resolution=settings.get("exclusive_resolution", "best_for_customer"),
                   best_per_line=frozenset(settings.get("best_per_line", ())),
                   lint=_lint_settings(settings_path, settings_where, settings.get("lint", {}), problems) or LintSettings(),
                   index=CandidateIndex.build(ordered.values()), sources={p.name: raw[p] for p in paths})


def _overlap(a: Promotion, b: Promotion) -> bool:
    """Whether the windows [starts, ends) of two promotions share an instant (no bound: forever)."""
    return (a.starts is None or b.ends is None or a.starts < b.ends) and \
        (b.starts is None or a.ends is None or b.starts < a.ends)


STAGE_CLASSES = frozenset(stage.value for stage in STAGE_ORDER)   # every rule set has these classes


def _check_classes(promotions: Mapping[str, Promotion], where: Mapping[str, Positions], settings: dict | None,
                   settings_path: Path, settings_where: Positions, problems: list[Problem]) -> None:
    """A class named in `combines_with` or `best_per_line` must be one that some promotion has (or a
    stage's): a misspelt class would otherwise silently combine with nothing."""
    classes = STAGE_CLASSES | {p.stacking_class for p in promotions.values()}

    def unknown(name: str) -> str:
        return (f"no promotion of this rule set has the class {name!r}; the classes are: "
                f"{', '.join(sorted(classes))}")

    for pid in sorted(promotions):
        p = promotions[pid]
        for i, name in enumerate(p.combines_with):
            if name not in classes:
                problems.append(_problem(Path(p.source), where[pid], ("stacking", "combines_with", i), unknown(name)))
    if settings is None:
        return
    for i, name in enumerate(settings.get("best_per_line", ())):
        at = ("best_per_line", i)
        if name in STAGE_CLASSES - {"item"}:
            problems.append(_problem(settings_path, settings_where, at,
                                     f"best_per_line chooses among item discounts on each line; {name!r} is the "
                                     f"class of {name}-stage promotions, which do not discount lines one by one"))
        elif name not in classes:
            problems.append(_problem(settings_path, settings_where, at, unknown(name)))


def _load_settings(path: Path, data: bytes | None, problems: list[Problem]) -> tuple[dict | None, Positions]:
    if data is None:
        problems.append(Problem(str(path), 1, 1, "$",
                                f"{SETTINGS_FILE} is missing: it names the currencies the rule set accepts"))
        return None, Positions()
    doc, positions = _read(path, data, "ruleset", problems)
    if doc is None:
        return None, positions
    ok = True
    for i, code in enumerate(doc["currencies"]):
        if not known_currency(code):
            problems.append(_problem(path, positions, ("currencies", i), f"unknown ISO 4217 currency {code!r}"))
            ok = False
    if "locale" in doc and not known_locale(doc["locale"]):
        problems.append(_problem(path, positions, ("locale",), f"unknown locale {doc['locale']!r}; "
                                                               "use one Babel knows, such as en_US or ja_JP"))
        ok = False
    if "lint" in doc and _lint_settings(path, positions, doc["lint"], problems) is None:
        ok = False
    return (doc if ok else None), positions


# ISO 8601 durations as a shop writes a lead time: weeks, days, hours, minutes, seconds (no years or months,
# whose length depends on the date), e.g. PT4H, P1D, P1DT12H, PT90M.
_DURATION = re.compile(r"P(?:([0-9]{1,4})W)?(?:([0-9]{1,5})D)?(?:T(?:([0-9]{1,6})H)?(?:([0-9]{1,7})M)?(?:([0-9]{1,9})S)?)?")


def parse_duration(text: object) -> timedelta | None:
    """An ISO 8601 duration of weeks, days, hours, minutes and seconds (`PT4H`, `P1DT12H`), or None."""
    if not isinstance(text, str):
        return None
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()) or text.endswith("T"):
        return None
    weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def _lint_settings(path: Path, positions: Positions, doc: dict, problems: list[Problem]) -> LintSettings | None:
    """`lint:` of _settings.yaml as LintSettings, or None after recording what is wrong with it."""
    fields: dict[str, Any] = {}
    ok = True
    if "max_discount_percent" in doc:
        value = doc["max_discount_percent"]
        try:
            number = Decimal(value) if isinstance(value, int) else parse_decimal(value, "max_discount_percent")
        except MoneyError as exc:
            problems.append(_problem(path, positions, ("lint", "max_discount_percent"), str(exc)))
            ok = False
        else:
            if not 0 < number <= 100:
                problems.append(_problem(path, positions, ("lint", "max_discount_percent"),
                                         f"max_discount_percent {value!r} is out of range: must be above 0 and at "
                                         "most 100"))
                ok = False
            fields["max_discount_percent"] = number
    if "activation_lead_time" in doc:
        lead = parse_duration(doc["activation_lead_time"])
        if lead is None:
            problems.append(_problem(path, positions, ("lint", "activation_lead_time"),
                                     f"{shorten(doc['activation_lead_time'])} is not an ISO 8601 duration of days, "
                                     "hours, minutes or seconds; write e.g. PT4H (4 hours) or P1D (1 day)"))
            ok = False
        fields["activation_lead_time"] = lead
    return LintSettings(**fields) if ok else None


def known_locale(name: str) -> bool:
    """A locale Babel has data for, so that formatting money at checkout cannot fail."""
    try:
        Locale.parse(name)
    except (UnknownLocaleError, ValueError, TypeError):
        return False
    return True


def _read(path: Path, data: bytes, kind: str, problems: list[Problem]) -> tuple[Any, Positions]:
    try:
        doc, positions = load(data, str(path))
    except YamlProblems as exc:
        problems.extend(exc.problems)
        return None, Positions()
    errors = schemas.check(kind, doc)
    for where, message in errors:
        problems.append(_problem(path, positions, where, message))
    return (None if errors else doc), positions


def _problem(path: Path, positions: Positions, where: tuple, message: str) -> Problem:
    spot = positions.locate(where)
    hint = ""
    if spot.source is not None and spot.source.lower() in YAML11_BOOL_WORDS - {"true", "false"} \
            and "quote" not in message:
        hint = f" (YAML reads the bare word {spot.source} as true/false: put it in quotes)"
    return Problem(str(path), spot.line, spot.column, json_path(where), message + hint)


class _Checker:
    """The semantic checks of one promotion file; records problems against YAML positions."""

    def __init__(self, path: Path, positions: Positions, problems: list[Problem]):
        self.path, self.positions, self.problems = path, positions, problems
        self.failed = False

    def fail(self, where: tuple, message: str) -> None:
        self.failed = True
        self.problems.append(_problem(self.path, self.positions, where, message))

    def convert(self, where: tuple, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except MoneyError as exc:
            self.fail(where, str(exc))
            return None


def _load_promotion(path: Path, data: bytes, settings: dict | None,
                    problems: list[Problem]) -> tuple[Promotion | None, Positions]:
    before = len(problems)
    doc, positions = _read(path, data, "promotion", problems)
    if doc is None:
        _checks_despite_schema(path, data, positions, problems, before)
        return None, positions
    c = _Checker(path, positions, problems)
    if doc["id"] != path.stem:
        c.fail(("id",), f"id {doc['id']!r} must equal the file name {path.stem!r}")

    currency = doc.get("currency")
    if currency is not None:
        if not known_currency(currency):
            c.fail(("currency",), f"unknown ISO 4217 currency {currency!r}")
            currency = None
        elif settings is not None and currency not in settings["currencies"]:
            c.fail(("currency",), f"{currency} is not one of the rule set's currencies "
                                  f"({', '.join(settings['currencies'])}) in {SETTINGS_FILE}")

    def money(where: tuple, text: str) -> Decimal | None:
        if doc.get("currency") is None:
            c.fail(where, "this file has a money amount, so it must say its 'currency' (e.g. currency: JPY)")
            return None
        if currency is None:
            return None
        return c.convert(where, lambda: parse_money(text, currency, json_path(where)))

    def percent(where: tuple, value: Any) -> Decimal | None:
        number = Decimal(value) if isinstance(value, int) else c.convert(where, lambda: parse_decimal(value, "percent"))
        if number is not None and not (0 < number <= 100):
            c.fail(where, f"percent {value!r} is out of range: must be above 0 and at most 100")
            return None
        return number

    starts = _when(c, doc, "starts")
    ends = _when(c, doc, "ends")
    if starts and ends and ends <= starts:
        c.fail(("window", "ends"), f"ends ({doc['window']['ends']}) must be after starts ({doc['window']['starts']})")

    _check_condition(c, doc.get("eligibility"), ("eligibility",), money)
    benefits = _benefits(c, doc["benefits"], ends, money, percent)
    limits_doc = doc.get("limits", {})
    limits = Limits(
        max_discount=money(("limits", "max_discount"), limits_doc["max_discount"]) if "max_discount" in limits_doc else None,
        total_uses=limits_doc.get("total_uses"), uses_per_customer=limits_doc.get("uses_per_customer"),
        budget=money(("limits", "budget"), limits_doc["budget"]) if "budget" in limits_doc else None,
        return_usage_on_cancel=limits_doc.get("return_usage_on_cancel", False),
        budget_overrun=limits_doc.get("budget_overrun"))
    if limits.budget_overrun is not None and limits.budget is None:
        c.fail(("limits", "budget_overrun"), "budget_overrun says what happens when a discount would overrun the "
                                             "budget, so it needs a 'budget' in the same limits")
    stacking = doc["stacking"]
    if "combines_with" in stacking and not stacking["exclusive"]:
        c.fail(("stacking", "combines_with"), "combines_with is only for exclusive promotions (exclusive: true): a "
                                              "promotion that is not exclusive already combines with every other "
                                              "one that is not, and with each exclusive one that lists its class")
    if c.failed:
        return None, positions
    return Promotion(
        id=doc["id"], name=doc["name"], status=doc["status"], currency=currency, starts=starts, ends=ends,
        code=normalise_code(doc["code"]) if "code" in doc else pool_token(doc["id"]) if doc.get("code_pool") else None,
        condition=compile_condition(doc.get("eligibility")), targets=_targets(doc["targets"]), benefits=benefits,
        priority=stacking["priority"], exclusive=stacking["exclusive"], limits=limits,
        source=str(path), code_pool=doc.get("code_pool", False), stacking_class=stacking.get("class"),
        combines_with=tuple(stacking.get("combines_with", ())),
        customer_message=tuple(sorted(doc.get("customer_message", {}).items()))), positions


MONEY_KEYS = frozenset({"amount", "max_discount", "budget", "price"})


def _checks_despite_schema(path: Path, data: bytes, positions: Positions, problems: list[Problem],
                           before: int) -> None:
    """A file the schema refused still gets the checks that need no valid structure, so that one run of
    `promo validate` lists them too: its id against its file name, and money amounts finer than its
    currency allows. Nothing here is relied on: the file is refused already."""
    if len(problems) == before:
        return
    try:
        doc, _ = load(data, str(path))
    except YamlProblems:
        return                      # a YAML error: nothing else can be read
    if not isinstance(doc, dict):
        return
    c = _Checker(path, positions, problems)
    known = {(p.path, p.message) for p in problems[before:]}
    pointed = {p.path for p in problems[before:]}
    if isinstance(doc.get("id"), str) and doc["id"] != path.stem and "$.id" not in pointed:
        c.fail(("id",), f"id {doc['id']!r} must equal the file name {path.stem!r}")
    currency = doc.get("currency")
    if not isinstance(currency, str) or not known_currency(currency):
        return
    stack: list[tuple[Any, tuple]] = [(doc, ())]
    while stack:
        node, at = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            where = at + (key,)
            if isinstance(value, (dict, list)):
                stack.append((value, where))
            elif key in MONEY_KEYS and isinstance(value, str) and json_path(where) not in pointed:
                try:
                    parse_money(value, currency, json_path(where))
                except MoneyError as exc:
                    if (json_path(where), str(exc)) not in known:
                        c.fail(where, str(exc))


def _when(c: _Checker, doc: dict, key: str) -> datetime | None:
    text = doc.get("window", {}).get(key)
    return None if text is None else _moment(c, text, ("window", key))


def _moment(c: _Checker, text: str, where: tuple) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        c.fail(where, f"{shorten(text)} is not a valid date and time ({exc})")
        return None
    if moment.tzinfo is None:  # the schema requires an offset; kept as a second line of defence
        c.fail(where, f"{text!r} has no UTC offset; write e.g. {text}+09:00")
        return None
    problem = instant_problem(moment)
    if problem is not None:
        c.fail(where, problem)
        return None
    return moment


def _check_condition(c: _Checker, node: Any, where: tuple, money: Callable) -> None:
    if node is None:
        return
    leaves = _condition_leaves(c, node, where, 1, money)
    if leaves > MAX_CONDITION_LEAVES:
        c.fail(where, f"condition tree has {leaves} leaves; at most {MAX_CONDITION_LEAVES} are allowed")


def _condition_leaves(c: _Checker, node: dict, at: tuple, depth: int, money: Callable) -> int:
    """Check a condition tree's nesting and its money values; return how many leaves it has. (A module
    function, not one nested in _check_condition: a nested function that calls itself is a reference
    cycle, and it held the whole file, its document and its positions, until the garbage collector came.)"""
    if depth > MAX_CONDITION_DEPTH:
        c.fail(at, f"condition tree is nested deeper than {MAX_CONDITION_DEPTH} levels")
        return 0
    for key in ("all", "any"):
        if key in node:
            return sum([_condition_leaves(c, child, at + (key, i), depth + 1, money)
                        for i, child in enumerate(node[key])])
    if node["name"] in MONEY_VARIABLES:
        money(at + ("value",), node["value"])
    return 1


def _benefits(c: _Checker, docs: list, ends: datetime | None, money: Callable,
              percent: Callable) -> tuple[Benefit, ...]:
    """The promotion's benefits in stage order. At most one per stage, so that each stage decides once
    per promotion; a benefit with a threshold of its own must be the first, since it can refuse the
    whole promotion only before any other benefit has been given."""
    benefits = [_benefit(c, doc, ("benefits", i), i, ends, money, percent) for i, doc in enumerate(docs)]
    by_stage: dict = {}
    for b in benefits:
        if b.stage in by_stage:
            c.fail(("benefits", b.index, "type"), f"benefits {by_stage[b.stage].index + 1} and {b.index + 1} both "
                                                  f"run in the {b.stage.value} stage; a promotion has at most one "
                                                  "benefit per stage (write a second promotion, or tiers)")
        by_stage.setdefault(b.stage, b)
    ordered = sorted(benefits, key=lambda b: STAGE_ORDER.index(b.stage))
    for b in ordered[1:]:
        if KINDS[b.type].threshold:
            c.fail(("benefits", b.index, "type"), f"a {b.type} benefit has a threshold of its own, so it must be the "
                                                  f"promotion's first benefit (here the {ordered[0].stage.value} "
                                                  f"stage's {ordered[0].type} runs before it)")
    return tuple(ordered)


def _check_units(c: _Checker, b: Benefit, written: dict, at: tuple) -> None:
    """`units` where it means something, and caps that leave the benefit a way to apply. Only item
    benefits take units, and the item stage runs first, so a group_size (a threshold: one whole
    group) always decides before any other benefit of its promotion has given anything."""
    u = b.units
    if u is None:
        return
    at = at + ("units",)
    if b.stage is not Stage.ITEM:
        c.fail(at, f"units says which of a line's units are discounted; a {b.scope} {b.type} discounts the order "
                   "as a whole, not units (remove units, or use an item scope: per_line or per_unit)")
        return
    if b.type == "buy_x_get_y":
        if u.group_size is not None:
            c.fail(at + ("group_size",), "buy_x_get_y makes its own groups (sets of buy + get units): group_size "
                                         "means nothing here; set buy and get instead")
        if "choose" in written:
            c.fail(at + ("choose",), "buy_x_get_y says which units it gives with discounted_units; choose means "
                                     "nothing here")
        return
    if u.max_per_line is None and u.max_total is None and u.group_size is None:   # only choose
        c.fail(at, "units with only choose leaves no unit out, so choose means nothing: add max_per_line, "
                   "max_total or group_size")
        return
    most = u.max_total
    if u.group_size is not None and u.max_total is not None:
        if u.max_total < u.group_size:
            c.fail(at + ("max_total",), f"max_total {u.max_total} is less than one group of {u.group_size}: "
                                        "no unit could ever be discounted")
            return
        if u.max_total % u.group_size:
            most = u.max_total - u.max_total % u.group_size
            c.fail(at + ("max_total",), f"max_total {u.max_total} is not a whole number of groups of "
                                        f"{u.group_size}: at most {most} units are ever discounted (write "
                                        f"max_total: {most})")
            return
    if b.type == "fixed_price" and b.quantity is not None and most is not None and b.quantity > most:
        c.fail(at + ("max_total",), f"a set is {b.quantity} units but at most {most} are ever discounted: the "
                                    "fixed price could never apply")


def _benefit(c: _Checker, doc: dict, at: tuple, index: int, ends: datetime | None, money: Callable,
             percent: Callable) -> Benefit:
    kind = doc["type"]
    fields: dict[str, Any] = {"type": kind, "index": index, "stage": KINDS[kind].stage(doc.get("scope"))}
    if "percent" in doc:
        fields["percent"] = percent(at + ("percent",), doc["percent"])
    for key in ("amount", "max_discount", "price"):
        if key in doc:
            fields[key] = money(at + (key,), doc[key])
    for key in ("scope", "quantity", "buy", "get", "discounted_units", "max_sets", "basis"):
        if key in doc:
            fields[key] = doc[key]
    if "targets" in doc:
        fields["targets"] = _targets(doc["targets"])
    if "units" in doc:
        fields["units"] = Units(**doc["units"])
    if "shipping_methods" in doc:
        fields["shipping_methods"] = frozenset(doc["shipping_methods"])
    if kind == "tiered":
        fields["tiers"] = _tiers(c, doc, at, money, percent)
    if kind == "grant_promotional_balance":
        expires = doc["expires"]
        if "after_days" in expires:
            fields["expires_after_days"] = expires["after_days"]
        else:
            fields["expires_at"] = expires_at = _moment(c, expires["at"], at + ("expires", "at"))
            if expires_at is not None and (ends is None or expires_at < ends):
                c.fail(at + ("expires", "at"), "a grant with a fixed expiry needs a window that ends no later "
                                               "than it, so that no order is granted balance that has already "
                                               "expired; or use after_days")
        fields["pays_for"] = PaysFor.from_doc(doc.get("pays_for", {}))
    benefit = Benefit(**fields)
    _check_units(c, benefit, doc.get("units", {}), at)
    return benefit


def _tiers(c: _Checker, doc: dict, where: tuple, money: Callable, percent: Callable) -> tuple[Tier, ...]:
    tiers: list[Tier] = []
    for i, tier in enumerate(doc["tiers"]):
        at = where + ("tiers", i)
        if doc["basis"] == "eligible_subtotal":
            if not isinstance(tier["at"], str):
                c.fail(at + ("at",), "a spend threshold is money: write it as quoted text, e.g. \"3000\"")
                continue
            threshold = money(at + ("at",), tier["at"])
        else:
            if not isinstance(tier["at"], int) or tier["at"] < 1:
                c.fail(at + ("at",), "a quantity threshold is a whole number of units, at least 1")
                continue
            threshold = Decimal(tier["at"])
        if threshold is None:
            continue
        if tiers and threshold <= tiers[-1].at:
            c.fail(at + ("at",), "tiers must be listed from the lowest threshold up, each higher than the last")
        tiers.append(Tier(at=threshold,
                          percent=percent(at + ("percent",), tier["percent"]) if "percent" in tier else None,
                          amount=money(at + ("amount",), tier["amount"]) if "amount" in tier else None))
    return tuple(tiers)


def _targets(doc: dict) -> Targets:
    include, exclude = doc["include"], doc.get("exclude", {})
    selector = {} if include == "all" else include
    return Targets(
        include_all=include == "all",
        categories=_names(selector, "categories"), skus=_names(selector, "skus"), brands=_names(selector, "brands"),
        exclude_categories=_names(exclude, "categories"), exclude_skus=_names(exclude, "skus"),
        exclude_brands=_names(exclude, "brands"), exclude_sellers=_names(exclude, "sellers"),
        exclude_product_types=_names(exclude, "product_types"))


_NO_NAMES: frozenset[str] = frozenset()


def _names(doc: dict, key: str) -> frozenset[str]:
    """The names listed under `key`. Most of a promotion's eight target lists are empty, and they all share
    one empty set: 10,000 promotions would otherwise hold some 70,000 of them, each a separate object
    that the garbage collector walks."""
    names = doc.get(key)
    return frozenset(names) if names else _NO_NAMES
