"""`promo lint`'s checks: what a loaded, valid rule set would do that nobody meant, found before launch.

Input: a RuleSet (already valid: `promo validate` passes), an optional catalogue of names, `now`. Output:
a `Report` of `Finding`s (each a check from the closed table CHECKS, with its severity, the promotions
involved, the rule file and the line of the field at fault) and the `WorstCase` of every category, SKU and
brand. Lines come from the loader's own positions (`yamlsafe.load` on the bytes the rule set was built
from), never from a guess.

Conditions are decided by a small solver over business-rules' leaves (`_solve`): a tree is turned into
its alternatives (`all` of leaves, at most MAX_ALTERNATIVES), and each alternative is decided variable by
variable, exactly where the vocabulary allows it (intervals of numbers, enumerated channels and weekdays,
string prefixes and suffixes, subsets of named segments) and "cannot tell" otherwise. "Cannot tell" is
never taken for "never": a finding that depends on it says "may".

The worst case is measured, not bounded: a synthetic one-line cart per subject is evaluated with the real
`evaluate()` under the most favourable account, channel, time and codes the solver derives for the
promotions that target the line, at the prices and quantities where their thresholds, amounts and caps
bite (`_prices`). It is therefore a discount a real cart gets; a combination that needs a cart the
candidates do not build can be missed (the README says which).
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Mapping

from .conditions import OPERATORS, AnyOf, Leaf, Node
from .errors import PromoError
from .evaluate import evaluate
from .index import required_nodes
from .model import Line, Promotion, RuleSet, Stage, Targets
from .money import quantum
from .text import normalise_code
from .variables import MEASURED_PER_PROMOTION, MONEY_VARIABLES, QUANTITY_VARIABLES, SALES_CHANNELS, \
    VARIABLE_TYPES, WEEKDAYS
from .yamlsafe import Positions, YamlProblems, json_path, load

MAX_ALTERNATIVES = 256       # alternatives of one tree (or of two trees together) the solver decides
MAX_SEGMENT_NAMES = 12       # segments named by one alternative: every subset of them is tried
SAMPLE = "e.g."


class Check(str, Enum):
    """Every check `promo lint` makes; the closed set of names a finding can have."""

    OVERLAP = "overlap"
    WORST_CASE = "worst_case"
    NEVER_HOLDS = "never_holds"
    WINDOW_ENDED = "window_ended"
    UNKNOWN_TARGET = "unknown_target"
    EXCLUSIVE_NEVER_WINS = "exclusive_never_wins"
    BUDGET_BELOW_ONE_USE = "budget_below_one_use"
    PERCENT_BELOW_ONE = "percent_below_one"
    AMOUNT_ABOVE_MINIMUM = "amount_above_minimum"
    STARTS_TOO_SOON = "starts_too_soon"
    LOOKALIKE_CODES = "lookalike_codes"


@dataclass(frozen=True)
class CheckInfo:
    severity: str        # error | warning
    description: str     # one line: what the check finds
    help: str            # what to do about it


# The one table of checks: the CLI's text, the JSON and SARIF's `rules` all come from it.
CHECKS: dict[Check, CheckInfo] = {
    Check.OVERLAP: CheckInfo("warning", "Two automatic promotions that combine can give on the same line, shipment "
                             "or order for the same customer at the same time",
                             "If they are meant to stack, nothing to do; otherwise make one exclusive, give one a "
                             "code, or narrow its targets, window or eligibility."),
    Check.WORST_CASE: CheckInfo("error", "A line can get more than the rule set's max_discount_percent off when "
                                "everything that can combine does",
                                "Cap a promotion (max_discount), make one exclusive, add a minimum spend, or raise "
                                "lint.max_discount_percent in _settings.yaml if the discount is meant."),
    Check.NEVER_HOLDS: CheckInfo("error", "A promotion's eligibility or targets can never hold, so it never applies",
                                 "Fix the contradictory conditions (an `all` of leaves that exclude each other) or "
                                 "targets."),
    Check.WINDOW_ENDED: CheckInfo("warning", "An active promotion whose window has ended",
                                  "Set status: paused (or remove the file), or give it a new window."),
    Check.UNKNOWN_TARGET: CheckInfo("error", "Targets name a category, SKU or brand that is not in the catalogue",
                                    "Correct the name (a typo targets nothing), or add it to the catalogue."),
    Check.EXCLUSIVE_NEVER_WINS: CheckInfo("warning", "An exclusive promotion that another exclusive one beats on "
                                          "every cart it can apply to",
                                          "Remove it, or change priorities, percents or targets so that it can win."),
    Check.BUDGET_BELOW_ONE_USE: CheckInfo("error", "A budget smaller than the fixed amount one use gives",
                                          "Raise limits.budget to at least one use's amount, or lower the amount."),
    Check.PERCENT_BELOW_ONE: CheckInfo("warning", "A percent below 1 (percent: \"0.15\" is probably 15%)",
                                       "Percents are out of 100: write 15 for 15%."),
    Check.AMOUNT_ABOVE_MINIMUM: CheckInfo("warning", "An amount off larger than the minimum spend it is gated on",
                                          "Raise the minimum spend above the amount, or lower the amount."),
    Check.STARTS_TOO_SOON: CheckInfo("warning", "A window that starts less than the activation lead time after now",
                                     "Move the start later, or publish earlier (lint.activation_lead_time in "
                                     "_settings.yaml)."),
    Check.LOOKALIKE_CODES: CheckInfo("warning", "Two codes that differ only by look-alike characters (O/0, I/1/L, "
                                     "S/5, B/8, Z/2)",
                                     "Rename one code so that customers cannot type the other by mistake."),
}


@dataclass(frozen=True)
class Finding:
    check: Check
    promotions: tuple[str, ...]
    file: str
    line: int
    column: int
    path: str            # the JSON path of the field at fault
    message: str
    related: tuple[tuple[str, int, int], ...] = ()   # the other promotions' file, line, column

    @property
    def severity(self) -> str:
        return CHECKS[self.check].severity

    def sort_key(self) -> tuple:
        return (self.file, self.line, self.column, self.check.value, self.promotions)

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check.value, "severity": self.severity, "promotions": list(self.promotions),
                "file": self.file, "line": self.line, "column": self.column, "path": self.path,
                "message": self.message}


@dataclass(frozen=True)
class WorstCase:
    """The largest discount found for one line of a subject (a category, SKU or brand) in one currency."""

    kind: str                 # category | sku | brand
    name: str
    currency: str
    percent: Decimal          # exact: discount / line subtotal * 100
    discount: Decimal         # what the line's discounts add up to (balance granted for later orders is not counted)
    unit_price: Decimal
    quantity: int
    promotions: tuple[str, ...]
    codes: tuple[str, ...]    # codes entered
    account: tuple[tuple[str, Any], ...]   # what the account, channel and shipping were (sorted pairs)
    now: str
    over: bool                # above the rule set's max_discount_percent

    @property
    def shown_percent(self) -> str:
        return str(self.percent.quantize(Decimal("0.01"), ROUND_DOWN))   # never shown above what it is

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "currency": self.currency, "percent": self.shown_percent,
                "discount": str(self.discount), "unit_price": str(self.unit_price), "quantity": self.quantity,
                "line_subtotal": str(self.unit_price * self.quantity), "promotions": list(self.promotions),
                "codes": list(self.codes), "account": dict(self.account), "now": self.now,
                "over_threshold": self.over}


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    worst_case: tuple[WorstCase, ...]
    max_discount_percent: Decimal

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        return len(self.findings) - self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [f.to_dict() for f in self.findings], "worst_case": [w.to_dict() for w in self.worst_case]}

    def to_sarif(self, base: str | Path | None = None) -> dict[str, Any]:
        """SARIF 2.1.0: one run, one rule per check, each result on its rule file's line; file paths are
        relative to `base` (default: the current directory), with forward slashes."""
        order = list(CHECKS)
        rules = [{"id": c.value, "name": c.value, "shortDescription": {"text": CHECKS[c].description},
                  "fullDescription": {"text": CHECKS[c].description}, "help": {"text": CHECKS[c].help},
                  "defaultConfiguration": {"level": CHECKS[c].severity}} for c in order]

        def location(file: str, line: int, column: int) -> dict[str, Any]:
            return {"physicalLocation": {"artifactLocation": {"uri": _uri(file, base)},
                                         "region": {"startLine": line, "startColumn": column}}}

        results = []
        for f in self.findings:
            result: dict[str, Any] = {"ruleId": f.check.value, "ruleIndex": order.index(f.check), "level": f.severity,
                                      "message": {"text": f.message}, "locations": [location(f.file, f.line, f.column)],
                                      "properties": {"promotions": list(f.promotions), "path": f.path}}
            if f.related:
                result["relatedLocations"] = [dict(location(*r), id=i) for i, r in enumerate(f.related)]
            results.append(result)
        return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
                "runs": [{"tool": {"driver": {"name": "promo lint", "informationUri":
                                              "https://github.com/promo-engine/promo-engine#before-launch-promo-lint",
                                              "rules": rules}},
                          "columnKind": "unicodeCodePoints", "results": results}]}


def _uri(file: str, base: str | Path | None) -> str:
    try:
        shown = os.path.relpath(file, base if base is not None else os.getcwd())
    except ValueError:      # another drive (Windows): keep the path as given
        shown = file
    return Path(shown).as_posix()


@dataclass(frozen=True)
class Catalogue:
    categories: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()

    def names(self, kind: str) -> frozenset[str]:
        return {"categories": self.categories, "brands": self.brands, "skus": self.skus}[kind]


# --- the solver ------------------------------------------------------------------------------------

SAT, MAYBE, NEVER = 2, 1, 0          # an alternative certainly holds for some input / cannot tell / never


def alternatives(root: Node | None, limit: int = MAX_ALTERNATIVES) -> list[tuple[Leaf, ...]] | None:
    """The tree as an `any` of `all`s of leaves (disjunctive normal form); None when it has more than
    `limit` alternatives."""
    if root is None:
        return [()]
    if isinstance(root, Leaf):
        return [(root,)]
    parts = [alternatives(child, limit) for child in root.children]
    if any(p is None for p in parts):
        return None
    if isinstance(root, AnyOf):
        out = [alt for p in parts for alt in p]   # type: ignore[union-attr]
        return out if len(out) <= limit else None
    combined: list[tuple[Leaf, ...]] = [()]
    for p in parts:
        combined = [a + b for a in combined for b in p]   # type: ignore[union-attr]
        if len(combined) > limit:
            return None
    return combined


Keyed = tuple[str, Leaf]        # (variable key, leaf); a measured variable's key names its promotion


def keyed(promotion: Promotion, leaves: Iterable[Leaf]) -> list[Keyed]:
    """Leaves under the key of the value they read: spend and quantities of the promotion's own lines
    (measured for each promotion after earlier ones) are its own; account and cart facts are shared."""
    return [((f"{promotion.id}:{leaf.variable}" if leaf.variable in MEASURED_PER_PROMOTION else leaf.variable), leaf)
            for leaf in leaves]


@dataclass(frozen=True)
class Verdict:
    status: int
    witness: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""


def solve(leaves: list[Keyed]) -> Verdict:
    """Whether some input passes every leaf: SAT with a value for each variable, NEVER with why, or MAYBE."""
    by_key: dict[str, list[Leaf]] = {}
    for key, leaf in leaves:
        if leaf.variable == "first_order":   # the first order is order_count 0
            key, leaf = "order_count", _first_order_leaf(leaf)
        by_key.setdefault(key, []).append(leaf)
    status, witness = SAT, {}
    for key in sorted(by_key):
        verdict = _solve_variable(key.rpartition(":")[2], by_key[key])
        if verdict.status == NEVER:
            return Verdict(NEVER, {}, verdict.why)
        status = min(status, verdict.status)
        if verdict.status == SAT:
            witness[key] = verdict.witness.get("value")
    return Verdict(status, witness)


def _first_order_leaf(leaf: Leaf) -> Leaf:
    if leaf.operator == "is_true":
        return Leaf(leaf.index, "order_count", "equal_to", "0 (first_order is_true)", Decimal(0),
                    OPERATORS[("numeric", "equal_to")])
    return Leaf(leaf.index, "order_count", "greater_than_or_equal_to", "1 (first_order is_false)", Decimal(1),
                OPERATORS[("numeric", "greater_than_or_equal_to")])


def _said(variable: str, leaves: Iterable[Leaf]) -> str:
    return " and ".join(f"{variable} {leaf.operator}" + ("" if leaf.value is None else f" {leaf.value!r}")
                        for leaf in leaves)


_INTEGER = frozenset({"order_count", "local_hour"}) | QUANTITY_VARIABLES
_DOMAINS: dict[str, tuple[str, ...]] = {"sales_channel": SALES_CHANNELS, "local_weekday": WEEKDAYS}


def _solve_variable(variable: str, leaves: list[Leaf]) -> Verdict:
    kind = VARIABLE_TYPES[variable]
    if kind == "numeric":
        return _solve_number(variable, leaves)
    if kind == "select_multiple":
        return _solve_segments(variable, leaves)
    if variable == "shipping_method":
        # A cart may have several shipments, and a leaf on the method passes when any of them passes it,
        # so every satisfiable leaf can hold at once, each on its own shipment.
        eq = next((l.operand for l in leaves if l.operator == "equal_to"), None)
        return Verdict(SAT, {"value": eq})
    return _solve_text(variable, leaves)


def _solve_number(variable: str, leaves: list[Leaf]) -> Verdict:
    lo, lo_open = Decimal(1 if variable in QUANTITY_VARIABLES else 0), False
    hi, hi_open = (Decimal(23), False) if variable == "local_hour" else (None, False)
    for leaf in leaves:
        v, op = leaf.operand, leaf.operator
        if op in ("equal_to", "greater_than", "greater_than_or_equal_to") and (v > lo or (v == lo and op == "greater_than")):
            lo, lo_open = v, op == "greater_than"
        if op in ("equal_to", "less_than", "less_than_or_equal_to") and (hi is None or v < hi or (v == hi and op == "less_than")):
            hi, hi_open = v, op == "less_than"
    if variable in _INTEGER:
        low = lo.to_integral_value(ROUND_CEILING)
        if low == lo and lo_open:
            low += 1
        ok = hi is None or low < hi or (low == hi and not hi_open)
        value: Decimal | None = low
    else:
        ok = hi is None or lo < hi or (lo == hi and not lo_open and not hi_open)
        value = lo if not lo_open else (lo + 1 if hi is None else (lo + hi) / 2)
    if not ok:
        return Verdict(NEVER, {}, f"{_said(variable, leaves)}: no value is all of these")
    return Verdict(SAT, {"value": value})


def _fits(variable: str, value: str) -> bool:
    """Whether an account or cart can hold the value at all (its schema's form)."""
    if variable == "region":
        return len(value) == 2 and value.isascii() and value.isupper() and value.isalpha()
    if variable == "local_date":
        try:
            return datetime.strptime(value, "%Y-%m-%d").strftime("%Y-%m-%d") == value
        except ValueError:
            return False
    if variable == "customer_tier":
        return 1 <= len(value) <= 64
    if variable == "customer_id":
        return 1 <= len(value) <= 128
    return True


def _solve_text(variable: str, leaves: list[Leaf]) -> Verdict:
    def holds(value: str) -> bool:
        return all(leaf.test(value, leaf.operand) for leaf in leaves)

    never = Verdict(NEVER, {}, f"{_said(variable, leaves)}: no value is all of these")
    if variable in _DOMAINS:
        found = next((v for v in _DOMAINS[variable] if holds(v)), None)
        return never if found is None else Verdict(SAT, {"value": found})
    equal = [l.operand or "" for l in leaves if l.operator == "equal_to"]
    if equal:   # the value is fixed: it passes or nothing does
        return Verdict(SAT, {"value": equal[0]}) if holds(equal[0]) and _fits(variable, equal[0]) else never
    folded = [l.operand or "" for l in leaves if l.operator == "equal_to_case_insensitive"]
    if folded:
        if len({f.lower() for f in folded}) > 1:
            return never
        for candidate in (folded[0], folded[0].upper(), folded[0].lower()):
            if holds(candidate) and _fits(variable, candidate):
                return Verdict(SAT, {"value": candidate})
        return Verdict(MAYBE)
    starts = sorted((l.operand or "" for l in leaves if l.operator == "starts_with"), key=len)
    ends = sorted((l.operand or "" for l in leaves if l.operator == "ends_with"), key=len)
    if any(not b.startswith(a) for a, b in zip(starts, starts[1:])) or \
            any(not b.endswith(a) for a, b in zip(ends, ends[1:])):
        return never
    middle = "".join(l.operand or "" for l in leaves if l.operator == "contains")
    candidate = (starts[-1] if starts else "") + (middle or "x") + (ends[-1] if ends else "")
    if holds(candidate) and _fits(variable, candidate):
        return Verdict(SAT if variable != "local_date" else MAYBE, {"value": candidate})
    return Verdict(MAYBE)


def _solve_segments(variable: str, leaves: list[Leaf]) -> Verdict:
    names = sorted({str(n).lower() for leaf in leaves for n in (leaf.operand or ())})
    if len(names) > MAX_SEGMENT_NAMES:
        return Verdict(MAYBE)
    # Other segments than those named never help (no operator needs one) and may hurt (is_contained_by).
    for size in range(len(names) + 1):
        for chosen in itertools.combinations(names, size):
            if all(leaf.test(list(chosen), leaf.operand) for leaf in leaves):
                return Verdict(SAT, {"value": list(chosen)})
    return Verdict(NEVER, {}, f"{_said(variable, leaves)}: no set of segments is all of these")


# --- targets ---------------------------------------------------------------------------------------

_SELLERS = ("first_party", "third_party")
_PRODUCT_TYPES = ("physical", "digital", "subscription", "gift_card")
_FRESH = {"category": "lint-other", "sku": "LINT-OTHER", "brand": None}


def _reasons(t: Targets) -> list[tuple[str, str | None]]:
    if t.include_all:
        return [("all", None)]
    return ([("category", c) for c in sorted(t.categories)] + [("sku", s) for s in sorted(t.skus)]
            + [("brand", b) for b in sorted(t.brands)])


def common_line(*selections: Targets, prefer: Mapping[str, Any] | None = None) -> Line | None:
    """A line every selection matches, or None when there is none (decided exactly: each selection
    includes a line for one reason, a category, a SKU, a brand or `all`, and every combination of
    reasons is tried against every exclusion)."""
    fresh = dict(_FRESH)
    for key, names in (("category", "exclude_categories"), ("sku", "exclude_skus")):
        while any(fresh[key] in getattr(t, names) for t in selections):
            fresh[key] = fresh[key] + "-x"
    for fixed in _consistent([_reasons(t) for t in selections], dict(prefer or {})):
        for seller, ptype in itertools.product(_SELLERS, _PRODUCT_TYPES):
            line = Line("L1", fixed.get("sku", fresh["sku"]), "line", fixed.get("category", fresh["category"]),
                        fixed.get("brand", fresh["brand"]), seller, ptype, Decimal(1), 1)
            if all(t.matches(line) for t in selections):
                return line
    return None


def _consistent(choices: list[list[tuple[str, str | None]]], fixed: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """Each way of taking one reason from every list that never gives a kind two names, as the fields it
    fixes, in itertools.product's order. A choice that contradicts an earlier one is cut there, so two
    selections of 60 different categories each cost 60 * 60 steps, not 60 ** 4 (each is listed twice)."""
    if not choices:
        yield fixed
        return
    for kind, name in choices[0]:
        if kind == "all":
            yield from _consistent(choices[1:], fixed)
        elif fixed.get(kind, name) == name:
            yield from _consistent(choices[1:], {**fixed, kind: name})


def describe_line(line: Line) -> str:
    parts = [f"category {line.category}" if not line.category.startswith("lint-other") else "any other category"]
    if not line.sku.startswith("LINT-OTHER"):
        parts.append(f"SKU {line.sku}")
    if line.brand is not None:
        parts.append(f"brand {line.brand}")
    return ", ".join(parts) + f", sold by {line.seller.replace('_', '-')}, {line.product_type.replace('_', ' ')}"


# --- the lint -------------------------------------------------------------------------------------

def lint(ruleset: RuleSet, now: datetime, catalogue: Catalogue | None = None,
         worst_case: bool = True) -> Report:
    """Every finding on the rule set at `now`, with the worst case of each subject."""
    linter = _Linter(ruleset, now, catalogue)
    findings = linter.findings()
    cases: tuple[WorstCase, ...] = ()
    if worst_case:
        cases, over = linter.worst_cases()
        findings += over
    unique = {(f.check, f.promotions, f.path, f.message): f for f in findings}
    return Report(tuple(sorted(unique.values(), key=Finding.sort_key)), cases, ruleset.lint.max_discount_percent)


class _Linter:
    def __init__(self, ruleset: RuleSet, now: datetime, catalogue: Catalogue | None):
        self.ruleset, self.now, self.catalogue = ruleset, now, catalogue
        self._docs: dict[str, tuple[Any, Positions]] = {}
        # What lint looks at: active promotions, and drafts as if they launched (a draft is what is being
        # prepared); paused promotions take no part. Those whose window has ended are over.
        self.live = [p for p in ruleset.promotions.values()
                     if p.status in ("active", "draft") and (p.ends is None or p.ends > now)]
        self.alts = {p.id: alternatives(p.condition.root) for p in ruleset.promotions.values()}

    # where things are in the files

    def doc(self, p: Promotion) -> tuple[Any, Positions]:
        if p.id not in self._docs:
            data = self.ruleset.sources.get(Path(p.source).name)
            try:
                self._docs[p.id] = load(data, p.source) if data is not None else ({}, Positions())
            except YamlProblems:           # cannot happen for a loaded rule set; the file's first line then
                self._docs[p.id] = ({}, Positions())
        return self._docs[p.id]

    def finding(self, check: Check, promotions: Iterable[Promotion], at: Promotion, where: tuple, message: str,
                also: Iterable[tuple[Promotion, tuple]] = ()) -> Finding:
        spot = self.doc(at)[1].locate(where)
        related = tuple((o.source, s.line, s.column) for o, w in also for s in (self.doc(o)[1].locate(w),))
        return Finding(check, tuple(sorted({p.id for p in promotions})), at.source, spot.line, spot.column,
                       json_path(where), message, related)

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for p in self.ruleset.promotions.values():
            out += self.never_holds(p) + self.window_ended(p) + self.unknown_targets(p) + self.budget(p) \
                + self.percents(p) + self.amounts(p) + self.too_soon(p)
        out += self.overlaps() + self.never_wins() + self.lookalikes()
        return out

    # dead rules

    def never_holds(self, p: Promotion) -> list[Finding]:
        out = []
        alts = self.alts[p.id]
        if alts is not None and p.condition.root is not None:
            verdicts = [solve(keyed(p, alt)) for alt in alts]
            if all(v.status == NEVER for v in verdicts):
                many = " (every alternative of its `any`s likewise)" if len(alts) > 1 else ""
                out.append(self.finding(Check.NEVER_HOLDS, [p], p, ("eligibility",),
                                        f"{p.id}: the eligibility can never hold: {verdicts[0].why}{many}; the "
                                        f"promotion never applies. Remove or correct the contradictory leaves."))
        for where, targets in self.selections(p):
            if common_line(targets) is None:
                out.append(self.finding(Check.NEVER_HOLDS, [p], p, where,
                                        f"{p.id}: these targets exclude every line they include, so nothing is ever "
                                        f"selected; correct include or exclude."))
        return out

    def selections(self, p: Promotion) -> list[tuple[tuple, Targets]]:
        return [(("targets",), p.targets)] + [(("benefits", b.index, "targets"), b.targets)
                                                for b in p.benefits if b.targets is not None]

    def window_ended(self, p: Promotion) -> list[Finding]:
        if p.status != "active" or p.ends is None or p.ends > self.now:
            return []
        return [self.finding(Check.WINDOW_ENDED, [p], p, ("window", "ends"),
                             f"{p.id} is active but its window ended at {p.ends.isoformat()} (before "
                             f"{self.now.isoformat()}): it gives nothing any more. Set status: paused or remove it, "
                             f"or give it a new window.")]

    def unknown_targets(self, p: Promotion) -> list[Finding]:
        if self.catalogue is None:
            return []
        doc, _ = self.doc(p)
        out = []
        places = [(("targets",), doc.get("targets", {}))] + [
            (("benefits", i, "targets"), b["targets"]) for i, b in enumerate(doc.get("benefits", []))
            if isinstance(b, dict) and "targets" in b]
        for at, targets in places:
            for part in ("include", "exclude"):
                selector = targets.get(part) if isinstance(targets, dict) else None
                if not isinstance(selector, dict):
                    continue
                for kind in ("categories", "skus", "brands"):
                    for i, name in enumerate(selector.get(kind, [])):
                        if name not in self.catalogue.names(kind):
                            noun = {"categories": "category", "skus": "SKU", "brands": "brand"}[kind]
                            effect = "selects nothing" if part == "include" else "excludes nothing"
                            out.append(self.finding(Check.UNKNOWN_TARGET, [p], p, at + (part, kind, i),
                                                    f"{p.id}: {part} names the {noun} {name!r}, which is not in the "
                                                    f"catalogue: it {effect}. Correct the name (a typo?) or add it "
                                                    f"to the catalogue."))
        return out

    def budget(self, p: Promotion) -> list[Finding]:
        if p.limits.budget is None:
            return []
        fixed = [b for b in p.benefits if (b.type == "amount_off" and b.scope == "per_order")
                 or b.type == "grant_promotional_balance"]
        if not fixed:
            return []
        one_use = sum((b.amount for b in fixed if b.amount is not None), Decimal(0))
        if p.limits.max_discount is not None:
            one_use = min(one_use, p.limits.max_discount)
        if p.limits.budget >= one_use:
            return []
        return [self.finding(Check.BUDGET_BELOW_ONE_USE, [p], p, ("limits", "budget"),
                             f"{p.id}: the budget {p.currency} {p.limits.budget} is smaller than one use "
                             f"({p.currency} {one_use}): the first order already overruns it. Raise the budget or "
                             f"lower the amount.")]

    # suspicious values

    def percents(self, p: Promotion) -> list[Finding]:
        out = []
        for b in p.benefits:
            spots = [(("benefits", b.index, "percent"), b.percent)] + [
                (("benefits", b.index, "tiers", i, "percent"), t.percent) for i, t in enumerate(b.tiers)]
            for where, percent in spots:
                if percent is not None and percent < 1:
                    meant = f"{(percent * 100).normalize():f}"     # "0.15" -> 15, not 15.00
                    out.append(self.finding(Check.PERCENT_BELOW_ONE, [p], p, where,
                                            f"{p.id}: percent {percent} is {percent}% off, less than 1%; percents "
                                            f"are out of 100 (for {meant}% write {meant})."))
        return out

    def amounts(self, p: Promotion) -> list[Finding]:
        minimum = None
        for node in required_nodes(p.condition.root):
            if isinstance(node, Leaf) and node.variable in MONEY_VARIABLES and \
                    node.operator in ("greater_than", "greater_than_or_equal_to", "equal_to"):
                minimum = node if minimum is None or node.operand > minimum.operand else minimum
        out = []
        for b in p.benefits:
            gated = [(("benefits", b.index, "amount"), b.amount, minimum.operand if minimum else None,
                      minimum.variable if minimum else "")] if b.type in ("amount_off", "grant_promotional_balance") \
                else []
            if b.type == "tiered" and b.basis == "eligible_subtotal":
                gated += [(("benefits", b.index, "tiers", i, "amount"), t.amount, t.at, "its tier's eligible_subtotal")
                          for i, t in enumerate(b.tiers)]
            for where, amount, least, what in gated:
                if amount is not None and least is not None and amount > least:
                    out.append(self.finding(Check.AMOUNT_ABOVE_MINIMUM, [p], p, where,
                                            f"{p.id}: {p.currency} {amount} off is more than the minimum spend it is "
                                            f"gated on ({what} of {p.currency} {least}): an order at the minimum is "
                                            f"free. Raise the minimum above the amount, or lower the amount."))
        return out

    def too_soon(self, p: Promotion) -> list[Finding]:
        lead = self.ruleset.lint.activation_lead_time
        if p.status not in ("active", "draft") or p.starts is None or not self.now <= p.starts < self.now + lead:
            return []
        return [self.finding(Check.STARTS_TOO_SOON, [p], p, ("window", "starts"),
                             f"{p.id} starts at {p.starts.isoformat()}, less than the activation lead time "
                             f"({_duration(lead)}) after {self.now.isoformat()}: caches, feeds and reviews may not "
                             f"have it in time. Start it later or publish it earlier.")]

    def lookalikes(self) -> list[Finding]:
        table = str.maketrans("OILSBZ", "011582")
        groups: dict[str, dict[str, Promotion]] = {}
        for p in sorted(self.ruleset.promotions.values(), key=lambda p: p.id):
            if p.code is not None and not p.code_pool:
                groups.setdefault(normalise_code(p.code).translate(table), {}).setdefault(p.code, p)
        out = []
        for codes in groups.values():
            if len(codes) < 2:
                continue
            ordered = sorted(codes.items(), key=lambda kv: kv[1].id)
            first_code, first = ordered[0]
            for code, p in ordered[1:]:
                out.append(self.finding(Check.LOOKALIKE_CODES, [first, p], p, ("code",),
                                        f"codes {code!r} ({p.id}) and {first_code!r} ({first.id}) differ only by "
                                        f"look-alike characters (O/0, I/1/L, S/5, B/8, Z/2; case is already ignored): "
                                        f"a customer who reads one may type the other. Rename one.",
                                        also=[(first, ("code",))]))
        return out

    # overlaps

    def overlaps(self) -> list[Finding]:
        auto = [p for p in self.live if p.code is None]
        out = []
        for p, q in itertools.combinations(sorted(auto, key=lambda p: p.id), 2):
            found = self.overlap(p, q)
            if found is not None:
                out.append(found)
        return out

    def overlap(self, p: Promotion, q: Promotion) -> Finding | None:
        if not p.combines(q) or (p.currency and q.currency and p.currency != q.currency):
            return None
        start = max([t for t in (p.starts, q.starts) if t is not None] + [self.now])
        ends = [t for t in (p.ends, q.ends) if t is not None]
        if ends and min(ends) <= start:
            return None
        what = self._same_thing(p, q)
        if what is None:
            return None
        status = self._together(p, q)
        if status == NEVER:
            return None
        can = "can" if status == SAT else "may"
        newer, other = sorted((p, q), key=lambda x: (x.starts or datetime.min.replace(tzinfo=timezone.utc), x.id))[::-1]
        until = f"until {min(ends).isoformat()}" if ends else "with no end"
        doubt = "" if status == SAT else (" (whether both eligibilities can hold for one cart could not be decided "
                                          "exactly)")
        drafts = [x.id for x in (p, q) if x.status == "draft"]
        note = f" ({', '.join(drafts)}: draft, as if launched)" if drafts else ""
        return self.finding(Check.OVERLAP, [p, q], newer, ("stacking", "exclusive"),
                            f"{p.id} and {q.id} are automatic and combine, and {can} both {what} for the same "
                            f"customer from {start.isoformat()} {until}{doubt}{note}: they stack. If that is "
                            f"meant, nothing to do; otherwise make one exclusive, give one a code, or narrow its "
                            f"targets, window or eligibility.", also=[(other, ("stacking", "exclusive"))])

    def _same_thing(self, p: Promotion, q: Promotion) -> str | None:
        """What both can give on: a line, a shipment, or the order's grants; None when nothing."""
        for a, b in itertools.product(p.benefits, q.benefits):
            kinds = {a.stage, b.stage}
            if kinds <= {Stage.ITEM, Stage.ORDER}:
                if a.stage is b.stage is Stage.ITEM and p.stacking_class == q.stacking_class \
                        and p.stacking_class in self.ruleset.best_per_line:
                    continue   # best_per_line: one of them per line, never both
                line = common_line(a.targets or p.targets, b.targets or q.targets, p.targets, q.targets) \
                    or common_line(a.targets or p.targets, b.targets or q.targets)
                if line is not None:
                    return f"discount the same line ({SAMPLE} {describe_line(line)})"
            elif kinds == {Stage.SHIPPING}:
                methods = (a.shipping_methods, b.shipping_methods)
                if None in methods or (methods[0] & methods[1]):   # type: ignore[operator]
                    return "discount the same shipment"
            elif kinds == {Stage.GRANT}:
                return "grant promotional balance on the same order"
        return None

    def _together(self, p: Promotion, q: Promotion) -> int:
        alts_p, alts_q = self.alts[p.id], self.alts[q.id]
        if alts_p is None or alts_q is None or len(alts_p) * len(alts_q) > MAX_ALTERNATIVES * 4:
            return MAYBE
        best = NEVER
        for a, b in itertools.product(alts_p, alts_q):
            verdict = solve(keyed(p, a) + keyed(q, b))
            status = verdict.status
            # an upper bound on spend or quantity, with the other's lines on the same cart: cannot tell
            if status == SAT and any(l.variable in MEASURED_PER_PROMOTION | QUANTITY_VARIABLES and l.operator in
                                     ("less_than", "less_than_or_equal_to", "equal_to") for l in a + b):
                status = MAYBE
            best = max(best, status)
            if best == SAT:
                break
        return best

    # exclusive promotions that never win

    def never_wins(self) -> list[Finding]:
        out = []
        exclusive = [p for p in self.live if p.exclusive]
        for e, f in itertools.permutations(exclusive, 2):
            if self._always_beats(f, e):
                rule = "higher priority" if self.ruleset.exclusive_resolution == "highest_priority" else \
                    f"larger percent ({f.benefits[0].percent}% against {e.benefits[0].percent}%)"
                out.append(self.finding(Check.EXCLUSIVE_NEVER_WINS, [e, f], e, ("stacking", "exclusive"),
                                        f"{e.id} is exclusive and can never win: {f.id}, exclusive too, applies to "
                                        f"every cart {e.id} can apply to and always wins by {rule} "
                                        f"(exclusive_resolution: {self.ruleset.exclusive_resolution}). Remove it "
                                        f"or change its priority, percent or targets.", also=[(f, ("stacking",))]))
        return out

    def _always_beats(self, f: Promotion, e: Promotion) -> bool:
        """The narrow, sound case: `f` gives a discount wherever `e` can apply, and wins every time.
        `f` is automatic (or has `e`'s code), unconditional, unlimited, for all currencies or `e`'s, in a
        window that holds `e`'s, on targets that hold `e`'s (everything, or the same), with one plain
        percent off every unit of them (no cap, no units, no targets of its own); the two never combine.
        Under highest_priority `f` has the higher priority; under best_for_customer `e` too is one plain
        percent off its targets (a cap only lowers it) and `f`'s percent is larger."""
        if f.combines(e) or f.status != "active" or (f.code is not None and f.code != e.code):
            return False
        if f.condition.root is not None or f.limits != type(f.limits)() or len(f.benefits) != 1:
            return False
        if f.currency is not None and f.currency != e.currency:
            return False
        if (f.starts is not None and (e.starts is None or f.starts > e.starts)) or \
                (f.ends is not None and (e.ends is None or f.ends < e.ends)):
            return False
        if not (f.targets.everything or f.targets == e.targets):
            return False
        if {f.stacking_class, e.stacking_class} & self.ruleset.best_per_line:
            return False
        fb = f.benefits[0]
        if not (fb.type == "percent_off" and fb.stage is Stage.ITEM and fb.targets is None and fb.units is None
                and fb.max_discount is None):
            return False
        if self.ruleset.exclusive_resolution == "highest_priority":
            return f.priority > e.priority
        eb = e.benefits
        return len(eb) == 1 and eb[0].type == "percent_off" and eb[0].stage is Stage.ITEM and eb[0].targets is None \
            and eb[0].units is None and eb[0].percent is not None and fb.percent is not None \
            and fb.percent > eb[0].percent

    # the worst case

    def subjects(self) -> list[tuple[str, str]]:
        if self.catalogue is not None:
            return [("category", c) for c in sorted(self.catalogue.categories)] + \
                [("sku", s) for s in sorted(self.catalogue.skus)] + [("brand", b) for b in sorted(self.catalogue.brands)]
        named: set[str] = set()
        for p in self.live:
            for _, t in self.selections(p):
                named |= t.categories | t.exclude_categories
        return [("category", c) for c in sorted(named)] + [("category", "lint-other")]

    def worst_cases(self) -> tuple[tuple[WorstCase, ...], list[Finding]]:
        cases, over = [], []
        limit = self.ruleset.lint.max_discount_percent
        for kind, name in self.subjects():
            line = {**_FRESH, kind: name}
            for currency in sorted(self.ruleset.currencies):
                case = self.worst_case(kind, name, line, currency, limit)
                if case is None:
                    continue
                cases.append(case)
                if case.over:
                    over.append(self.over(case, limit))
        return tuple(cases), over

    def over(self, case: WorstCase, limit: Decimal) -> Finding:
        promotions = [self.ruleset.promotions[i] for i in case.promotions]
        at = promotions[0]
        b = at.benefits[0]
        field_name = next((k for k in ("percent", "amount", "price", "tiers") if getattr(b, k, None)), "type")
        shown = "any other category" if case.name == "lint-other" else f"{case.kind} {case.name}"
        return self.finding(Check.WORST_CASE, promotions, at, ("benefits", b.index, field_name),
                            f"a line of {shown} can get {case.shown_percent}% off in {case.currency}, above the "
                            f"{limit}% allowed: {case.currency} {case.discount} off {case.quantity} × "
                            f"{case.currency} {case.unit_price} from {', '.join(case.promotions)}"
                            + (f" (codes {', '.join(case.codes)})" if case.codes else "")
                            + ". Cap a promotion (max_discount), make one exclusive or add a minimum spend, or raise "
                              "lint.max_discount_percent if that is meant.",
                            also=[(p, ("benefits",)) for p in promotions[1:]])

    def worst_case(self, kind: str, name: str, fields: Mapping[str, Any], currency: str,
                   limit: Decimal) -> WorstCase | None:
        probe = Line("L1", fields["sku"], "line", fields["category"], fields["brand"], "first_party", "physical",
                     Decimal(1), 1)
        relevant = [p for p in sorted(self.live, key=lambda p: p.order)
                    if (p.currency is None or p.currency == currency)
                    and any((b.targets or p.targets).matches(probe) for b in p.benefits)]
        if not relevant:
            return None
        best: WorstCase | None = None
        for scenario in self.scenarios(relevant):
            for unit, quantity in _prices(relevant, currency):
                case = self.measure(kind, name, fields, currency, unit, quantity, scenario, limit)
                if case is not None and (best is None or case.percent > best.percent):
                    best = case
        return best

    def scenarios(self, relevant: list[Promotion]) -> list[dict[str, Any]]:
        """For each promotion, the account, channel, shipping, time and codes that let it and as many of
        the others as can join it (in evaluation order) apply together."""
        out: dict[tuple, dict[str, Any]] = {}
        for first in relevant:
            chosen: list[Keyed] = []
            members: list[Promotion] = []
            start = self.now
            end: datetime | None = None
            for p in [first] + [r for r in relevant if r is not first]:
                p_start = max(start, p.starts) if p.starts else start
                p_end = min([t for t in (end, p.ends) if t is not None], default=None)
                if p_end is not None and p_end <= p_start:
                    continue
                # one that does not combine with a member still joins: it competes, and evaluate() decides
                for alt in (self.alts[p.id] or [()])[:16]:
                    verdict = solve(chosen + keyed(p, alt))
                    if verdict.status != NEVER:
                        chosen += keyed(p, alt)
                        members.append(p)
                        start, end = p_start, p_end
                        break
            verdict = solve(chosen)
            when = _moment(start, end, [leaf for _, leaf in chosen if leaf.variable.startswith("local_")])
            codes = tuple(sorted({m.code for m in members if m.code is not None}))[:20]
            key = (tuple(sorted((k, repr(v)) for k, v in verdict.witness.items() if ":" not in k)), when, codes)
            out.setdefault(key, {"witness": dict(verdict.witness), "now": when, "codes": codes,
                                 "preview": tuple(sorted(m.id for m in members if m.status == "draft"))})
        return list(out.values())

    def measure(self, kind: str, name: str, fields: Mapping[str, Any], currency: str, unit: Decimal, quantity: int,
                scenario: Mapping[str, Any], limit: Decimal) -> WorstCase | None:
        w = scenario["witness"]
        account = {"id": str(w.get("customer_id") or "lint-customer"), "region": str(w.get("region") or "ZZ"),
                   "tier": str(w.get("customer_tier") or "standard"),
                   "segments": sorted(str(s).lower() for s in (w.get("customer_segments") or [])),
                   "order_count": int(w.get("order_count") or 0), "time_zone": "UTC"}
        line: dict[str, Any] = {"id": "L1", "sku": fields["sku"], "name": "lint", "category": fields["category"],
                                "seller": "first_party", "product_type": "physical", "unit_price": str(unit),
                                "quantity": quantity}
        if fields["brand"] is not None:
            line["brand"] = fields["brand"]
        cart: dict[str, Any] = {"id": "lint", "currency": currency, "channel": str(w.get("sales_channel") or "web"),
                                "lines": [line]}
        if w.get("shipping_method"):
            cart["shipping"] = {"method": str(w["shipping_method"]), "price": "0"}
        try:
            trace = evaluate(self.ruleset, cart, account, codes=scenario["codes"], now=scenario["now"],
                             preview=scenario["preview"])
        except PromoError:
            return None
        got = trace.lines[0]
        if got.discount <= 0:
            return None
        percent = got.discount * 100 / got.subtotal
        promotions = tuple(dict.fromkeys(d.promotion for d in sorted(got.discounts, key=lambda d: (-d.amount, d.promotion))))
        codes = tuple(c for c in scenario["codes"]
                      if any(self.ruleset.promotions[i].code == c for i in promotions))
        shown = {"region": account["region"], "tier": account["tier"], "segments": account["segments"],
                 "order_count": account["order_count"], "channel": cart["channel"],
                 "shipping_method": cart.get("shipping", {}).get("method", "")}
        return WorstCase(kind, name, currency, percent, got.discount, unit, quantity, promotions, codes,
                         tuple(sorted(shown.items())), scenario["now"].isoformat(), percent > limit)


def _moment(start: datetime, end: datetime | None, local: list[Leaf]) -> datetime:
    """The first whole hour from `start` (UTC, the synthetic account's zone) within [start, end) at which
    the local date, weekday and hour leaves all pass; `start` when none does within two weeks."""
    first = start.astimezone(timezone.utc)
    if not local:
        return first
    hour = first.replace(minute=0, second=0, microsecond=0)
    if hour < first:
        hour += timedelta(hours=1)
    for step in range(24 * 14):
        t = hour + timedelta(hours=step)
        if end is not None and t >= end:
            break
        values = {"local_date": t.strftime("%Y-%m-%d"), "local_weekday": WEEKDAYS[t.weekday()],
                  "local_hour": Decimal(t.hour)}
        if all(leaf.test(values[leaf.variable], leaf.operand) for leaf in local):
            return t
    return first


MAX_PRICES = 24


def _prices(relevant: list[Promotion], currency: str) -> list[tuple[Decimal, int]]:
    """The (unit price, quantity) pairs worth trying: where each relevant promotion's spend and quantity
    thresholds are just met, where an amount off takes the whole line, where a percent's cap starts to bite,
    and a price far above every amount (where a fixed price for a set gives most)."""
    q = quantum(currency)
    totals: set[Decimal] = set()
    units: set[Decimal] = set()
    quantities = {1}
    for p in relevant:
        money_here = p.currency == currency
        for leaf in p.condition.leaves:
            if leaf.variable in MONEY_VARIABLES and money_here and isinstance(leaf.operand, Decimal):
                totals.add(leaf.operand)
                totals.add(leaf.operand + q)
            elif leaf.variable in QUANTITY_VARIABLES and isinstance(leaf.operand, Decimal):
                quantities.add(int(leaf.operand) + (1 if leaf.operator == "greater_than" else 0))
        for b in p.benefits:
            if b.amount is not None and money_here:
                units.add(b.amount)
            if b.percent is not None and b.max_discount is not None:
                totals.add((b.max_discount * 100 / b.percent).quantize(q, ROUND_CEILING))
            if b.quantity:
                quantities.add(b.quantity)
            if b.buy:
                quantities.add(b.buy + (b.get or 0))
            for tier in b.tiers:
                if b.basis == "eligible_quantity":
                    quantities.add(int(tier.at))
                elif money_here:
                    totals.add(tier.at)
                if tier.amount is not None and money_here:
                    units.add(tier.amount)
    # A minimum spend is measured after earlier discounts: also the spends that still meet it after each
    # percent off (and after all of them together), grossed up.
    percents = sorted({b.percent if b.type != "buy_x_get_y" else b.percent * (b.get or 0) / ((b.buy or 0) + (b.get or 1))
                       for p in relevant for b in p.benefits if b.percent is not None and b.percent < 100})
    kept = Decimal(1)
    for pc in percents:
        kept *= 1 - pc / 100
    for t in list(totals):
        for share in [1 - pc / 100 for pc in percents] + ([kept] if len(percents) > 1 else []):
            totals.add((t / share).quantize(q, ROUND_CEILING))
        for amount in list(units):
            totals.add(t + amount)
    largest = max(totals | units | {Decimal(100)})
    units |= {q * 100, min(largest * 1000, Decimal(10) ** 12)}
    quantities = {n for n in quantities if 1 <= n <= 1000}
    pairs: set[tuple[Decimal, int]] = set()
    for n in sorted(quantities)[:5]:
        for total in sorted(totals)[:MAX_PRICES]:
            pairs.add((max(q, (total / n).quantize(q, ROUND_CEILING)), n))
        for unit in sorted(units)[:MAX_PRICES]:
            pairs.add((max(q, unit), n))
    return sorted(pairs)


def _duration(lead: timedelta) -> str:
    seconds = int(lead.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if v)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "") if (days or time) else "PT0S"
