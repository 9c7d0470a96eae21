"""The cart corpus (engine/corpus.py), its generator (engine/cartgen.py) and `promo carts`
(engine/corpus_cli.py)."""
from __future__ import annotations

import io
import json
import os
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import evaluate, load_ruleset
from engine.cartgen import generate
from engine.cli import main
from engine import corpus as corpus_module
from engine.corpus import (MAX_LINE_BYTES, CorpusChanged, CorpusEntry, CorpusError, count_line_starts, read_corpus,
                           read_lines, read_range, read_stream)

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


# --- byte ranges (promo diff --read-on-workers) -------------------------------------------------------------
# Every line is read by exactly one range, wherever the file is cut, and ranges numbered from the counts of
# the ranges before them give exactly what read_lines gives for the whole file: numbers, bytes and errors.
SMALL_MAX = 16          # MAX_LINE_BYTES for these tests, so that over-long lines are short enough to cut everywhere

RANGE_FILES = {
    "mixed, ending in a line without newline": (
        b"\n" + b'{"a":1}\n' + b"\r\n" + b'{"b":22}\r\n' + b"x" * 40 + b"\n" + b"\n\n" + b"y" * SMALL_MAX + b"\n"
        + b"z" * (SMALL_MAX + 1) + b"\n" + b" \t \n" + b'{"c":3}\n' + b'{"d":4}'),
    "ending in an over-long line without newline": b'{"a":1}\n\n' + b"q" * 30 + b"\r\n" + b'{"b":2}\n' + b"w" * 33,
    "starting with an over-long line, ending in blank lines": b"v" * 50 + b"\n" + b"\n" + b'{"e":5}\r\n' + b"\n\n",
    "one line without newline": b'{"only":1}',
}


@pytest.fixture
def small_lines(monkeypatch):
    monkeypatch.setattr(corpus_module, "MAX_LINE_BYTES", SMALL_MAX)
    monkeypatch.setattr(corpus_module, "_CHUNK", 5)          # skipping in pieces that straddle every cut
    monkeypatch.setattr(corpus_module, "_COUNT_BLOCK", 3)    # counting in blocks that straddle every cut


def _whole(path: Path) -> list:
    with open(path, "rb") as stream:
        return list(read_lines(stream, "c.jsonl"))


def _in_ranges(path: Path, cuts: list[int]) -> tuple[list, int]:
    """The file read range by range between the cut points (phase 1: count; phase 2: read from the sum of
    the counts before), and how many lines the ranges counted."""
    size = path.stat().st_size
    items, first = [], 1
    for start, end in zip(cuts, cuts[1:]):
        lines = count_line_starts(path, start, end, size=size)
        items += read_range(path, start, end, first, "c.jsonl", size=size, lines=lines)
        first += lines
    return items, first - 1


def _line_count(data: bytes) -> int:
    return data.count(b"\n") + (bool(data) and not data.endswith(b"\n"))


@pytest.mark.parametrize("name", RANGE_FILES)
def test_ranges_cut_at_every_pair_of_points_read_what_read_lines_reads(name, tmp_path, small_lines) -> None:
    data = RANGE_FILES[name]
    path = tmp_path / "c.jsonl"
    path.write_bytes(data)
    whole = _whole(path)
    assert any(isinstance(i, CorpusError) for i in whole) == (name != "one line without newline")
    size = len(data)
    for a in range(size + 1):
        for b in range(a, size + 1):
            items, counted = _in_ranges(path, [0, a, b, size])
            assert items == whole, (a, b)
            assert counted == _line_count(data), (a, b)


