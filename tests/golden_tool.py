"""Golden cases, produced and compared: what `make golden` and tests/test_golden.py share.

tests/golden/<case>/ holds case.json, cart.json, account.json, optionally its own rules/, and
expected.json (plus refund-<name>.json for each return case.json lists). A case either pins its own
rules/ and keeps the whole trace, or runs against the shop's rules/ and names the promotions it is
about (`"promotions": [ids]` in case.json): its expected.json then keeps only what those promotions
did (`project`), so a new rule file that has nothing to do with them rewrites nothing.

    python -m tests.golden_tool                 # which cases differ, and how (exit 1 if any)
    python -m tests.golden_tool --update        # write them, and say what changed (`make golden`)
    python -m tests.golden_tool --update CASE   # one case, named exactly
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from engine import evaluate, load_ruleset, read_json
from engine.refund import refund
from engine.trace import Trace

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
CASES = sorted(p for p in GOLDEN.iterdir() if (p / "case.json").exists())


def spec_of(case: Path) -> dict[str, Any]:
    spec = json.loads((case / "case.json").read_text("utf-8"))
    if "promotions" in spec and (case / "rules").is_dir():
        raise ValueError(f"{case.name}: a case pins its own rules/ or names the shop's promotions it is "
                         f"about (case.json `promotions`), not both")
    return spec


def rules_of(case: Path, shop: Path | None = None):
    """The case's own rules/, else the shop's (`shop`: another directory standing in for rules/)."""
    return load_ruleset(case / "rules" if (case / "rules").is_dir() else shop or ROOT / "rules")


def run_case(case: Path, shop: Path | None = None) -> Trace:
    spec = spec_of(case)
    return evaluate(rules_of(case, shop), read_json(case / "cart.json"), read_json(case / "account.json"),
                    codes=spec.get("codes", []), now=spec["now"], usage=spec.get("usage"),
                    preview=spec.get("preview", []))


def project(trace: dict[str, Any], promotions: set[str]) -> dict[str, Any]:
    """What the named promotions did in a trace: their applied and not-applied entries, hints, grants and
    shares of each line and shipment, which of them the trace only counts out of scope, and the codes
    entered; not the totals, the rule set's version or the counts of everything else, which any other
    rule file changes."""
    def mine(entries: list[dict]) -> list[dict]:
        return [e for e in entries if e["promotion"] in promotions]

    def shares(records: list[dict] | None) -> list[dict]:
        return [{"id": r["id"], "discounts": mine(r["discounts"])} for r in records or () if mine(r["discounts"])]

    shown = {e["promotion"] for key in ("applied", "not_applied", "grants") for e in trace[key]}
    return {"format": trace["format"], "currency": trace["currency"], "promotions": sorted(promotions),
            "codes": trace["codes"], "applied": mine(trace["applied"]), "not_applied": mine(trace["not_applied"]),
            "hints": mine(trace["hints"]), "grants": mine(trace["grants"]), "lines": shares(trace["lines"]),
            "shipments": shares(trace.get("shipments")),
            "counted_out_of_scope": sorted(promotions - shown)}     # neither applied nor listed


def produce(case: Path, trace: Trace | None = None, shop: Path | None = None) -> dict[str, str]:
    """Each file the case compares (expected.json, refund-<name>.json) and the text the engine gives now."""
    spec = spec_of(case)
    trace = trace or run_case(case, shop)
    full = trace.to_json()
    named = spec.get("promotions")
    out = {"expected.json": full if named is None else
           json.dumps(project(json.loads(full), set(named)), sort_keys=True, indent=2, ensure_ascii=False) + "\n"}
    for r in spec.get("refunds", []):
        result = refund(rules_of(case, shop), json.loads(full), r["returned"], r["now"])
        out[f"refund-{r['name']}.json"] = result.to_json()
    return out


def changes(expected: str, produced: str) -> list[str]:
    """What differs between two golden files, in a reviewer's words: amounts and reasons by promotion,
    totals, hints, counts; then the other top-level fields that changed."""
    old, new = json.loads(expected), json.loads(produced)
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ["the whole file"]
    out: list[str] = []
    seen = {"applied", "not_applied", "totals", "hints", "out_of_scope", "ruleset_version"}
    for key, was, now in _paired(old, new, "applied", lambda a: (a["promotion"], a.get("benefit"))):
        name = key[0] if key[1] is None else f"{key[0]} (benefit {key[1]})"
        if now is None:
            out.append(f"{name}: no longer applies (took {was['amount']})")
        elif was is None:
            out.append(f"{name}: now applies, takes {now['amount']}")
        elif was["amount"] != now["amount"]:
            out.append(f"{name}: takes {now['amount']} instead of {was['amount']}")
    for pid, was, now in _paired(old, new, "not_applied", lambda n: n["promotion"]):
        if now is None:
            out.append(f"{pid}: no longer listed as not applied ({was['reason']})")
        elif was is None:
            out.append(f"{pid}: now not applied: {now['reason']}")
        elif was["reason"] != now["reason"]:
            out.append(f"{pid}: {was['reason']} -> {now['reason']}")
        elif was != now:
            out.append(f"{pid}: still {now['reason']}, its details changed")
    for key in sorted(set(old.get("totals", {})) | set(new.get("totals", {}))):
        a, b = old.get("totals", {}).get(key), new.get("totals", {}).get(key)
        if a != b:
            out.append(f"totals.{key}: {a} -> {b}")
    old_hints = {h["message"] for h in old.get("hints", [])}
    new_hints = {h["message"] for h in new.get("hints", [])}
    out += [f"hint gone: {h}" for h in sorted(old_hints - new_hints)]
    out += [f"new hint: {h}" for h in sorted(new_hints - old_hints)]
    if old.get("out_of_scope") != new.get("out_of_scope"):
        out.append(f"out_of_scope: {old.get('out_of_scope')} -> {new.get('out_of_scope')}")
    if old.get("ruleset_version") != new.get("ruleset_version"):
        out.append("ruleset_version changed (the rule files' bytes)")
    other = sorted(k for k in old.keys() | new.keys() if k not in seen and old.get(k) != new.get(k))
    if other:
        out.append(f"also changed: {', '.join(other)}")
    return out or ["the same data, written differently"]


def _paired(old: dict, new: dict, field: str, key: Callable[[dict], Any]) -> Iterator[tuple[Any, Any, Any]]:
    """Each key of the entries of `field` in either file, in order, with its entry before and after
    (None where that file has none)."""
    before = {key(e): e for e in old.get(field, [])}
    after = {key(e): e for e in new.get(field, [])}
    for k in sorted(before.keys() | after.keys(), key=str):
        yield k, before.get(k), after.get(k)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden_tool", description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="write the files that differ")
    parser.add_argument("cases", nargs="*", help="case names, exactly (default: every case)")
    args = parser.parse_args(argv)
    by_name = {c.name: c for c in CASES}
    unknown = [n for n in args.cases if n not in by_name]
    if unknown:
        print(f"golden: no case named {', '.join(unknown)}", file=sys.stderr)
        return 2
    chosen = [by_name[n] for n in args.cases] if args.cases else CASES
    changed = 0
    for case in chosen:
        for name, produced in produce(case).items():
            path = case / name
            expected = path.read_text("utf-8") if path.exists() else None
            if expected == produced:
                continue
            changed += 1
            what = ["new file"] if expected is None else changes(expected, produced)
            print(f"{case.name}/{name}:")
            for line in what:
                print(f"  - {line}")
            if args.update:
                path.write_text(produced, "utf-8")
    verb = "written" if args.update else "differ (not written: `make golden` writes them)"
    print(f"{changed} golden file{'s' if changed != 1 else ''} of {len(chosen)} case{'s' if len(chosen) != 1 else ''} "
          f"{verb}." + (" Review `git diff tests/golden` before committing." if changed and args.update else ""))
    return 1 if changed and not args.update else 0


if __name__ == "__main__":
    raise SystemExit(main())
