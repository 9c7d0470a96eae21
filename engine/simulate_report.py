"""`promo simulate --report FILE.html`: the simulation as one self-contained HTML page for people who never
open a terminal: what was run, the summary, each promotion's uses, money, limits and when they ran out,
the cost per day, and the budget burn-down, one small chart per promotion with a budget (and, for a
promotion limited by total uses alone, the uses left).

The page is built with engine/report_html.py, as the `promo diff` report is: matplotlib PNGs embedded as
`data:` URIs, an inline style, no script and nothing fetched. Every value comes from
`SimulationResult.to_dict()` (what `--json` prints) and the rule set's limits, and is HTML-escaped; money
in the tables is the exact decimal text, floats are only the heights of bars and lines.
"""
from __future__ import annotations

import math
import textwrap
from decimal import Decimal
from typing import Any, Mapping, Sequence

from .model import Promotion, RuleSet
from .report_html import escape, figure, page, png, pyplot, write_page
from .simulate import SimulationResult

LINE = "#2471a3"          # what is left
SHADE = "#f5b7b1"         # the day a limit ran out
DISCOUNT, GRANTED = "#2980b9", "#e67e22"
MAX_TICKS = 10
WORDS = {"total_uses": "total uses", "uses_per_customer": "uses per customer", "budget": "budget"}


def write_report(path: str, result: SimulationResult, ruleset: RuleSet, run: Mapping[str, Any]) -> None:
    """Writes the page beside `path` and renames it into place. `run` is what was run: rules, carts,
    per_day, days, start, seed (None when not given), on_error and pool_codes."""
    write_page(path, render_report(result, ruleset, run))