def test_the_mixed_file_reads_as_expected(tmp_path, small_lines) -> None:
    """What the cuts are compared with: blank lines counted, CRLF kept, over-long lines one error each."""
    path = tmp_path / "c.jsonl"
    path.write_bytes(RANGE_FILES["mixed, ending in a line without newline"])
    whole = _whole(path)
    shown = [(i.line, "error", i.message) if isinstance(i, CorpusError) else i for i in whole]
    assert shown == [(2, b'{"a":1}\n'), (4, b'{"b":22}\r\n'), (5, "error", "line is 41 bytes; at most 16 (1 MiB) are read"),
                     (8, b"y" * 16 + b"\n"), (9, "error", "line is 18 bytes; at most 16 (1 MiB) are read"),
                     (11, b'{"c":3}\n'), (12, b'{"d":4}')]


@settings(max_examples=150, deadline=None)
@given(data=st.lists(st.sampled_from([b"a", b"\n", b"\r\n", b" ", b'{"k":1}', b"b" * 9]), max_size=14).map(b"".join),
       cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=5))
def test_any_file_cut_anywhere_reads_what_read_lines_reads(tmp_path_factory, data, cuts) -> None:
    path = tmp_path_factory.mktemp("ranges") / "c.jsonl"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(corpus_module, "MAX_LINE_BYTES", 8)
        patch.setattr(corpus_module, "_CHUNK", 3)
        whole = _whole(path)
        for cut in range(len(data) + 1):                   # every single cut
            assert _in_ranges(path, [0, cut, len(data)]) == (whole, _line_count(data))
        points = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
        assert _in_ranges(path, points) == (whole, _line_count(data))


def test_a_range_numbers_its_lines_from_the_first_line_it_is_given(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"aaaa\nbbbb\n\ncccc\n")
    assert count_line_starts(path, 0, 3) == 1 and count_line_starts(path, 3, 17) == 3
    assert list(read_range(path, 3, 17, 2, "c.jsonl")) == [(2, b"bbbb\n"), (4, b"cccc\n")]
    assert list(read_range(path, 5, 6, 2, "c.jsonl")) == [(2, b"bbbb\n")]    # starts exactly at a line start
    assert list(read_range(path, 6, 6, 3, "c.jsonl")) == [] and count_line_starts(path, 6, 6) == 0
    assert count_line_starts(path, 16, 17) == 0            # the trailing newline starts no line


def test_an_over_long_line_is_skipped_in_pieces_by_the_range_it_starts_in_and_the_one_it_ends_in(tmp_path) -> None:
    path = tmp_path / "huge.jsonl"
    huge = 8 * MAX_LINE_BYTES
    with open(path, "wb") as out:
        out.write(b'{"a":1}\n' + b"x" * huge + b'\n{"b":2}\n')
    size = path.stat().st_size
    middle = 8 + huge // 2
    for start, end, expected in ((0, middle, 2), (middle, size, 1)):
        tracemalloc.start()
        items = list(read_range(path, start, end, 1 if start == 0 else 3, "huge.jsonl", size=size))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(items) == expected and peak < 2 * MAX_LINE_BYTES + (1 << 20), peak    # never the line whole
    assert isinstance(items[0], tuple) and items[0][0] == 3
    first = list(read_range(path, 0, middle, 1, "huge.jsonl"))
    assert isinstance(first[1], CorpusError) and first[1].line == 2 and f"{huge + 1} bytes" in first[1].message


def test_a_range_of_a_file_that_changed_is_refused(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"a\nb\nc\n")
    with pytest.raises(CorpusChanged, match="it is 6 bytes, 5 when the run began"):
        list(read_range(path, 0, 6, 1, "c.jsonl", size=5))
    with pytest.raises(CorpusChanged, match="it is 6 bytes"):
        count_line_starts(path, 0, 6, size=7)
    with pytest.raises(CorpusChanged, match="held 2 lines when counted, 3 when read"):
        list(read_range(path, 0, 6, 1, "c.jsonl", size=6, lines=2))
    import pickle
    again = pickle.loads(pickle.dumps(CorpusChanged("c.jsonl", "why")))
    assert (again.path, again.detail) == ("c.jsonl", "why")


