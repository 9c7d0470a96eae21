"""The `promo` command: `promo validate [DIR]`, `promo evaluate ...`, `promo explain ...`, `promo refund ...`, the ledger's
`promo ledger init|show` and `promo codes generate` (engine/ledger/cli.py), and the service's
`promo serve` and `promo keys` (engine/service/cli.py), and backtesting's `promo carts generate|from-traces`
(engine/corpus_cli.py) and `promo diff` (engine/backtest_cli.py), and `promo simulate`
(engine/simulate_cli.py). Arguments, files, the clock
(read only when --now is not given) and exit codes live here; what is shown lives in engine/render.py.

Exit codes: 0 success; 1 an input was rejected (a rule set, cart, account, usage or trace file, --now, a
ledger refusal, a file that cannot be read or written: every problem is listed, and each message names
the file or field to fix); 2 usage (an unknown command or option, a malformed argument); 130 interrupted.
No failure prints a traceback: anything unexpected is one line, `promo: internal error (Type); please
report it`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn, Sequence

from rich.console import Console

from .cli_support import Refused, read_input
from .cli_support import now_option as _now
from .errors import PromoError, RuleFileError
from .evaluate import evaluate
from . import backtest_cli
from . import corpus_cli
from . import lint_cli
from . import new_cli
from . import simulate_cli
from .ledger import cli as ledger_cli
from .refund import refund
from .render import clean_lines, clean_text, problem_report, render_explanation, render_refund, render_trace
from .ruleset import load_ruleset
from .service import cli as service_cli
from .text import shorten
from .whynot import explain_promotion, similar_ids

# Kept under their old names: callers that rendered through the CLI module keep working.
render = render_trace

_QUANTITY = re.compile(r"[0-9]{1,9}")


class _Parser(argparse.ArgumentParser):
    """argparse, with its error messages (which echo what was typed) cleaned of control characters and
    with anything typed of more than 80 characters cut short (a 5,000-digit --top is not echoed whole)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        short = re.sub(r"\S{81,}", lambda m: f"{m[0][:40]}… ({len(m[0])} characters)", clean_lines(message))
        self.exit(2, f"{self.prog}: error: {short}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `promo` command and return its exit code. Never raises and never prints a traceback."""
    try:
        return _main(argv)
    except SystemExit as exc:            # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:              # `promo evaluate ... | head`: the reader left; nothing to say
        _silence_stdout()
        return 1
    except Exception as exc:  # noqa: BLE001 - the last barrier: a user never sees a library's traceback
        print(f"promo: internal error ({type(exc).__name__}); please report it", file=sys.stderr)
        return 1


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 132)
    try:
        if args.command == "validate":
            return _validate(args.directory, args.json, console)
        if args.command == "refund":
            return _refund(args, console)
        if args.command in ("ledger", "codes"):
            return ledger_cli.run(args)
        if args.command in ("serve", "keys"):
            return service_cli.run(args)
        if args.command == "explain":
            return _explain(args, console)
        if args.command == "lint":
            return lint_cli.run(args)
        if args.command == "new":
            return new_cli.run(args)
        if args.command == "carts":
            return corpus_cli.run(args)
        if args.command == "diff":
            return backtest_cli.run(args)
        if args.command == "simulate":
            return simulate_cli.run(args)
        return _evaluate(args, console)
    except Refused as exc:
        print(clean_lines(str(exc)), file=sys.stderr)
        return exc.code
    except RuleFileError as exc:       # each problem with the line it points at
        print(clean_text(str(exc).split("\n", 1)[0]) + "\n" + problem_report(exc.problems), file=sys.stderr)
        return 1
    except PromoError as exc:
        print(clean_lines(str(exc)), file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="promo", description="Promotion rule files: validate and evaluate.")
    commands = parser.add_subparsers(dest="command", required=True)

    parser.add_argument("--version", action="version", version=f"promo {_version()}",
                        help="print promo-engine's version and exit")
    validate = commands.add_parser("validate", help="check every rule file; list all problems")
    validate.add_argument("directory", nargs="?", default="rules", metavar="DIR_OR_FILE",
                          help="the rule directory (default: rules), or one rule file in it: that file is checked "
                               "against the rest of its directory and only its problems are listed")
    validate.add_argument("--json", action="store_true",
                          help="print {valid, directory, file, promotions, active, version, problems} as JSON (for CI)")

    run = _cart_options(commands.add_parser("evaluate", help="evaluate a cart against the rules and show the trace"))
    run.add_argument("--json", action="store_true", help="print the trace as JSON")
    run.add_argument("--compact", action="store_true",
                     help="with --json: the compact view a checkout page needs instead of the full trace")

    why = _cart_options(commands.add_parser("explain", help="why one promotion applies or not to a cart: every "
                                                            "check, in order"))
    why.add_argument("--promotion", required=True, help="the promotion's id (its file name without .yaml)")
    why.add_argument("--json", action="store_true", help="print the explanation as JSON")

    back = commands.add_parser("refund", help="what a return or cancellation gives back, and to which tender")
    back.add_argument("--trace", required=True, help="the order's trace (promo evaluate --json)")
    back.add_argument("--return", dest="returns", action="extend", nargs="+", required=True, metavar="LINE=QTY",
                      help="returned lines and quantities, e.g. L1=1 L3=2")
    back.add_argument("--now", help="ISO 8601 time with offset of the return (default: the current time)")
    back.add_argument("--rules", default="rules", help="the rule set the order was priced with (default: rules)")
    back.add_argument("--json", action="store_true", help="print the refund as JSON")

    ledger_cli.add_commands(commands)
    service_cli.add_commands(commands)
    lint_cli.add_commands(commands)
    new_cli.add_commands(commands)
    corpus_cli.add_commands(commands)
    backtest_cli.add_commands(commands)
    simulate_cli.add_commands(commands)
    return parser


