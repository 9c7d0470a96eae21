"""The hostile corpus's machinery: loading the case files in tests/hostile/, building huge values the files
only describe, applying a case's patch to its base document, and the one assertion of the four properties
every case holds (our error type, a location, a bounded time, nothing changed).

A patch is a list of ops on a document, each `{op, path, value | build}`:
  set        put the value at path (creating the last key; path "" replaces the whole document)
  delete     remove the key or list item at path
  duplicate  insert a copy of the list item at path right after it
  append     add the value to the end of the list at path
  rename     move the key at path to the key `to` (same parent)
Paths are JSON-pointer-like: "/lines/0/category". A path that does not exist in the base document fails
the case loudly (a patch that silently does nothing would test nothing).

`build` makes values too big (or impossible in YAML) to store, each a one-key mapping:
  {string_of: "a", length: N}          "a" * N
  {repeat: N, of: /path, vary: key}    N copies of the document's value at /path, `key` suffixed by the index
  {numbered: N, prefix: P}             [P0, P1, ...] (N strings)
  {nest: N, leaf: x}                   a list nested N levels deep around x (built without recursion)
  {nest_map: N, key: k}                a mapping nested N levels deep
  {power: [10, 5000]}                  an exact integer 10**5000 (YAML would refuse more than 4300 digits)
  {escaped: "x\\ud800"}                text with Python escapes decoded (a lone surrogate YAML cannot hold)
  {float: nan}                         float("nan"), float("inf"), float("2.0")
  {concat: [text or builder, ...]}     the parts joined (a rule file's text around a huge part)
"""
from __future__ import annotations

import codecs
import copy
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import yaml

HOSTILE = Path(__file__).resolve().parent / "hostile"
TIME_LIMIT = 5.0          # seconds for one library call (a generous bound: a DoS takes 19 s and more)
CLI_TIME_LIMIT = 20.0     # a whole `promo` process, interpreter start-up included
MAX_MESSAGE = 2000        # characters of str(error): a 10 MB value must not be echoed whole
CLI_MAX_STDERR_LINES = 12
KNOWN_OPS = {"set", "delete", "duplicate", "append", "rename"}


