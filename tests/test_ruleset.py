"""Every mistake a marketer can make in a rule file is caught, with file, line and a plain message,
and a rule set with any problem does not load at all."""
from pathlib import Path

import pytest

from engine import RuleFileError, load_ruleset
from engine.benefits import KINDS
from engine.model import DEFAULT_EXCLUSIONS
from engine.ruleset import MAX_CONDITION_LEAVES, build_ruleset

SETTINGS = "currencies: [JPY, USD, KWD]\nrounding: half_up\n"
GOOD = """\
id: books-500-off
name: 500 off books
status: active
currency: JPY
eligibility:
  all:
    - name: eligible_subtotal
      operator: greater_than_or_equal_to
      value: "3000"
targets:
  include:
    categories: [books]
benefits:
  - type: amount_off
    scope: per_order
    amount: "500"
stacking:
  priority: 10
  exclusive: false
"""


def write(tmp_path: Path, files: dict[str, str], settings: str = SETTINGS) -> Path:
    if settings is not None:
        (tmp_path / "_settings.yaml").write_text(settings)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def problems(tmp_path, files, settings=SETTINGS):
    with pytest.raises(RuleFileError) as exc:
        load_ruleset(write(tmp_path, files, settings))
    return exc.value.problems


def one(tmp_path, text, name="books-500-off.yaml"):
    found = problems(tmp_path, {name: text})
    assert len(found) == 1, found
    return found[0]


def test_a_good_file_loads_with_its_content_hash(tmp_path):
    rules = load_ruleset(write(tmp_path, {"books-500-off.yaml": GOOD}))
    assert list(rules.promotions) == ["books-500-off"]
    assert rules.version.startswith("sha256:") and rules.rounding == "half_up"


def test_the_bundled_catalogue_is_valid_and_has_every_reward_type():
    rules = load_ruleset(Path(__file__).resolve().parent.parent / "rules")
    kinds = {b.type for p in rules.promotions.values() for b in p.benefits}
    assert kinds == set(KINDS)


def test_rule_set_errors_are_value_errors_of_our_own_type(tmp_path):
    with pytest.raises(ValueError):
        load_ruleset(write(tmp_path, {"books-500-off.yaml": "id: [\n"}))


def test_malformed_yaml_points_at_the_line(tmp_path):
    p = one(tmp_path, GOOD.replace("  priority: 10", "  priority: [10"))
    assert p.file.endswith("books-500-off.yaml") and p.line >= 18 and "not valid YAML" in p.message


def test_an_unknown_key_is_named_with_the_closest_valid_one(tmp_path):
    p = one(tmp_path, GOOD.replace("stacking:", "stacknig:") + "stacking: {priority: 1, exclusive: false}\n")
    assert p.path == "$.stacknig" and "did you mean 'stacking'" in p.message and p.line == 17


def test_money_written_as_a_bare_number_is_refused(tmp_path):
    p = one(tmp_path, GOOD.replace('amount: "500"', "amount: 500.5"))
    assert p.path == "$.benefits[0].amount" and "quoted" in p.message and p.line == 16


@pytest.mark.parametrize("value", [".nan", ".inf", "-500", "'5e2'", "'-500'"])
def test_nan_infinite_negative_and_exponent_money_is_refused(tmp_path, value):
    p = one(tmp_path, GOOD.replace('amount: "500"', f"amount: {value}"))
    assert p.path == "$.benefits[0].amount"


def test_money_finer_than_the_currency_is_refused_not_rounded(tmp_path):
    p = one(tmp_path, GOOD.replace('amount: "500"', 'amount: "500.5"'))
    assert p.path == "$.benefits[0].amount" and "finer than JPY" in p.message


def test_money_without_a_currency_is_refused(tmp_path):
    found = problems(tmp_path, {"books-500-off.yaml": GOOD.replace("currency: JPY\n", "")})
    assert {p.path for p in found} == {"$.eligibility.all[0].value", "$.benefits[0].amount"}
    assert all("must say its 'currency'" in p.message for p in found)


def test_a_currency_the_rule_set_does_not_list_is_refused(tmp_path):
    p = one(tmp_path, GOOD.replace("currency: JPY", "currency: EUR"))
    assert p.path == "$.currency" and "not one of the rule set's currencies" in p.message