def _cart_options(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of a command that evaluates one cart (evaluate, explain)."""
    command.add_argument("--rules", default="rules", help="rule directory (default: rules)")
    command.add_argument("--cart", required=True, help="cart JSON file")
    command.add_argument("--account", help="account JSON file (default: account.json beside the cart)")
    command.add_argument("--code", action="extend", nargs="+", default=[], help="entered promo codes (one or more)")
    command.add_argument("--now", help="ISO 8601 time with offset (default: the current time)")
    command.add_argument("--usage", help="usage JSON file: {promotion id: {total_uses, customer_uses, budget_spent}}")
    command.add_argument("--preview", action="extend", nargs="+", default=[],
                         help="treat these draft or paused promotions as active")
    return command


def _validate(target: str, as_json: bool, console: Console) -> int:
    """`promo validate DIR` or `promo validate FILE` (the file against the rest of its directory)."""
    path = Path(target)
    one = path if path.suffix in (".yaml", ".yml") and not path.is_dir() else None
    if one is not None and not one.is_file():
        raise Refused(f"promo: {clean_text(target)}: no such rule file")
    directory = one.parent if one is not None else path
    try:
        ruleset = load_ruleset(directory)
        problems: list = []
    except RuleFileError as exc:
        ruleset, problems = None, list(exc.problems)
    mine = [p for p in problems if one is None or Path(p.file) == one]
    others = len({p.file for p in problems}) - (1 if mine and one is not None else 0) if one is not None else 0
    if as_json:
        report: dict[str, Any] = {"valid": not mine, "directory": str(directory),
                                  "problems": [{"file": p.file, "line": p.line, "column": p.column, "path": p.path,
                                                "message": p.message} for p in mine]}
        if one is not None:
            report["file"] = str(one)
            report["other_files_with_problems"] = others
        if ruleset is not None:
            report.update(promotions=len(ruleset.promotions), version=ruleset.version,
                          active=sum(1 for p in ruleset.promotions.values() if p.status == "active"))
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        return 1 if mine else 0
    if mine:
        n = len(mine)
        shown = clean_text(one if one is not None else directory)
        print(f"{shown} has {n} problem{'s' if n != 1 else ''}:\n" + problem_report(mine), file=sys.stderr)
        return 1
    if one is not None:
        note = f" ({others} other file{'s' if others != 1 else ''} in {clean_text(directory)} "\
               f"{'have' if others != 1 else 'has'} problems: `promo validate {clean_text(directory)}` lists them)" \
            if others else ""
        console.print(f"{clean_text(one)}: valid against {clean_text(directory)}{note}.", markup=False)
        return 0
    assert ruleset is not None
    active = sum(1 for p in ruleset.promotions.values() if p.status == "active")
    console.print(f"{clean_text(directory)}: {len(ruleset.promotions)} promotions ({active} active), all valid. "
                  f"Version {clean_text(ruleset.version[:19])}", markup=False)
    return 0


def _version() -> str:
    try:
        return metadata.version("promo-engine")
    except metadata.PackageNotFoundError:    # run from a checkout that was never installed
        return "unknown (not installed)"


def _evaluate(args: argparse.Namespace, console: Console) -> int:
    if args.compact and not args.json:
        raise Refused("promo: --compact is a form of the JSON trace; give it with --json", 2)
    now, cart, account, usage = _cart_inputs(args)
    ruleset = load_ruleset(args.rules)
    trace = evaluate(ruleset, cart, account, codes=args.code, now=now, usage=usage, preview=args.preview)
    if args.json:
        sys.stdout.write(trace.to_json(view="compact" if args.compact else "full"))
    else:
        render_trace(trace, console, ruleset.locale)
    return 0


def _explain(args: argparse.Namespace, console: Console) -> int:
    """`promo explain`: exit 0 whether the promotion applies or not; 1 for bad input."""
    now, cart, account, usage = _cart_inputs(args)
    ruleset = load_ruleset(args.rules)
    if args.promotion not in ruleset.promotions:
        close = similar_ids(ruleset, args.promotion)
        raise Refused(f"promo: --promotion {clean_text(shorten(args.promotion))}: no promotion with that id in "
                      f"{clean_text(args.rules)}" + (f"; did you mean {', '.join(close)}?" if close else
                                                     "; the ids are the rule files' names without .yaml"))
    explanation = explain_promotion(ruleset, cart, account, args.promotion, codes=args.code, now=now, usage=usage,
                                    preview=args.preview)
    if args.json:
        sys.stdout.write(json.dumps(explanation.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n")
    else:
        render_explanation(explanation, console, ruleset.locale)
    return 0


def _cart_inputs(args: argparse.Namespace) -> tuple[str, Any, Any, Any]:
    """--now, --cart, --account (or account.json beside the cart) and --usage, read and decoded."""
    now = _now(args.now)
    cart_path = Path(args.cart)
    cart = read_input(cart_path, "--cart")
    if args.account:
        account = read_input(args.account, "--account")
    else:
        account_path = cart_path.with_name("account.json")
        if not os.path.lexists(account_path):
            raise Refused(f"promo: no --account given and {clean_text(account_path)} does not exist; "
                          f"use --account FILE")
        account = read_input(account_path, "account (beside the cart)")
    usage = read_input(args.usage, "--usage") if args.usage else None
    return now, cart, account, usage


def _refund(args: argparse.Namespace, console: Console) -> int:
    returned: dict[str, int] = {}
    for item in args.returns:
        line, sep, qty = item.partition("=")
        if not sep or not line or not _QUANTITY.fullmatch(qty) or line in returned:
            raise Refused(f"promo: --return takes LINE=QTY once per line, e.g. L1=2; got {clean_text(shorten(item))}", 2)
        returned[line] = int(qty)
    now = _now(args.now)
    trace = read_input(args.trace, "--trace")
    if not isinstance(trace, dict) or "ruleset_version" not in trace or "lines" not in trace:
        raise Refused(f"promo: --trace {clean_text(args.trace)} is not a trace; give the JSON that "
                      f"`promo evaluate --json` printed for the order")
    ruleset = load_ruleset(args.rules)
    result = refund(ruleset, trace, returned, now)
    if args.json:
        sys.stdout.write(result.to_json())
    else:
        render_refund(result, console, ruleset.locale)
    return 0


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that the interpreter's last flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
