"""`promo carts generate --rules DIR --count N --seed S --out FILE [--now ISO] [--force]` and
`promo carts from-traces TRACE... --out FILE [--force]`: writing a cart corpus (engine/corpus.py) for
`promo diff`. The generator is engine/cartgen.py; traces are read with `read_input`.

`--out` is never overwritten unless --force: the corpus is written to a temporary file beside it and
renamed into place once complete, so a failed run leaves no half corpus. Every refusal is one line and
exit 1 (a missing rule directory, a bad --count, an existing --out, a trace that is compact or not a
trace); usage errors are argparse's (exit 2).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from .cartgen import MAX_COUNT, generate
from .cli_support import Refused, input_file, now_option, read_input
from .corpus import CorpusError, entry_line
from .render import clean_lines, clean_text
from .ruleset import load_ruleset
from .text import instant_problem


def add_commands(commands: argparse._SubParsersAction) -> None:
    carts = commands.add_parser("carts", help="write a cart corpus (JSON Lines) for `promo diff`")
    verbs = carts.add_subparsers(dest="carts_command", required=True)
    gen = verbs.add_parser("generate", help="a seeded synthetic corpus that exercises a rule set")
    gen.add_argument("--rules", default="rules", help="rule directory (default: rules)")
    gen.add_argument("--count", required=True, type=int, help=f"how many carts (1 to {MAX_COUNT:,})")
    gen.add_argument("--seed", required=True, type=int, help="the same seed gives the same bytes")
    gen.add_argument("--out", required=True, help="the corpus file to write (.jsonl)")
    gen.add_argument("--now", help="ISO 8601 time with offset that windowless carts fall around (default: the "
                                   "median start of the rule set's windows, never the clock)")
    gen.add_argument("--force", action="store_true", help="replace --out if it exists")
    back = verbs.add_parser("from-traces", help="corpus lines from stored full traces (promo evaluate --json)")
    back.add_argument("traces", nargs="+", metavar="TRACE", help="trace JSON files")
    back.add_argument("--out", required=True, help="the corpus file to write (.jsonl)")
    back.add_argument("--force", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    try:
        if args.carts_command == "generate":
            written, note = _generate(args), ""
        else:
            written, note = _from_traces(args)
    except Refused as exc:
        print(clean_lines(str(exc)), file=sys.stderr)
        return exc.code
    print(f"{clean_text(args.out)}: {written} cart{'s' if written != 1 else ''}{note}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= MAX_COUNT:
        raise Refused(f"promo carts generate: --count {args.count}: give 1 to {MAX_COUNT:,} carts")
    anchor = datetime.fromisoformat(now_option(args.now).replace("Z", "+00:00")) if args.now else None
    if anchor is not None and instant_problem(anchor) is not None:     # every cart would be refused by its `now`
        raise Refused(f"promo carts generate: --now {clean_text(args.now)}: {instant_problem(anchor)}; carts "
                      f"are only evaluated in that range")
    check_out(args.out, args.force)
    if not Path(args.rules).is_dir():
        raise Refused(f"promo: rule directory {clean_text(args.rules)} not found")
    ruleset = load_ruleset(args.rules)
    if not ruleset.currencies:
        raise Refused(f"promo carts generate: {clean_text(args.rules)} lists no currencies")
    return write_corpus(args.out, generate(ruleset, args.count, args.seed, anchor), args.force)


def _from_traces(args: argparse.Namespace) -> tuple[int, str]:
    """The traces' lines, written as each trace is read (one trace of up to 4 MiB held at a time, never
    all of them); a trace refused part-way leaves no --out (write_corpus)."""
    check_out(args.out, args.force)
    dropped = 0

    def entries() -> Iterator[dict[str, Any]]:
        nonlocal dropped
        for path in args.traces:
            entry, had_usage = trace_entry(read_input(path, "trace"), path)
            dropped += had_usage
            yield entry

    written = write_corpus(args.out, entries(), args.force)
    note = (f" ({dropped} trace{'s' if dropped != 1 else ''} had usage or previews, which a corpus does not "
            f"replay)") if dropped else ""
    return written, note


def trace_entry(trace: Any, path: str) -> tuple[dict[str, Any], bool]:
    """A full trace's inputs as a corpus line, and whether it had usage or previews (not replayed: a
    corpus replays carts; budgets and limits are `promo simulate`'s)."""
    shown = clean_text(path)
    if not isinstance(trace, dict) or "ruleset_version" not in trace or "now" not in trace:
        raise Refused(f"promo: trace {shown} is not a trace; give the JSON that `promo evaluate --json` printed")
    if "inputs" not in trace:
        raise Refused(f"promo: trace {shown} is a compact trace (it has no inputs); give the full trace, "
                      f"`promo evaluate --json` without --compact")
    inputs = trace["inputs"]
    if not isinstance(inputs, dict) or not isinstance(inputs.get("cart"), dict) \
            or not isinstance(inputs.get("account"), dict):
        raise Refused(f"promo: trace {shown}: its inputs have no cart and account; give a full trace")
    if not isinstance(trace["now"], str):
        raise Refused(f"promo: trace {shown}: $.now: must be the evaluation time as a string; give a full trace")
    # A list of strings, as evaluate() records them: never a string split into its characters (list("AB")),
    # a mapping's keys, or a number.
    codes = inputs.get("codes")
    codes = [] if codes is None else codes
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise Refused(f"promo: trace {shown}: $.inputs.codes: must be a list of code strings")
    entry: dict[str, Any] = {"cart": inputs["cart"], "account": inputs["account"], "codes": list(codes),
                             "now": trace["now"]}
    cart_id = inputs["cart"].get("id")
    if isinstance(cart_id, str) and cart_id:
        entry["id"] = cart_id
    return entry, bool(inputs.get("usage")) or bool(inputs.get("preview"))


