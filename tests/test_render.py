"""engine/render.py: names from rule files and carts are shown, never obeyed, and amounts always format."""
from decimal import Decimal
from io import StringIO
from pathlib import Path

from rich.console import Console

from engine import evaluate, load_ruleset, read_json
from engine.render import PLACEHOLDER, clean_lines, clean_text, money, promotion_report_lines, render_trace, safe_text

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "jp-mixed-cart"


def test_escape_sequences_become_one_visible_placeholder_each():
    assert clean_text("\x1b[31mred\x1b[0m") == f"{PLACEHOLDER}red{PLACEHOLDER}"
    assert clean_text("\x1b]0;new title\x07after") == f"{PLACEHOLDER}after"          # OSC up to BEL
    assert clean_text("\x1b]8;;http://evil\x1b\\link") == f"{PLACEHOLDER}link"       # OSC 8 hyperlink up to ST
    assert clean_text("a\x1bcb") == f"a{PLACEHOLDER}b"                                 # ESC c: reset terminal


def test_every_other_control_and_bidi_override_is_replaced():
    for control in ("\x00", "\x07", "\b", "\r", "\n", "\t", "\x7f", "\x85", "\x9b", "\x9d", "\u202e", "\u2066",
                    "\u2028", "\u200f"):
        assert clean_text(f"a{control}b") == f"a{PLACEHOLDER}b", repr(control)


def test_ordinary_text_is_unchanged():
    for text in ("¥500 off books", "Ünïcödé 日本語 ‹quotes›", "[bold]x[/bold]", "emoji 🎁"):
        assert clean_text(text) == text


def test_safe_text_escapes_rich_markup_so_it_prints_as_written():
    console = Console(file=StringIO(), width=200, emoji=False, color_system=None)
    console.print(f"name: {safe_text('[/x] [bold]Sale[/bold] [link=http://x]y[/link] :gift:')}")
    assert console.file.getvalue() == "name: [/x] [bold]Sale[/bold] [link=http://x]y[/link] :gift:\n"


def test_clean_lines_keeps_the_messages_own_line_breaks():
    assert clean_lines("2 problems\n  a.yaml: \x1b[2Jbad\n  b.yaml: ok") == f"2 problems\n  a.yaml: {PLACEHOLDER}bad\n  b.yaml: ok"


def test_money_with_a_locale_babel_does_not_know_falls_back_to_en_us():
    assert money(Decimal("3500"), "JPY", "ja_JP") == "￥3,500"
    assert money(Decimal("3500"), "JPY", "zz") == "¥3,500"
    assert money(Decimal("3500"), "JPY", "not a locale!") == "¥3,500"


def test_a_trace_renders_with_an_unknown_locale():
    rules = load_ruleset(ROOT / "rules")
    trace = evaluate(rules, read_json(EXAMPLE / "cart.json"), read_json(EXAMPLE / "account.json"),
                     now="2026-11-21T10:00:00+09:00")
    console = Console(file=StringIO(), width=132, emoji=False)
    render_trace(trace, console, "zz")
    assert "total due ¥" in console.file.getvalue()


def test_the_ledger_report_lines_are_cleaned():
    report = {"promotion": "x\x1b[2J", "in_rule_set": False, "uses": 1, "held_uses": 0, "total_uses_limit": None,
              "customers_with_uses": 1, "uses_per_customer_limit": 1, "budget_spent": "10", "budget_held": "0",
              "budget": None, "codes": {"unused": 0, "held": 0, "redeemed": 0}}
    lines = promotion_report_lines(report)
    assert lines[0] == f"x{PLACEHOLDER} (not in this rule set)"
    assert lines[1] == "  uses          1 committed, 0 held; limit no limit" and len(lines) == 4
