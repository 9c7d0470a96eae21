"""`promo diff --report FILE.html`: the backtest's summary as one self-contained HTML page, for people
who never open a terminal: the totals table, a histogram of the per-cart discount change, each
promotion's discount before and after, and the most changed carts.

Everything is in the one file (engine/report_html.py, shared with `promo simulate --report`): the charts
are matplotlib PNGs (the Agg backend, no display) embedded as base64 `data:` URIs, the style is an inline
<style>, and there is no script and no external resource. Every value comes from `DiffSummary.to_dict()`,
the same data `--json` prints, and is HTML-escaped.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from .backtest import DiffSummary
from .report_html import escape, page, write_page
from .report_html import figure as _figure
from .report_html import png as _png
from .report_html import pyplot as _pyplot


def write_report(path: str, summary: DiffSummary, kinds: Mapping[str, str], base: str, head: str) -> None:
    """Writes the page beside `path` and renames it into place (a reader never sees half a page)."""
    write_page(path, render_report(summary, kinds, base, head))


def render_report(summary: DiffSummary, kinds: Mapping[str, str], base: str, head: str) -> str:
    data = summary.to_dict(kinds)
    e = escape
    out = [f"<h1>What the rule change does: {e(base)} → {e(head)}</h1>",
           f'<p>{data["carts"]} carts replayed; <strong>{data["changed"]}</strong> get a different total discount'
           + (f'; {data["skipped"]} lines skipped' if data["skipped"] else "") + ".</p>"]
    for message in data["errors"]:
        out.append(f'<p class="note">Skipped: {e(message)}</p>')
    out += ['<h2>Summary</h2><table id="summary"><thead><tr><th>Currency</th><th class="n">Carts</th>'
            '<th class="n">Changed</th><th class="n">Discount before</th><th class="n">Discount after</th>'
            '<th class="n">Change</th></tr></thead><tbody>']
    carts, changed = _per_currency(data)
    for currency in sorted(data["discount_before"]):
        out.append(f'<tr data-currency="{e(currency)}"><td>{e(currency)}</td><td class="n">{carts.get(currency, 0)}</td>'
                   f'<td class="n">{changed.get(currency, 0)}</td>'
                   f'<td class="n">{e(data["discount_before"][currency])}</td>'
                   f'<td class="n">{e(data["discount_after"][currency])}</td>'
                   f'<td class="n">{e(data["discount_delta"][currency])}</td></tr>')
    out.append(f'</tbody><tfoot><tr><th>All</th><th class="n" id="carts">{data["carts"]}</th>'
               f'<th class="n" id="changed">{data["changed"]}</th><th></th><th></th><th></th></tr></tfoot></table>')

    out.append("<h2>How much each cart's discount changed</h2>")
    for currency, bins in sorted(data["delta_histogram"].items()):
        out.append(_figure(_histogram(currency, bins), f"Carts by change in discount, {currency}"))
    out.append('<p class="note">Bars are carts; the middle bar is the carts whose discount did not change. Bins '
               'grow in 1–2–5 steps.</p>')

    if data["by_promotion"]:
        out.append("<h2>Discount by promotion, before and after</h2>"
                   '<p class="note">In the carts whose outcome for the promotion changed.</p>')
        for currency in _promotion_currencies(data):
            out.append(_figure(_promotion_bars(currency, data["by_promotion"]), f"Discount by promotion, {currency}"))
        out.append('<table id="promotions"><thead><tr><th>Promotion</th><th>Rule change</th><th class="n">Carts</th>'
                   '<th>Discount before → after</th></tr></thead><tbody>')
        for pid, p in data["by_promotion"].items():
            money = "; ".join(f"{c} {p['discount_before'].get(c, '0')} → {p['discount_after'].get(c, '0')}"
                              for c in sorted(set(p["discount_before"]) | set(p["discount_after"])))
            out.append(f'<tr><td>{e(pid)}</td><td>{e(p["change"])}</td><td class="n">{p["carts"]}</td>'
                       f"<td>{e(money)}</td></tr>")
        out.append("</tbody></table>")

    if data["reasons_changed"]:
        out.append('<h2>Outcomes that changed</h2><table id="reasons"><thead><tr><th>Promotion</th><th>Before</th>'
                   '<th>After</th><th class="n">Carts</th></tr></thead><tbody>')
        out += [f'<tr><td>{e(r["promotion"])}</td><td>{e(r["before"])}</td><td>{e(r["after"])}</td>'
                f'<td class="n">{r["carts"]}</td></tr>' for r in data["reasons_changed"]]
        out.append("</tbody></table>")

    if data["top"]:
        out.append(f'<h2>Most changed carts (top {summary.top_n})</h2><table id="top"><thead><tr><th>Cart</th>'
                   '<th class="n">Line</th><th>Currency</th><th class="n">Before</th><th class="n">After</th>'
                   '<th class="n">Change</th><th>Promotions</th></tr></thead><tbody>')
        for c in data["top"]:
            label = c["id"] if c["id"] is not None else f"line {c['line']}"
            out.append(f'<tr><td>{e(label)}</td><td class="n">{c["line"]}</td><td>{e(c["currency"])}</td>'
                       f'<td class="n">{e(c["discount_before"])}</td><td class="n">{e(c["discount_after"])}</td>'
                       f'<td class="n">{e(c["discount_delta"])}</td><td>{e(", ".join(c["promotions"]))}</td></tr>')
        out.append("</tbody></table>")
    return page(f"Rule change: {base} → {head}", out)


def _per_currency(data: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """Carts and changed carts per currency, read off the histogram (its zero bin is the unchanged)."""
    carts, changed = {}, {}
    for currency, bins in data["delta_histogram"].items():
        carts[currency] = sum(b["carts"] for b in bins)
        changed[currency] = sum(b["carts"] for b in bins if b["from"] != "0" or b["to"] != "0")
    return carts, changed


def _promotion_currencies(data: Mapping[str, Any]) -> list[str]:
    return sorted({c for p in data["by_promotion"].values() for c in (*p["discount_before"], *p["discount_after"])})


def _bin_label(b: Mapping[str, Any]) -> str:
    if b["from"] == "0" and b["to"] == "0":
        return "0"
    if b["from"] is None:
        return f"≤ {b['to']}"
    if b["to"] is None:
        return f"≥ {b['from']}"
    return f"{b['from']} to {b['to']}"


def _histogram(currency: str, bins: list[Mapping[str, Any]]) -> bytes:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 3.6), dpi=100)
    labels = [_bin_label(b) for b in bins]
    colours = ["#888" if label == "0" else ("#c0392b" if (b["to"] or "").startswith("-") else "#27ae60")
               for label, b in zip(labels, bins)]
    counts = [b["carts"] for b in bins]
    bars = axes.bar(range(len(bins)), counts, color=colours)
    axes.bar_label(bars, fontsize=8)
    axes.set_xticks(range(len(bins)), labels, rotation=30, ha="right", fontsize=8)
    # Unchanged carts usually outnumber the changed ones a hundred to one: on a log scale both show.
    logarithmic = bool(counts) and max(counts) > 20 * min(counts)
    if logarithmic:
        axes.set_yscale("log")
    axes.set_ylabel("carts (log scale)" if logarithmic else "carts")
    axes.set_xlabel(f"change in the cart's discount ({currency})")
    return _png(plt, figure)


def _promotion_bars(currency: str, by_promotion: Mapping[str, Any]) -> bytes:
    plt = _pyplot()
    ids = [pid for pid, p in by_promotion.items() if currency in p["discount_before"] or currency in p["discount_after"]]
    before = [float(Decimal(by_promotion[pid]["discount_before"].get(currency, "0"))) for pid in ids]
    after = [float(Decimal(by_promotion[pid]["discount_after"].get(currency, "0"))) for pid in ids]
    figure, axes = plt.subplots(figsize=(8, 0.9 + 0.5 * len(ids)), dpi=100)
    positions = range(len(ids))
    axes.barh([p + 0.2 for p in positions], before, height=0.4, label="before", color="#7f8c8d")
    axes.barh([p - 0.2 for p in positions], after, height=0.4, label="after", color="#2980b9")
    axes.set_yticks(list(positions), ids, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel(f"discount ({currency})")
    axes.legend(loc="lower right")
    return _png(plt, figure)