def render_report(result: SimulationResult, ruleset: RuleSet, run: Mapping[str, Any]) -> str:
    data = result.to_dict()
    e = escape
    days = [d["day"] for d in data["per_day"]]
    span = f", {days[0]} to {days[-1]}" if days else ""
    out = [f"<h1>Budget burn-down: {e(run['rules'])}</h1>",
           f"<p>{data['carts']} carts replayed as {data['per_day_carts']} a day over <strong>{data['days']}</strong> "
           f"days{e(span)}" + (f"; {data['skipped']} line{'' if data['skipped'] == 1 else 's'} skipped"
                               if data["skipped"] else "") + ".</p>"]
    for message in data["errors"]:
        out.append(f'<p class="note">Skipped: {e(message)}</p>')

    out.append('<h2>What was run</h2><table id="run"><tbody>')
    pools = ", ".join(run.get("pool_codes") or ()) or "none"
    for label, value in (("Rules", run["rules"]), ("Corpus", run["carts"]), ("Carts a day", run["per_day"]),
                         ("Days", "until the corpus was used up" if run.get("days") is None else run["days"]),
                         ("Start", run.get("start") or "the first cart's date" + (f" ({data['start']})"
                                                                                   if data["start"] else "")),
                         ("Seed", "none: corpus order" if run.get("seed") is None else run["seed"]),
                         ("Bad lines", run.get("on_error", "stop")), ("Single-use codes", pools),
                         ("Abandoned checkouts", run.get("abandon_rate") or "none"),
                         ("Cancelled orders", f"{run['cancel_rate']}, {run.get('cancel_after')} days after the order"
                          if run.get("cancel_rate") else "none")):
        out.append(f"<tr><th>{e(label)}</th><td>{e(str(value))}</td></tr>")
    out.append("</tbody></table>")

    out.append('<h2>Summary</h2><table id="summary"><thead><tr><th class="n">Carts</th><th class="n">Days</th>'
               '<th class="n">Carts a day</th><th class="n">Skipped</th><th>First day</th><th>Last day</th><th class="n">Abandoned</th><th class="n">Cancelled</th>'
               '<th class="n">Cancellations after the last day</th></tr>'
               f'</thead><tbody><tr><td class="n">{data["carts"]}</td><td class="n">{data["days"]}</td>'
               f'<td class="n">{data["per_day_carts"]}</td><td class="n">{data["skipped"]}</td>'
               f'<td>{e(days[0] if days else "-")}</td><td>{e(days[-1] if days else "-")}</td>'
               f'<td class="n">{data["abandoned"]}</td><td class="n">{data["cancelled"]}</td>'
               f'<td class="n">{data["cancellations_after"]}</td></tr></tbody></table>')

    out.append('<h2>Promotions</h2><table id="promotions"><thead><tr><th>Promotion</th><th class="n">Uses</th>'
               '<th class="n">Discount</th><th class="n">Granted</th><th>Limits</th><th class="n">Budget spent</th>'
               '<th class="n">Budget left</th><th>Exhausted</th><th>First refused</th><th class="n">Refused</th>'
               "</tr></thead><tbody>")
    for pid, p in data["by_promotion"].items():
        promotion = ruleset.promotions[pid]
        budget = promotion.limits.budget
        spent = budget_spent(data, pid)[-1] if budget is not None and days else Decimal(0)
        out.append(f'<tr data-promotion="{e(pid)}"><td>{e(pid)}</td><td class="n">{p["uses"]}</td>'
                   f'<td class="n">{e(money(p["discount"]))}</td><td class="n">{e(money(p["granted"]))}</td>'
                   f"<td>{e(limits_text(promotion, ruleset))}</td>"
                   f'<td class="n">{e("" if budget is None else _unit(promotion, spent))}</td>'
                   f'<td class="n">{e("" if budget is None else _unit(promotion, budget - spent))}</td>'
                   f'<td>{e(event_text(p["exhausted"]))}</td><td>{e(event_text(p["first_refused"]))}</td>'
                   f'<td class="n">{p["refused"]}</td></tr>')
    out.append("</tbody></table>"
               '<p class="note">Money is per currency, exact. A budget counts discounts and grants together; '
               "<em>cap</em> cuts the discount that would overrun it to what is left, <em>refuse</em> refuses that "
               "discount. <em>Exhausted</em> is the cart that used a limit up for everyone; <em>first refused</em> "
               "the first cart a limit refused (a customer's own limit too).</p>")

    out.append("<h2>Cost per day</h2>")
    currencies = sorted({c for d in data["per_day"] for c in (*d["discount"], *d["granted"])})
    for currency in currencies:
        discount = [float(Decimal(d["discount"].get(currency, "0"))) for d in data["per_day"]]
        granted = [float(Decimal(d["granted"].get(currency, "0"))) for d in data["per_day"]]
        out.append(figure(cost_chart(currency, days, discount, granted), f"Cost per day, {currency}: discount and "
                          "granted", data_currency=currency))
    if not currencies:
        out.append('<p class="note">No promotion applied.</p>')
    churn = data["abandoned"] or data["cancelled"]   # the columns of abandoned checkouts and cancellations
    out.append('<table id="per-day"><thead><tr><th>Day</th><th class="n">Carts</th><th class="n">Discount</th>'
               '<th class="n">Granted</th>' + ('<th class="n">Abandoned</th><th class="n">Cancelled</th>'
                                               '<th class="n">Given back</th>' if churn else "") + "</tr></thead><tbody>")
    for d in data["per_day"]:
        back = "; ".join(part for part in (money(d["discount_back"]) if d["discount_back"] else "",
                                           "granted " + money(d["granted_back"]) if d["granted_back"] else "") if part)
        out.append(f'<tr><td>{e(d["day"])}</td><td class="n">{d["carts"]}</td><td class="n">{e(money(d["discount"]))}'
                   f'</td><td class="n">{e(money(d["granted"]))}</td>'
                   + (f'<td class="n">{d["abandoned"]}</td><td class="n">{d["cancelled"]}</td>'
                      f'<td class="n">{e(back or "-")}</td>' if churn else "") + "</tr>")
    out.append("</tbody></table>")

    # Small multiples rather than one chart with a line per promotion: budgets differ by orders of magnitude
    # (4,000 against 20,000,000) and in currency, so on one shared axis the small ones would lie flat along
    # the bottom and amounts in different currencies would be compared as if they were one. Each panel has
    # its own scale, from 0 to its full budget, and all share the days axis, so when each ran out compares
    # at a glance; the exact figures are in the caption and the table above.
    budgeted = [pid for pid in data["by_promotion"] if ruleset.promotions[pid].limits.budget is not None]
    out.append("<h2>Budget burn-down</h2>")
    if not days:
        out.append('<p class="note">No cart was replayed, so no day to chart.</p>')
        return page(f"Budget burn-down: {run['rules']}", out)
    if budgeted:
        out.append('<p class="note">One panel per promotion with a budget: the line is the budget left at the end '
                   "of each day, starting from the full budget; the shaded day is the day a limit ran out (after "
                   "it, the ledger refuses every use). Each panel has its own scale.</p>")
        out.append(_multiples(data, [ruleset.promotions[pid] for pid in budgeted], "budget"))
    else:
        out.append('<p class="note">No promotion of the rule set has a budget.</p>')
    counted = [pid for pid in data["by_promotion"] if ruleset.promotions[pid].limits.budget is None
               and ruleset.promotions[pid].limits.total_uses is not None]
    if counted:
        out.append("<h2>Uses left</h2>"
                   '<p class="note">Promotions limited by a number of uses in all (and no budget): the uses left at '
                   "the end of each day; the shaded day is the day the last use went.</p>")
        out.append(_multiples(data, [ruleset.promotions[pid] for pid in counted], "total_uses"))
    return page(f"Budget burn-down: {run['rules']}", out)


