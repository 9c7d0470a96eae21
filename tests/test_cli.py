import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    for key in ("status", "targets", "benefits", "stacking"):
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
    assert main(args + ["--compact"]) == 0
    assert json.loads(capsys.readouterr().out) == direct.to_dict(view="compact")
    assert main([a for a in args if a != "--json"] + ["--compact"]) == 2     # a table has no compact form
    out = capsys.readouterr()
    assert out.out == "" and "--compact" in out.err and "--json" in out.err and "Traceback" not in out.err


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


# --- hostile invocations: one plain message naming what to fix, never a traceback ------------------------

NOW = "2026-11-21T10:00:00+09:00"
GOOD_CART, GOOD_ACCOUNT, RULES = str(EXAMPLE / "cart.json"), str(EXAMPLE / "account.json"), str(ROOT / "rules")


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """A directory of files that are not what a command expects; commands run inside it."""
    (tmp_path / "adir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "array.json").write_text("[]")
    (tmp_path / "object.json").write_text('{"a": 1}')
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "lonely").mkdir()
    (tmp_path / "lonely" / "cart.json").write_text((EXAMPLE / "cart.json").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _evaluate_with(**options) -> list[str]:
    args = {"--rules": RULES, "--cart": GOOD_CART, "--account": GOOD_ACCOUNT, "--now": NOW, **options}
    return ["evaluate", *[x for key, value in args.items() if value is not None for x in (key, value)]]


def _refund_with(trace: str, *returns: str, now: str = NOW) -> list[str]:
    return ["refund", "--rules", RULES, "--trace", trace, "--return", *(returns or ("L1=1",)), "--now", now]


HOSTILE = [
    # (id, argv, exit code, what stderr must name)
    ("cart is a directory", _evaluate_with(**{"--cart": "adir"}), 1, ["--cart adir", "is a directory"]),
    ("cart is missing", _evaluate_with(**{"--cart": "missing.json"}), 1, ["--cart missing.json", "No such file"]),
    ("cart is a FIFO", _evaluate_with(**{"--cart": "fifo"}), 1, ["--cart fifo", "not a regular file"]),
    ("cart is binary", _evaluate_with(**{"--cart": "binary.json"}), 1, ["--cart binary.json", "not UTF-8"]),
    ("cart is empty", _evaluate_with(**{"--cart": "empty.json"}), 1, ["--cart empty.json", "empty"]),
    ("cart is nested too deeply", _evaluate_with(**{"--cart": "deep.json"}), 1, ["--cart deep.json", "nested"]),
    ("cart is an array", _evaluate_with(**{"--cart": "array.json"}), 1, ["cart", "must be a mapping"]),
    ("account is a FIFO", _evaluate_with(**{"--account": "fifo"}), 1, ["--account fifo", "not a regular file"]),
    ("account beside the cart is missing", _evaluate_with(**{"--cart": "lonely/cart.json", "--account": None}), 1,
     ["--account", "lonely/account.json"]),
    ("usage is binary", _evaluate_with(**{"--usage": "binary.json"}), 1, ["--usage binary.json", "not UTF-8"]),
    ("rules directory is missing", _evaluate_with(**{"--rules": "no-rules"}), 1, ["no-rules", "rule directory"]),
    ("now at the end of time", _evaluate_with(**{"--now": "9999-12-31T23:59:59-12:00"}), 1, ["--now", "out of range"]),
    ("now at the start of time", _evaluate_with(**{"--now": "0001-01-01T00:00:00+09:00"}), 1, ["--now", "out of range"]),
    ("now is a word", _evaluate_with(**{"--now": "yesterday"}), 1, ["--now 'yesterday'", "ISO 8601"]),
    ("now has no offset", _evaluate_with(**{"--now": "2026-11-21T10:00:00"}), 1, ["--now", "no UTC offset"]),
    ("trace is not a trace", _refund_with("object.json"), 1, ["--trace object.json", "not a trace"]),
    ("trace is empty", _refund_with("empty.json"), 1, ["--trace empty.json", "empty"]),
    ("trace is an array", _refund_with("array.json"), 1, ["--trace array.json", "not a trace"]),
    ("trace is a directory", _refund_with("adir"), 1, ["--trace adir", "is a directory"]),
    ("trace is missing", _refund_with("missing.json"), 1, ["--trace missing.json", "No such file"]),
    ("refund now is a word", _refund_with("object.json", now="tomorrow"), 1, ["--now 'tomorrow'"]),
    ("return quantity is not a number", _refund_with("object.json", "L1=abc"), 2, ["--return", "'L1=abc'"]),
    ("return has no quantity", _refund_with("object.json", "L1"), 2, ["--return", "'L1'"]),
    ("return quantity is a superscript", _refund_with("object.json", "L1=²"), 2, ["--return", "'L1=²'"]),
    ("return has no line", _refund_with("object.json", "=1"), 2, ["--return", "'=1'"]),
    ("unknown command", ["frobnicate"], 2, ["invalid choice: 'frobnicate'"]),
    ("no command", [], 2, ["required"]),
    ("unknown option", _evaluate_with(**{"--bogus": "1"}), 2, ["unrecognized arguments: --bogus"]),
    ("cart argument missing", ["evaluate", "--rules", RULES], 2, ["--cart"]),
]


def _assert_plain_failure(code: int, err: str, expected_code: int, names: list[str], max_lines: int = 4) -> None:
    assert code == expected_code, err
    assert "Traceback" not in err and "Error:" not in err     # no traceback, no library exception's own text
    assert 0 < len(err.strip().splitlines()) <= max_lines, err
    assert "\x1b" not in err
    for name in names:
        assert name in err, err


@pytest.mark.parametrize("argv,code,names", [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_a_hostile_invocation_gets_one_plain_message(hostile, capsys, argv, code, names):
    before = sorted(p.name for p in hostile.iterdir())
    assert main(argv) == code
    out, err = capsys.readouterr()
    _assert_plain_failure(code, err, code, names)
    assert out == ""                                            # nothing half-printed that reads like a result
    assert sorted(p.name for p in hostile.iterdir()) == before  # and nothing created


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_cart_is_named(tmp_path, capsys):
    cart = tmp_path / "cart.json"
    cart.write_text((EXAMPLE / "cart.json").read_text())
    cart.chmod(0)
    assert main(_evaluate_with(**{"--cart": str(cart)})) == 1
    _assert_plain_failure(1, capsys.readouterr().err, 1, [f"--cart {cart}", "Permission denied"])


def test_a_rule_file_problem_never_carries_a_control_sequence_to_the_terminal(tmp_path, capsys):
    (tmp_path / "_settings.yaml").write_text("currencies: [JPY]\n")
    (tmp_path / "x.yaml").write_text('id: x\n"\\e[31mbogus\\e]0;title\\a": 1\n')
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "x.yaml" in err and "bogus" in err
    assert "\x1b" not in err and "\x07" not in err


def _markup_rules(tmp_path: Path) -> tuple[Path, str]:
    """A rule set whose promotion and line names are rich markup (and, if the schema lets them through, an
    escape sequence); returns the directory and the name as the loader reads it."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "_settings.yaml").write_text("currencies: [JPY]\n")
    body = ('id: sale\nname: "{name}"\nstatus: active\ncurrency: JPY\ntargets: {{include: all}}\n'
            'benefits: [{{type: amount_off, scope: per_order, amount: "300"}}]\nstacking: {{priority: 10, exclusive: false}}\n')
    for name in (r"[/x] [bold]Sale[/bold] \e[31mred", "[/x] [bold]Sale[/bold] [link=http://x]red[/link]"):
        (rules / "sale.yaml").write_text(body.format(name=name))
        try:
            return rules, load_ruleset(rules).promotions["sale"].name
        except ValueError:      # the schema refuses control characters in names: markup alone, then
            continue
    raise AssertionError("neither name loads")


def test_markup_in_a_promotion_name_is_printed_literally(tmp_path, capsys):
    rules, name = _markup_rules(tmp_path)
    cart = json.loads((EXAMPLE / "cart.json").read_text())
    cart["lines"][0]["name"] = "[red]Earbuds[/red] [/]"
    (tmp_path / "cart.json").write_text(json.dumps(cart))
    assert main(["evaluate", "--rules", str(rules), "--cart", str(tmp_path / "cart.json"),
                 "--account", GOOD_ACCOUNT, "--now", NOW]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "[/x] [bold]Sale[/bold]" in out and "[red]Earbuds[/red] [/]" in out
    assert "\x1b" not in out
    if "\x1b" in name:
        assert "\ufffdred" in out            # the escape sequence is shown as a placeholder, not obeyed


def test_an_unexpected_error_is_one_line_asking_for_a_report(monkeypatch, capsys):
    import engine.cli as cli

    def broken(*_args):
        raise RuntimeError("secret internals")
    monkeypatch.setattr(cli, "_validate", broken)
    assert main(["validate", RULES]) == 1
    out, err = capsys.readouterr()
    assert err == "promo: internal error (RuntimeError); please report it\n" and out == ""


def test_an_interrupt_exits_130_quietly_and_a_closed_pipe_quietly(monkeypatch, capsys):
    import engine.cli as cli

    def interrupted(*_args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "_validate", interrupted)
    assert main(["validate", RULES]) == 130

    def closed(*_args):
        raise BrokenPipeError
    monkeypatch.setattr(cli, "_validate", closed)
    assert main(["validate", RULES]) == 1
    assert capsys.readouterr().err == ""


def _promo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("promo")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_through_a_real_process_no_traceback_reaches_stderr(hostile):
    for argv, code, names in ((_evaluate_with(**{"--cart": "binary.json"}), 1, ["--cart binary.json"]),
                              (_evaluate_with(**{"--now": "9999-12-31T23:59:59-12:00"}), 1, ["--now"]),
                              (_refund_with("array.json"), 1, ["--trace array.json"]),
                              (["refund", "--trace", "x", "--return", "L1=abc"], 2, ["--return"])):
        done = _promo(*argv, cwd=hostile)
        _assert_plain_failure(done.returncode, done.stderr, code, names)
        assert done.stdout == ""


def test_through_a_real_process_markup_names_are_printed_literally(tmp_path):
    rules, _ = _markup_rules(tmp_path)
    done = _promo("evaluate", "--rules", str(rules), "--cart", GOOD_CART, "--account", GOOD_ACCOUNT, "--now", NOW,
                  cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    assert "[/x] [bold]Sale[/bold]" in done.stdout and "\x1b" not in done.stdout


# --- every command says what it is, and validate checks one file or all ---------------------------

def test_version_prints_the_package_version(capsys):
    from importlib import metadata
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"promo {metadata.version('promo-engine')}"


def test_every_option_of_every_command_has_help_text():
    from engine.cli import _parser

    def walk(parser, name):
        for action in parser._actions:
            if action.dest == "help":
                continue
            if hasattr(action, "choices") and isinstance(action.choices, dict):   # subcommands
                for sub, subparser in action.choices.items():
                    yield from walk(subparser, f"{name} {sub}")
            else:
                yield f"{name} {'/'.join(action.option_strings) or action.dest}", action.help

    missing = [where for where, text in walk(_parser(), "promo") if not text]
    assert missing == []


def _rules_with(tmp_path, name, text):
    import shutil
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / name).write_text(text)
    return rules


def test_validate_one_file_lists_only_its_problems_and_mentions_the_others(tmp_path, capsys):
    rules = _rules_with(tmp_path, "broken.yaml", "id: broken\nname: Broken\nstatus: active\n")
    assert main(["validate", str(rules / "broken.yaml")]) == 1
    err = capsys.readouterr().err
    assert "broken.yaml has 3 problems" in err and "missing required key 'targets'" in err
    assert main(["validate", str(rules / "books-500-off-over-3000.yaml")]) == 0
    out = capsys.readouterr().out
    assert "valid against" in out and "1 other file" in out and "has problems" in out
    assert main(["validate", str(rules / "missing.yaml")]) == 1
    assert "no such rule file" in capsys.readouterr().err


def test_validate_json_reports_problems_for_ci(tmp_path, capsys):
    assert main(["validate", "--json", str(ROOT / "rules")]) == 0
    ok = json.loads(capsys.readouterr().out)
    assert ok["valid"] is True and ok["problems"] == [] and ok["promotions"] == len(load_ruleset(ROOT / "rules").promotions)
    rules = _rules_with(tmp_path, "broken.yaml", "id: broken\nname: Broken\nstatus: active\n")
    (rules / "notes.txt").write_text("not a rule file")
    assert main(["validate", "--json", str(rules)]) == 1
    bad = json.loads(capsys.readouterr().out)
    assert bad["valid"] is False and "version" not in bad
    files = {Path(p["file"]).name for p in bad["problems"]}
    assert files == {"broken.yaml", "notes.txt"}           # a stray file does not hide the other problems
    assert all({"file", "line", "column", "path", "message"} == set(p) for p in bad["problems"])


def test_evaluate_with_a_missing_cart_names_the_cart(capsys):
    assert main(["evaluate", "--cart", "missing.json", "--now", "2026-11-21T10:00:00+09:00"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("promo: --cart missing.json: cannot read") and "account" not in err