def test_an_unknown_variable_gets_the_closest_name(tmp_path):
    p = one(tmp_path, GOOD.replace("name: eligible_subtotal", "name: eligible_subtotl"))
    assert p.path == "$.eligibility.all[0].name" and "did you mean 'eligible_subtotal'" in p.message and p.line == 7


def test_an_unknown_operator_gets_the_closest_name(tmp_path):
    p = one(tmp_path, GOOD.replace("operator: greater_than_or_equal_to", "operator: greater_then_or_equal_to"))
    assert p.path == "$.eligibility.all[0].operator" and "did you mean 'greater_than_or_equal_to'" in p.message


def test_an_operator_of_another_type_is_refused(tmp_path):
    text = GOOD.replace("name: eligible_subtotal", "name: region").replace('value: "3000"', "value: JP")
    p = one(tmp_path, text)
    assert p.path == "$.eligibility.all[0].operator" and "unknown operator" in p.message


def test_matches_regex_is_not_offered(tmp_path):
    text = GOOD.replace("name: eligible_subtotal", "name: region").replace(
        "operator: greater_than_or_equal_to", "operator: matches_regex").replace('value: "3000"', 'value: "(a+)+$"')
    found = problems(tmp_path, {"books-500-off.yaml": text})
    assert any(p.path == "$.eligibility.all[0].operator" and "unknown operator 'matches_regex'" in p.message
               for p in found)


def test_an_operator_without_input_must_not_have_a_value(tmp_path):
    text = GOOD.replace("name: eligible_subtotal", "name: first_order").replace(
        "operator: greater_than_or_equal_to", "operator: is_true")
    p = one(tmp_path, text)
    assert "takes no value" in p.message


def test_a_country_code_no_read_as_false_is_explained(tmp_path):
    text = GOOD.replace("name: eligible_subtotal", "name: region").replace(
        "operator: greater_than_or_equal_to", "operator: equal_to").replace('value: "3000"', "value: NO")
    p = one(tmp_path, text)
    assert "quotes" in p.message and p.path == "$.eligibility.all[0].value"


def test_naive_times_and_windows_that_end_before_they_start_are_refused(tmp_path):
    naive = GOOD + 'window:\n  starts: "2026-11-27T00:00:00"\n'
    assert "UTC offset" in one(tmp_path, naive).message
    backwards = GOOD + 'window:\n  starts: "2026-11-28T00:00:00+09:00"\n  ends: "2026-11-27T00:00:00+09:00"\n'
    p = one(tmp_path, backwards, name="books-500-off.yaml")
    assert p.path == "$.window.ends" and "must be after starts" in p.message


@pytest.mark.parametrize("percent, message", [(0, "out of range"), (101, "out of range"), ('"100.5"', "out of range"),
                                              (12.5, "quoted")])
def test_percent_bounds(tmp_path, percent, message):
    text = GOOD.replace("  - type: amount_off\n    scope: per_order\n    amount: \"500\"",
                        f"  - type: percent_off\n    percent: {percent}")
    assert message in one(tmp_path, text).message


def test_tiers_must_ascend(tmp_path):
    text = GOOD.replace("  - type: amount_off\n    scope: per_order\n    amount: \"500\"",
                        "  - type: tiered\n    basis: eligible_quantity\n    tiers:\n      - {at: 5, percent: 10}\n"
                        "      - {at: 3, percent: 5}")
    p = one(tmp_path, text)
    assert p.path == "$.benefits[0].tiers[1].at" and "lowest threshold up" in p.message


def test_a_tier_needs_exactly_one_of_percent_or_amount(tmp_path):
    text = GOOD.replace("  - type: amount_off\n    scope: per_order\n    amount: \"500\"",
                        "  - type: tiered\n    basis: eligible_quantity\n    tiers:\n      - {at: 3, percent: 5, amount: \"100\"}")
    assert "exactly one of 'percent' or 'amount'" in one(tmp_path, text).message


def test_amount_off_needs_a_scope(tmp_path):
    p = one(tmp_path, GOOD.replace("    scope: per_order\n", ""))
    assert p.path == "$.benefits[0]" and "missing required key 'scope'" in p.message