def test_a_range_of_a_path_that_is_not_a_regular_file_is_an_os_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        list(read_range(tmp_path / "missing.jsonl", 0, 10, 1, "x"))
    with pytest.raises(IsADirectoryError):
        count_line_starts(tmp_path, 0, 10)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):     # refused at once, never waited on
        list(read_range(fifo, 0, 10, 1, "x"))


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


@pytest.mark.parametrize("codes", [5, "WELCOME", {"WELCOME": 1}, [1, 2], ["WELCOME", None]])
def test_a_trace_whose_codes_are_not_a_list_of_strings_is_refused_never_split_or_crashed(codes, tmp_path: Path,
                                                                                           capsys) -> None:
    path = _trace_file(tmp_path, "t")
    trace = json.loads(path.read_text())
    trace["inputs"]["codes"] = codes             # a string was split into its letters, a number a TypeError
    path.write_text(json.dumps(trace))
    capsys.readouterr()
    assert main(["carts", "from-traces", str(path), "--out", str(tmp_path / "c.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "$.inputs.codes: must be a list of code strings" in err and err.count("\n") == 1
    assert "internal error" not in err and not (tmp_path / "c.jsonl").exists()


def test_a_trace_whose_now_is_not_a_string_is_refused_naming_now(tmp_path: Path, capsys) -> None:
    path = _trace_file(tmp_path, "t")
    trace = json.loads(path.read_text())
    trace["now"] = 1764000000
    path.write_text(json.dumps(trace))
    capsys.readouterr()
    assert main(["carts", "from-traces", str(path), "--out", str(tmp_path / "c.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "$.now: must be the evaluation time as a string" in err and err.count("\n") == 1
    assert not (tmp_path / "c.jsonl").exists()


@pytest.mark.parametrize("anchor, edge", [("1970-01-02T00:00:00+00:00", "1970-01-01T00:00:00+00:00"),
                                          ("2199-12-31T00:00:00+00:00", "2199-12-31T23:59:59+00:00")])
def test_carts_generated_near_either_end_of_the_accepted_range_all_evaluate(anchor, edge, ruleset) -> None:
    from datetime import datetime
    from engine.text import EARLIEST, LATEST
    nows = []
    for entry in generate(ruleset, 300, 2, datetime.fromisoformat(anchor)):
        evaluate(ruleset, entry["cart"], entry["account"], codes=entry["codes"], now=entry["now"])   # never refused
        nows.append(datetime.fromisoformat(entry["now"]))
    assert all(EARLIEST <= n < LATEST for n in nows)
    assert datetime.fromisoformat(edge) in nows      # anchor +- 30 days crossed the edge: held at it, not past it


def test_a_now_outside_the_accepted_range_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    out = tmp_path / "c.jsonl"
    assert main(["carts", "generate", "--rules", str(RULES), "--count", "5", "--seed", "1", "--out", str(out),
                 "--now", "9000-01-01T00:00:00Z"]) == 1
    err = capsys.readouterr().err
    assert "--now 9000-01-01T00:00:00Z" in err and "outside the accepted range" in err and err.count("\n") == 1
    assert not out.exists()


def test_traces_are_written_one_at_a_time_and_a_bad_one_late_leaves_no_corpus(tmp_path: Path, capsys) -> None:
    good, other = _trace_file(tmp_path, "a"), _trace_file(tmp_path, "b")
    out = tmp_path / "c.jsonl"
    assert main(["carts", "from-traces", str(good), str(other), "--out", str(out)]) == 0
    assert [e.id for e in read_corpus(out)] == ["c1", "c1"]
    out.unlink()
    (tmp_path / "bad.json").write_text('{"ruleset_version": "x", "now": "x"}')      # not a full trace
    capsys.readouterr()
    assert main(["carts", "from-traces", str(good), str(other), str(tmp_path / "bad.json"), "--out", str(out)]) == 1
    assert "compact trace" in capsys.readouterr().err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".c.jsonl")]
