"""The hostile corpus (issue 10 item 8): what an attacker tries against rule files, settings, carts, accounts,
codes, traces, the ledger and the `promo` command, kept as data in tests/hostile/*.yaml. Every case holds four
properties: our own error type (with the ledger's reason, or the CLI's exit code), a location (file:line and
JSON path, a JSON path, a reason and field), a bounded time, and nothing changed (inputs, rule files,
ledger tables on SQLite and PostgreSQL, the CLI's working directory).

One loader per area, one runner per kind of target, one shared assertion (tests/hostile_support.py).
The base documents (tests/hostile/base.yaml) are checked to be accepted cleanly, so each case tests its one change.
"""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import InputError, RuleFileError, evaluate, load_ruleset
from engine.ledger import Ledger, LedgerError, ReservationRefused
from engine.refund import refund

from .hostile_support import (CLI_MAX_STDERR_LINES, CLI_TIME_LIMIT, assert_case, base, build, load_area, patch,
                              snapshot, timed, tree_snapshot, base_commands)

ERRORS = {"RuleFileError": RuleFileError, "InputError": InputError, "LedgerError": LedgerError,
          "ReservationRefused": ReservationRefused, None: type(None)}
BASE = base()
SECRET = "payment_api_key=SECRET-hostile-7f3a-hunter2"   # a plain scalar: a careless message would echo it
AREAS = ["rule_files", "settings", "carts", "accounts", "codes", "traces", "ledger", "cli"]
CASES = {area: load_area(area) for area in AREAS}


def ids(cases):
    return [c["id"] for c in cases]


# --- rule files and _settings.yaml ------------------------------------------------------------------------

def write_rules(root: Path, case: dict | None) -> Path:
    """A temp rules dir: the base rule set, then the case's one file (text, edit, symlink, sparse, ...)."""
    rules = root / "rules"
    rules.mkdir()
    for name, text in BASE["rules"].items():
        (rules / name).write_text(text, "utf-8")
    if case is None:
        return rules
    name = case.get("file", "books-500-off.yaml")
    target = rules / name
    original = BASE["rules"].get(name)
    if "text" in case:
        target.write_bytes(case["text"].encode("utf-8", "surrogatepass"))
    elif "replace" in case:
        text = original
        for old, new in case["replace"]:
            assert old in text, f"{case['id']}: {old!r} is not in the base {name}: the case tests nothing"
            text = text.replace(old, new if isinstance(new, str) else build(new), 1)
        target.write_bytes(text.encode("utf-8", "surrogatepass"))
    elif "append" in case:
        target.write_text(original + case["append"], "utf-8")
    elif "build" in case:
        target.write_bytes(build(case["build"]).encode("utf-8", "surrogatepass"))
    elif "bytes_hex" in case:
        target.write_bytes(bytes.fromhex(case["bytes_hex"]))
    elif "symlink" in case:
        outside = root / "outside"
        outside.mkdir(exist_ok=True)
        if case["symlink"] == "missing":
            real = outside / "no-such-file.yaml"
        elif case["symlink"] == "secrets":
            real = outside / "secrets.txt"
            real.write_text(SECRET + "\nsecond line\n")
        else:   # a valid promotion, with the link's id, kept outside the rules dir
            real = outside / name
            real.write_text(BASE["rules"]["books-500-off.yaml"].replace("id: books-500-off", f"id: {target.stem}"))
        target.unlink(missing_ok=True)
        target.symlink_to(real)
    elif "sparse" in case:
        with open(target, "wb") as handle:
            handle.truncate(case["sparse"])           # a hole: nothing is written
        assert os.stat(target).st_blocks * 512 < 1 << 20, "the sparse file is not sparse"
    elif "directory" in case:
        target.mkdir()
    elif "delete" in case:
        target.unlink()
    else:
        raise AssertionError(f"{case['id']}: says nothing about its file")
    for other, text in case.get("also", {}).items():
        (rules / other).write_text(text, "utf-8")
    return rules


def test_the_base_rule_set_loads_cleanly(tmp_path):
    rules = load_ruleset(write_rules(tmp_path, None))
    assert set(rules.promotions) == {"books-500-off", "welcome", "spring-pool", "spring-draft"}


RULE_CASES = CASES["rule_files"] + CASES["settings"]


@pytest.mark.parametrize("case", RULE_CASES, ids=ids(RULE_CASES))
def test_hostile_rule_file(case, tmp_path):
    expect = dict(case["expect"], located=True)
    assert {"file", "path"} <= set(expect), f"{case['id']}: a rule file case names its file and JSON path"
    if case.get("symlink") == "secrets":
        expect.setdefault("message_excludes", []).append(SECRET)
    rules = write_rules(tmp_path, case)
    before = tree_snapshot(tmp_path)
    _, error, seconds = timed(lambda: load_ruleset(rules))
    assert_case(case, error, seconds, [("the rule files", before, tree_snapshot(tmp_path))], expect, ERRORS)


# --- evaluate(): carts, accounts, codes, now, usage, preview ---------------------------------------------------

RULES = None