def test_the_id_must_be_the_file_name(tmp_path):
    p = one(tmp_path, GOOD, name="other-name.yaml")
    assert p.path == "$.id" and "must equal the file name 'other-name'" in p.message


def test_duplicate_codes_among_active_promotions_are_refused(tmp_path):
    a = GOOD + "code: SAVE10\n"
    b = GOOD.replace("id: books-500-off", "id: books-other") + "code: ' save10 '\n"
    [p] = problems(tmp_path, {"books-500-off.yaml": a, "books-other.yaml": b})
    assert p.file.endswith("books-other.yaml") and p.line == 20 and "already used" in p.message


def test_a_paused_promotion_may_reuse_a_code(tmp_path):
    a = GOOD + "code: SAVE10\n"
    b = GOOD.replace("id: books-500-off", "id: books-other").replace("status: active", "status: paused") + "code: SAVE10\n"
    rules = load_ruleset(write(tmp_path, {"books-500-off.yaml": a, "books-other.yaml": b}))
    assert rules.codes["SAVE10"] == ("books-500-off", "books-other")


def test_the_same_id_in_yaml_and_yml_is_refused(tmp_path):
    found = problems(tmp_path, {"books-500-off.yaml": GOOD, "books-500-off.yml": GOOD})
    assert any("duplicate id" in p.message for p in found)


def test_a_missing_settings_file_stops_the_load(tmp_path):
    found = problems(tmp_path, {"books-500-off.yaml": GOOD}, settings=None)
    assert any("_settings.yaml is missing" in p.message for p in found)


def test_an_unknown_currency_in_settings_is_refused(tmp_path):
    found = problems(tmp_path, {"books-500-off.yaml": GOOD.replace("JPY", "USD")}, settings="currencies: [USD, ABC]\n")
    assert any("unknown ISO 4217 currency 'ABC'" in p.message for p in found)


def test_deep_and_huge_condition_trees_are_refused(tmp_path):
    leaf = '{name: order_count, operator: less_than, value: 3}'
    deep = leaf
    for _ in range(10):
        deep = "{all: [" + deep + "]}"
    assert "nested deeper" in one(tmp_path, GOOD.replace("eligibility:\n  all:\n    - name: eligible_subtotal\n"
                                                         "      operator: greater_than_or_equal_to\n"
                                                         "      value: \"3000\"\n", f"eligibility: {deep}\n")).message
    wide = "{any: [" + ", ".join("{all: [" + ", ".join([leaf] * 50) + "]}" for _ in range(5)) + "]}"
    assert f"at most {MAX_CONDITION_LEAVES}" in one(tmp_path, GOOD.replace(
        "eligibility:\n  all:\n    - name: eligible_subtotal\n      operator: greater_than_or_equal_to\n"
        "      value: \"3000\"\n", f"eligibility: {wide}\n")).message


def test_every_problem_in_every_file_is_reported_at_once(tmp_path):
    bad1 = GOOD.replace('amount: "500"', "amount: 500.5").replace("priority: 10", "priority: high")
    bad2 = GOOD.replace("id: books-500-off", "id: second").replace("status: active", "status: live")
    found = problems(tmp_path, {"books-500-off.yaml": bad1, "second.yaml": bad2})
    assert {(Path(p.file).name, p.path) for p in found} == {
        ("books-500-off.yaml", "$.benefits[0].amount"), ("books-500-off.yaml", "$.stacking.priority"),
        ("second.yaml", "$.status")}
    text = str(RuleFileError(found))
    assert "nothing was loaded" in text and "books-500-off.yaml:16:" in text


def test_build_ruleset_checks_in_memory_files_the_same_way():
    rules = build_ruleset({"r/_settings.yaml": SETTINGS.encode(), "r/books-500-off.yaml": GOOD.encode()})
    assert "books-500-off" in rules.promotions
    with pytest.raises(RuleFileError):
        build_ruleset({"r/books-500-off.yaml": GOOD.encode()})