def load_area(name: str) -> list[dict]:
    """The cases of tests/hostile/<name>.yaml, each checked for the keys every case must have."""
    doc = yaml.safe_load((HOSTILE / f"{name}.yaml").read_text("utf-8"))
    cases = doc["cases"]
    ids = [c["id"] for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"{name}.yaml: duplicate case ids {duplicates}"
    for case in cases:
        missing = {"id", "description", "expect"} - set(case)
        assert not missing, f"{name}.yaml: case {case.get('id')} lacks {sorted(missing)}"
        for op in case.get("patch", []) + case.get("inputs_patch", []):
            assert op.get("op") in KNOWN_OPS, f"{case['id']}: unknown op {op!r}"
    return cases


def base_commands() -> list[list[str]]:
    """cli.yaml's good commands (its `base` list), each of which must exit 0."""
    return yaml.safe_load((HOSTILE / "cli.yaml").read_text("utf-8"))["base"]


def base() -> dict:
    return yaml.safe_load((HOSTILE / "base.yaml").read_text("utf-8"))


# --- building values ------------------------------------------------------------------------------

def build(spec: Any, doc: Any = None) -> Any:
    if not isinstance(spec, dict) or len(spec.keys() - {"length", "of", "vary", "prefix", "leaf", "key"}) != 1:
        raise AssertionError(f"not a builder: {spec!r}")
    if "string_of" in spec:
        return spec["string_of"] * spec["length"]
    if "repeat" in spec:
        item = get(doc, spec["of"])
        out = []
        for i in range(spec["repeat"]):
            one = copy.copy(item) if isinstance(item, dict) else item
            if spec.get("vary"):
                one = dict(item, **{spec["vary"]: f"{item[spec['vary']]}-{i}"})
            out.append(one)
        return out
    if "numbered" in spec:
        return [f"{spec.get('prefix', '')}{i}" for i in range(spec["numbered"])]
    if "nest" in spec:
        value: Any = spec.get("leaf")
        for _ in range(spec["nest"]):
            value = [value]
        return value
    if "nest_map" in spec:
        value = spec.get("leaf")
        for _ in range(spec["nest_map"]):
            value = {spec.get("key", "a"): value}
        return value
    if "power" in spec:
        base_, exponent = spec["power"]
        return base_ ** exponent
    if "escaped" in spec:
        return codecs.decode(spec["escaped"], "unicode_escape")
    if "float" in spec:
        return float(spec["float"])
    if "concat" in spec:
        return "".join(part if isinstance(part, str) else build(part, doc) for part in spec["concat"])
    raise AssertionError(f"unknown builder {spec!r}")


def value_of(op: dict, doc: Any = None) -> Any:
    if "build" in op:
        return build(op["build"], doc)
    assert "value" in op, f"op {op!r} needs a value or a build"
    return copy.deepcopy(op["value"])


# --- patching -------------------------------------------------------------------------------------

def _steps(path: str) -> list:
    if path == "":
        return []
    assert path.startswith("/"), f"a path starts with /: {path!r}"
    return [int(s) if s.isdigit() else s for s in path[1:].split("/")]


def get(doc: Any, path: str) -> Any:
    for step in _steps(path):
        doc = doc[step]
    return doc


def _parent(doc: Any, path: str) -> tuple[Any, Any]:
    steps = _steps(path)
    assert steps, "this op needs a path below the document"
    parent = doc
    for step in steps[:-1]:
        try:
            parent = parent[step]
        except (KeyError, IndexError, TypeError):
            raise AssertionError(f"the base document has no {path!r}: the case tests nothing") from None
    return parent, steps[-1]


def patch(doc: Any, ops: list[dict]) -> Any:
    """A patched deep copy of `doc`. Fails loudly on a path the document does not have."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op["op"], op["path"]
        if kind == "set" and path == "":
            doc = value_of(op, doc)
            continue
        parent, key = _parent(doc, path)
        if kind == "set":
            if isinstance(parent, list):
                assert isinstance(key, int) and key <= len(parent), f"no list item {path!r}"
                if key == len(parent):
                    parent.append(None)
            elif not isinstance(parent, dict):
                raise AssertionError(f"{path!r}: parent is not a mapping or list")
            parent[key] = value_of(op, doc)
            continue
        assert (key in parent) if isinstance(parent, dict) else (isinstance(key, int) and key < len(parent)), \
            f"the base document has no {path!r}: the case tests nothing"
        if kind == "delete":
            del parent[key]
        elif kind == "duplicate":
            parent.insert(key + 1, copy.deepcopy(parent[key]))
        elif kind == "append":
            parent[key].append(value_of(op, doc))
        elif kind == "rename":
            parent[op["to"]] = parent.pop(key)
    return doc


# --- nothing changed --------------------------------------------------------------------------------

class _Key:
    """A mapping key on snapshot()'s stack, told apart from the values around it."""

    def __init__(self, key: Any):
        self.key = key


def snapshot(value: Any) -> tuple:
    """A fingerprint of a plain JSON-like value, walked without recursion (a 100,000-level document would
    overflow copy.deepcopy and ==). Two values with the same snapshot are deep-equal, types included."""
    out = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Key):
            out.append(("key", type(item.key).__name__, item.key))
        elif isinstance(item, dict):
            out.append(("dict", len(item)))
            for k in reversed(list(item)):
                stack.append(item[k])
                stack.append(_Key(k))
        elif isinstance(item, (list, tuple)):
            out.append((type(item).__name__, len(item)))
            stack.extend(reversed(item))
        elif isinstance(item, str) and len(item) > 4096:
            out.append(("bigstr", len(item), hashlib.sha256(item.encode("utf-8", "surrogatepass")).hexdigest()))
        elif isinstance(item, float) and item != item:
            out.append(("nan",))
        else:
            out.append((type(item).__name__, hex(item) if isinstance(item, int) and item.bit_length() > 4096
                         else item))
    return tuple(out)


