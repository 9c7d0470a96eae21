"""Pricing a return for the ledger: which lines and units are returned so far, what they are worth to
each tender (through engine.refund, so the ledger and `promo refund` never disagree), and what each
promotion is still worth on the kept units. Pure functions of a verified trace; no database."""
from __future__ import annotations

from datetime import datetime
from typing import Mapping

from ..model import RuleSet
from ..refund import evaluate_kept, refund
from ..text import shorten
from ..trace import Trace
from .common import minor
from .errors import LedgerError, LedgerReason
from .holds import Returned
from .redemption import earned_by_promotion

MAX_RETURN_LINES = 1000


def cumulative(order_id: str, lines: Mapping[str, int], before: Mapping[str, int],
               returned: Mapping[str, int] | None) -> dict[str, int]:
    """Units returned per line after this return: every unit not yet returned when `returned` is None."""
    if returned is None:
        return dict(lines)
    if not isinstance(returned, Mapping) or not returned or len(returned) > MAX_RETURN_LINES:
        raise LedgerError(LedgerReason.BAD_RETURN, order_id, detail="name the lines returned and how many units")
    after = dict(before)
    for line, qty in returned.items():
        if not isinstance(line, str) or line not in lines:
            raise LedgerError(LedgerReason.BAD_RETURN, order_id, detail=f"the order has no line {shorten(line)}")
        left = lines[line] - before.get(line, 0)
        if type(qty) is not int or not 1 <= qty <= left:
            raise LedgerError(LedgerReason.BAD_RETURN, order_id,
                              detail=f"line {line} has {left} units left to return; got {shorten(qty)}")
        after[line] = before.get(line, 0) + qty
    return after


def worth(ruleset: RuleSet, trace: Trace, quantities: Mapping[str, int], when: datetime) -> dict[tuple, int]:
    """What the returned units are worth to each tender (minor units; points for points), before any
    lot's expiry is applied: refund() priced at `when` for all units returned so far."""
    if not quantities:
        return {}
    r = refund(ruleset, trace, quantities, when)
    out: dict[tuple, int] = {}
    for part in r.parts:
        if part.kind == "points":
            out[("points", None)] = part.points or 0
        else:
            out[(part.kind, part.id)] = minor(part.amount + (part.forfeited or 0), r.currency)
    return out


def returned_value(ruleset: RuleSet, trace: Trace, before: dict[str, int], after: dict[str, int],
                   when: datetime, expired_lots: frozenset[str]) -> Returned:
    lines = {line.id: line.quantity for line in trace.lines}
    everything = after == lines
    kept: dict[str, int] = {}
    if not everything:
        again = evaluate_kept(ruleset, trace.to_dict(), after)
        kept = earned_by_promotion(again)
    earned = earned_by_promotion(trace)
    return Returned(everything, earned, kept, worth(ruleset, trace, after, when), worth(ruleset, trace, before, when),
                    expired_lots)


def line_quantities(trace: Trace) -> dict[str, int]:
    return {line.id: line.quantity for line in trace.lines}