def test_an_unreadable_rule_file_is_a_rule_file_error(tmp_path, monkeypatch):
    import engine.ruleset as ruleset
    write(tmp_path, {"books-500-off.yaml": GOOD})
    real = ruleset.read_capped

    def read_capped(path, limit, follow_links=True):
        if path.name == "books-500-off.yaml":
            raise PermissionError(13, "Permission denied")
        return real(path, limit, follow_links)

    monkeypatch.setattr(ruleset, "read_capped", read_capped)
    [p] = problems(tmp_path, {})
    assert p.file.endswith("books-500-off.yaml") and "cannot read the file: Permission denied" in p.message


GRANT = GOOD.replace("""benefits:
  - type: amount_off
    scope: per_order
    amount: "500"
""", """benefits:
  - type: grant_promotional_balance
    amount: "300"
    expires: {after_days: 30}
""")


def test_a_grant_loads_with_the_default_scope_of_promotional_balance(tmp_path):
    reward = load_ruleset(write(tmp_path, {"books-500-off.yaml": GRANT})).promotions["books-500-off"].benefits[0]
    assert (reward.expires_after_days, reward.pays_for.categories, reward.pays_for.excludes,
            reward.pays_for.shipping) == (30, None, DEFAULT_EXCLUSIONS, False)


@pytest.mark.parametrize("expires, window, path, fragment", [
    ("{after_days: 0}", "", "$.benefits[0].expires.after_days", "at least 1"),
    ("{}", "", "$.benefits[0].expires", "must not be empty"),
    ("{after_days: 3, at: \"2027-01-01T00:00:00+09:00\"}", "", "$.benefits[0].expires", ""),
    ("{at: \"2027-01-01T00:00:00+09:00\"}", "", "$.benefits[0].expires.at", "needs a window"),
    ("{at: \"2026-12-01T00:00:00+09:00\"}",
     "window: {starts: \"2026-11-01T00:00:00+09:00\", ends: \"2026-12-02T00:00:00+09:00\"}\n",
     "$.benefits[0].expires.at", "ends no later"),
    ("{at: \"2027-01-01T00:00:00\"}", "", "$.benefits[0].expires.at", ""),
])
def test_a_grant_that_could_be_born_expired_or_says_its_expiry_twice_is_refused(tmp_path, expires, window, path,
                                                                                fragment):
    text = GRANT.replace("{after_days: 30}", expires).replace("eligibility:", window + "eligibility:")
    found = one(tmp_path, text)
    assert found.path == path and fragment in found.message, found


def test_a_grant_with_an_unknown_exclusion_is_refused_with_the_choices(tmp_path):
    text = GRANT.replace("    expires: {after_days: 30}\n", "    expires: {after_days: 30}\n    pays_for: {excludes: [marketplace]}\n")
    found = one(tmp_path, text)
    assert found.path == "$.benefits[0].pays_for.excludes[0]" and "third_party" in found.message


def test_a_code_pool_promotion_gets_a_token_no_customer_types_and_return_usage_is_read(tmp_path):
    text = GOOD.replace("currency: JPY\n", "currency: JPY\ncode_pool: true\n") + \
        "limits: {total_uses: 10, return_usage_on_cancel: true}\n"
    promotion = load_ruleset(write(tmp_path, {"books-500-off.yaml": text})).promotions["books-500-off"]
    assert promotion.code_pool and promotion.code == "POOL:BOOKS-500-OFF"
    assert promotion.limits.return_usage_on_cancel and promotion.limits.total_uses == 10


def test_a_code_pool_promotion_cannot_also_have_a_shared_code(tmp_path):
    text = GOOD.replace("currency: JPY\n", "currency: JPY\ncode_pool: true\ncode: SPRING\n")
    assert problems(tmp_path, {"books-500-off.yaml": text})


# --- issue 10: trust boundaries of the rules directory and its files ---------------------------------

def test_codes_equal_after_normalisation_are_a_duplicate_code(tmp_path):
    a = GOOD + "code: WELCOME\n"
    b = GOOD.replace("id: books-500-off", "id: books-other") + "code: ' welcome'\n"
    [p] = problems(tmp_path, {"books-500-off.yaml": a, "books-other.yaml": b})
    assert p.file.endswith("books-other.yaml") and p.line == 20 and p.path == "$.code"
    assert "duplicate code: 'WELCOME'" in p.message


