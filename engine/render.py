"""What promo-engine shows to people: the trace and refund tables, the ledger's promotion report, and the
text rules for anything taken from a rule file, a cart, an account or a database before it is shown.

The CLI prints these; a service or a preview page can use the same functions, so a table reads the same
wherever it is shown, and no caller owns them.

Names come from rule files and carts that someone else wrote. Before any of them reaches a terminal:
- `clean_text()` removes what a terminal would obey instead of show: escape sequences (CSI, OSC and the
  other ESC forms) and every other control character (C0, DEL, C1, backspace, carriage return, BEL),
  bidirectional overrides and isolates, line and paragraph separators. Each becomes one visible `�`,
  so a reader sees that something was there;
- `safe_text()` also escapes rich markup, so `[/x] [bold]Sale[/bold]` is printed as written, not
  interpreted (or refused with rich's own exception).
"""
from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import Problem
from .money import format_money
from .refund import Refund
from .trace import Trace
from .whynot import Explanation
from .yamlsafe import MAX_FILE_BYTES, read_capped

PLACEHOLDER = "\ufffd"
FALLBACK_LOCALE = "en_US"

# A whole ESC sequence becomes one placeholder: CSI (ESC [, parameters, one final byte), the OSC, DCS,
# PM and APC strings (up to BEL or ST, or the end of the text), and the two-byte ESC forms. A lone C1
# control (U+009B CSI, U+009D OSC...) is replaced by itself below: without it, what follows is plain text.
_ESCAPE = re.compile(r"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
                     r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
                     r"|\x1b[\x20-\x7e]?")
# Every other character a terminal acts on or that reorders what is shown: C0 (newline and tab
# included: a name is one line), DEL, C1, bidi embeddings/overrides/isolates and marks, line and
# paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean_text(value: object) -> str:
    """`value` as text that a terminal shows instead of obeying (see the module docstring)."""
    text = value if isinstance(value, str) else str(value)
    return _CONTROL.sub(PLACEHOLDER, _ESCAPE.sub(PLACEHOLDER, text))


def clean_lines(message: str) -> str:
    """A message of several lines (every problem of a rule set, one a line) with each line cleaned: the
    message's own line breaks stay, nothing inside a line can move the cursor or change colours."""
    return "\n".join(clean_text(line) for line in message.split("\n"))


def safe_text(value: object) -> str:
    """`value` ready to go inside a rich markup string: cleaned, and its brackets shown as written."""
    return escape(clean_text(value))


