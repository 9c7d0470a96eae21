"""`promo simulate --workers / --scheduler` (engine/simulate_dask.py): priced ahead on a cluster, counted in
order on the client, and the in-process result exactly."""
from __future__ import annotations

import io
import json
import random
import sys
from dataclasses import replace
from decimal import Decimal

import pytest

distributed = pytest.importorskip("distributed")

from engine.backtest_dask import cluster_client  # noqa: E402
from engine.cli import main  # noqa: E402
from engine.corpus import CorpusError, read_corpus  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.model import Usage  # noqa: E402
from engine.simulate import Churn, Outcome, simulate  # noqa: E402
from engine.simulate_dask import grants_bound, same_verdicts, simulate_on_cluster  # noqa: E402
from tests.test_simulate import EXTRA, ROOT, _corpus, _returning_ruleset, _ruleset, _write  # noqa: E402

POOL = [f"POOL{i:02d}-CODE" for i in range(10)]


@pytest.fixture(scope="module")
def client():
    with cluster_client(workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def ruleset():
    return _ruleset()


def _pool():
    return {code: "pool-200" for code in POOL}


CHURN = Churn(abandon_rate=Decimal("0.1"), cancel_rate=Decimal("0.3"), cancel_after=1, seed=2)


@pytest.mark.parametrize("chunk", [1, 7, 64])
@pytest.mark.parametrize("days, seed, per_day, churn", [(None, None, 8, None), (20, 4, 8, None), (3, None, 50, None),
                                                        (None, None, 8, CHURN), (25, 9, 6, CHURN)])
def test_two_workers_give_the_in_process_result_whatever_the_chunks(client, chunk, days, seed, per_day, churn):
    """Tight limits of every kind (total uses, per customer, a capped and a refused budget, single-use
    codes), with and without abandoned checkouts and cancelled orders that give uses back: the in-process
    run is the one checked against the real ledger in tests/test_simulate.py."""
    ruleset = _returning_ruleset() if churn else _ruleset()
    entries = _corpus(POOL, count=300)
    alone = simulate(ruleset, entries, per_day, days=days, seed=seed, pool_codes=_pool(), churn=churn)
    spread, stats = simulate_on_cluster(client, ruleset, entries, per_day, days=days, seed=seed, pool_codes=_pool(),
                                        chunk_carts=chunk, churn=churn)
    assert spread == alone
    assert not churn or (alone.cancelled > 0 and alone.promotion("tight-total").uses_returned > 0)
    assert stats.priced >= alone.carts and 0 < stats.repriced < stats.priced
    # every kind of limit ran out on the way
    assert alone.promotion("tight-total").exhausted is not None
    assert alone.promotion("once-each").first_refused is not None


def test_bad_lines_and_refused_carts_are_met_in_order_stop_or_skip(client, ruleset, tmp_path):
    entries = _corpus(POOL, count=120)
    r = random.Random(8)
    for i in r.sample(range(10, len(entries)), 6):   # carts evaluate() refuses: a negative price
        cart = dict(entries[i].cart, lines=[dict(entries[i].cart["lines"][0], unit_price="-5")])
        entries[i] = replace(entries[i], cart=cart)
    items: list = list(entries)
    for at in (5, 40, 41, 90):                   # lines that are not entries at all
        items.insert(at, CorpusError("c.jsonl", 1000 + at, "$", "not JSON"))
    for on_error in ("skip", "stop"):
        try:
            alone = simulate(ruleset, items, 9, on_error=on_error, pool_codes=_pool())
        except CorpusError as exc:
            alone = exc
        try:
            spread, _ = simulate_on_cluster(client, ruleset, items, 9, on_error=on_error, pool_codes=_pool(),
                                            chunk_carts=16)
        except CorpusError as exc:
            spread = exc
        assert spread == alone
    assert isinstance(alone, CorpusError) and alone.line == 1005
    skipped = simulate(ruleset, items, 9, on_error="skip", pool_codes=_pool())
    assert skipped.skipped == 10 and len(skipped.errors) == 5


def test_same_verdicts_is_never_wrong_about_a_cart(ruleset):
    """The rule that lets the client keep a worker's outcome: whenever it says two sets of counts decide
    the same, evaluate() gives the same outcome with both. Checked on random pairs of counts around
    every limit, and it must say "the same" often enough to be of use."""
    r = random.Random(21)
    limited = {pid: p for pid, p in ruleset.promotions.items() if p.limits.total_uses or p.limits.uses_per_customer
               or p.limits.budget}
    entries = _corpus(POOL, count=40)
    for i in range(0, len(entries), 3):   # a gift-card charge: a grant (the bundled gift-card-charge-bonus)
        gift = {"id": "G1", "sku": "GIFT", "category": "gift-cards", "seller": "first_party",
                "product_type": "physical", "unit_price": "5000", "quantity": 1}
        entries[i] = replace(entries[i], cart=dict(entries[i].cart, lines=[*entries[i].cart["lines"], gift]))

    def counts() -> dict[str, Usage]:
        out = {}
        for pid, p in limited.items():
            lim = p.limits
            uses = r.choice([0, 1, (lim.total_uses or 3) - 1, lim.total_uses or 3, 50])
            mine = r.choice([0, (lim.uses_per_customer or 2) - 1, lim.uses_per_customer or 2])
            budget = lim.budget or Decimal(1000)
            spent = r.choice([Decimal(0), budget / 2, budget - 1, budget - 300, budget, budget - 3000])
            out[pid] = Usage(uses, mine, max(spent, Decimal(0)))
        return out

    kept = differed = granted = 0
    for entry in entries:
        for _ in range(12):
            s, t = counts(), counts()
            priced = [Outcome.of(evaluate(ruleset, entry.cart, entry.account, now="2026-11-21T10:00:00+09:00",
                                          usage=u)) for u in (s, t)]
            judged = all(same_verdicts(ruleset.promotions[pid], s[pid], t[pid],
                                       priced[0].cost + grants_bound(ruleset.promotions[pid]))
                         for pid in priced[0].counts_read if pid in limited)
            if judged:
                kept += 1
                assert priced[0] == priced[1], entry.label
            differed += priced[0] != priced[1]
            granted += bool(priced[0].grants)
    assert kept > 40 and differed > 40 and granted > 10


def test_the_command_prints_the_in_process_json_on_a_local_cluster_and_an_existing_one(client, tmp_path, capsys):
    corpus = _write(tmp_path / "c.jsonl", _corpus(["X"] * 6, count=90))
    rules = tmp_path / "rules"
    rules.mkdir()
    for p in (ROOT / "rules").iterdir():
        (rules / p.name).write_bytes(p.read_bytes())
    for name, data in EXTRA.items():
        (tmp_path / name).write_bytes(data)
    common = ["simulate", "--rules", str(rules), "--carts", str(corpus), "--per-day", "11", "--seed", "3", "--json"]
    outs = []
    for where in ([], ["--workers", "2"], ["--scheduler", client.scheduler.address]):
        assert main(common + where) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] == outs[2]
    assert json.loads(outs[0])["by_promotion"]["tight-total"]["exhausted"] is not None
    assert main(common[:-1] + ["--workers", "2"]) == 0
    assert "priced again here" in capsys.readouterr().out
    assert simulate(_ruleset(), read_corpus(corpus), 11, seed=3).to_dict() == json.loads(outs[0])