@pytest.mark.parametrize("code", ["ｗｅｌｃｏｍｅ", "WEL\u200bCOME", "WELCOME\\n", "\\tWELCOME", "WELCOME\\u0000"])
def test_a_rule_file_code_with_look_alike_invisible_or_control_characters_is_refused(tmp_path, code):
    p = one(tmp_path, GOOD + f'code: "{code}"\n')
    assert (p.line, p.path) == (20, "$.code")


@pytest.mark.parametrize("text, path", [
    ('name: "500 off\\u0000 books"', "$.name"), ('name: "500 off\\e[31m books"', "$.name"),
    ('name: "500 off books\\n"', "$.name"), ('name: "500 off \\x85books"', "$.name")])
def test_control_characters_in_rule_file_text_are_refused_with_their_line(tmp_path, text, path):
    p = one(tmp_path, GOOD.replace("name: 500 off books", text))
    assert (p.line, p.path) == (2, path) and "must not contain the character U+" in p.message


def test_a_category_with_a_trailing_newline_in_a_rule_file_is_refused(tmp_path):
    p = one(tmp_path, GOOD.replace("categories: [books]", 'categories: ["books\\n"]'))
    assert (p.line, p.path) == (12, "$.targets.include.categories[0]") and "U+000A" in p.message


@pytest.mark.parametrize("text, fragment", [("percent: 010", "octal"), ("percent: !!int 10", "YAML tags (!!int)")])
def test_yaml_1_1_numbers_and_tags_in_a_rule_file_are_refused_with_their_line(tmp_path, text, fragment):
    p = one(tmp_path, GOOD.replace('    scope: per_order\n    amount: "500"', "    " + text).replace("amount_off", "percent_off"))
    assert p.line == 15 and fragment in p.message


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "1969-12-31T00:00:00Z",
                                  "2200-01-01T00:00:00Z"])
def test_a_window_outside_the_accepted_range_is_refused(tmp_path, when):
    p = one(tmp_path, GOOD + f'window:\n  starts: "2026-01-01T00:00:00Z"\n  ends: "{when}"\n')
    assert (p.line, p.path) == (22, "$.window.ends") and "outside the accepted range" in p.message


def test_a_grant_expiry_outside_the_accepted_range_is_refused(tmp_path):
    p = one(tmp_path, GRANT.replace("expires: {after_days: 30}", 'expires: {at: "9999-12-31T00:00:00-05:00"}')
            + 'window:\n  ends: "2027-01-01T00:00:00Z"\n')
    assert p.path == "$.benefits[0].expires.at" and "outside the accepted range" in p.message


def test_after_days_is_bounded(tmp_path):
    p = one(tmp_path, GRANT.replace("after_days: 30", "after_days: 100000"))
    assert p.path == "$.benefits[0].expires.after_days"


def test_an_unknown_locale_is_refused_at_load_time(tmp_path):
    found = problems(tmp_path, {"books-500-off.yaml": GOOD}, settings=SETTINGS + "locale: zz\n")
    assert [(p.file.endswith("_settings.yaml"), p.line, p.path) for p in found] == [(True, 3, "$.locale")]
    assert load_ruleset(write(tmp_path, {}, settings=SETTINGS + "locale: ja_JP\n")).locale == "ja_JP"


def test_a_symbolic_link_in_the_rules_directory_is_refused_and_not_followed(tmp_path):
    secrets = tmp_path / "secrets.txt"
    secrets.write_text("API_KEY=hunter2-very-secret\n")
    rules = tmp_path / "rules"
    rules.mkdir()
    write(rules, {"books-500-off.yaml": GOOD})
    (rules / "leak.yaml").symlink_to(secrets)
    (rules / "linked-dir").symlink_to(tmp_path)
    with pytest.raises(RuleFileError) as exc:
        load_ruleset(rules)
    assert sorted(Path(p.file).name for p in exc.value.problems) == ["leak.yaml", "linked-dir"]
    assert all("symbolic link" in p.message for p in exc.value.problems)
    assert "hunter2" not in str(exc.value)


