"""yamlsafe's event path (`_CLoader`: libyaml's events straight to data and positions) against the
composer path it replaced (`_ComposerLoader`: the same parser under our checking composer, then a walk
of the nodes): the same data (types and key order included), the same positions and the same problems,
word for word, on every rule file we have, on YAML written to go wrong, and on seeded edits of both.
The event path must also read every file that loads without handing it to the composer, or it saves
nothing."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench import generate
from bench.run import SEED
from engine import yamlsafe
from engine.yamlsafe import MAX_DEPTH, YamlProblems

from .test_hostile import RULE_CASES, write_rules

pytestmark = pytest.mark.skipif(yamlsafe._Parser is None, reason="libyaml is not installed: no event path")

ROOT = Path(__file__).resolve().parent.parent


def outcome(text: str | bytes, loader: type) -> tuple:
    """What `load()` makes of `text` when it reads with `loader`: the data (as repr, so that 1, 1.0, True
    and "1" differ), the positions in order, or the problems."""
    saved = yamlsafe._Loader
    yamlsafe._Loader = loader
    try:
        data, positions = yamlsafe.load(text, "f.yaml")
    except YamlProblems as exc:
        return "refused", exc.problems
    finally:
        yamlsafe._Loader = saved
    assert type(positions) is yamlsafe.Positions
    return "loaded", repr(data), list(positions.items())


def assert_same(text: str | bytes) -> None:
    fast = outcome(text, yamlsafe._CLoader)
    assert fast == outcome(text, yamlsafe._ComposerLoader), text[:300]
    if fast[0] == "loaded":   # read from the events alone, never handed to the composer
        decoded = text.decode("utf-8") if isinstance(text, bytes) else text
        yamlsafe._from_events(yamlsafe._CLoader(decoded).get_event)


def rule_files() -> list[bytes]:
    paths = sorted(ROOT.glob("rules/*.y*ml")) + sorted(ROOT.glob("tests/golden/*/rules/*"))
    return [path.read_bytes() for path in paths if path.is_file()]


def generated_files() -> list[bytes]:
    out: list[bytes] = []
    for shape in generate.SHAPES:
        out += generate.files_of(generate.shape_docs(shape, 150, SEED)).values()
        for added in generate.OUT_OF_SCOPE:
            out += generate.files_of(generate.shape_docs(shape, 0, SEED, added=added, extra=20)).values()
    return out


BASE = """id: p
name: Promotion p
status: active
currency: JPY
targets:
  include: all
benefits:
- type: amount_off
  amount: '500'
stacking:
  priority: 1
  exclusive: false