def check_out(path: str, force: bool) -> None:
    """--out: refused when it exists (unless --force, and never a directory) or its directory does not."""
    p = Path(path)
    shown = clean_text(p)
    try:
        exists = os.path.lexists(p)
        is_dir = p.is_dir()
        parent_ok = (p.parent if str(p.parent) else Path(".")).is_dir()
    except (OSError, ValueError):
        raise Refused(f"promo: --out {shown}: not a usable file name") from None
    if is_dir:
        raise Refused(f"promo: --out {shown} is a directory; give a file to write")
    if exists and not force:
        raise Refused(f"promo: --out {shown} exists; give --force to replace it")
    if not parent_ok:
        raise Refused(f"promo: --out {shown}: its directory does not exist")


def write_corpus(path: str, entries: Iterable[dict[str, Any]], force: bool) -> int:
    """Writes the entries as corpus lines to a temporary file beside `path`, then renames it into place
    (without --force, refusing if `path` appeared meanwhile). Returns how many lines were written."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise Refused(f"promo: --out {clean_text(target)}: cannot write: {exc.strerror}") from None
    count = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for entry in entries:
                out.write(entry_line(entry))
                count += 1
        if force:
            os.replace(temporary, target)
        else:
            os.link(temporary, target)     # fails if --out appeared meanwhile: never overwritten
            os.unlink(temporary)
    except FileExistsError:
        os.unlink(temporary)
        raise Refused(f"promo: --out {clean_text(target)} exists; give --force to replace it") from None
    except OSError as exc:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise Refused(f"promo: --out {clean_text(target)}: cannot write: {exc.strerror}") from None
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
    return count


@contextmanager
def corpus_refusals(command: str, path: str) -> Iterator[None]:
    """A replay's corpus problems as the command's one-line refusal: a bad line (on-error stop), or a
    file that cannot be read."""
    try:
        yield
    except CorpusError as exc:
        raise Refused(f"promo {command}: {clean_text(exc)} (--on-error skip counts bad lines and goes on)") from None
    except OSError as exc:
        raise Refused(f"promo {command}: --carts {clean_text(path)}: cannot read: {exc.strerror}") from None


def check_corpus(path: str) -> None:
    """--carts: a regular, non-empty file, or `Refused` saying which it is not."""
    input_file(path, "--carts", "a corpus file (JSON Lines)",
               empty="a corpus with one cart a line (promo carts generate)")