def rules():
    global RULES
    if RULES is None:
        import tempfile
        with tempfile.TemporaryDirectory() as root:
            RULES = load_ruleset(write_rules(Path(root), None))
    return RULES


def call_evaluate(doc: dict):
    return evaluate(rules(), doc["cart"], doc["account"], codes=doc["codes"], now=doc["now"], usage=doc["usage"],
                    preview=doc["preview"])


def test_the_base_evaluation_is_accepted_and_uses_every_tender():
    trace = call_evaluate(BASE["evaluate"]).to_dict()
    assert [a["promotion"] for a in trace["applied"]] == ["welcome", "books-500-off"]
    assert [t["kind"] for t in trace["tenders"]["used"]] == ["promotional_balance", "gift_card", "points"]


EVALUATE_CASES = CASES["carts"] + CASES["accounts"] + CASES["codes"]


@pytest.mark.parametrize("case", EVALUATE_CASES, ids=ids(EVALUATE_CASES))
def test_hostile_evaluate_input(case):
    doc = patch(BASE["evaluate"], case["patch"])
    before = snapshot(doc)
    _, error, seconds = timed(lambda: call_evaluate(doc))
    assert_case(case, error, seconds, [("the inputs", before, snapshot(doc))], case["expect"], ERRORS)


# --- traces: refund() and Ledger.reserve() ---------------------------------------------------------------------

def trace_of(inputs_patch: list | None = None) -> dict:
    return call_evaluate(patch(BASE["evaluate"], inputs_patch or [])).to_dict()


def refund_call(case: dict | None) -> dict:
    doc = {"trace": trace_of(case and case.get("inputs_patch")), **BASE["refund"]}
    return patch(doc, case.get("patch", [])) if case else doc


def test_the_base_refund_is_accepted():
    doc = refund_call(None)
    assert refund(rules(), doc["trace"], doc["returned"], doc["now"]).refund > 0


TRACE_RUNS = [(c, target) for c in CASES["traces"] for target in ("refund", "reserve") if target in c["expect"]]


@pytest.mark.parametrize("case, target", [pytest.param(c, t, id=f"{c['id']}-{t}") for c, t in TRACE_RUNS
                                          if t == "refund"])
def test_hostile_trace_refund(case, target):
    doc = refund_call(case)
    before = snapshot(doc)
    _, error, seconds = timed(lambda: refund(rules(), doc["trace"], doc["returned"], doc["now"]))
    assert_case(case, error, seconds, [("the trace and returns", before, snapshot(doc))], case["expect"]["refund"],
                ERRORS)


# --- the ledger -------------------------------------------------------------------------------------------------

CONTRACT_SETUP = {"credit_lot", "load_gift_card", "set_points"}   # balances API of /work/notes/ledger-contract.md


def open_ledger(db) -> Ledger:
    extra = {"max_clock_skew": None} if "max_clock_skew" in inspect.signature(Ledger).parameters else {}
    return Ledger(db, rules(), actor="hostile", **extra)


def resolve(args: dict) -> dict:
    """A call's arguments with `trace: base` / `trace: setup` replaced by the trace itself."""
    args = dict(args)
    if args.get("trace") == "base":
        args["trace"] = trace_of()
    elif args.get("trace") == "setup":
        args["trace"] = trace_of(BASE["ledger"]["setup_inputs_patch"])
    return args


def set_up(ledger: Ledger) -> None:
    for step in BASE["ledger"]["setup"]:
        if step["call"] in CONTRACT_SETUP and not hasattr(ledger, step["call"]):
            continue      # the balances API has not landed: test_the_ledger_has_the_balances_api fails for it
        getattr(ledger, step["call"])(**resolve(step["args"]))


def dump(ledger: Ledger) -> dict:
    from sqlalchemy import select
    from engine.ledger.store import TABLES, reading
    with reading(ledger.engine) as conn:
        return {t.name: sorted((tuple(r) for r in conn.execute(select(t))), key=repr) for t in TABLES}


def run_ledger_case(ledger_db, case: dict, method: str, doc: dict, expect: dict) -> None:
    ledger = open_ledger(ledger_db)
    try:
        set_up(ledger)
        for step in case.get("setup", []):
            getattr(ledger, step["call"])(**resolve(step["args"]))
        tables, args = dump(ledger), snapshot(doc)
        _, error, seconds = timed(lambda: getattr(ledger, method)(**doc))
        assert_case(case, error, seconds, [("the arguments", args, snapshot(doc)), ("the ledger's tables", tables,
                                                                                     dump(ledger))], expect, ERRORS)
    finally:
        ledger.close()


def test_the_ledger_has_the_balances_api():
    missing = sorted(name for name in CONTRACT_SETUP | {"account_balances", "adjust_gift_card", "add_points"}
                     if not hasattr(Ledger, name))
    assert not missing, f"Ledger lacks {missing} (/work/notes/ledger-contract.md)"


@pytest.mark.parametrize("method", sorted(BASE["ledger"]["calls"]))
def test_each_base_ledger_call_is_accepted(ledger_db, method):
    ledger = open_ledger(ledger_db)
    try:
        set_up(ledger)
        if method not in CONTRACT_SETUP | {"add_points"} or hasattr(ledger, method):
            getattr(ledger, method)(**resolve(BASE["ledger"]["calls"][method]))
    finally:
        ledger.close()


