"""promo simulate (engine/simulate.py, engine/simulate_cli.py): a corpus replayed as daily traffic with the
ledger's limits, checked against the real ledger on the same carts in the same order."""
from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path

import pytest

from engine.cli import main
from engine.corpus import CorpusEntry, entry_line, read_corpus
from engine.evaluate import evaluate
from engine.ledger import Ledger, make_engine, migrate
from engine.ruleset import build_ruleset
from engine.simulate import Simulation, simulate

ROOT = Path(__file__).resolve().parent.parent
START = "2026-11-21T10:00:00+09:00"


def _promotion(pid: str, benefit: str, limits: str, extra: str = "") -> bytes:
    return (f"id: {pid}\nname: {pid}\nstatus: active\ncurrency: JPY\n{extra}targets: {{include: {{categories: "
            f"[garden]}}}}\nbenefits: [{benefit}]\nstacking: {{priority: 5, exclusive: false}}\n"
            f"limits: {limits}\n").encode()


EXTRA = {
    "rules/tight-total.yaml": _promotion("tight-total", '{type: amount_off, scope: per_order, amount: "100"}',
                                         "{total_uses: 7}"),
    "rules/once-each.yaml": _promotion("once-each", '{type: amount_off, scope: per_order, amount: "50"}',
                                       "{uses_per_customer: 1}"),
    "rules/budget-cap.yaml": _promotion("budget-cap", "{type: percent_off, percent: 10}",
                                        '{budget: "4000", budget_overrun: cap}'),
    "rules/budget-refuse.yaml": _promotion("budget-refuse", "{type: percent_off, percent: 5}",
                                           '{budget: "2500", budget_overrun: refuse, uses_per_customer: 4}'),
    "rules/pool-200.yaml": _promotion("pool-200", '{type: amount_off, scope: per_order, amount: "200"}',
                                      "{total_uses: 100}", "code_pool: true\n"),
}


def _ruleset():
    files = {f"rules/{p.name}": p.read_bytes() for p in (ROOT / "rules").iterdir() if p.suffix == ".yaml"}
    return build_ruleset({**files, **EXTRA})


def _corpus(pool: list[str], count: int = 60) -> list[CorpusEntry]:
    """Garden carts (and some books, for the bundled promotions) from six customers; a few enter a pool
    code, some of them one already entered before."""
    r = random.Random(15)
    out = []
    for i in range(count):
        lines = [{"id": f"L{k + 1}", "sku": f"SKU-{k}", "category": r.choice(["garden", "garden", "books"]),
                  "seller": "first_party", "product_type": "physical",
                  "unit_price": str(r.choice([800, 1500, 2600, 4000])), "quantity": r.randint(1, 3)}
                 for k in range(r.randint(1, 3))]
        codes = [r.choice(pool[:6])] if r.random() < 0.3 else []
        out.append(CorpusEntry(
            line=i + 1, id=f"c{i + 1:03d}",
            cart={"id": f"cart-{i}", "currency": "JPY", "channel": "web", "lines": lines,
                  "shipping": {"method": "standard", "price": "500"}},
            account={"id": f"cust-{r.randint(1, 6)}", "region": "JP", "tier": "standard", "segments": [],
                     "order_count": 3, "time_zone": "Asia/Tokyo"},
            codes=tuple(codes), now=f"2026-11-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}"
                                    f":00+09:00"))
    return out


