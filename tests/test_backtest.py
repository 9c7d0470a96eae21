"""Backtesting a rule change (engine/backtest.py) and `promo diff` (engine/backtest_cli.py)."""
from __future__ import annotations

import io
import json
import random
import shutil
import sys
from collections import Counter, defaultdict
from decimal import Decimal
from functools import reduce
from pathlib import Path

import pytest

from engine import evaluate, load_ruleset
from engine.backtest import HISTOGRAM_EDGES, DiffSummary, bin_range, compare, delta_bin, diff
from engine.cli import main
from engine.corpus import CorpusEntry, CorpusError, read_corpus

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
def _status(trace, ruleset, pid):
    if pid not in ruleset.promotions:
        return "absent", Decimal(0), Decimal(0)
    discount = sum((a.amount for a in trace.applied if a.promotion == pid), Decimal(0))
    granted = sum((g.amount for g in trace.grants if g.promotion == pid), Decimal(0))
    if any(a.promotion == pid for a in trace.applied) or any(g.promotion == pid for g in trace.grants):
        return "applied", discount, granted
    reasons = [n.reason.value for n in trace.not_applied if n.promotion == pid]
    return (reasons[0] if reasons else "out_of_scope"), Decimal(0), Decimal(0)


def _plain_loop(base, head, path: Path, top_n: int) -> dict:
    """What `promo diff --json` must say, worked out with nothing but evaluate() and both rule sets."""
    carts = changed = 0
    before, after = defaultdict(Decimal), defaultdict(Decimal)
    promotions: dict = {}
    reasons: Counter = Counter()
    moved = []
    ids = sorted(set(base.promotions) | set(head.promotions))
    for line, raw in enumerate(path.read_text().splitlines(), start=1):
        doc = json.loads(raw)
        b = evaluate(base, doc["cart"], doc["account"], codes=doc["codes"], now=doc["now"])
        h = evaluate(head, doc["cart"], doc["account"], codes=doc["codes"], now=doc["now"])
        carts += 1
        cur = b.currency
        before[cur] += b.totals.discount
        after[cur] += h.totals.discount
        changed += b.totals.discount != h.totals.discount
        touched = False
        for pid in ids:
            x, y = _status(b, base, pid), _status(h, head, pid)
            if x == y or (x[0] == "absent" and y[0] != "applied") or (y[0] == "absent" and x[0] != "applied"):
                continue
            touched = True
            p = promotions.setdefault(pid, {"carts": 0, "discount_before": defaultdict(Decimal),
                                            "discount_after": defaultdict(Decimal),
                                            "granted_before": defaultdict(Decimal),
                                            "granted_after": defaultdict(Decimal)})
            p["carts"] += 1
            p["discount_before"][cur] += x[1]
            p["discount_after"][cur] += y[1]
            p["granted_before"][cur] += x[2]
            p["granted_after"][cur] += y[2]
            if x[0] != y[0]:
                reasons[(pid, x[0], y[0])] += 1
        if touched or b.totals.discount != h.totals.discount:
            delta = h.totals.discount - b.totals.discount
            moved.append((-abs(delta), doc["id"], line, cur, b.totals.discount, h.totals.discount))
    moved.sort()
    return {"carts": carts, "changed": changed, "before": dict(before), "after": dict(after),
            "promotions": promotions, "reasons": dict(reasons), "top": moved[:top_n]}


