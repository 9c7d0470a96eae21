import pytest

from engine import yamlsafe
from engine.yamlsafe import MAX_DEPTH, MAX_FILE_BYTES, YamlProblems, load


def problems(text):
    with pytest.raises(YamlProblems) as exc:
        load(text, "f.yaml")
    return exc.value.problems


def test_values_carry_their_line_and_column():
    data, positions = load("a: 1\nb:\n  - x\n  - y\n", "f.yaml")
    assert data == {"a": 1, "b": ["x", "y"]}
    assert (positions[("b", 1)].line, positions[("b", 1)].column) == (4, 5)


def test_dates_stay_text_so_the_engine_decides_what_a_time_is():
    data, _ = load("starts: 2026-11-27T00:00:00+09:00\n", "f.yaml")
    assert data["starts"] == "2026-11-27T00:00:00+09:00"


def test_duplicate_keys_are_errors_with_their_line():
    [p] = problems("a: 1\nb: 2\na: 3\n")
    assert (p.line, p.path) == (3, "$.a") and "duplicate key" in p.message


def test_an_alias_bomb_is_refused_before_it_expands():
    bomb = 'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: [*c,*c]\n'
    [p] = problems(bomb)
    assert "anchors" in p.message or "aliases" in p.message


def test_tags_and_merge_keys_are_refused():
    assert "tag" in problems("a: !!python/object:os.system x\n")[0].message
    assert "merge" in problems("a: {x: 1}\nb:\n  <<: {y: 2}\n")[0].message


def test_nesting_and_size_are_bounded():
    deep = "a: " + "[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2) + "\n"
    assert "nested deeper" in problems(deep)[0].message
    assert "larger than" in problems("a: '" + "x" * MAX_FILE_BYTES + "'\n")[0].message


def test_malformed_yaml_names_the_line():
    [p] = problems("a: [1, 2\nb: 3\n")
    assert p.line >= 2 and "not valid YAML" in p.message


def test_empty_file_is_an_error():
    assert "empty" in problems("# nothing\n")[0].message


DOCUMENTS = [
    "id: a\nlist: [1, 2]\nnested:\n  key: \"NO\"\n  when: 2026-11-01\n",
    "a: &x 1\nb: *x\n", "a: !!python/object:os.system x\n", "a: 1\na: 2\n", "<<: {a: 1}\n",
    "a: [\n", "a: b: c\n", "? [1]\n: x\n", "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 30)) + "  " * 30 + "v: 1\n",
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_the_c_parser_and_the_python_parser_give_the_same_result(text, monkeypatch):
    def outcome():
        try:
            data, positions = yamlsafe.load(text, "f.yaml")
            return data, dict(positions)
        except yamlsafe.YamlProblems as exc:
            return [(p.line, p.column, p.path, p.message.split(":")[0]) for p in exc.problems]

    fast = outcome()
    monkeypatch.setattr(yamlsafe, "_Loader", yamlsafe._PyLoader)
    assert outcome() == fast