def test_simulate_stops_each_promotion_exactly_where_a_ledger_run_of_the_same_carts_would_refuse_it(tmp_path):
    ruleset = _ruleset()
    engine = make_engine(str(tmp_path / "ledger.db"), create=True)
    migrate(engine)
    ledger = Ledger(engine, ruleset, max_clock_skew=None)
    pool = ledger.generate_codes("pool-200", 10, START)
    entries = _corpus(pool)
    limited = ("tight-total", "once-each", "budget-cap", "budget-refuse", "pool-200")

    sim = Simulation(ruleset, per_day=8, pool_codes={c: "pool-200" for c in pool})
    steps = [sim.step(e) for e in entries]
    result = sim.result()

    # The same carts, the same order, the same simulated times, through the ledger.
    uses: dict[str, int] = {}
    discount: dict[str, Decimal] = {}
    exhausted: dict[str, tuple[str, str]] = {}
    refused: dict[str, str] = {}
    for entry, step in zip(entries, steps):
        customer = entry.account["id"]
        resolved = ledger.resolve_codes(list(entry.codes), step.now)
        trace = evaluate(ruleset, entry.cart, entry.account, codes=resolved.codes, now=step.now,
                         usage=ledger.usage_snapshot(customer, step.now))
        assert trace.to_dict() == step.trace.to_dict(), entry.label   # priced exactly as at checkout
        ledger.reserve(trace, f"order-{entry.line}", customer, ttl=900, now=step.now, codes=resolved.pool_codes)
        ledger.commit(f"order-{entry.line}", step.now)
        for pid in {a.promotion for a in trace.applied}:
            uses[pid] = uses.get(pid, 0) + 1
        for a in trace.applied:
            discount[a.promotion] = discount.get(a.promotion, Decimal(0)) + a.amount
        for n in trace.not_applied:
            if n.reason.value in ("usage_limit_reached", "budget_exhausted", "budget_would_overrun"):
                refused.setdefault(n.promotion, entry.label)
        snapshot = ledger.usage_snapshot(customer, step.now)
        for pid in limited:
            p, u = ruleset.promotions[pid], snapshot[pid]
            out = (p.limits.total_uses is not None and u.total_uses >= p.limits.total_uses) or \
                (p.limits.budget is not None and u.budget_spent >= p.limits.budget)
            if out and pid not in exhausted:
                exhausted[pid] = entry.label

    for pid in ruleset.promotions:
        got = result.promotion(pid)
        assert got.uses == uses.get(pid, 0), pid
        assert dict(got.discount).get("JPY", Decimal(0)) == discount.get(pid, Decimal(0)), pid
        assert (got.exhausted.at.cart if got.exhausted else None) == exhausted.get(pid), pid
        assert (got.first_refused.at.cart if got.first_refused else None) == refused.get(pid), pid
    # Every kind of limit was reached on the way, so the comparison is not vacuous.
    assert result.promotion("tight-total").exhausted.limit == "total_uses"
    assert result.promotion("budget-cap").exhausted.limit == "budget"
    assert result.promotion("budget-refuse").first_refused.limit == "budget"
    assert result.promotion("once-each").first_refused.limit == "uses_per_customer"
    assert 0 < result.promotion("pool-200").uses <= 6    # six distinct codes entered, each redeemed once
    assert any(e.codes and s.pool_codes == () for e, s in zip(entries, steps))   # a used code got nothing

    # The per-day records end where the ledger's counts end: budget spent and uses so far on the last day a
    # promotion applied are the ledger's after the whole run.
    final = ledger.usage_snapshot("cust-1", steps[-1].now)
    last = {pid: p for d in result.per_day for pid, p in d.by_promotion}
    for pid in limited:
        lim = ruleset.promotions[pid].limits
        assert (last[pid].budget_spent if lim.budget is not None else None) == \
            (final[pid].budget_spent if lim.budget is not None else None), pid
        assert last[pid].uses_so_far == (final[pid].total_uses if lim.total_uses is not None else None), pid
    assert last["budget-cap"].budget_spent == Decimal("4000")     # a capped budget is spent to the last yen


def _write(path: Path, entries) -> Path:
    path.write_bytes(b"".join(entry_line(e.to_dict()) for e in entries))
    return path


def test_per_day_totals_add_up_to_the_per_promotion_totals(tmp_path):
    ruleset = _ruleset()
    result = simulate(ruleset, _corpus(["X"] * 6), per_day=7)
    assert [d.carts for d in result.per_day] == [7] * 8 + [4]
    by_day = sum((a for d in result.per_day for c, a in d.discount if c == "JPY"), Decimal(0))
    by_promotion = sum((a for _, p in result.by_promotion for c, a in p.discount if c == "JPY"), Decimal(0))
    assert by_day == by_promotion > 0
    assert result.per_day[1].day == "2026-11-" + str(int(result.per_day[0].day[-2:]) + 1).zfill(2)


def test_each_days_promotions_add_up_to_the_day_and_to_the_promotion_and_count_their_limits_up():
    ruleset = _ruleset()
    result = simulate(ruleset, _corpus(["X"] * 6), per_day=7)
    totals: dict[str, list] = {}
    for d in result.per_day:
        assert [pid for pid, _ in d.by_promotion] == sorted(pid for pid, _ in d.by_promotion)
        for field in ("discount", "granted"):   # the day's promotions make the day's cost
            summed: dict[str, Decimal] = {}
            for _, p in d.by_promotion:
                for c, a in getattr(p, field):
                    summed[c] = summed.get(c, Decimal(0)) + a
            assert {c: a for c, a in summed.items() if a} == dict(getattr(d, field)), (d.day, field)
        for pid, p in d.by_promotion:
            t = totals.setdefault(pid, [0, {}, {}, Decimal(0), 0])
            t[0] += p.uses
            for c, a in p.discount:
                t[1][c] = t[1].get(c, Decimal(0)) + a
            for c, a in p.granted:
                t[2][c] = t[2].get(c, Decimal(0)) + a
            lim = ruleset.promotions[pid].limits
            if lim.budget is None:
                assert p.budget_spent is None
            else:   # cumulative: never down, and up by at most what it cost that day
                assert t[3] <= p.budget_spent <= t[3] + sum(a for _, a in (*p.discount, *p.granted))
                t[3] = p.budget_spent
            if lim.total_uses is None:
                assert p.uses_so_far is None
            else:
                assert p.uses_so_far == t[0]
                t[4] = p.uses_so_far
    for pid, p in result.by_promotion:
        t = totals.get(pid, [0, {}, {}, Decimal(0), 0])
        assert (t[0], _nonzero(t[1]), _nonzero(t[2])) == (p.uses, dict(p.discount), dict(p.granted)), pid
    assert totals["budget-cap"][3] == Decimal("4000") and totals["tight-total"][4] == 7
    assert "budget-cap" in dict(result.per_day[0].by_promotion)
    doc = result.to_dict()["per_day"][0]["by_promotion"]["budget-cap"]
    assert isinstance(doc["budget_spent"], str) and doc["uses_so_far"] is None and doc["discount"]["JPY"]