def test_diff_on_a_small_corpus_equals_a_plain_loop_over_evaluate_with_both_rule_sets(head, corpus, capsys) -> None:
    base, changed = load_ruleset(RULES), load_ruleset(head)
    want = _plain_loop(base, changed, corpus, 7)
    assert main(["diff", "--base", str(RULES), "--head", str(head), "--carts", str(corpus), "--json",
                 "--top", "7"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["carts"] == want["carts"] == 400 and got["changed"] == want["changed"] > 0 and got["skipped"] == 0
    assert got["discount_before"] == {c: f"{v:f}" for c, v in want["before"].items()}
    assert got["discount_after"] == {c: f"{v:f}" for c, v in want["after"].items()}
    assert got["discount_delta"] == {c: f"{want['after'][c] - want['before'][c]:f}" for c in want["before"]}
    assert set(got["by_promotion"]) == set(want["promotions"]) | {"books-500-off-over-3000", "toys-200-off-each",
                                                                   "garden-100-off-each"}
    for pid, p in want["promotions"].items():
        g = got["by_promotion"][pid]
        assert g["carts"] == p["carts"]
        for key in ("discount_before", "discount_after", "granted_before", "granted_after"):
            assert g[key] == {c: f"{v:f}" for c, v in p[key].items()}, (pid, key)
    kinds = {pid: p["change"] for pid, p in got["by_promotion"].items()}
    assert kinds["books-500-off-over-3000"] == "changed" and kinds["toys-200-off-each"] == "removed"
    assert kinds["garden-100-off-each"] == "added"
    assert {(r["promotion"], r["before"], r["after"]): r["carts"] for r in got["reasons_changed"]} == want["reasons"]
    assert ("books-500-off-over-3000", "applied", "min_spend_not_met") in want["reasons"]
    assert [(t["id"], t["line"], t["currency"], t["discount_before"], t["discount_after"]) for t in got["top"]] == \
        [(i, line, c, f"{b:f}", f"{a:f}") for _, i, line, c, b, a in want["top"]]


def test_merging_the_summaries_of_any_split_of_the_corpus_gives_the_one_pass_summary(head, corpus) -> None:
    base, changed = load_ruleset(RULES), load_ruleset(head)
    entries = list(read_corpus(corpus))[:150]
    whole = diff(base, changed, entries, top_n=5)
    r = random.Random(3)
    for _ in range(4):
        shuffled = entries[:]
        r.shuffle(shuffled)
        cuts = sorted(r.sample(range(1, len(shuffled)), 4))
        parts = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)])]
        summaries = [diff(base, changed, part, top_n=5) for part in parts]
        r.shuffle(summaries)
        assert reduce(DiffSummary.merge, summaries) == whole
        a, b, c = summaries[:3]
        assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert whole.merge(DiffSummary(top_n=5)) == whole


def test_the_delta_histogram_counts_every_cart_once_in_fixed_bins_and_merges_associatively(head, corpus) -> None:
    base, changed = load_ruleset(RULES), load_ruleset(head)
    entries = list(read_corpus(corpus))
    carts = [compare(base, changed, e) for e in entries]
    want = Counter((c.currency, delta_bin(c.delta)) for c in carts)
    whole = diff(base, changed, entries)
    assert {(cur, b): n for cur, bins in whole.histogram for b, n in bins} == want
    assert len({b for _, b in want}) > 2           # the change moves carts into more than one bin
    a, b, c = (diff(base, changed, entries[i::3]) for i in range(3))
    assert a.merge(b).merge(c).histogram == a.merge(b.merge(c)).histogram == c.merge(a).merge(b).histogram \
        == whole.histogram
    bins = whole.to_dict()["delta_histogram"]
    assert sum(x["carts"] for v in bins.values() for x in v) == whole.carts
    assert all(len(v) <= 2 * len(HISTOGRAM_EDGES) + 1 for v in bins.values())


@pytest.mark.parametrize("delta, low, high", [("0", "0", "0"), ("1", "1", "2"), ("1.99", "1", "2"), ("-500", "-1000", "-500"),
                                              ("0.001", "0.001", "0.002"), ("7E15", "5000000000000", None),
                                              ("-7E15", None, "-5000000000000")])
def test_a_discount_change_falls_in_the_bin_whose_edges_hold_it(delta, low, high) -> None:
    assert bin_range(delta_bin(Decimal(delta))) == (low, high)


def _corpus_with(tmp_path: Path, corpus: Path, bad: bytes, at: int = 3) -> Path:
    lines = corpus.read_bytes().splitlines(keepends=True)[:10]
    lines.insert(at - 1, bad)
    out = tmp_path / "bad.jsonl"
    out.write_bytes(b"".join(lines))
    return out


