"""The example cases the preview page offers (`promo serve --examples DIR`, `GET /v1/admin/examples`).

An examples directory holds one sub-directory per case, each with `cart.json`, `account.json` and
`case.json` (`{"description", "codes", "now", "preview"?}`), as `examples/` does. They are read once, when
the service starts, like rule files: links are refused and never followed (a link in the directory could
otherwise hand the page any file the service can read), each file is read with the engine's bounded JSON
reader, and the cart and account are checked against their schemas, so that what the endpoint answers
is what /openapi.json says. Any problem stops the start, every problem listed with its file.
Files at the top of the directory (`demo.py`) and hidden entries are not cases and are passed over.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from .. import schemas
from ..errors import InputError, Problem, PromoError
from ..evaluate import MAX_PREVIEW
from ..inputs import MAX_CODE_LENGTH, MAX_CODES, MAX_JSON_BYTES, read_json
from ..yamlsafe import json_path

MAX_EXAMPLES = 100
MAX_TOTAL_BYTES = MAX_JSON_BYTES     # all the cases together: one answer of /v1/admin/examples
FILES = ("case.json", "cart.json", "account.json")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")   # it names the case on the page and in URLs
CASE = {
    "type": "object", "additionalProperties": False, "required": ["description", "codes", "now"],
    "properties": {
        "description": {"type": "string", "maxLength": 1000},
        "codes": {"type": "array", "maxItems": MAX_CODES, "items": {"type": "string", "maxLength": MAX_CODE_LENGTH}},
        "now": {"type": "string", "minLength": 1, "maxLength": 40},
        "preview": {"type": "array", "maxItems": MAX_PREVIEW, "items": {"type": "string", "minLength": 1,
                                                                         "maxLength": 64}},
    }}
_CASE = Draft202012Validator(CASE)


class ExamplesError(PromoError):
    """The examples directory cannot be offered as it is; `problems` says where and why."""

    def __init__(self, problems: list[Problem], directory: str):
        n = len(problems)
        super().__init__(problems, f"examples directory {directory} has {n} problem{'s' if n != 1 else ''} "
                                   f"(--examples DIR, or --no-examples)")


@dataclass(frozen=True)
class Example:
    name: str                 # the sub-directory's name
    description: str
    codes: tuple[str, ...]
    now: str
    preview: tuple[str, ...]
    cart: Any
    account: Any

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "codes": list(self.codes), "now": self.now,
                "preview": list(self.preview), "cart": self.cart, "account": self.account}


def read_examples(directory: str | Path) -> tuple[Example, ...]:
    """Every case in `directory`, by name; ExamplesError listing every problem."""
    root = Path(directory)
    problems: list[Problem] = []
    try:
        entries = sorted((e for e in os.scandir(root) if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise ExamplesError([Problem(str(root), 0, 0, "$", f"cannot read the examples directory: "
                                                            f"{exc.strerror or exc}")], str(root)) from None
    cases = [e for e in entries if e.is_symlink() or e.is_dir(follow_symlinks=False)]
    if len(cases) > MAX_EXAMPLES:
        raise ExamplesError([Problem(str(root), 0, 0, "$", f"more than {MAX_EXAMPLES} examples")], str(root))
    examples, total = [], 0
    for entry in cases:
        where = root / entry.name
        if entry.is_symlink():
            problems.append(Problem(str(where), 0, 0, "$", "is a symbolic link; an example is a directory in "
                                                           "the examples directory (links are not followed)"))
            continue
        if not NAME.fullmatch(entry.name):
            problems.append(Problem(str(where), 0, 0, "$", "an example's directory name is letters, digits, "
                                                           "'.', '_' and '-', at most 64 characters"))
            continue
        docs: dict[str, Any] = {}
        for name in FILES:
            path = where / name
            try:
                info = os.lstat(path)
            except OSError:
                problems.append(Problem(str(path), 0, 0, "$", f"missing: an example has {', '.join(FILES)}"))
                continue
            if stat.S_ISLNK(info.st_mode):
                problems.append(Problem(str(path), 0, 0, "$", "is a symbolic link; example files must be regular "
                                                              "files (links are not followed)"))
                continue
            total += info.st_size
            if total > MAX_TOTAL_BYTES:
                raise ExamplesError([Problem(str(root), 0, 0, "$", f"the examples are larger than "
                                                                    f"{MAX_TOTAL_BYTES // (1024 * 1024)} MiB "
                                                                    f"together")], str(root))
            try:
                docs[name] = read_json(path, follow_links=False)
            except InputError as exc:
                problems.extend(exc.problems)
        if len(docs) < len(FILES):
            continue
        found = _problems(str(where / "case.json"), _CASE.iter_errors(docs["case.json"]))
        for kind in ("cart", "account"):
            found += [Problem(str(where / f"{kind}.json"), 0, 0, json_path(at), message)
                      for at, message in schemas.check(kind, docs[f"{kind}.json"])]
        problems.extend(found)
        if not found:
            case = docs["case.json"]
            examples.append(Example(entry.name, case["description"], tuple(case["codes"]), case["now"],
                                    tuple(case.get("preview", ())), docs["cart.json"], docs["account.json"]))
    if problems:
        raise ExamplesError(problems, str(root))
    return tuple(examples)


def _problems(file: str, errors: Any) -> list[Problem]:
    return [Problem(file, 0, 0, e.json_path, e.message[:200]) for e in errors]
