"""`promo diff --workers / --scheduler` (engine/backtest_dask.py): the same summary as one process, with
the client reading the corpus or (--read-on-workers) the workers reading their own byte ranges."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from engine import backtest_cli, backtest_dask, load_ruleset  # noqa: E402
from engine.backtest import diff  # noqa: E402
from engine.backtest_dask import (CorpusRange, CorpusUnreadable, cluster_client, cut_ranges, diff_on_cluster,  # noqa: E402
                                  diff_on_ranges, number_ranges, plan_ranges)
from engine.cli import main  # noqa: E402
from engine.corpus import MAX_LINE_BYTES, CorpusChanged, CorpusError, read_lines, read_stream  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"


@pytest.fixture(scope="module")
def client():
    with cluster_client(workers=2) as c:
        yield c


def _json(capsys, *args: str) -> dict:
    assert main(["diff", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_two_local_workers_give_the_in_process_json(capsys, head, corpus):
    common = ("--base", str(RULES), "--head", str(head), "--carts", str(corpus), "--top", "5")
    alone = _json(capsys, *common)
    assert alone["changed"] > 0 and alone["by_promotion"]["books-500-off-over-3000"]["change"] == "changed"
    assert _json(capsys, *common, "--workers", "2") == alone


def test_an_existing_scheduler_gives_the_same_json(capsys, head, corpus, client):
    common = ("--base", str(RULES), "--head", str(head), "--carts", str(corpus))
    assert _json(capsys, *common, "--scheduler", client.scheduler.address) == _json(capsys, *common)


def _with_bad_lines(tmp_path: Path, corpus: Path, bad: set[int]) -> Path:
    lines = corpus.read_bytes().splitlines(keepends=True)
    for number in bad:
        lines[number - 1] = b'{"cart": {}, "account": {}}\n' if number % 2 else b"not json\n"
    out = tmp_path / "bad.jsonl"
    out.write_bytes(b"".join(lines))
    return out


def test_stop_reports_the_first_bad_line_even_when_a_later_chunk_finishes_first(tmp_path, head, corpus, client):
    bad = _with_bad_lines(tmp_path, corpus, {333, 120, 121})
    base, changed = load_ruleset(RULES), load_ruleset(head)
    with open(bad, "rb") as stream, pytest.raises(CorpusError) as raised:
        diff_on_cluster(client, base, changed, read_lines(stream, "bad.jsonl"), on_error="stop", top_n=3,
                        source="bad.jsonl", chunk_lines=20)
    with pytest.raises(CorpusError) as alone:
        diff(base, changed, read_stream(open(bad, "rb"), "bad.jsonl"), source="bad.jsonl")
    assert raised.value == alone.value and raised.value.line == 120


def test_skip_counts_bad_lines_with_their_numbers_as_one_process_does(tmp_path, head, corpus, client):
    bad = _with_bad_lines(tmp_path, corpus, {7, 250, 251, 399})
    base, changed = load_ruleset(RULES), load_ruleset(head)
    seen = []
    with open(bad, "rb") as stream:
        summary = diff_on_cluster(client, base, changed, read_lines(stream, "bad.jsonl"), on_error="skip", top_n=4,
                                  source="bad.jsonl", chunk_lines=30, advance=seen.append)
    assert summary == diff(base, changed, read_stream(open(bad, "rb"), "bad.jsonl"), on_error="skip", top_n=4, source="bad.jsonl")
    assert [e.line for e in summary.errors] == [7, 250, 251, 399] and summary.skipped == 4
    assert sum(seen) == 400


def test_an_unreachable_scheduler_is_refused_in_one_line(capsys, head, corpus):
    code = main(["diff", "--base", str(RULES), "--head", str(head), "--carts", str(corpus),
                 "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 1 and "cannot connect" in capsys.readouterr().err


# --- --read-on-workers: each worker reads its own byte range ----------------------------------------------------

def _small_ranges(monkeypatch, size: int = 4096) -> None:
    """Ranges of about `size` bytes, so that a 400-cart corpus is cut into about a hundred."""
    monkeypatch.setattr(backtest_dask, "RANGE_BYTES", size)
    monkeypatch.setattr(backtest_dask, "MIN_RANGE_BYTES", 512)


def test_workers_reading_their_ranges_give_the_in_process_json(capsys, head, corpus, monkeypatch):
    common = ("--base", str(RULES), "--head", str(head), "--carts", str(corpus), "--top", "5")
    alone = _json(capsys, *common)
    assert alone["changed"] > 0
    assert len(cut_ranges(corpus.stat().st_size, 2)) == 5                   # the default cut: 6 would be under 64 KiB
    assert _json(capsys, *common, "--workers", "2", "--read-on-workers") == alone
    _small_ranges(monkeypatch)
    assert _json(capsys, *common, "--workers", "2", "--read-on-workers") == alone


def test_skip_on_workers_reading_their_ranges_counts_bad_lines_in_many_ranges_as_one_process_does(
        capsys, tmp_path, head, corpus, monkeypatch):
    bad = _with_bad_lines(tmp_path, corpus, {1, 7, 150, 151, 290, 399, 400})
    common = ("--base", str(RULES), "--head", str(head), "--carts", str(bad), "--on-error", "skip", "--top", "7")
    alone = _json(capsys, *common)
    assert alone["skipped"] == 7 and len(alone["errors"]) == 5
    _small_ranges(monkeypatch, 16384)
    assert len(cut_ranges(bad.stat().st_size, 2)) > 10
    assert _json(capsys, *common, "--workers", "2", "--read-on-workers") == alone


def _odd_corpus(tmp_path: Path, corpus: Path) -> Path:
    """The generated corpus with blank lines, CRLF lines, bad lines, a line over MAX_LINE_BYTES spanning many
    ranges, and a last line without its newline."""
    lines = corpus.read_bytes().splitlines(keepends=True)
    lines[10] = lines[10].replace(b"\n", b"\r\n")
    lines[11:11] = [b"\n", b"\r\n", b"   \n"]
    lines[40] = b"not json\n"
    lines[200:200] = [b'{"cart": "' + b"x" * (MAX_LINE_BYTES + 5000) + b'"}\n']
    lines[300] = b'{"cart": {}, "account": {}}\r\n'
    lines[-1] = lines[-1].rstrip(b"\n")
    out = tmp_path / "odd.jsonl"
    out.write_bytes(b"".join(lines))
    return out


def test_ranges_give_the_one_process_summary_for_blank_crlf_over_long_and_unterminated_lines(tmp_path, head, corpus,
                                                                                              client):
    odd = _odd_corpus(tmp_path, corpus)
    base, changed = load_ruleset(RULES), load_ruleset(head)
    alone = diff(base, changed, read_stream(open(odd, "rb"), "odd.jsonl"), on_error="skip", top_n=6, source="odd.jsonl")
    plan = plan_ranges(client, str(odd), odd.stat().st_size, range_bytes=65536, min_range_bytes=1024)
    assert len(plan.ranges) > 20 and sum(r.lines == 0 for r in plan.ranges) >= 10    # inside the long line
    assert plan.lines == backtest_cli.count_lines(str(odd)) == 404
    seen = []
    summary = diff_on_ranges(client, base, changed, plan, on_error="skip", top_n=6, source="odd.jsonl",
                             advance=seen.append)
    assert summary == alone and summary.skipped == 3 and sum(seen) == plan.lines
    assert [e.line for e in summary.errors] == [41, 201, 301]


def test_stop_on_ranges_reports_the_first_bad_line_even_when_a_later_range_finishes_first(tmp_path, head, corpus,
                                                                                           client):
    bad = _with_bad_lines(tmp_path, corpus, {333, 120, 121, 390})
    base, changed = load_ruleset(RULES), load_ruleset(head)
    plan = plan_ranges(client, str(bad), bad.stat().st_size, range_bytes=8192, min_range_bytes=1024)
    with pytest.raises(CorpusError) as raised:
        diff_on_ranges(client, base, changed, plan, on_error="stop", top_n=3, source="bad.jsonl")
    with pytest.raises(CorpusError) as alone:
        diff(base, changed, read_stream(open(bad, "rb"), "bad.jsonl"), source="bad.jsonl")
    assert raised.value == alone.value and raised.value.line == 120


def test_stop_on_workers_reading_their_ranges_names_the_first_bad_line(capsys, tmp_path, head, corpus, client,
                                                                       monkeypatch):
    bad = _with_bad_lines(tmp_path, corpus, {260, 99, 380})
    _small_ranges(monkeypatch, 8192)
    code = main(["diff", "--base", str(RULES), "--head", str(head), "--carts", str(bad), "--scheduler",
                 client.scheduler.address, "--read-on-workers"])
    err = capsys.readouterr().err
    assert code == 1 and "line 99:" in err and err.count("\n") == 1


def test_an_existing_scheduler_with_workers_reading_gives_the_same_json(capsys, head, corpus, client):
    common = ("--base", str(RULES), "--head", str(head), "--carts", str(corpus))
    assert _json(capsys, *common, "--scheduler", client.scheduler.address, "--read-on-workers") == \
        _json(capsys, *common)


def test_the_bar_on_workers_reading_counts_to_the_workers_own_total(capsys, head, corpus, client, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True
    common = ["diff", "--base", str(RULES), "--head", str(head), "--carts", str(corpus), "--json"]
    assert main(common) == 0
    plain = capsys.readouterr().out
    monkeypatch.setattr(backtest_cli, "count_lines", lambda path: pytest.fail("the client counted the corpus"))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([*common, "--scheduler", client.scheduler.address, "--read-on-workers"]) == 0
    assert capsys.readouterr().out == plain
    assert "400/400" in terminal.getvalue() and "carts/s" in terminal.getvalue()


def test_a_path_the_workers_cannot_open_is_refused_naming_it(tmp_path, client):
    gone = str(tmp_path / "not-shared" / "carts.jsonl")
    with pytest.raises(CorpusUnreadable) as raised:
        plan_ranges(client, gone, 1000)
    assert raised.value.path == gone and "No such file" in raised.value.reason


def test_a_corpus_deleted_or_changed_between_the_phases_is_refused(tmp_path, head, corpus, client):
    copy = tmp_path / "carts.jsonl"
    copy.write_bytes(corpus.read_bytes())
    base, changed = load_ruleset(RULES), load_ruleset(head)
    size = copy.stat().st_size
    with pytest.raises(CorpusChanged, match=f"{size + 1} when the run began"):
        plan_ranges(client, str(copy), size + 1)
    plan = plan_ranges(client, str(copy), size)
    data = copy.read_bytes()
    copy.write_bytes(data.replace(b"\n", b" ", 1))                  # the same size, one line fewer
    with pytest.raises(CorpusChanged, match="lines when counted"):   # (skip: stop would stop at the joined line)
        diff_on_ranges(client, base, changed, plan, on_error="skip", top_n=3, source="carts.jsonl")
    copy.write_bytes(data + b"\n")
    with pytest.raises(CorpusChanged, match=f"it is {size + 1} bytes, {size} when the run began"):
        diff_on_ranges(client, base, changed, plan, top_n=3, source="carts.jsonl")
    copy.unlink()
    with pytest.raises(CorpusUnreadable):
        diff_on_ranges(client, base, changed, plan, top_n=3, source="carts.jsonl")


def test_the_cli_says_the_workers_cannot_read_the_corpus_in_one_line(capsys, tmp_path, head, corpus, client,
                                                                      monkeypatch):
    gone = tmp_path / "elsewhere" / "carts.jsonl"
    monkeypatch.setattr(backtest_cli, "worker_path", lambda carts: str(gone))    # as if not on a shared disk
    code = main(["diff", "--base", str(RULES), "--head", str(head), "--carts", str(corpus), "--scheduler",
                 client.scheduler.address, "--read-on-workers"])
    err = capsys.readouterr().err
    assert code == 1 and f"the workers cannot read {gone}: No such file or directory" in err
    assert "every worker can open" in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_corpus_changed_while_replayed_is_refused_in_one_line(capsys, tmp_path, head, corpus, client, monkeypatch):
    copy = tmp_path / "carts.jsonl"
    copy.write_bytes(corpus.read_bytes())
    real = backtest_dask.plan_ranges

    def then_append(*args, **kwargs):
        plan = real(*args, **kwargs)
        with open(copy, "ab") as out:
            out.write(b"\n")
        return plan
    monkeypatch.setattr(backtest_dask, "plan_ranges", then_append)
    code = main(["diff", "--base", str(RULES), "--head", str(head), "--carts", str(copy), "--scheduler",
                 client.scheduler.address, "--read-on-workers"])
    err = capsys.readouterr().err
    assert code == 1 and "the corpus changed while it was replayed" in err and err.count("\n") == 1


def test_read_on_workers_without_a_cluster_is_a_usage_error(capsys, head, corpus):
    code = main(["diff", "--base", str(RULES), "--head", str(head), "--carts", str(corpus), "--read-on-workers"])
    err = capsys.readouterr().err
    assert code == 2 and "--read-on-workers needs --workers N or --scheduler ADDRESS" in err and err.count("\n") == 1


@pytest.mark.parametrize("size, threads", [(1, 1), (1000, 2), (65536 * 5 + 3, 2), (65536 * 100, 2), (65536 * 100, 64),
                                           (8 * 2**20 * 10 + 1, 2), (10**12, 4)])
def test_ranges_cover_the_file_with_enough_parts_and_none_too_small(size, threads):
    cuts = cut_ranges(size, threads)
    assert cuts[0][0] == 0 and cuts[-1][1] == size and all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))
    sizes = [end - start for start, end in cuts]
    assert max(sizes) <= backtest_dask.RANGE_BYTES
    assert len(cuts) == 1 or min(sizes) >= backtest_dask.MIN_RANGE_BYTES
    if size >= 3 * threads * backtest_dask.MIN_RANGE_BYTES:
        assert len(cuts) >= 3 * threads
    assert cut_ranges(0, threads) == ()


def test_ranges_are_numbered_from_the_counts_before_them():
    assert number_ranges([(0, 5), (5, 9), (9, 20)], [2, 0, 3]) == (
        CorpusRange(0, 5, 1, 2), CorpusRange(5, 9, 3, 0), CorpusRange(9, 20, 3, 3))