@pytest.mark.parametrize("name", ["extra.YAML", "notes.txt", "x.json", "books.yaml~", "README"])
def test_a_file_with_an_unexpected_extension_is_an_error(tmp_path, name):
    (tmp_path / name).write_text("SECRET-CONTENT: 1\n")
    [p] = problems(tmp_path, {"books-500-off.yaml": GOOD})
    assert Path(p.file).name == name and "unexpected file" in p.message and "SECRET" not in str(p)
    if name == "extra.YAML":
        assert "rename it to extra.yaml" in p.message


def test_dot_files_are_ignored(tmp_path):
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01binary")
    (tmp_path / ".books-500-off.yaml.swp").write_bytes(b"\x00swap")
    (tmp_path / ".git").mkdir()
    rules = load_ruleset(write(tmp_path, {"books-500-off.yaml": GOOD}))
    assert list(rules.promotions) == ["books-500-off"]


def test_a_sub_directory_is_an_error(tmp_path):
    (tmp_path / "old").mkdir()
    [p] = problems(tmp_path, {"books-500-off.yaml": GOOD})
    assert Path(p.file).name == "old" and "is a directory" in p.message


def test_a_huge_rule_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import engine.yamlsafe as yamlsafe
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(3 * 1024 ** 3)   # 3 GiB, sparse
    real_read = yamlsafe.os.read

    def read(fd, n):
        assert yamlsafe.os.fstat(fd).st_size < 1024 ** 3, "the huge file was read"
        return real_read(fd, n)
    monkeypatch.setattr(yamlsafe.os, "read", read)
    [p] = problems(tmp_path, {})
    assert Path(p.file).name == "huge.yaml" and "larger than 64 KiB" in p.message


def test_a_fifo_in_the_rules_directory_is_refused_without_blocking(tmp_path):
    import os
    os.mkfifo(tmp_path / "pipe.yaml")
    [p] = problems(tmp_path, {"books-500-off.yaml": GOOD})
    assert Path(p.file).name == "pipe.yaml" and "not a regular file" in p.message


def test_a_ten_megabyte_value_is_echoed_short(tmp_path):
    settings = "currencies: [JPY]\nlocale: " + "x" * 60_000 + "\n"
    found = problems(tmp_path, {"books-500-off.yaml": GOOD}, settings=settings)
    assert found and all(len(str(p)) < 500 for p in found)


# --- issue 11: the rule model -------------------------------------------------------------------------

def _window(starts: str, ends: str) -> str:
    return f'window:\n  starts: "{starts}"\n  ends: "{ends}"\n'


def test_one_code_may_name_campaigns_whose_windows_do_not_overlap(tmp_path):
    a = GOOD + "code: WELCOME\n" + _window("2026-01-01T00:00:00+09:00", "2027-01-01T00:00:00+09:00")
    b = GOOD.replace("id: books-500-off", "id: books-next-year") + "code: welcome\n" + \
        _window("2027-01-01T00:00:00+09:00", "2028-01-01T00:00:00+09:00")
    rules = load_ruleset(write(tmp_path, {"books-500-off.yaml": a, "books-next-year.yaml": b}))
    assert rules.codes["WELCOME"] == ("books-500-off", "books-next-year")


@pytest.mark.parametrize("other", [_window("2026-12-31T00:00:00+09:00", "2028-01-01T00:00:00+09:00"), ""])
def test_one_code_in_overlapping_windows_is_a_duplicate(tmp_path, other):
    a = GOOD + "code: WELCOME\n" + _window("2026-01-01T00:00:00+09:00", "2027-01-01T00:00:00+09:00")
    b = GOOD.replace("id: books-500-off", "id: books-next-year") + "code: welcome\n" + other
    [p] = problems(tmp_path, {"books-500-off.yaml": a, "books-next-year.yaml": b})
    assert p.file.endswith("books-next-year.yaml") and p.path == "$.code" and "overlapping window" in p.message


BENEFITS = '''benefits:
  - type: amount_off
    scope: per_order
    amount: "500"
'''


def _with_benefits(text: str) -> str:
    return GOOD.replace(BENEFITS, "benefits:\n" + text)


def test_several_benefits_load_in_stage_order_with_their_places(tmp_path):
    text = _with_benefits('  - {type: free_shipping}\n  - {type: percent_off, percent: 10}\n')
    p = load_ruleset(write(tmp_path, {"books-500-off.yaml": text})).promotions["books-500-off"]
    assert [(b.type, b.stage.value, b.index) for b in p.benefits] == [("percent_off", "item", 1),
                                                                      ("free_shipping", "shipping", 0)]
    assert p.stage.value == "item"


