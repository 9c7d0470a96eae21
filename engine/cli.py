"""The `promo` command: `promo validate [DIR]`, `promo evaluate ...`, `promo refund ...`, and the ledger's
`promo ledger init|show` and `promo codes generate` (engine/ledger/cli.py). Input and output live here;
the clock is read here (only when --now is not given), never in the engine.

Exit codes: 0 success, 1 the rule set or an input was rejected (every problem is listed), 2 usage.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table

from .errors import PromoError
from .ledger import cli as ledger_cli
from .evaluate import evaluate
from .inputs import read_json
from .money import format_money
from .refund import Refund, refund
from .ruleset import load_ruleset
from .trace import Trace


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promo", description="Promotion rule files: validate and evaluate.")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check every rule file; list all problems")
    validate.add_argument("directory", nargs="?", default="rules")

    run = commands.add_parser("evaluate", help="evaluate a cart against the rules and show the trace")
    run.add_argument("--rules", default="rules", help="rule directory (default: rules)")
    run.add_argument("--cart", required=True, help="cart JSON file")
    run.add_argument("--account", help="account JSON file (default: account.json beside the cart)")
    run.add_argument("--code", action="extend", nargs="+", default=[], help="entered promo codes (one or more)")
    run.add_argument("--now", help="ISO 8601 time with offset (default: the current time)")
    run.add_argument("--usage", help="usage JSON file: {promotion id: {total_uses, customer_uses, budget_spent}}")
    run.add_argument("--preview", action="extend", nargs="+", default=[],
                     help="treat these draft or paused promotions as active")
    run.add_argument("--json", action="store_true", help="print the trace as JSON")

    back = commands.add_parser("refund", help="what a return or cancellation gives back, and to which tender")
    back.add_argument("--trace", required=True, help="the order's trace (promo evaluate --json)")
    back.add_argument("--return", dest="returns", action="extend", nargs="+", required=True, metavar="LINE=QTY",
                      help="returned lines and quantities, e.g. L1=1 L3=2")
    back.add_argument("--now", help="ISO 8601 time with offset of the return (default: the current time)")
    back.add_argument("--rules", default="rules", help="the rule set the order was priced with (default: rules)")
    back.add_argument("--json", action="store_true", help="print the refund as JSON")

    ledger_cli.add_commands(commands)

    args = parser.parse_args(argv)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 132)
    try:
        if args.command == "validate":
            return _validate(args.directory, console)
        if args.command == "refund":
            return _refund(args, console)
        if args.command in ("ledger", "codes"):
            return ledger_cli.run(args)
        return _evaluate(args, console)
    except PromoError as exc:
        print(str(exc), file=sys.stderr)
        return 1


def _validate(directory: str, console: Console) -> int:
    ruleset = load_ruleset(directory)
    active = sum(1 for p in ruleset.promotions.values() if p.status == "active")
    console.print(f"{directory}: {len(ruleset.promotions)} promotions ({active} active), all valid. "
                  f"Version {ruleset.version[:19]}")
    return 0


def _evaluate(args: argparse.Namespace, console: Console) -> int:
    ruleset = load_ruleset(args.rules)
    cart_path = Path(args.cart)
    account_path = Path(args.account) if args.account else cart_path.with_name("account.json")
    if not account_path.exists():
        print(f"promo: no account given and {account_path} does not exist; use --account FILE", file=sys.stderr)
        return 2
    now = args.now or datetime.now(timezone.utc).isoformat(timespec="seconds")
    usage = read_json(args.usage) if args.usage else None
    trace = evaluate(ruleset, read_json(cart_path), read_json(account_path), codes=args.code, now=now, usage=usage,
                     preview=args.preview)
    if args.json:
        sys.stdout.write(trace.to_json())
    else:
        render(trace, console, ruleset.locale)
    return 0


def _refund(args: argparse.Namespace, console: Console) -> int:
    returned: dict[str, int] = {}
    for item in args.returns:
        line, sep, qty = item.partition("=")
        if not sep or not qty.isdigit() or line in returned:
            print(f"promo: --return takes LINE=QTY once per line, e.g. L1=2; got {item!r}", file=sys.stderr)
            return 2
        returned[line] = int(qty)
    ruleset = load_ruleset(args.rules)
    now = args.now or datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = refund(ruleset, read_json(args.trace), returned, now)
    if args.json:
        sys.stdout.write(result.to_json())
    else:
        render_refund(result, console, ruleset.locale)
    return 0


def render_refund(r: Refund, console: Console, locale: str = "en_US") -> None:
    def money(value) -> str:
        return format_money(value, r.currency, locale)

    what = "Cancellation" if r.cancelled else "Return"
    console.print(f"[bold]{what} of cart {r.cart_id or ''}[/] for {r.account_id} at {r.now}")
    console.print("Returned: " + ", ".join(f"{x.line} ×{x.quantity} (paid {money(x.paid)})" for x in r.returned_lines))
    if not r.cancelled:
        for lost in r.lost_promotions:
            console.print(f"[yellow]No longer earned[/]: {lost.name} ({lost.promotion}, was {money(lost.before)})"
                          + (f": {lost.message}" if lost.message else ""))
    for grant in r.revoked_grants:
        console.print(f"[yellow]Grant revoked[/]: {money(grant.before)} from {grant.name} ({grant.promotion})"
                      + (f": {grant.message}" if grant.message else ""))
    table = Table(title="Back to", show_edge=False, header_style="bold", title_justify="left")
    for title in ("tender", "paid", "returned part", "clawback", "back", "forfeited"):
        table.add_column(title, justify="left" if title == "tender" else "right")
    for p in r.parts:
        label = p.kind.replace("_", " ") + (f" {p.id}" if p.id else "")
        back = money(p.amount) + (f" ({p.points} points)" if p.points is not None else "")
        forfeited = money(p.forfeited) + f" [dim](expired {p.expires_at})[/]" if p.forfeited else ""
        table.add_row(label, money(p.paid), money(p.returned), money(p.clawback), back, forfeited)
    console.print(table)
    console.print(f"Paid {money(r.paid)}  returned units paid {money(r.returned_value)}  clawback -{money(r.clawback)}  "
                  f"[bold]refund {money(r.refund)}[/]: {money(r.to_customer)} to the customer, {money(r.forfeited)} forfeited  "
                  f"kept {money(r.kept)}")
    console.print()


def render(trace: Trace, console: Console, locale: str = "en_US") -> None:
    """The trace as tables a marketer or support agent can read."""
    def money(value) -> str:
        return format_money(value, trace.currency, locale)

    console.print(f"[bold]Cart {trace.cart_id or ''}[/] for {trace.account_id} at {trace.now} "
                  f"({trace.currency}, rounding {trace.rounding})")
    lines = Table(show_edge=False, header_style="bold")
    for title, justify in (("line", "left"), ("item", "left"), ("qty", "right"), ("unit", "right"),
                           ("subtotal", "right"), ("discounts", "left"), ("total", "right")):
        lines.add_column(title, justify=justify)
    for line in trace.lines:
        discounts = "\n".join(f"-{money(d.amount)} {d.promotion}" for d in line.discounts) or "-"
        lines.add_row(line.id, f"{line.name} [dim]{line.category}, {line.seller}, {line.product_type}[/]",
                      str(line.quantity), money(line.unit_price), money(line.subtotal), discounts, money(line.total))
    if trace.shipping is not None:
        s = trace.shipping
        discounts = "\n".join(f"-{money(d.amount)} {d.promotion}" for d in s.discounts) or "-"
        lines.add_row("ship", s.method, "", "", money(s.price), discounts, money(s.total))
    console.print(lines)

    if trace.applied:
        applied = Table(title="Applied, in order", show_edge=False, header_style="bold", title_justify="left")
        for title in ("#", "promotion", "stage", "reward", "amount", "notes"):
            applied.add_column(title, justify="right" if title in ("#", "amount") else "left")
        for i, a in enumerate(trace.applied, 1):
            notes = ", ".join(filter(None, [f"code {a.code}" if a.code else "", "exclusive" if a.exclusive else "",
                                            *(f"capped by {c}" for c in a.capped_by)]))
            applied.add_row(str(i), f"{a.name} [dim]({a.promotion})[/]", a.stage, a.reward, "-" + money(a.amount), notes)
        console.print(applied)
    if trace.not_applied:
        skipped = Table(title="Not applied", show_edge=False, header_style="bold", title_justify="left")
        for title in ("promotion", "reason", "why"):
            skipped.add_column(title)
        for n in trace.not_applied:
            why = n.message
            for f in n.failed_conditions:
                why += f"\n[dim]{f.variable} {f.operator} {_shown(f.expected)}: was {_shown(f.actual)}[/]"
            skipped.add_row(f"{n.name} [dim]({n.promotion})[/]", n.reason.value, why)
        console.print(skipped)
    for code in trace.codes:
        if code.status != "matched":
            console.print(f"[yellow]Code {code.code}[/]: {code.message}")
    if trace.out_of_scope:
        counts = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in trace.out_of_scope)
        console.print(f"[dim]Not considered for this cart: {counts}.[/]")
    for h in trace.hints:
        console.print(f"[green]Hint[/]: {h.message}")
    t = trace.totals
    console.print(f"Subtotal {money(t.subtotal)}  item -{money(t.item_discount)}  order -{money(t.order_discount)}  "
                  f"shipping {money(t.shipping)} -{money(t.shipping_discount)}  "
                  f"[bold]total due {money(t.total)}[/] (saved {money(t.discount)})")
    _render_tenders(trace, console, money)
    console.print()


def _shown(value) -> str:
    """A condition's value as the rule file writes it: text quoted, numbers and lists plain."""
    return f"{value:f}" if isinstance(value, Decimal) else repr(value)