@pytest.mark.parametrize("case, target", [pytest.param(c, t, id=f"{c['id']}-{t}") for c, t in TRACE_RUNS
                                          if t == "reserve"])
def test_hostile_trace_reserve(ledger_db, case, target):
    doc = {**resolve(BASE["ledger"]["calls"]["reserve"]), "trace": trace_of(case.get("inputs_patch"))}
    run_ledger_case(ledger_db, case, "reserve", patch(doc, case.get("patch", [])), case["expect"]["reserve"])


@pytest.mark.parametrize("case", CASES["ledger"], ids=ids(CASES["ledger"]))
def test_hostile_ledger_call(ledger_db, case):
    doc = resolve(BASE["ledger"]["calls"][case["call"]])
    run_ledger_case(ledger_db, case, case["call"], patch(doc, case.get("patch", [])), case["expect"])


# --- the promo command ------------------------------------------------------------------------------------------

def cli_dir(root: Path, files: dict) -> Path:
    """A working directory: rules/, cart.json, account.json, trace.json, an initialised ledger.db, then the case's
    files (a JSON patch on a base file, text, bytes, a built text, a directory, or a deletion)."""
    from engine.ledger.store import make_engine, migrate
    write_rules(root, None)
    docs = {"cart.json": BASE["evaluate"]["cart"], "account.json": BASE["evaluate"]["account"],
            "trace.json": trace_of()}
    for name, doc in docs.items():
        (root / name).write_text(json.dumps(doc, indent=1), "utf-8")
    creating = {"create": True} if "create" in inspect.signature(make_engine).parameters else {}
    engine = make_engine(str(root / "ledger.db"), **creating)   # a file is created only when asked for
    migrate(engine)
    engine.dispose()
    for name, spec in files.items():
        path = root / name
        if "json_patch" in spec:
            doc = patch(docs[name], spec["json_patch"])
            path.write_text(json.dumps(doc, ensure_ascii=spec.get("ascii", True)), "utf-8")
        elif "text" in spec:
            path.write_bytes(spec["text"].encode("utf-8", "surrogatepass"))
        elif "build" in spec:
            path.write_bytes(build(spec["build"]).encode("utf-8", "surrogatepass"))
        elif "bytes_hex" in spec:
            path.write_bytes(bytes.fromhex(spec["bytes_hex"]))
        elif "mkdir" in spec:
            path.mkdir()
        elif "delete" in spec:
            path.unlink()
        else:
            raise AssertionError(f"unknown file spec {spec!r}")
    return root


def run_promo(root: Path, argv: list[str]):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "engine.cli", *argv], cwd=root, capture_output=True, text=True,
                          errors="replace", timeout=CLI_TIME_LIMIT * 3, env=dict(os.environ, COLUMNS="120"))
    return done, time.perf_counter() - start


CLI = CASES["cli"]


@pytest.mark.parametrize("argv", base_commands(), ids=lambda a: " ".join(a[:2]))
def test_each_base_command_succeeds(tmp_path, argv):
    done, _ = run_promo(cli_dir(tmp_path, {}), argv)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("case", CLI, ids=ids(CLI))
def test_hostile_cli(tmp_path, case):
    root = cli_dir(tmp_path, case.get("files", {}))
    before = tree_snapshot(root)
    done, seconds = run_promo(root, [a if isinstance(a, str) else build(a) for a in case["argv"]])
    expect, wrong = case["expect"], []
    if done.returncode != expect["exit"]:
        wrong.append(f"exit {done.returncode}, expected {expect['exit']}")
    if "Traceback" in done.stderr:
        wrong.append("a Traceback on stderr: " + done.stderr.strip().splitlines()[-1][:300])
    if len(done.stderr.splitlines()) > CLI_MAX_STDERR_LINES or len(done.stderr) > 4000:
        wrong.append(f"stderr is {len(done.stderr.splitlines())} lines, {len(done.stderr)} characters")
    for fragment in expect.get("stderr_includes", []):
        if fragment not in done.stderr:
            wrong.append(f"stderr lacks {fragment!r}: {done.stderr.strip()[:300]!r}")
    for fragment in expect.get("stdout_includes", []):
        if fragment not in done.stdout:
            wrong.append(f"stdout lacks {fragment!r}")
    if seconds > CLI_TIME_LIMIT:
        wrong.append(f"took {seconds:.1f} s (bound {CLI_TIME_LIMIT} s)")
    after = tree_snapshot(root)
    if after != before:
        wrong.append("files changed: " + ", ".join(sorted(k for k in set(after) | set(before)
                                                          if after.get(k) != before.get(k))))
    if wrong:
        raise AssertionError(f"{case['id']} ({case['description'].strip()}):\n  " + "\n  ".join(wrong))


def test_the_corpus_has_at_least_200_cases():
    counts = {area: len(cases) for area, cases in CASES.items()}
    assert sum(counts.values()) >= 200, counts
