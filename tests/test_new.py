"""`promo new KIND ID`: a commented draft rule file of every benefit kind, valid as written: loaded by the
real loader beside the bundled rules and previewed on an example cart of its currency."""
from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from engine import evaluate, load_ruleset, read_json
from engine.benefits import KINDS
from engine.cli import main
from engine.templates import BENEFITS, KIND_NAMES, render

ROOT = Path(__file__).resolve().parent.parent
MODELINE = "# yaml-language-server: $schema=../schemas/promotion.schema.json"
# the example order of each shop: the bundled settings (en_US) make a USD/US file, ja_JP a JPY/JP one
SHOPS = {"en_US": ("USD", "US", "us-holiday-code"), "ja_JP": ("JPY", "JP", "jp-mixed-cart")}


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    copy = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", copy)
    return copy


def _new(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["new", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _trace(ruleset, example: str, promotion_id: str, text: str) -> dict:
    """The trace of the example order, previewing the new draft inside its window."""
    starts = next(line for line in text.splitlines() if line.strip().startswith("starts:")).split('"')[1]
    now = starts.replace("T00:00:00", "T12:00:00")
    order = ROOT / "examples" / example
    trace = evaluate(ruleset, read_json(order / "cart.json"), read_json(order / "account.json"),
                     now=now, preview=[promotion_id])
    return json.loads(trace.to_json())


def test_there_is_one_template_for_every_benefit_kind() -> None:
    assert set(BENEFITS) == set(KINDS) == set(KIND_NAMES)


@pytest.mark.parametrize("locale", sorted(SHOPS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_new_file_of_every_kind_loads_and_previews_on_an_example_cart(kind: str, locale: str, rules: Path,
                                                                       capsys) -> None:
    currency, region, example = SHOPS[locale]
    settings = rules / "_settings.yaml"
    settings.write_text(settings.read_text("utf-8").replace("locale: en_US", f"locale: {locale}"), "utf-8")
    promotion_id = f"new-{kind.replace('_', '-')}"
    code, out, err = _new(capsys, kind, promotion_id, "--rules", str(rules))
    assert (code, err) == (0, "") and f"{promotion_id}.yaml" in out
    text = (rules / f"{promotion_id}.yaml").read_text("utf-8")
    assert text.splitlines()[0] == MODELINE
    assert f"\ncurrency: {currency} " in text and f'value: "{region}" ' in text

    ruleset = load_ruleset(rules)   # the real loader: schema, id against file name, every other check
    promotion = ruleset.promotions[promotion_id]
    assert promotion.status == "draft" and promotion.currency == currency
    trace = _trace(ruleset, example, promotion_id, text)
    mentions = [a for a in trace["applied"] if a["promotion"] == promotion_id]
    mentions += [n for n in trace["not_applied"] if n["promotion"] == promotion_id]
    mentions += [g for g in trace["grants"] if g["promotion"] == promotion_id]
    assert len(mentions) >= 1, trace["not_applied"]
    assert not [n for n in trace["not_applied"] if n["promotion"] == promotion_id and n["reason"] == "not_active"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_line_of_a_template_tells_the_marketer_what_it_is(kind: str) -> None:
    text = render(kind, "spring-sale", "USD", "US", date(2026, 11, 21))
    lines = text.splitlines()
    prose = lines.index("description: |                # notes for marketers, never shown to customers") + 1
    for number, line in enumerate(lines):
        if number != prose and line.strip():   # the description's own text cannot hold a comment
            assert "#" in line, f"line {number + 1} has no comment: {line!r}"
    assert "status: draft" in text and "never applies at checkout" in text


def test_a_new_file_is_a_draft_that_does_not_apply_until_it_is_made_active(rules: Path, capsys) -> None:
    assert _new(capsys, "percent_off", "not-yet", "--rules", str(rules))[0] == 0
    text = (rules / "not-yet.yaml").read_text("utf-8")
    trace = _trace(load_ruleset(rules), "us-holiday-code", "not-yet", text)
    assert "not-yet" in {a["promotion"] for a in trace["applied"]}
    starts = next(line for line in text.splitlines() if line.strip().startswith("starts:")).split('"')[1]
    order = ROOT / "examples" / "us-holiday-code"
    live = evaluate(load_ruleset(rules), read_json(order / "cart.json"), read_json(order / "account.json"),
                    now=starts.replace("T00:00:00", "T12:00:00"))
    assert "not-yet" not in {a.promotion for a in live.applied}


@pytest.mark.parametrize("scope", ["per_unit", "per_line", "per_order"])
def test_the_amount_off_template_is_valid_with_each_of_its_scopes(scope: str, rules: Path, capsys) -> None:
    assert _new(capsys, "amount_off", "amount-scope", "--rules", str(rules))[0] == 0
    path = rules / "amount-scope.yaml"
    path.write_text(path.read_text("utf-8").replace("scope: per_order ", f"scope: {scope} "), "utf-8")
    assert load_ruleset(rules).promotions["amount-scope"].benefits[0].scope == scope


def test_a_shop_in_norway_gets_a_file_whose_region_is_the_text_no(tmp_path: Path, capsys) -> None:
    # unquoted, `value: NO` is YAML's no: the file would not load
    (tmp_path / "_settings.yaml").write_text("currencies: [NOK]\nrounding: half_up\n", "utf-8")
    assert _new(capsys, "amount_off", "oslo-sale", "--rules", str(tmp_path)) == (
        0, f"{tmp_path}/oslo-sale.yaml: a draft amount_off promotion; edit it, then `promo validate {tmp_path}`\n", "")
    promotion = load_ruleset(tmp_path).promotions["oslo-sale"]
    assert promotion.currency == "NOK" and 'value: "NO" ' in (tmp_path / "oslo-sale.yaml").read_text("utf-8")
    assert [leaf.value for leaf in promotion.condition.leaves if leaf.variable == "region"] == ["NO"]


@pytest.mark.parametrize("currencies", ["[ZZZ]", "[ZZZ, 7]", "[usd]"])
def test_settings_naming_no_currency_the_engine_knows_give_the_guess_not_a_crash(currencies: str, tmp_path: Path,
                                                                                   capsys) -> None:
    (tmp_path / "_settings.yaml").write_text(f"currencies: {currencies}\nrounding: half_up\n", "utf-8")
    code, out, err = _new(capsys, "amount_off", "odd-shop", "--rules", str(tmp_path))
    assert (code, err) == (0, "") and "odd-shop.yaml" in out
    text = (tmp_path / "odd-shop.yaml").read_text("utf-8")
    assert "currency: JPY " in text and "no _settings.yaml: change it" in text


def test_an_unknown_currency_beside_a_known_one_is_passed_over(tmp_path: Path, capsys) -> None:
    (tmp_path / "_settings.yaml").write_text("currencies: [ZZZ, KWD]\nrounding: half_up\n", "utf-8")
    assert _new(capsys, "amount_off", "kw-sale", "--rules", str(tmp_path))[0] == 0
    text = (tmp_path / "kw-sale.yaml").read_text("utf-8")
    assert "currency: KWD " in text and 'value: "KW" ' in text and 'amount: "5" ' in text


def test_without_settings_the_template_says_its_currency_is_a_guess(tmp_path: Path, capsys) -> None:
    assert _new(capsys, "free_shipping", "ship-free", "--rules", str(tmp_path))[0] == 0
    text = (tmp_path / "ship-free.yaml").read_text("utf-8")
    assert "currency: JPY " in text and "no _settings.yaml: change it" in text


def test_an_existing_file_is_refused_unless_forced(rules: Path, capsys) -> None:
    before = (rules / "toys-200-off-each.yaml").read_bytes()
    code, out, err = _new(capsys, "percent_off", "toys-200-off-each", "--rules", str(rules))
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "toys-200-off-each.yaml already exists" in err and "--force" in err
    assert (rules / "toys-200-off-each.yaml").read_bytes() == before
    code, _, err = _new(capsys, "percent_off", "toys-200-off-each", "--rules", str(rules), "--force")
    assert (code, err) == (0, "")
    assert "type: percent_off" in (rules / "toys-200-off-each.yaml").read_text("utf-8")
    load_ruleset(rules)


def test_force_never_writes_through_a_link_to_a_file_outside_the_directory(tmp_path: Path, capsys) -> None:
    rules, outside = tmp_path / "rules", tmp_path / "outside.txt"
    rules.mkdir()
    outside.write_text("not a rule file\n")
    (rules / "linked.yaml").symlink_to(outside)
    code, out, err = _new(capsys, "percent_off", "linked", "--rules", str(rules), "--force")
    assert (code, out) == (1, "") and err.count("\n") == 1 and "linked.yaml is not a regular file" in err
    assert outside.read_text() == "not a rule file\n" and (rules / "linked.yaml").is_symlink()


def test_an_id_already_taken_by_a_yml_file_is_refused_even_when_forced(rules: Path, capsys) -> None:
    (rules / "old-one.yml").write_text("x: 1\n")
    code, _, err = _new(capsys, "percent_off", "old-one", "--rules", str(rules), "--force")
    assert code == 1 and "old-one.yml already exists" in err and not (rules / "old-one.yaml").exists()


@pytest.mark.parametrize("bad", ["Spring-Sale", "spring sale", "_sale", "sale.yaml", "s" * 65, "ｓale", "sale\x1b[2J", ""])
def test_an_id_the_schema_does_not_allow_is_refused_naming_the_allowed_characters(bad: str, rules: Path, capsys) -> None:
    code, out, err = _new(capsys, "percent_off", bad, "--rules", str(rules))
    assert code == 1 and out == "" and err.count("\n") == 1 and "\x1b" not in err
    assert "is not a promotion id" in err and "lower-case letters a-z, digits 0-9, '-' and '_'" in err


def test_an_unknown_kind_is_refused_with_the_list_of_kinds(rules: Path, capsys) -> None:
    code, _, err = _new(capsys, "percent", "x-sale", "--rules", str(rules))
    assert code == 1 and err.count("\n") == 1 and "unknown kind 'percent'" in err
    assert all(kind in err for kind in KINDS)


def test_a_missing_rules_directory_or_a_file_is_refused(tmp_path: Path, capsys) -> None:
    code, _, err = _new(capsys, "percent_off", "x-sale", "--rules", str(tmp_path / "nowhere"))
    assert code == 1 and "does not exist" in err and err.count("\n") == 1
    (tmp_path / "file").write_text("")
    code, _, err = _new(capsys, "percent_off", "x-sale", "--rules", str(tmp_path / "file"))
    assert code == 1 and "is not a directory" in err and err.count("\n") == 1


@pytest.mark.parametrize("args", [["percent_off"], [], ["percent_off", "x", "--colour"], ["percent_off", "x", "y"]])
def test_usage_errors_exit_2(args: list[str], capsys) -> None:
    code, _, err = _new(capsys, *args)
    assert code == 2 and "usage:" in err and "Traceback" not in err