"""

# YAML built to go wrong, or to be read in a surprising way; each alone, as a value in a rule file,
# and as a value inside a list inside a mapping.
SNIPPETS = [
    "&a x", "*a", "[&a 1, *a]", "{a: &x 1, b: *x}", "!!str 010", "!!int '10'", "!foo x", "! x", "!!map {b: 1}",
    "!!python/object/apply:os.system [x]", "!<tag:yaml.org,2002:str> x", "{<<: {a: 1}}", "{'<<': 1}", "<<", "=",
    "{a: 1, a: 2}", "{a: 1, 'a': 2}", "010", "-010", "0o17", "0x1F", "-0x1F", "0b101", "1_000", "1_0.5", "1:30",
    "-1:30", "1:30.5", "190:20:30", "1" + "0" * 29, "1" + "0" * 30, "-" + "9" * 31, "1" + "0" * 5000,
    "1.5e+3", "1.5e3", "1.", ".5", "-.5", "+.inf", "-.Inf", ".NaN", "1e400", "0", "-0", "+5", "007", "0.0",
    "1" + "0" * 30 + ".5", "{a: 1}", "[1, 2]", "[]", "{}", "[[[]]]", "{a: [1, {b: c}]}", "", "~", "null", "Null",
    "NULL", "nUll", "yes", "no", "on", "off", "y", "n", "Y", "NO", "No", "True", "FALSE", "tRUE", "y2",
    "|\n  two\n  lines\n", ">\n  folded\n  text\n", "|-\n  x\n", ">+\n  x\n\n", "|2\n    indented\n",
    "'single'", '"double \\t \\u00e9"', "'it''s'", '"\\x00"', "multi\n  line plain", "'multi\n  line quoted'",
    "2026-11-01", "2026-11-01T00:00:00+09:00", "2026-11-01 00:00:00", "x # comment", "'#not a comment'",
    "a:b", "a: b", "- a", "? a", "@x", "`x", "%x", "\tx", "x\t", "\"\\t\"", "\u00e9\u3042", "\ufeffx",
    "{1: a}", "{true: a}", "{null: a}", "{~: a}", "{: a}", "{[1]: a}", "{{a: 1}: b}", "{1.5: a}", "{'1': a}",
    "{=: a}",
]

DOCUMENTS = [
    "", " ", "\n", "# only a comment\n", "---\n", "--- \n...\n", "a: 1\n---\nb: 2\n", "a: 1\n...\n---\nb: 2\n",
    "a: 1\n--- [\n", "%YAML 1.1\n---\na: 1\n", "%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n",
    "a: 1\r\nb:\r\n  - x\r\n  - y\r\n", "\ufeffa: 1\n", "a:\n\t- x\n", "a: 1\n\tb: 2\n", "a:\tb\n",
    "? [1, 2]\n: x\n", "? {a: 1}\n: x\n", "[a, b]: x\n", "? a\n? a\n", "1: a\n2: b\n", "-1: x\n",
    "a: [1, 2\nb: 3\n", "a: b: c\n", "a: 'x\n", "a: \"\\q\"\n", "- a\nb: c\n", "a:\n- b\n c\n",
    "a: &x [1]\nb: *x\n", "a: *undefined\n", "x: &a\n", "&a a: 1\n", "a: !!binary aGk=\n",
    "a:\n  <<: {b: 1}\n  c: 2\n", "a: 1\nb: 2\na: 3\n", "a:\n  b: {c: 1}\n  b: [2]\n",
    "a: 1\nb: 2\na: {x: *y}\n", "a: 1\na: 010\n", "a: 010\na: 1\nb: 0x1\n", "a: 010\nb: [\n",
    "\x00a: 1\n", "a: \x07\n", "a: \ud7ff\n", "a: \ufffe\n", "a: \U0001F600\n",
    "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n", "a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n",
    "a: " + "[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2) + "\n",
    "a: " + "{b: " * (MAX_DEPTH - 2) + "{}" + "}" * (MAX_DEPTH - 2) + "\n",
    "a: " + "{b: " * (MAX_DEPTH - 1) + "{}" + "}" * (MAX_DEPTH - 1) + "\n",
    "a: " + "{b: " * (MAX_DEPTH - 1) + "1" + "}" * (MAX_DEPTH - 1) + "\n",
    "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH)) + "  " * MAX_DEPTH + "v: 1\n",
    # a key one level too deep, then a parser error before its value: the key's depth is refused first
    *("x: " + "[" * (MAX_DEPTH - 2) + tail + "\n" for tail in ("{a: ]", "{a ]", "{a", "{a: b", "{? a", "{a: \n- x")),
    "a: [" + "x, " * 5000 + "]\n", "a: 'x" + "y" * 70_000 + "'\n",
]

SAMPLES = [s for s in SNIPPETS] + [BASE + f"x: {s}\n" if "\n" not in s else BASE + "x: " + s.replace("\n  ", "\n    ")
                                   for s in SNIPPETS] + \
    [BASE + f"nested:\n  - k: {s}\n" for s in SNIPPETS if "\n" not in s] + \
    [BASE.replace("priority: 1", f"priority: {s}") for s in SNIPPETS if "\n" not in s] + \
    [f"{s}: 1\n" for s in SNIPPETS if "\n" not in s] + DOCUMENTS


def mutants(texts: list[str], count: int, seed: int) -> list[str]:
    """Seeded edits of rule files: a YAML character or word inserted, a span deleted, a line doubled,
    dropped or re-indented, line endings changed."""
    rnd = random.Random(seed)
    inserts = ["&", "*", "!", "!!str ", "<<: ", ":", ": ", "- ", "-", "[", "]", "{", "}", ",", "'", '"', "#", "|",
               ">", "?", "%", "@", "\t", "\n", "\r\n", "  ", "~", "0", "010", "0x", "1_", "1:", ".", "yes", "null",
               "---\n", "...\n", "\ufeff", "\x00", "\\", "=", "e+", "é"]
    out = []
    for _ in range(count):
        text = rnd.choice(texts)
        for _ in range(rnd.randint(1, 3)):
            lines = text.split("\n")
            action = rnd.randrange(6)
            at = rnd.randrange(len(text) + 1)
            if action <= 1:
                text = text[:at] + rnd.choice(inserts) + text[at:]
            elif action == 2:
                text = text[:at] + text[at + rnd.randint(1, 8):]
            elif action == 3:
                i = rnd.randrange(len(lines))
                lines.insert(i, lines[i])
                text = "\n".join(lines)
            elif action == 4:
                i = rnd.randrange(len(lines))
                lines[i] = rnd.choice(["", " ", "  ", "    "]) + lines[i].lstrip() if rnd.random() < 0.7 else ""
                text = "\n".join(lines)
            else:
                text = text.replace("\n", rnd.choice(["\r\n", "\r", "\n\n"]))
        out.append(text)
    return out


def test_every_rule_file_reads_the_same():
    for text in rule_files():
        assert_same(text)


def test_every_benchmark_file_reads_the_same():
    for text in generated_files():
        assert_same(text)


def test_every_hostile_rule_file_reads_the_same(tmp_path):
    checked = 0
    for i, case in enumerate(RULE_CASES):
        if {"symlink", "sparse", "directory", "delete"} & set(case):
            continue
        (tmp_path / str(i)).mkdir()
        rules = write_rules(tmp_path / str(i), case)
        for path in sorted(rules.iterdir()):
            if path.is_file() and not path.is_symlink() and path.stat().st_size <= 2 * yamlsafe.MAX_FILE_BYTES:
                assert_same(path.read_bytes())
                checked += 1
    assert checked > len(RULE_CASES)


@pytest.mark.parametrize("text", SAMPLES, ids=[repr(s)[:40] for s in SAMPLES])
def test_yaml_written_to_go_wrong_reads_the_same(text):
    assert_same(text)
    assert_same(text.encode("utf-8", "surrogatepass"))


def test_seeded_edits_of_rule_files_read_the_same():
    texts = [t.decode("utf-8") for t in rule_files()] + [BASE]
    for text in mutants(texts, 3000, SEED):
        assert_same(text.encode("utf-8", "surrogatepass"))


def test_the_edits_reach_both_loaded_and_refused_files():
    # otherwise the test above would compare only one kind of outcome
    texts = [t.decode("utf-8") for t in rule_files()]
    kinds = [outcome(text, yamlsafe._CLoader)[0] for text in mutants(texts, 300, SEED)]
    assert 30 < kinds.count("loaded") < 270


def test_a_refusal_inside_a_value_the_composer_skips_is_still_found():
    # a duplicate key's value and a merge key's value are not built, but still composed and checked
    for text in ("a: 1\na: &x 2\n", "a: 1\na: [*x]\n", "<<: !!str x\n", "1: {b: &c d}\n", "a: 1\na: [" * 30 + "\n"):
        assert_same(text)
        assert outcome(text, yamlsafe._CLoader)[0] == "refused"


def test_a_block_value_points_at_its_key_and_a_flow_value_too():
    data, positions = yamlsafe.load("a:\n  - x\nb: {c: 1}\nd: [1]\n", "f.yaml")
    assert [(positions[(k,)].line, positions[(k,)].column) for k in "abd"] == [(1, 1), (3, 1), (4, 1)]
    assert (positions[("b", "c")].line, positions[("b", "c")].column) == (3, 8)