def test_a_corrupt_line_stops_the_run_with_its_line_number(tmp_path: Path, head, corpus, capsys) -> None:
    bad = _corpus_with(tmp_path, corpus, b'{"cart": {}, \n')
    assert main(["diff", "--base", str(RULES), "--head", str(head), "--carts", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "line 3" in err and "not valid JSON" in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_corrupt_line_is_counted_and_skipped_when_asked(tmp_path: Path, head, corpus, capsys) -> None:
    bad = _corpus_with(tmp_path, corpus, b'{"cart": {}, \n')
    assert main(["diff", "--base", str(RULES), "--head", str(head), "--carts", str(bad), "--on-error", "skip",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["carts"] == 10 and got["skipped"] == 1 and "line 3" in got["errors"][0]


def test_a_cart_evaluate_refuses_is_a_bad_line_naming_the_field(head, corpus) -> None:
    doc = json.loads(corpus.read_text().splitlines()[0])
    doc["cart"]["currency"] = "EUR"
    entry = CorpusEntry(line=9, id=None, cart=doc["cart"], account=doc["account"], codes=(), now=doc["now"])
    with pytest.raises(CorpusError) as caught:
        diff(load_ruleset(RULES), load_ruleset(head), [entry])
    assert caught.value.line == 9 and caught.value.field == "$.cart.currency"
    skipped = diff(load_ruleset(RULES), load_ruleset(head), [entry], on_error="skip")
    assert skipped.carts == 0 and skipped.skipped == 1


def test_the_readable_report_lists_totals_promotions_and_top_carts(head, corpus, capsys) -> None:
    assert main(["diff", "--base", str(RULES), "--head", str(head), "--carts", str(corpus), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "400 carts" in out and "JPY" in out and "toys-200-off-each (removed)" in out
    assert "books-500-off-over-3000: applied -> min_spend_not_met" in out and "Most changed carts (top 3)" in out


@pytest.mark.parametrize("what, words, code", [
    ("missing", "cannot read", 1),
    ("directory", "is a directory", 1),
    ("empty", "is empty", 1),
    ("blank", "has no carts", 1),
    ("huge", "1 MiB", 1),
    ("no-base", "rule directory not found", 1),
    ("top", "--top", 2),
])
def test_bad_input_to_promo_diff_is_one_clear_line(what, words, code, tmp_path: Path, head, corpus,
                                                   capsys) -> None:
    carts = {"missing": tmp_path / "nope.jsonl", "directory": tmp_path}.get(what, tmp_path / "c.jsonl")
    if what == "empty":
        carts.write_bytes(b"")
    elif what == "blank":
        carts.write_bytes(b"\n  \n")
    elif what == "huge":
        carts.write_bytes(b'{"id": "' + b"x" * (1024 * 1024 + 1) + b'"}\n')
    else:
        carts = carts if what in ("missing", "directory") else corpus
    base = tmp_path / "nowhere" if what == "no-base" else RULES
    args = ["diff", "--base", str(base), "--head", str(head), "--carts", str(carts)]
    assert main([*args, *(["--top", "-1"] if what == "top" else [])]) == code
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_bad_rule_set_is_printed_as_promo_validate_prints_it(tmp_path: Path, corpus, capsys) -> None:
    broken = tmp_path / "rules"
    shutil.copytree(RULES, broken)
    (broken / "toys-200-off-each.yaml").write_text("id: toys-200-off-each\nstatus: sometimes\n")
    assert main(["diff", "--base", str(RULES), "--head", str(broken), "--carts", str(corpus)]) == 1
    err = capsys.readouterr().err
    assert "toys-200-off-each.yaml:" in err and "Traceback" not in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_is_drawn_on_a_terminal_only_and_changes_nothing(head, corpus, capsys, monkeypatch) -> None:
    args = ["diff", "--base", str(RULES), "--head", str(head), "--carts", str(corpus), "--json"]
    assert main(args) == 0
    plain = capsys.readouterr()
    assert plain.err == ""                                   # not a terminal: no bar
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(args) == 0
    assert capsys.readouterr().out == plain.out
    assert "carts/s" in terminal.getvalue() and "400" in terminal.getvalue()


def test_the_bar_counts_the_corpus_lines_when_that_is_cheap(tmp_path) -> None:
    from engine import backtest_cli
    (tmp_path / "c.jsonl").write_bytes(b"{}\n\n{}")
    assert backtest_cli.count_lines(str(tmp_path / "c.jsonl")) == 3
    assert backtest_cli.count_lines(str(tmp_path / "missing.jsonl")) is None


def test_a_report_over_the_corpus_itself_is_refused_and_the_corpus_kept(tmp_path: Path, head, corpus, capsys) -> None:
    carts = tmp_path / "carts.jsonl"
    carts.write_bytes(corpus.read_bytes())
    (tmp_path / "other-name.jsonl").symlink_to(carts)
    for report in (carts, tmp_path / "." / "carts.jsonl", tmp_path / "other-name.jsonl"):
        assert main(["diff", "--base", str(RULES), "--head", str(head), "--carts", str(carts),
                     "--report", str(report)]) == 1
        err = capsys.readouterr().err
        assert "is the corpus --carts names" in err and err.count("\n") == 1
    assert carts.read_bytes() == corpus.read_bytes() and (tmp_path / "other-name.jsonl").is_symlink()


def test_an_input_error_without_problems_is_still_a_bad_line_not_an_index_error(monkeypatch, corpus) -> None:
    from engine import backtest
    from engine.errors import InputError

    def refuses(*args, **kwargs):
        raise InputError([])
    monkeypatch.setattr(backtest, "evaluate", refuses)
    [entry] = list(read_corpus(corpus))[:1]
    with pytest.raises(CorpusError) as caught:
        compare(load_ruleset(RULES), load_ruleset(RULES), entry)
    assert caught.value.line == 1 and caught.value.field == "$" and "0 problems" in caught.value.message
