"""The cart corpus (engine/corpus.py), its generator (engine/cartgen.py) and `promo carts`
(engine/corpus_cli.py)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine import evaluate, load_ruleset
from engine.cartgen import generate
from engine.cli import main
from engine.corpus import MAX_LINE_BYTES, CorpusEntry, CorpusError, read_corpus, read_stream

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
NOW = "2026-11-21T10:00:00+09:00"
CART = {"id": "c1", "currency": "JPY", "channel": "web",
        "lines": [{"id": "L1", "sku": "B1", "category": "books", "seller": "first_party", "product_type": "physical",
                   "unit_price": "1500", "quantity": 2}]}
ACCOUNT = {"id": "a1", "region": "JP", "tier": "standard", "order_count": 3, "time_zone": "Asia/Tokyo"}


@pytest.fixture(scope="module")
def ruleset():
    return load_ruleset(RULES)


def _line(**fields) -> bytes:
    return (json.dumps(fields) + "\n").encode()


def _read(data: bytes) -> list:
    return list(read_stream(io.BytesIO(data), "corpus.jsonl"))


def test_a_good_line_is_an_entry_with_its_line_number_and_id() -> None:
    [entry] = _read(b"\n" + _line(cart=CART, account=ACCOUNT, now=NOW, codes=["WELCOME"], id="x"))
    assert entry == CorpusEntry(line=2, id="x", cart=CART, account=ACCOUNT, codes=("WELCOME",), now=NOW)
    assert entry.label == "x"


@pytest.mark.parametrize("raw, field, words", [
    (b"{not json\n", "$", "not valid JSON"),
    (b"[1, 2]\n", "$", "JSON object"),
    (b'{"cart": {}, "cart": {}}\n', "$", "duplicate key"),
    (b'{"cart": {}, "account": {}, "now": NaN}\n', "$", "NaN"),
    (_line(cart=CART, account=ACCOUNT), "$.now", "missing"),
    (_line(account=ACCOUNT, now=NOW), "$.cart", "missing"),
    (_line(cart=CART, account=ACCOUNT, now=NOW, usage={}), "$.usage", "unknown key"),
    (_line(cart=[], account=ACCOUNT, now=NOW), "$.cart", "JSON object"),
    (_line(cart=CART, account=ACCOUNT, now=NOW, codes="WELCOME"), "$.codes", "list"),
    (_line(cart=CART, account=ACCOUNT, now=NOW, id=""), "$.id", "empty"),
    (b"[" * 40 + b"]" * 40 + b"\n", "$", "nested deeper"),
])
def test_a_bad_line_is_an_error_naming_its_line_number_and_field(raw: bytes, field: str, words: str) -> None:
    good = _line(cart=CART, account=ACCOUNT, now=NOW)
    items = _read(good + raw + good)
    assert isinstance(items[0], CorpusEntry) and isinstance(items[2], CorpusEntry) and items[2].line == 3
    error = items[1]
    assert isinstance(error, CorpusError) and error.line == 2 and error.field == field
    assert words in error.message and "line 2" in str(error)


def test_a_line_over_one_mebibyte_is_an_error_and_the_next_line_is_still_read() -> None:
    huge = b'{"cart": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}\n'
    items = _read(huge + _line(cart=CART, account=ACCOUNT, now=NOW))
    assert isinstance(items[0], CorpusError) and items[0].line == 1 and "1 MiB" in items[0].message
    assert isinstance(items[1], CorpusEntry) and items[1].line == 2


def test_the_generator_gives_the_same_bytes_for_the_same_seed(tmp_path: Path, capsys) -> None:
    for name in ("a", "b"):
        assert main(["carts", "generate", "--rules", str(RULES), "--count", "200", "--seed", "42",
                     "--out", str(tmp_path / f"{name}.jsonl")]) == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert main(["carts", "generate", "--rules", str(RULES), "--count", "200", "--seed", "43",
                 "--out", str(tmp_path / "c.jsonl")]) == 0
    assert (tmp_path / "c.jsonl").read_bytes() != (tmp_path / "a.jsonl").read_bytes()
    assert all(isinstance(e, CorpusEntry) for e in read_corpus(tmp_path / "a.jsonl"))


def test_every_generated_line_evaluates_and_the_corpus_exercises_the_rule_set(ruleset) -> None:
    applied, reasons, currencies = set(), set(), set()
    for entry in generate(ruleset, 3000, 11):
        trace = evaluate(ruleset, entry["cart"], entry["account"], codes=entry["codes"], now=entry["now"])
        applied |= {a.promotion for a in trace.applied} | {g.promotion for g in trace.grants}
        reasons |= {n.reason.value for n in trace.not_applied}
        currencies.add(trace.currency)
    active = {pid for pid, p in ruleset.promotions.items() if p.status == "active"}
    assert applied == active
    assert {"min_spend_not_met", "not_started", "expired"} <= reasons    # near misses and window edges
    assert currencies == set(ruleset.currencies)


def _trace_file(tmp_path: Path, name: str, compact: bool = False) -> Path:
    cart, account = tmp_path / f"{name}-cart.json", tmp_path / f"{name}-account.json"
    cart.write_text(json.dumps(CART)), account.write_text(json.dumps(ACCOUNT))
    out = tmp_path / f"{name}.json"
    import contextlib
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["evaluate", "--rules", str(RULES), "--cart", str(cart), "--account", str(account),
                     "--now", NOW, "--code", "WELCOME", "--json", *(["--compact"] if compact else [])]) == 0
    out.write_text(buffer.getvalue())
    return out


def test_a_corpus_line_from_a_trace_evaluates_to_the_trace_it_came_from(tmp_path: Path, ruleset, capsys) -> None:
    trace = _trace_file(tmp_path, "t")
    assert main(["carts", "from-traces", str(trace), "--out", str(tmp_path / "c.jsonl")]) == 0
    [entry] = list(read_corpus(tmp_path / "c.jsonl"))
    again = evaluate(ruleset, entry.cart, entry.account, codes=entry.codes, now=entry.now)
    assert again.to_json() == trace.read_text()
    assert entry.id == "c1"


def test_a_compact_trace_is_refused_with_a_clear_message(tmp_path: Path, capsys) -> None:
    trace = _trace_file(tmp_path, "t", compact=True)
    capsys.readouterr()
    assert main(["carts", "from-traces", str(trace), "--out", str(tmp_path / "c.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "compact trace" in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "c.jsonl").exists()


@pytest.mark.parametrize("args, words", [
    (["generate", "--count", "0"], "--count 0"),
    (["generate", "--count", "1000000000000"], "--count"),
    (["generate", "--count", "-5"], "--count"),
    (["generate", "--count", "3", "--rules", "missing-dir"], "not found"),
    (["generate", "--count", "3", "--now", "yesterday"], "--now"),
    (["from-traces", "missing.json"], "cannot read"),
    (["from-traces", "."], "is a directory"),
    (["from-traces", "empty.json"], "is empty"),
    (["from-traces", "notatrace.json"], "is not a trace"),
])
def test_bad_input_to_promo_carts_is_one_clear_line_and_exit_1(args, words, tmp_path: Path, monkeypatch,
                                                                capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "notatrace.json").write_text('{"cart": {}}')
    if args[0] == "generate":
        args = args + ["--seed", "1"] + ([] if "--rules" in args else ["--rules", str(RULES)])
    assert main(["carts", *args, "--out", "out.jsonl"]) == 1
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out.jsonl").exists()


def test_an_existing_out_is_never_overwritten_unless_forced(tmp_path: Path, capsys) -> None:
    out = tmp_path / "c.jsonl"
    out.write_text("keep me\n")
    args = ["carts", "generate", "--rules", str(RULES), "--count", "5", "--seed", "1", "--out", str(out)]
    assert main(args) == 1
    assert "exists; give --force" in capsys.readouterr().err and out.read_text() == "keep me\n"
    assert main([*args, "--force"]) == 0
    assert len(out.read_text().splitlines()) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]    # no temporary file left beside it
    assert main(["carts", "generate", "--rules", str(RULES), "--count", "5", "--seed", "1",
                 "--out", str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err