def test_two_benefits_in_one_stage_are_refused_at_the_second(tmp_path):
    text = _with_benefits('  - {type: percent_off, percent: 10}\n  - {type: amount_off, scope: per_line, amount: "5"}\n')
    [p] = problems(tmp_path, {"books-500-off.yaml": text})
    assert p.path == "$.benefits[1].type" and "both run in the item stage" in p.message and p.line == 15


def test_a_benefit_with_its_own_threshold_must_be_the_first(tmp_path):
    text = _with_benefits('  - {type: percent_off, percent: 10}\n'
                          '  - {type: tiered, basis: eligible_quantity, tiers: [{at: 2, percent: 5}]}\n')
    [p] = problems(tmp_path, {"books-500-off.yaml": text})
    assert p.path == "$.benefits[1].type" and "must be the promotion's first benefit" in p.message


@pytest.mark.parametrize("benefits, path, fragment", [
    ("[]", "$.benefits", "at least 1"),
    ('[{type: percent_off, percent: 10, units: {max_per_line: 0}}]', "$.benefits[0].units.max_per_line", "at least 1"),
    ('[{type: free_shipping, targets: {include: all}}]', "$.benefits[0].targets", "unknown key"),
    ('[{type: amount_off, scope: per_order, amount: "5", shipping_methods: [ground]}]',
     "$.benefits[0].shipping_methods", "unknown key"),
    ('[{type: percent_off, percent: 10, scope: per_unit}]', "$.benefits[0].scope", "per_order"),
])
def test_bad_benefits_are_refused_at_their_path(tmp_path, benefits, path, fragment):
    found = problems(tmp_path, {"books-500-off.yaml": GOOD.replace(BENEFITS, f"benefits: {benefits}\n")})
    assert any(p.path == path and fragment in p.message for p in found), found


@pytest.mark.parametrize("settings, path", [
    ("rounding_point: cent\n", "$.rounding_point"), ("leftover: middle_line\n", "$.leftover"),
    ("stacking_base: additive\n", "$.stacking_base"), ("budget_overrun: warn\n", "$.budget_overrun")])
def test_an_unknown_money_policy_is_refused_with_the_choices(tmp_path, settings, path):
    found = problems(tmp_path, {"books-500-off.yaml": GOOD}, settings=SETTINGS + settings)
    assert [(p.path, "one of" in p.message) for p in found] == [(path, True)]


