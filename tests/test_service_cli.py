"""`promo serve` refuses to start, with one line and no traceback, when it lacks what it needs."""
from __future__ import annotations

import pytest

from engine.cli import main
from engine.service.keys import Scope, create_key, revoke_key
from tests.service_support import write_rules


@pytest.fixture
def rules(tmp_path):
    return str(write_rules(tmp_path / "rules"))


def _serve(capsys, *args: str) -> tuple[int, str]:
    code = main(["serve", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_without_a_key_file_the_service_does_not_start(capsys, rules):
    code, err = _serve(capsys, "--rules", rules)
    assert code == 2 and "--keys FILE is required" in err and "promo keys create" in err


def test_a_missing_key_file_is_named(capsys, rules, tmp_path):
    code, err = _serve(capsys, "--rules", rules, "--keys", str(tmp_path / "none.json"))
    assert code == 1 and "does not exist" in err


def test_a_key_file_without_live_keys_is_refused(capsys, rules, tmp_path):
    keys = tmp_path / "keys.json"
    create_key(keys, "web", Scope.CHECKOUT)
    revoke_key(keys, "web")
    code, err = _serve(capsys, "--rules", rules, "--keys", str(keys))
    assert code == 1 and "no live key" in err


def test_a_ledger_that_was_never_initialised_is_named(capsys, rules, tmp_path):
    keys = tmp_path / "keys.json"
    create_key(keys, "web", Scope.CHECKOUT)
    code, err = _serve(capsys, "--rules", rules, "--keys", str(keys), "--ledger", str(tmp_path / "missing.db"))
    assert code == 1 and "not started" in err and "promo ledger init" in err


def test_a_broken_rule_set_is_listed(capsys, tmp_path):
    keys = tmp_path / "keys.json"
    create_key(keys, "web", Scope.CHECKOUT)
    broken = write_rules(tmp_path / "rules", {"_settings.yaml": b"currencies: [JPY]\n", "x.yaml": b"id: x\n"})
    code, err = _serve(capsys, "--rules", str(broken), "--keys", str(keys))
    assert code == 1 and "not started" in err and "x.yaml" in err


@pytest.mark.parametrize("option", [["--port", "70000"], ["--workers", "0"], ["--timeout", "0"]])
def test_out_of_range_options_are_usage_errors(capsys, rules, tmp_path, option):
    assert main(["serve", "--rules", rules, "--keys", str(tmp_path / "k.json"), *option]) == 2


def test_the_help_says_that_reload_and_metrics_reach_every_worker(capsys):
    assert main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "publishes the rule set it loaded to all of them" in text
    assert "/metrics adds up the counts of every worker" in text