# --- what the tables say ---------------------------------------------------------------------------

def money(amounts: Mapping[str, str]) -> str:
    """Per-currency amounts as exact text: `JPY 1200; USD 3.50`, or `-`."""
    return "; ".join(f"{c} {a}" for c, a in amounts.items()) or "-"


def event_text(event: Mapping[str, Any] | None) -> str:
    """A limit event (`exhausted`, `first_refused`) as the table shows it, its day counted from 1."""
    if event is None:
        return "-"
    return f"{WORDS[event['limit']]} on {event['day']} (day {event['day_index'] + 1}) at {event['cart']}"


def limits_text(p: Promotion, ruleset: RuleSet) -> str:
    lim, out = p.limits, []
    if lim.total_uses is not None:
        out.append(f"{lim.total_uses} uses in all")
    if lim.uses_per_customer is not None:
        out.append(f"{lim.uses_per_customer} per customer")
    if lim.budget is not None:
        out.append(f"budget {_unit(p, lim.budget)} ({lim.budget_overrun or ruleset.policies.budget_overrun})")
    return "; ".join(out) or "-"


def budget_spent(data: Mapping[str, Any], pid: str) -> list[Decimal]:
    """What the promotion's budget had counted by the end of each day (a day it did not apply keeps the
    day before's)."""
    return _cumulative(data, pid, "budget_spent", Decimal)


def uses_so_far(data: Mapping[str, Any], pid: str) -> list[int]:
    return _cumulative(data, pid, "uses_so_far", int)


def _cumulative(data: Mapping[str, Any], pid: str, key: str, kind) -> list:
    out, last = [], kind(0)
    for d in data["per_day"]:
        p = d["by_promotion"].get(pid)
        if p is not None and p[key] is not None:
            last = kind(p[key])
        out.append(last)
    return out


def _unit(p: Promotion, amount: Decimal, grouped: bool = False) -> str:
    text = f"{amount:,f}" if grouped else f"{amount:f}"
    return f"{p.currency} {text}" if p.currency else text


# --- the charts --------------------------------------------------------------------------------------

def _multiples(data: Mapping[str, Any], promotions: Sequence[Promotion], limit: str) -> str:
    """Small multiples: one panel a promotion, side by side."""
    return '<div class="multiples">' + "".join(_panel(data, p, limit) for p in promotions) + "</div>"


def _panel(data: Mapping[str, Any], p: Promotion, limit: str) -> str:
    """One promotion's burn-down: its budget (or its total uses) left at the end of each day."""
    days = [d["day"] for d in data["per_day"]]
    result = data["by_promotion"][p.id]
    if limit == "budget":
        full: Decimal = p.limits.budget
        left = [full - s for s in budget_spent(data, p.id)]
        what, unit = f"budget {_unit(p, full)}", p.currency or ""
        shown = f"left {_unit(p, left[-1] if left else full)}"
    else:
        full = Decimal(p.limits.total_uses)
        left = [full - u for u in uses_so_far(data, p.id)]
        what, unit = f"{p.limits.total_uses} uses", "uses"
        shown = f"{left[-1] if left else full} left"
    end = left[-1] if left else full
    share = f" ({_share(end, full)})" if full else ""
    grouped = (f"budget {_unit(p, full, True)}, left {_unit(p, end, True)}{share}" if limit == "budget" else
               f"{full:,f} uses, {end:,f} left{share}")
    ran_out, when = None, "never ran out"
    short = when
    exhausted, refused = result["exhausted"], result["first_refused"]
    if exhausted is not None:
        ran_out = exhausted["day_index"]
        when = short = f"ran out ({WORDS[exhausted['limit']]}) on {exhausted['day']}"
    elif refused is not None and refused["limit"] == limit:
        when = f"never ran out; first refused ({WORDS[limit]}) on {refused['day']}"
    image = burn_down_chart(p.id, days, float(full), [float(x) for x in left], unit, ran_out,
                            f"{grouped}, {short}")
    return figure(image, f"{p.id}: {what}, {shown}; {when}", data_promotion=p.id,
                  data_ran_out=exhausted["day"] if exhausted else "")