def test_money_policies_load_and_default_to_todays_behaviour(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    default = load_ruleset(write(tmp_path / "a", {"books-500-off.yaml": GOOD})).policies
    assert (default.rounding_point, default.leftover, default.stacking_base, default.budget_overrun) == \
        ("promotion", "largest_remainder", "compounding", "cap")
    chosen = load_ruleset(write(tmp_path / "b", {"books-500-off.yaml": GOOD}, settings=SETTINGS + (
        "rounding_point: unit\nleftover: last_line\nstacking_base: original\nbudget_overrun: refuse\n"))).policies
    assert (chosen.rounding_point, chosen.leftover, chosen.stacking_base, chosen.budget_overrun) == \
        ("unit", "last_line", "original", "refuse")


def test_budget_overrun_needs_a_budget(tmp_path):
    [p] = problems(tmp_path, {"books-500-off.yaml": GOOD + "limits: {budget_overrun: refuse}\n"})
    assert p.path == "$.limits.budget_overrun" and "needs a 'budget'" in p.message


UNITS_RULE = """id: p
name: P
status: active
currency: JPY
targets:
  include: {categories: [a]}
benefits:
  - %s
stacking: {priority: 1, exclusive: false}
"""


@pytest.mark.parametrize("benefit, line, message", [
    ("{type: percent_off, percent: 10, units: {max_total: 0}}", 8, "must be at least 1"),
    ("{type: percent_off, percent: 10, scope: per_order, units: {max_total: 1}}", 8, "discounts the order as a whole"),
    ("{type: amount_off, amount: '100', scope: per_order, units: {max_per_line: 1}}", 8, "discounts the order"),
    ("{type: buy_x_get_y, buy: 1, get: 1, percent: 100, units: {group_size: 2}}", 8, "group_size means nothing"),
    ("{type: buy_x_get_y, buy: 1, get: 1, percent: 100, units: {max_total: 1, choose: cheapest}}", 8,
     "discounted_units"),
    ("{type: percent_off, percent: 10, units: {choose: most_expensive}}", 8, "choose means nothing"),
    ("{type: percent_off, percent: 10, units: {group_size: 3, max_total: 2}}", 8, "less than one group of 3"),
    ("{type: percent_off, percent: 10, units: {group_size: 3, max_total: 5}}", 8, "write max_total: 3"),
    ("{type: fixed_price, quantity: 3, price: '500', units: {max_total: 2}}", 8, "could never apply"),
])
def test_units_that_mean_nothing_or_can_never_be_met_do_not_load(benefit, line, message):
    with pytest.raises(RuleFileError) as error:
        build_ruleset({"r/_settings.yaml": b"currencies: [JPY]\n", "r/p.yaml": (UNITS_RULE % benefit).encode()})
    [problem] = error.value.problems
    assert problem.line == line and message in problem.message and problem.path.startswith("$.benefits[0].units")



def test_a_stacking_class_and_combines_with_load_with_the_stage_as_default_class(tmp_path):
    other = GOOD.replace("id: books-500-off", "id: books-vip").replace("exclusive: false", "exclusive: true\n  class: vip\n"
                                                                        "  combines_with: [order, shipping]")
    rules = load_ruleset(write(tmp_path, {"books-500-off.yaml": GOOD, "books-vip.yaml": other}))
    assert rules.promotions["books-500-off"].stacking_class == "order"
    vip = rules.promotions["books-vip"]
    assert vip.stacking_class == "vip" and vip.combines_with == ("order", "shipping")
    assert vip.combines(rules.promotions["books-500-off"]) and rules.exclusive_resolution == "best_for_customer"


def test_combines_with_naming_a_class_no_promotion_has_does_not_load(tmp_path):
    text = GOOD.replace("exclusive: false", "exclusive: true\n  combines_with: [shipping, clearance]")
    p = one(tmp_path, text)
    assert p.path == "$.stacking.combines_with[1]" and (p.line, p.column) == (20, 29) and "'clearance'" in p.message
    assert "the classes are: grant, item, order, shipping" in p.message


def test_combines_with_on_a_promotion_that_is_not_exclusive_is_refused(tmp_path):
    p = one(tmp_path, GOOD.replace("exclusive: false", "exclusive: false\n  combines_with: [shipping]"))
    assert p.path == "$.stacking.combines_with" and "only for exclusive promotions" in p.message


def test_a_class_must_be_a_lower_case_name(tmp_path):
    p = one(tmp_path, GOOD.replace("exclusive: false", "exclusive: false\n  class: Catalogue"))
    assert p.path == "$.stacking.class" and "lower-case name" in p.message


@pytest.mark.parametrize("settings, path, fragment", [
    ("best_per_line: [catalogue]\n", "$.best_per_line[0]", "no promotion of this rule set has the class 'catalogue'"),
    ("best_per_line: [item, shipping]\n", "$.best_per_line[1]", "chooses among item discounts"),
    ("exclusive_resolution: first_come\n", "$.exclusive_resolution", "best_for_customer, highest_priority"),
    ("best_per_line: item\n", "$.best_per_line", "must be a list"),
])
def test_combination_settings_are_checked_with_their_line(tmp_path, settings, path, fragment):
    found = problems(tmp_path, {"books-500-off.yaml": GOOD}, SETTINGS + settings)
    assert len(found) == 1 and found[0].path == path and fragment in found[0].message, found
    assert found[0].file.endswith("_settings.yaml") and found[0].line == 3


def test_combination_settings_load(tmp_path):
    rules = load_ruleset(write(tmp_path, {"books-500-off.yaml": GOOD},
                               SETTINGS + "exclusive_resolution: highest_priority\nbest_per_line: [item]\n"))
    assert rules.exclusive_resolution == "highest_priority" and rules.best_per_line == frozenset({"item"})