def _nonzero(amounts: dict[str, Decimal]) -> dict[str, Decimal]:
    return {c: a for c, a in amounts.items() if a}


def test_days_limits_the_run_and_start_moves_every_cart_onto_its_day():
    ruleset = _ruleset()
    sim = Simulation(ruleset, per_day=5, start=None)
    entries = _corpus(["X"] * 6)
    steps = [sim.step(e) for e in entries[:11]]
    assert steps[0].now[:10] == entries[0].now[:10]
    assert steps[5].at.day_index == 1 and steps[10].at.day_index == 2
    assert steps[7].now[10:] == entries[7].now[10:]          # the time of day and the offset are kept
    result = simulate(ruleset, entries, per_day=5, days=2)
    assert result.carts == 10 and result.days == 2


def test_the_same_seed_gives_the_same_json_bytes_and_another_seed_another_order(tmp_path, capsys):
    corpus = _write(tmp_path / "c.jsonl", _corpus(["X"] * 6))
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, data in {f"rules/{p.name}": p.read_bytes() for p in (ROOT / "rules").iterdir()}.items():
        (tmp_path / name).write_bytes(data)
    for name, data in EXTRA.items():
        (tmp_path / name).write_bytes(data)
    outs = []
    for seed in ("4", "4", "5"):
        assert main(["simulate", "--rules", str(rules), "--carts", str(corpus), "--per-day", "9", "--seed", seed,
                     "--start", "2026-12-01", "--json"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] != outs[2]
    doc = json.loads(outs[0])
    assert doc["carts"] == 60 and doc["days"] == 7 and doc["per_day"][0]["day"] == "2026-12-01"
    assert doc["by_promotion"]["tight-total"]["exhausted"]["limit"] == "total_uses"
    assert main(["simulate", "--rules", str(rules), "--carts", str(corpus), "--per-day", "9"]) == 0
    assert "Cost per day" in capsys.readouterr().out


def test_a_corrupt_corpus_line_is_reported_with_its_line_number_stop_or_skip(tmp_path, capsys):
    path = _write(tmp_path / "c.jsonl", _corpus(["X"] * 6, count=5))
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(2, b'{"cart": {}, "account": \n')
    path.write_bytes(b"".join(lines))
    rules = str(ROOT / "rules")
    assert main(["simulate", "--rules", rules, "--carts", str(path), "--per-day", "2"]) == 1
    err = capsys.readouterr().err
    assert "line 3" in err and err.count("\n") == 1
    assert main(["simulate", "--rules", rules, "--carts", str(path), "--per-day", "2", "--on-error", "skip",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["skipped"] == 1 and doc["carts"] == 5 and "line 3" in doc["errors"][0]
    result = simulate(_ruleset(), read_corpus(path), per_day=2, on_error="skip", seed=1)
    assert result.skipped == 1 and result.carts == 5


@pytest.mark.parametrize("args, message", [
    (["--carts", "missing.jsonl", "--per-day", "3"], "cannot read"),
    (["--per-day", "0"], "--per-day 0"),
    (["--per-day", "3", "--rules", "no-such-rules"], "rule directory not found"),
    (["--per-day", "3", "--start", "2026-13-01"], "--start"),
    (["--per-day", "3", "--start", "soon"], "--start"),
    (["--per-day", "3", "--days", "0"], "--days 0"),
    (["--per-day", "3", "--pool-codes", "books-500-off-over-3000=x.txt"], "not a code_pool promotion"),
])
def test_bad_input_to_the_command_is_one_line_exit_1(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "c.jsonl", _corpus(["X"] * 6, count=3))
    full = ["simulate", "--rules", str(ROOT / "rules"), *(["--carts", "c.jsonl"] if "--carts" not in args else []),
            *args]
    assert main(full) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_malformed_option_is_a_usage_error(capsys):
    assert main(["simulate", "--rules", "rules", "--carts", "c.jsonl", "--per-day", "many"]) == 2
    assert main(["simulate", "--rules", "rules", "--carts", "c.jsonl"]) == 2