def problem_report(problems: Iterable[Problem], context_limit: int = 120) -> str:
    """Rule-file problems, one a line, each followed by the line of the file it points at and a caret
    under the column (files are read again, bounded; a file that cannot be read shows no excerpt)."""
    texts: dict[str, list[str] | None] = {}
    out: list[str] = []
    for p in problems:
        out.append(clean_text(f"  {p}"))
        if p.line <= 0:
            continue
        if p.file not in texts:
            data = None
            try:
                data = read_capped(Path(p.file), MAX_FILE_BYTES, follow_links=False)
            except (OSError, ValueError):
                pass
            texts[p.file] = data.decode("utf-8", "replace").splitlines() if data is not None else None
        lines = texts[p.file]
        if lines is None or p.line > len(lines):
            continue
        text, column = lines[p.line - 1], max(p.column - 1, 0)
        start = max(0, column - context_limit // 2)
        shown = clean_text(text[start:start + context_limit])
        number = str(p.line)
        out.append(f"    {number} | {shown}")
        out.append(f"    {' ' * len(number)} | {' ' * (column - start)}^")
    return "\n".join(out)


def money(value: Decimal, currency: str, locale: str) -> str:
    """An amount for people. A locale Babel does not know never stops a table from being shown: the
    amount is then formatted for en_US, and failing that written plainly (`JPY 500`)."""
    for where in (locale, FALLBACK_LOCALE):
        try:
            return format_money(value, currency, where)
        except Exception:  # noqa: BLE001 - Babel raises UnknownLocaleError, ValueError, TypeError...
            continue
    return f"{clean_text(currency)} {value}"


def render_trace(trace: Trace, console: Console, locale: str = FALLBACK_LOCALE) -> None:
    """The trace as tables a marketer or support agent can read."""
    def m(value: Decimal) -> str:
        return safe_text(money(value, trace.currency, locale))

    s = safe_text
    console.print(f"[bold]Cart {s(trace.cart_id or '')}[/] for {s(trace.account_id)} at {s(trace.now)} "
                  f"({s(trace.currency)}, rounding {s(trace.rounding)})")
    lines = Table(show_edge=False, header_style="bold")
    for title, justify in (("line", "left"), ("item", "left"), ("qty", "right"), ("unit", "right"),
                           ("subtotal", "right"), ("discounts", "left"), ("total", "right")):
        lines.add_column(title, justify=justify)
    for line in trace.lines:
        discounts = "\n".join(f"-{m(d.amount)} {s(d.promotion)}" for d in line.discounts) or "-"
        lines.add_row(s(line.id), f"{s(line.name)} [dim]{s(line.category)}, {s(line.seller)}, {s(line.product_type)}[/]",
                      str(line.quantity), m(line.unit_price), m(line.subtotal), discounts, m(line.total))
    if trace.shipping is not None:
        ship = trace.shipping
        discounts = "\n".join(f"-{m(d.amount)} {s(d.promotion)}" for d in ship.discounts) or "-"
        lines.add_row("ship", s(ship.method), "", "", m(ship.price), discounts, m(ship.total))
    for ship in trace.shipments or ():
        discounts = "\n".join(f"-{m(d.amount)} {s(d.promotion)}" for d in ship.discounts) or "-"
        carried = f" [dim]{s(', '.join(ship.lines))}[/]" if ship.lines else ""
        lines.add_row(f"ship {s(ship.id)}", s(ship.method) + carried, "", "", m(ship.price), discounts, m(ship.total))
    console.print(lines)

    if trace.applied:
        applied = Table(title="Applied, in order", show_edge=False, header_style="bold", title_justify="left")
        for title in ("#", "promotion", "stage", "reward", "amount", "notes"):
            applied.add_column(title, justify="right" if title in ("#", "amount") else "left")
        for i, a in enumerate(trace.applied, 1):
            notes = ", ".join(filter(None, [f"code {s(a.code)}" if a.code else "", "exclusive" if a.exclusive else "",
                                            *(f"capped by {s(c)}" for c in a.capped_by)]))
            applied.add_row(str(i), f"{s(a.name)} [dim]({s(a.promotion)})[/]", s(a.stage), s(a.reward),
                            "-" + m(a.amount), notes)
        console.print(applied)
    if trace.not_applied:
        skipped = Table(title="Not applied", show_edge=False, header_style="bold", title_justify="left")
        for title in ("promotion", "reason", "why"):
            skipped.add_column(title)
        for n in trace.not_applied:
            why = s(n.message)
            for f in n.failed_conditions:
                why += f"\n[dim]{s(f.variable)} {s(f.operator)} {s(shown_value(f.expected))}: was {s(shown_value(f.actual))}[/]"
            skipped.add_row(f"{s(n.name)} [dim]({s(n.promotion)})[/]", s(n.reason.value), why)
        console.print(skipped)
    for code in trace.codes:
        if code.status != "matched":
            console.print(f"[yellow]Code {s(code.code)}[/]: {s(code.message)}")
    if trace.out_of_scope:
        counts = ", ".join(f"{count} {s(reason.replace('_', ' '))}" for reason, count in trace.out_of_scope)
        console.print(f"[dim]Not considered for this cart: {counts}.[/]")
    for h in trace.hints:
        console.print(f"[green]Hint[/]: {s(h.message)}")
    t = trace.totals
    console.print(f"Subtotal {m(t.subtotal)}  item -{m(t.item_discount)}  order -{m(t.order_discount)}  "
                  f"shipping {m(t.shipping)} -{m(t.shipping_discount)}  "
                  f"[bold]total due {m(t.total)}[/] (saved {m(t.discount)})")
    _render_tenders(trace, console, m)
    console.print()


def render_explanation(e: Explanation, console: Console, locale: str = FALLBACK_LOCALE) -> None:
    """`promo explain`: the verdict, every step with its result, and what would make it apply."""
    s = safe_text
    verdict = (f"[green]applies[/]: {s(money(e.amount, e.currency, locale))}" if e.applies and e.amount is not None
               else f"[red]does not apply[/] ({s(e.reason)})")
    console.print(f"[bold]{s(e.name)}[/] [dim]({s(e.promotion)})[/] {verdict}")
    console.print(s(e.message))
    console.print(f"[dim]Conditions measured on {s(e.measured_on)}.[/]")
    steps = Table(show_edge=False, header_style="bold")
    for title in ("stage", "check", "result", "what"):
        steps.add_column(title)
    for step in e.steps:
        result = "[green]pass[/]" if step.passed else "[red]fail[/]"
        if not step.reached:
            result += " [dim](not reached)[/]"
        steps.add_row(s(step.stage), s(step.check), result, s(step.message))
    console.print(steps)
    if e.fixes:
        console.print("[bold]What would make it apply[/]")
        for fix in e.fixes:
            console.print(f"  - {s(fix)}")
    console.print()


def shown_value(value: Any) -> str:
    """A condition's value as the rule file writes it: text quoted, numbers and lists plain."""
    return f"{value:f}" if isinstance(value, Decimal) else repr(value)


def _render_tenders(trace: Trace, console: Console, m: Callable[[Decimal], str]) -> None:
    s = safe_text
    tenders = trace.tenders
    table = Table(title="Paid by", show_edge=False, header_style="bold", title_justify="left")
    for title in ("tender", "amount", "lines", "left after"):
        table.add_column(title, justify="right" if title == "amount" else "left")
    for u in tenders.used + (tenders.payment_method,):
        label = s(u.kind.replace("_", " ") + (f" {u.id}" if u.id else ""))
        covered = ", ".join([f"{s(x.line)} {m(x.amount)}" for x in u.lines]
                            + ([f"shipping {m(u.shipping)}"] if u.shipping and not u.shipments else [])
                            + [f"ship {s(x.shipment)} {m(x.amount)}" for x in u.shipments or ()])
        if u.points is not None:
            left = f"{u.points_left} points (used {u.points} × {m(u.point_value)})"
        elif u.balance_left is not None:
            left = m(u.balance_left) + (f" until {s(u.expires_at)}" if u.expires_at else "")
        else:
            left = ""
        table.add_row(label, m(u.amount), covered or "-", left)
    console.print(table)
    for n in tenders.not_used:
        console.print(f"[dim]Not used[/]: {s(n.kind.replace('_', ' '))}{' ' + s(n.id) if n.id else ''} "
                      f"({s(n.reason.value)}): {s(n.message)}")
    for g in trace.grants:
        console.print(f"[green]Granted after the order[/]: {m(g.amount)} promotional balance from {s(g.name)} "
                      f"({s(g.promotion)}), expires {s(g.expires_at)}")


def render_refund(r: Refund, console: Console, locale: str = FALLBACK_LOCALE) -> None:
    """A return or cancellation: what is no longer earned, and how much goes back to which tender."""
    def m(value: Decimal) -> str:
        return safe_text(money(value, r.currency, locale))

    s = safe_text
    what = "Cancellation" if r.cancelled else "Return"
    console.print(f"[bold]{what} of cart {s(r.cart_id or '')}[/] for {s(r.account_id)} at {s(r.now)}")
    console.print("Returned: " + ", ".join(f"{s(x.line)} ×{x.quantity} (paid {m(x.paid)})" for x in r.returned_lines))
    if not r.cancelled:
        for lost in r.lost_promotions:
            console.print(f"[yellow]No longer earned[/]: {s(lost.name)} ({s(lost.promotion)}, was {m(lost.before)})"
                          + (f": {s(lost.message)}" if lost.message else ""))
    for grant in r.revoked_grants:
        console.print(f"[yellow]Grant revoked[/]: {m(grant.before)} from {s(grant.name)} ({s(grant.promotion)})"
                      + (f": {s(grant.message)}" if grant.message else ""))
    table = Table(title="Back to", show_edge=False, header_style="bold", title_justify="left")
    for title in ("tender", "paid", "returned part", "clawback", "back", "forfeited"):
        table.add_column(title, justify="left" if title == "tender" else "right")
    for p in r.parts:
        label = s(p.kind.replace("_", " ") + (f" {p.id}" if p.id else ""))
        back = m(p.amount) + (f" ({p.points} points)" if p.points is not None else "")
        forfeited = m(p.forfeited) + f" [dim](expired {s(p.expires_at)})[/]" if p.forfeited else ""
        table.add_row(label, m(p.paid), m(p.returned), m(p.clawback), back, forfeited)
    console.print(table)
    console.print(f"Paid {m(r.paid)}  returned units paid {m(r.returned_value)}  clawback -{m(r.clawback)}  "
                  f"[bold]refund {m(r.refund)}[/]: {m(r.to_customer)} to the customer, {m(r.forfeited)} forfeited  "
                  f"kept {m(r.kept)}")
    console.print()


def promotion_report_lines(report: Mapping[str, Any]) -> list[str]:
    """`Ledger.promotion_report()` as the plain lines `promo ledger show` prints (no markup)."""
    c = clean_text

    def limit(value: object) -> str:
        return "no limit" if value is None else c(value)

    out = [c(report["promotion"]) + ("" if report["in_rule_set"] else " (not in this rule set)"),
           f"  uses          {c(report['uses'])} committed, {c(report['held_uses'])} held; "
           f"limit {limit(report['total_uses_limit'])}",
           f"  per customer  {c(report['customers_with_uses'])} customers; limit {limit(report['uses_per_customer_limit'])}",
           f"  budget        {c(report['budget_spent'])} spent, {c(report['budget_held'])} held; "
           f"budget {limit(report['budget'])}"]
    codes = report["codes"]
    if any(codes.values()):
        out.append(f"  codes         {c(codes['unused'])} unused, {c(codes['held'])} held, {c(codes['redeemed'])} redeemed")
    return out
