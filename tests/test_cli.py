import json
from pathlib import Path

from engine import evaluate, load_ruleset, read_json
from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "jp-mixed-cart"


def test_validate_exits_zero_on_the_bundled_rules(capsys):
    assert main(["validate", str(ROOT / "rules")]) == 0
    assert "all valid" in capsys.readouterr().out


def test_validate_exits_one_and_lists_every_problem(tmp_path, capsys):
    (tmp_path / "_settings.yaml").write_text("currencies: [JPY]\n")
    (tmp_path / "x.yaml").write_text("id: y\nname: X\n")
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    for key in ("status", "targets", "reward", "stacking"):
        assert f"x.yaml:1:1: $: missing required key '{key}'" in err


def test_evaluate_json_is_the_trace_of_evaluate(capsys):
    args = ["evaluate", "--rules", str(ROOT / "rules"), "--cart", str(EXAMPLE / "cart.json"),
            "--account", str(EXAMPLE / "account.json"), "--code", "welcome", "--now", "2026-11-21T10:00:00+09:00",
            "--json"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    direct = evaluate(load_ruleset(ROOT / "rules"), read_json(EXAMPLE / "cart.json"),
                      read_json(EXAMPLE / "account.json"), codes=["welcome"], now="2026-11-21T10:00:00+09:00")
    assert printed == direct.to_dict()


def test_evaluate_table_shows_lines_reasons_and_totals(capsys):
    args = ["evaluate", "--rules", str(ROOT / "rules"), "--cart", str(EXAMPLE / "cart.json"),
            "--code", "NOPE", "--now", "2026-11-21T10:00:00+09:00"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Applied, in order" in out and "Not applied" in out and "total due" in out
    assert "Code NOPE" in out and "not valid" in out


def test_evaluate_rejects_a_bad_cart_with_exit_one(tmp_path, capsys):
    cart = json.loads((EXAMPLE / "cart.json").read_text())
    cart["lines"][0]["unit_price"] = 12.5
    (tmp_path / "cart.json").write_text(json.dumps(cart))
    args = ["evaluate", "--rules", str(ROOT / "rules"), "--cart", str(tmp_path / "cart.json"),
            "--account", str(EXAMPLE / "account.json"), "--now", "2026-11-21T10:00:00+09:00"]
    assert main(args) == 1
    assert "$.lines[0].unit_price" in capsys.readouterr().err


BALANCES = ROOT / "examples" / "jp-balances"


def _balances_trace(tmp_path, capsys) -> Path:
    args = ["evaluate", "--rules", str(ROOT / "rules"), "--cart", str(BALANCES / "cart.json"),
            "--now", "2026-11-21T10:00:00+09:00", "--json"]
    assert main(args) == 0
    path = tmp_path / "trace.json"
    path.write_text(capsys.readouterr().out)
    return path


def test_evaluate_table_shows_the_tender_breakdown_and_grants(capsys):
    args = ["evaluate", "--rules", str(ROOT / "rules"), "--cart", str(BALANCES / "cart.json"),
            "--now", "2026-11-21T10:00:00+09:00"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Paid by" in out and "promotional balance promo-books-nov" in out and "payment method" in out
    assert "Not used: promotional balance promo-old (expired)" in out
    assert "Granted after the order" in out


def test_refund_json_is_the_refund_of_the_trace(tmp_path, capsys):
    from engine.refund import refund
    trace = _balances_trace(tmp_path, capsys)
    args = ["refund", "--rules", str(ROOT / "rules"), "--trace", str(trace), "--return", "L1=1", "L3=1",
            "--now", "2026-12-05T10:00:00+09:00", "--json"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    direct = refund(load_ruleset(ROOT / "rules"), read_json(trace), {"L1": 1, "L3": 1}, "2026-12-05T10:00:00+09:00")
    assert printed == direct.to_dict() and printed["refund"] == direct.to_dict()["refund"]


def test_refund_table_shows_where_the_money_goes(tmp_path, capsys):
    trace = _balances_trace(tmp_path, capsys)
    args = ["refund", "--rules", str(ROOT / "rules"), "--trace", str(trace), "--return", "L1=2", "L2=1", "L3=1",
            "L4=1", "--now", "2026-12-05T10:00:00+09:00"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Cancellation of cart cart-2001" in out and "Back to" in out and "forfeited" in out
    assert "Grant revoked: ¥500 from" in out and "(gift-card-charge-bonus): The order was cancelled." in out


def test_refund_rejects_a_malformed_return(tmp_path, capsys):
    trace = _balances_trace(tmp_path, capsys)
    assert main(["refund", "--trace", str(trace), "--return", "L1", "--now", "2026-12-05T10:00:00+09:00"]) == 2
    assert main(["refund", "--rules", str(ROOT / "rules"), "--trace", str(trace), "--return", "L9=1",
                 "--now", "2026-12-05T10:00:00+09:00"]) == 1
    assert "no line 'L9'" in capsys.readouterr().err