def _render_tenders(trace: Trace, console: Console, money) -> None:
    tenders = trace.tenders
    table = Table(title="Paid by", show_edge=False, header_style="bold", title_justify="left")
    for title in ("tender", "amount", "lines", "left after"):
        table.add_column(title, justify="right" if title == "amount" else "left")
    for u in tenders.used + (tenders.payment_method,):
        label = u.kind.replace("_", " ") + (f" {u.id}" if u.id else "")
        covered = ", ".join([f"{s.line} {money(s.amount)}" for s in u.lines]
                            + ([f"shipping {money(u.shipping)}"] if u.shipping else []))
        if u.points is not None:
            left = f"{u.points_left} points (used {u.points} × {money(u.point_value)})"
        elif u.balance_left is not None:
            left = money(u.balance_left) + (f" until {u.expires_at}" if u.expires_at else "")
        else:
            left = ""
        table.add_row(label, money(u.amount), covered or "-", left)
    console.print(table)
    for n in tenders.not_used:
        console.print(f"[dim]Not used[/]: {n.kind.replace('_', ' ')}{' ' + n.id if n.id else ''} "
                      f"({n.reason.value}): {n.message}")
    for g in trace.grants:
        console.print(f"[green]Granted after the order[/]: {money(g.amount)} promotional balance from {g.name} "
                      f"({g.promotion}), expires {g.expires_at}")


if __name__ == "__main__":
    raise SystemExit(main())
