"""Messages that say what to fix: `promo validate` on the mistakes marketers make, each message naming
the file, the line and the fix, every problem of every stage in one run, with the line shown."""
import shutil
from pathlib import Path

import pytest

from engine import RuleFileError, load_ruleset
from engine.cli import main

from .test_ruleset import GOOD as RULESET_GOOD

ROOT = Path(__file__).resolve().parent.parent

# tests/test_ruleset.py's good rule from its targets on (one copy of them), under an id to fill in
GOOD = "id: {id}\nname: Sale\nstatus: active\ncurrency: JPY\n" + RULESET_GOOD[RULESET_GOOD.index("targets:"):]


def _problems(tmp_path: Path, files: dict[str, str]) -> list:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    shutil.copy(ROOT / "rules" / "_settings.yaml", rules)
    for name, text in files.items():
        (rules / name).write_text(text)
    with pytest.raises(RuleFileError) as caught:
        load_ruleset(rules)
    return list(caught.value.problems)


@pytest.mark.parametrize("text,line,words", [
    (GOOD.format(id="x").replace("  include:\n    categories", "  include:\n\tcategories"), 7,
     "a tab: YAML indents with spaces only; replace the tab with spaces"),
    (GOOD.format(id="x").replace("    categories: [books]\n", "    categories: [books]\n   exclude:\n    skus: [a]\n"), 8,
     "the indentation does not line up"),
    (GOOD.format(id="x").replace('    amount: "500"\n', '    amount: "500"\n  type: percent_off\n'), 12,
     "this line is not an item of the list that starts on line 9: begin each item with `- `"),
    (GOOD.format(id="x").replace("name: Sale", "name: Sale: 10% off"), 2,
     'a value that contains ": " must be in quotes, e.g. name: "Sale: 10% off"'),
    (GOOD.format(id="x").replace("  priority: 10\n", "  priority: 10\n    exclusive: false\n"), 14,
     "this line is indented 4 spaces, more than the line above (2)"),
    (GOOD.format(id="x").replace("name: Sale", 'name: "Sale'), 2, "a quote opened on line 2 is never closed on that line"),
])
def test_yaml_syntax_errors_are_told_in_plain_words_at_their_line(tmp_path, text, line, words):
    [problem] = _problems(tmp_path, {"x.yaml": text})
    assert problem.line == line and words in problem.message and "not valid YAML" not in problem.message


def test_a_key_one_level_too_shallow_or_deep_says_where_it_belongs(tmp_path):
    shallow = GOOD.format(id="x").replace("status: active\n", "status: active\nexclusive: true\n")
    deep = GOOD.format(id="y").replace("  exclusive: false\n", "  exclusive: false\n  limits:\n    total_uses: 5\n")
    problems = {p.file.rsplit("/", 1)[1]: p.message for p in _problems(tmp_path, {"x.yaml": shallow, "y.yaml": deep})}
    assert "`exclusive` belongs under `stacking`" in problems["x.yaml"]
    assert "`limits` belongs at the top level of the file, beside `stacking`" in problems["y.yaml"]


def test_an_empty_value_never_says_none(tmp_path):
    [problem] = _problems(tmp_path, {"x.yaml": GOOD.format(id="x").replace("    categories: [books]\n", "")})
    assert "None" not in problem.message and "is empty: give it" in problem.message


def test_money_finer_than_the_currency_says_what_to_write_and_names_the_field_once(tmp_path):
    [problem] = _problems(tmp_path, {"x.yaml": GOOD.format(id="x").replace('"500"', '"500.5"')})
    assert problem.path == "$.benefits[0].amount"
    assert problem.message == "'500.5' is finer than JPY allows: JPY has no decimals; write \"500\""


def test_a_condition_on_category_points_to_targets(tmp_path):
    text = GOOD.format(id="x").replace("targets:", "eligibility:\n  all:\n    - name: category\n      operator: equal_to\n"
                                                   "      value: books\ntargets:")
    [problem] = _problems(tmp_path, {"x.yaml": text})
    assert "list them under `targets.include.categories`" in problem.message


def test_every_stage_is_listed_in_one_run(tmp_path):
    """A schema error does not hide the id that differs from the file name, nor money finer than the currency."""
    text = GOOD.format(id="other").replace('"500"', '"500.5"').replace("status: active\n", "status: active\nexclusive: x\n")
    messages = sorted(p.message for p in _problems(tmp_path, {"x.yaml": text}))
    assert len(messages) == 3
    assert any("must equal the file name 'x'" in m for m in messages)
    assert any("JPY has no decimals" in m for m in messages)
    assert any("belongs under `stacking`" in m for m in messages)


def test_validate_shows_the_line_and_a_caret_under_the_column(tmp_path, capsys):
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(ROOT / "rules" / "_settings.yaml", rules)
    (rules / "x.yaml").write_text(GOOD.format(id="x").replace('"500"', '"500.5"'))
    assert main(["validate", str(rules)]) == 1
    err = capsys.readouterr().err.splitlines()
    at = next(i for i, line in enumerate(err) if "x.yaml:11:13:" in line)
    assert err[at + 1] == '    11 |     amount: "500.5"'
    assert err[at + 2] == "       |             ^"


def test_an_id_that_is_not_allowed_says_which_characters_are(tmp_path):
    problems = _problems(tmp_path, {"Bad_3!.yaml": GOOD.format(id="Bad_3!")})
    [message] = [p.message for p in problems if p.path == "$.id"]
    assert "lower-case letters, digits, - and _" in message and "starting with a letter or digit" in message