def tree_snapshot(root: Path) -> dict:
    """Every entry under `root`: a link's target, a file's size and content hash (for files up to 64 MiB;
    larger ones, such as a sparse 3 GiB file, by size and mtime), a directory's presence."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir",)
            else:
                st = path.stat()
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if st.st_size <= 64 << 20 else st.st_mtime_ns
                out[rel] = ("file", st.st_size, digest)
    return out


# --- the four properties --------------------------------------------------------------------------------

def timed(call):
    """(result, error, seconds) of call(); any exception is the outcome, never a crash of the harness."""
    start = time.perf_counter()
    try:
        result, error = call(), None
    except BaseException as exc:  # noqa: BLE001 - the outcome itself is under test (RecursionError, MemoryError...)
        if isinstance(exc, KeyboardInterrupt):
            raise
        result, error = None, exc
    return result, error, time.perf_counter() - start


def _path_under(found: str, expected: str) -> bool:
    """`found` is `expected` or a place inside it ($.lines[0] holds $.lines[0].colour)."""
    return found == expected or found.startswith(expected + ".") or found.startswith(expected + "[")


def describe(error: BaseException | None) -> str:
    if error is None:
        return "no error"
    text = str(error)
    if len(text) > 300:
        text = text[:300] + f"... ({len(text)} characters)"
    reason = getattr(error, "reason", None)
    return f"{type(error).__module__}.{type(error).__name__}" + (f"[{getattr(reason, 'value', reason)}]" if reason
                                                                  else "") + f": {text}"


def check_error(error: BaseException | None, expect: dict, errors: dict[str, type]) -> list[str]:
    """What is wrong with `error` as the outcome `expect` demands (empty when it is right)."""
    wrong = []
    want = expect["error"]
    if want is None:
        return [] if error is None else [f"expected success, got {describe(error)}"]
    if error is None or not isinstance(error, errors[want]):
        return [f"expected {want}, got {describe(error)}"]
    text = str(error)
    if len(text) >= MAX_MESSAGE:
        wrong.append(f"the message is {len(text)} characters (at most {MAX_MESSAGE})")
    for fragment in expect.get("message_excludes", []):
        if fragment in text:
            wrong.append(f"the message shows {fragment!r}")
    for fragment in expect.get("message_includes", []):
        if fragment not in text:
            wrong.append(f"the message lacks {fragment!r}")
    if "reason" in expect:
        reasons = {getattr(error, "reason", None)} | {r.reason for r in getattr(error, "refusals", ())}
        if expect["reason"] not in {getattr(r, "value", r) for r in reasons}:
            wrong.append(f"expected reason {expect['reason']}, got {describe(error)}")
    if "field" in expect:
        field = getattr(error, "field", None)
        if not isinstance(field, str) or not _path_under(field, expect["field"]):
            wrong.append(f"expected .field at {expect['field']}, got {field!r}")
    problems = getattr(error, "problems", None)
    if "path" in expect:
        if not problems:
            wrong.append("the error lists no problems, so no location")
        else:
            hits = [p for p in problems if _path_under(p.path, expect["path"])
                    and ("source" not in expect or p.file == expect["source"])
                    and ("file" not in expect or Path(p.file).name == expect["file"])
                    and ("line" not in expect or p.line == expect["line"])
                    and (not expect.get("located") or p.line > 0)]
            if not hits:
                wrong.append(f"no problem at {expect['path']} (file {expect.get('file', expect.get('source', 'any'))},"
                             f" line {expect.get('line', '>0' if expect.get('located') else 'any')}); got "
                             + "; ".join(str(p)[:200] for p in problems[:5]))
    return wrong


def assert_case(case: dict, error, seconds: float, unchanged: list[tuple[str, Any, Any]], expect: dict,
                errors: dict[str, type], limit: float = TIME_LIMIT) -> None:
    """The four properties, all reported at once."""
    wrong = check_error(error, expect, errors)
    if seconds > limit:
        wrong.append(f"took {seconds:.1f} s (bound {limit} s)")
    for what, before, after in unchanged:
        if before != after:
            wrong.append(f"{what} changed")
    if wrong:
        raise AssertionError(f"{case['id']} ({case['description'].strip()}):\n  " + "\n  ".join(wrong))
