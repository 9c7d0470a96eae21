"""`make demo`: evaluate every example in examples/ against rules/ and print the traces.

Each example is a folder with cart.json, account.json and case.json ({"codes": [...], "now": "..."}),
the same layout QA uses for golden cases, so any example can be re-run with `promo evaluate`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.cli import main

HERE = Path(__file__).resolve().parent


def run() -> int:
    status = 0
    for folder in sorted(p for p in HERE.iterdir() if (p / "cart.json").exists()):
        case = json.loads((folder / "case.json").read_text("utf-8"))
        print(f"=== {folder.name}: {case.get('description', '')}")
        argv = ["evaluate", "--rules", str(HERE.parent / "rules"), "--cart", str(folder / "cart.json"),
                "--account", str(folder / "account.json"), "--now", case["now"]]
        for code in case.get("codes", []):
            argv += ["--code", code]
        for promotion in case.get("preview", []):
            argv += ["--preview", promotion]
        status |= main(argv)
    return status


if __name__ == "__main__":
    sys.exit(run())