def burn_down_chart(title: str, days: Sequence[str], full: float, left: Sequence[float], unit: str,
                    ran_out: int | None, subtitle: str = "") -> bytes:
    """A step line over the days: `full` at the start, then `left[k]` over day k (what was left at its
    end); day `ran_out` (an index) shaded. Day k spans x in [k, k+1]."""
    plt = pyplot()
    fig, axes = plt.subplots(figsize=(5.2, 2.9), dpi=100)
    count = len(days)
    if ran_out is not None:
        axes.axvspan(ran_out, ran_out + 1, color=SHADE, zorder=0, linewidth=0)
    axes.step(range(count + 1), [full, *left], where="pre", color=LINE, linewidth=2, zorder=3)
    axes.set_xlim(0, max(count, 1))
    axes.set_ylim(-0.02 * (full or 1), (full or 1) * 1.08)     # a line at 0 is not cut in half by the edge
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    for side in ("left", "bottom"):    # apart from the plot, so that a line at 0 or on the first day shows
        axes.spines[side].set_position(("outward", 5))     # (before the ticks: moving a spine resets them)
    axes.grid(axis="y", color="#e5e5e5", zorder=1)
    _day_ticks(axes, days)
    axes.yaxis.set_major_formatter(_number_formatter())
    axes.set_ylabel(unit or "left", fontsize=8)
    axes.tick_params(labelsize=8)
    # Above the whole figure, from its left edge (a title over the axes alone would run off the right
    # edge past wide tick labels), wrapped to the panel's width.
    heading = "\n".join([_plain(title), *textwrap.wrap(_plain(subtitle), 72)])
    fig.suptitle(heading, x=0.02, ha="left", fontsize=9)
    return png(plt, fig)


def cost_chart(currency: str, days: Sequence[str], discount: Sequence[float], granted: Sequence[float]) -> bytes:
    """Bars per day: the discount, and what was granted on top of it."""
    plt = pyplot()
    fig, axes = plt.subplots(figsize=(8, 3.4), dpi=100)
    positions = [k + 0.5 for k in range(len(days))]
    axes.bar(positions, discount, width=0.8, color=DISCOUNT, label="discount", zorder=2)
    if any(granted):
        axes.bar(positions, granted, width=0.8, bottom=discount, color=GRANTED, label="granted", zorder=2)
    axes.set_xlim(0, max(len(days), 1))
    axes.grid(axis="y", color="#e5e5e5", zorder=1)
    _day_ticks(axes, days)
    axes.yaxis.set_major_formatter(_number_formatter())
    axes.set_ylabel(currency)
    axes.set_title(f"Cost per day, {_plain(currency)}", fontsize=10, loc="left")
    axes.legend(loc="lower right", bbox_to_anchor=(1, 1), ncol=2, frameon=False, fontsize=9)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return png(plt, fig)


def _day_ticks(axes, days: Sequence[str]) -> None:
    """At most MAX_TICKS day labels, each under its day; month and day only when the run is in one year
    (whole dates are slanted, and fewer, so that they fit under a small panel)."""
    if not days:
        axes.set_xticks([])
        return
    one_year = days[0][:4] == days[-1][:4]
    step = max(1, math.ceil(len(days) / (MAX_TICKS if one_year else MAX_TICKS * 2 // 3)))
    picked = range(0, len(days), step)
    axes.set_xticks([k + 0.5 for k in picked],
                    [days[k][5:] if one_year else days[k] for k in picked],
                    rotation=0 if one_year else 30, ha="center" if one_year else "right", rotation_mode="anchor")
    if one_year:
        axes.set_xlabel(f"day ({days[0][:4]})", fontsize=8)


def _share(part: Decimal, whole: Decimal) -> str:
    """What is left as a whole percentage, rounded down, so that 100% means none of it went and 0% all of it."""
    percent = part * 100 / whole
    if 0 < percent < 1:
        return "under 1%"
    return f"{math.floor(percent)}%"


def _number_formatter():
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda x, _: f"{x:,.2f}".rstrip("0").rstrip("."))


def _plain(text: str) -> str:
    """Text matplotlib draws as it is: a `$` would start its mathtext."""
    return text.replace("$", r"\$")
