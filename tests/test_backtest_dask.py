"""`promo diff --workers / --scheduler` (engine/backtest_dask.py): the same summary as one process."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from engine import load_ruleset  # noqa: E402
from engine.backtest import diff  # noqa: E402
from engine.backtest_dask import cluster_client, diff_on_cluster  # noqa: E402
from engine.cli import main  # noqa: E402
from engine.corpus import CorpusError, read_lines, read_stream  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> Path:
    """The bundled rules with one promotion changed: books need 3,500 instead of 3,000."""
    head = tmp_path_factory.mktemp("head") / "rules"
    shutil.copytree(RULES, head)
    books = head / "books-500-off-over-3000.yaml"
    books.write_text(books.read_text().replace('value: "3000"', 'value: "3500"'))
    return head


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "carts.jsonl"
    assert main(["carts", "generate", "--rules", str(RULES), "--count", "400", "--seed", "3", "--out", str(out)]) == 0
    return out


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
