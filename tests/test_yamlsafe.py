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


# --- issue 10: YAML 1.1 surprises, tags, sizes ------------------------------------------------------

@pytest.mark.parametrize("text, line, fragment", [
    ("a: 1\npercent: 010\n", 2, 'octal number 8; write it without the leading zero (10), or put it in quotes'),
    ("a: 1\nstarts: 1:30\n", 2, 'base-60 number (90); put it in quotes if you mean the text, e.g. "1:30"'),
    ("a: 1:30.5\n", 1, "base-60"),
    ("a: 0x1F\n", 1, "the number 31; write the number in plain decimals"),
    ("a: 1_000\n", 1, "plain decimals"),
    ("a: 1" + "0" * 5000 + "\n", 1, "more than 30 digits"),
])
def test_yaml_1_1_numbers_nobody_means_are_refused_with_what_to_write(text, line, fragment):
    [p] = problems(text)
    assert p.line == line and fragment in p.message and len(p.message) < 300


@pytest.mark.parametrize("text, tag", [("a: 1\npercent: !!str 010\n", "!!str"), ("a: !!int '10'\n", "!!int"),
                                       ("a: !foo x\n", "!foo"), ("a: ! x\n", "!"), ("a: !!map {b: 1}\n", "!!map"),
                                       ("a: !!python/object:os.system x\n", "!!python/object:os.system")])
def test_explicit_tags_are_refused_with_their_line_and_what_to_write(text, tag):
    [p] = problems(text)
    assert p.line == text.count("\n") and f"YAML tags ({tag}) are not allowed" in p.message and "quotes" in p.message


def test_plain_numbers_still_load():
    assert load("a: 0\nb: 12\nc: -5\nd: '010'\ne: \"1:30\"\n", "f.yaml")[0] == \
        {"a": 0, "b": 12, "c": -5, "d": "010", "e": "1:30"}


def test_a_yaml_error_does_not_echo_the_file_beyond_a_short_snippet():
    secret = "x" * 5000
    for text in (f"a: [{secret}\n", f"{secret}: [\n", f"? {secret}\n"):
        try:
            load(text, "f.yaml")
        except YamlProblems as exc:
            assert all(len(p.message) < 400 for p in exc.problems)


def test_read_capped_reads_at_most_the_limit_and_refuses_links_and_non_files(tmp_path):
    import os
    path = tmp_path / "f.yaml"
    path.write_bytes(b"a" * 100)
    assert yamlsafe.read_capped(path, 100) == b"a" * 100
    assert yamlsafe.read_capped(path, 99) is None
    link = tmp_path / "link.yaml"
    link.symlink_to(path)
    assert yamlsafe.read_capped(link, 100) == b"a" * 100
    with pytest.raises(OSError):
        yamlsafe.read_capped(link, 100, follow_links=False)
    with pytest.raises(OSError):
        yamlsafe.read_capped(tmp_path, 100)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError):
        yamlsafe.read_capped(tmp_path / "fifo", 100)