@pytest.mark.parametrize("args, code, message", [
    (["--workers", "0"], 2, "--workers 0"),
    (["--scheduler", "tcp://127.0.0.1:9"], 1, "--scheduler tcp://127.0.0.1:9"),
])
def test_a_bad_cluster_option_is_one_line(tmp_path, capsys, args, code, message):
    corpus = _write(tmp_path / "c.jsonl", _corpus(["X"] * 6, count=3))
    assert main(["simulate", "--rules", str(ROOT / "rules"), "--carts", str(corpus), "--per-day", "2", *args]) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("where", [[], ["--workers", "2"]])
def test_a_progress_bar_is_drawn_on_a_terminal_only_and_changes_nothing(tmp_path, capsys, monkeypatch, where):
    corpus = _write(tmp_path / "c.jsonl", _corpus(["X"] * 6, count=90))
    args = ["simulate", "--rules", str(ROOT / "rules"), "--carts", str(corpus), "--per-day", "11", "--json", *where]
    assert main(args) == 0
    plain = capsys.readouterr()
    assert "carts/s" not in plain.err                       # not a terminal: no bar
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(args) == 0
    assert capsys.readouterr().out == plain.out
    assert "carts/s" in terminal.getvalue() and "90" in terminal.getvalue()


def test_carts_read_from_a_file_travel_as_their_lines_and_a_replaced_cart_as_itself(client, ruleset, tmp_path):
    """Entries read from a corpus file are sent to the workers as the lines they were read from; an entry
    changed with dataclasses.replace() no longer has its line, and is priced with what it now holds."""
    path = _write(tmp_path / "c.jsonl", _corpus(POOL, count=120))
    entries = list(read_corpus(path))
    assert all(e.raw is not None for e in entries)
    for i in range(0, 120, 5):
        lines = [dict(line, quantity=line["quantity"] + 2) for line in entries[i].cart["lines"]]
        entries[i] = replace(entries[i], cart=dict(entries[i].cart, lines=lines))
        assert entries[i].raw is None
    alone = simulate(ruleset, entries, 9, pool_codes=_pool())
    spread, _ = simulate_on_cluster(client, ruleset, entries, 9, pool_codes=_pool(), chunk_carts=16)
    assert spread == alone != simulate(ruleset, read_corpus(path), 9, pool_codes=_pool())


def test_a_start_at_the_end_of_time_is_refused_cart_by_cart_on_the_cluster_too(client, ruleset):
    """The first cart sets the start (here the last date there is); carts priced ahead would land past it."""
    entries = [replace(e, now="9999-12-31T23:00:00+00:00") for e in _corpus(POOL, count=30)]
    alone = simulate(ruleset, entries, 1, on_error="skip")
    spread, _ = simulate_on_cluster(client, ruleset, entries, 1, on_error="skip", chunk_carts=4)
    assert spread == alone and alone.skipped == 30 and alone.carts == 0
