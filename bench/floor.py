"""The floor: a hand-tuned evaluator of the same decisions and amounts as evaluate(), with no trace.

What it keeps of evaluate(): which promotions apply and how much each takes off, exactly (the same
total discount on every benchmark cart; bench/run.py checks every cart and stops on a difference).
What it drops: the trace (no records, no messages, no explanations of failures, no hints and their
what-if runs, no tenders), input checking, and generality it does not need (the rule set's default
money policies only; it refuses others). How it is fast:

- built once per rule set, currency and `now` (as the engine's market is): the automatic promotions
  that are active and in their window, in inverted maps region -> category / SKU / brand -> promotions
  (a promotion whose region cannot be listed is under every region);
- each eligibility tree fused into one closure that short-circuits, with money thresholds compared as
  whole minor units;
- a cart as parallel integer lists (what is left of each line, in minor units), one mutable list per
  candidate run; amounts rounded once and split by largest remainder as evaluate() does (the split
  changes what later promotions see, so it cannot be skipped);
- exclusive and combination outcomes valued as totals only.

It shares with the engine only what defines the amounts: the benefit calculators of the kinds it does
not inline (engine/benefits.py), `round_units` and `allocate_units` (engine/money.py), the operator
functions of the leaves, and the rule set as loaded.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from math import lcm
from typing import Any, Callable

from engine.benefits import KINDS, Exact, Lines, keep_units
from engine.conditions import AllOf, AnyOf, Leaf, Several
from engine.decide import MAX_CANDIDATES, _maximal_cliques
from engine.model import STAGE_ORDER, Policies, Promotion, RuleSet, Stage
from engine.money import allocate_units, minor_unit, round_units, to_units
from engine.text import normalise_code
from engine.variables import MONEY_VARIABLES, WEEKDAYS

from zoneinfo import ZoneInfo

NO_LINES = Lines((), (), ())
_MONEY_OPS: dict[str, Callable[[int, int], bool]] = {
    "greater_than_or_equal_to": int.__ge__, "greater_than": int.__gt__, "less_than": int.__lt__,
    "less_than_or_equal_to": int.__le__, "equal_to": int.__eq__}


def _compile(node: Any, currency: str | None) -> Callable[[dict], bool]:
    """One closure for a tree: True when it passes for the values `v` (money variables in minor units)."""
    if isinstance(node, Leaf):
        name, test, operand = node.variable, node.test, node.operand
        if name in MONEY_VARIABLES and node.operator in _MONEY_OPS and currency is not None:
            op, units = _MONEY_OPS[node.operator], to_units(operand, currency)
            return lambda v: op(v[name], units)
        if name == "shipping_method":
            return lambda v: any(test(one, operand) for one in v[name]) if type(v[name]) is Several \
                else test(v[name], operand)
        return lambda v: test(v[name], operand)
    children = tuple(_compile(child, currency) for child in node.children)
    if len(children) == 1:
        return children[0]
    if isinstance(node, AllOf):
        def all_of(v: dict) -> bool:
            for child in children:
                if not child(v):
                    return False
            return True
        return all_of

    def any_of(v: dict) -> bool:
        for child in children:
            if child(v):
                return True
        return False
    return any_of


class _P:
    """One promotion as the floor runs it."""

    __slots__ = ("p", "id", "test", "exclusive", "priority", "steps", "include_all", "categories", "skus",
                 "brands", "excludes", "measured", "max_discount", "budget", "first")

    def __init__(self, p: Promotion, currency: str):
        self.p, self.id, self.exclusive, self.priority = p, p.id, p.exclusive, p.priority
        self.first = p.benefits[0]
        root = p.condition.root
        self.test = None if root is None else _compile(root, p.currency or currency)
        self.measured = bool(p.condition.variables & {"cart_subtotal", "order_total", "eligible_subtotal",
                                                      "eligible_quantity"})
        self.steps = tuple(((STAGE_ORDER.index(b.stage), -p.priority, p.id), self, b) for b in p.benefits)
        t = p.targets
        self.include_all, self.categories, self.skus, self.brands = t.include_all, t.categories, t.skus, t.brands
        self.excludes = t.excludes if (t.exclude_categories or t.exclude_skus or t.exclude_brands
                                       or t.exclude_sellers or t.exclude_product_types) else None
        self.max_discount = None if p.limits.max_discount is None else to_units(p.limits.max_discount, currency)
        self.budget = None if p.limits.budget is None else to_units(p.limits.budget, currency)


class _Line:
    __slots__ = ("id", "sku", "category", "brand", "seller", "product_type", "quantity", "subtotal")

    def __init__(self, doc: dict, currency: str, exponent: int):
        self.id, self.sku, self.category = doc["id"], doc["sku"], doc["category"]
        self.brand, self.seller, self.product_type = doc.get("brand"), doc["seller"], doc["product_type"]
        self.quantity = doc["quantity"]
        price = doc["unit_price"]
        units = int(price) if exponent == 0 and price.isdigit() else to_units(Decimal(price), currency)
        self.subtotal = units * self.quantity


class Floor:
    """Prepared once for a rule set, a currency and a moment (outside the timings, as evaluate()'s market is)."""

    def __init__(self, ruleset: RuleSet, currency: str, now: datetime):
        if ruleset.policies != Policies() or ruleset.best_per_line or ruleset.exclusive_resolution != "best_for_customer":
            raise NotImplementedError("the floor runs the default money and combination policies only")
        self.ruleset, self.currency, self.now = ruleset, currency, now
        self.exponent = minor_unit(currency)
        self.rounding = ruleset.rounding
        self.compiled = {pid: _P(p, currency) for pid, p in ruleset.promotions.items()}
        by_region: dict[str | None, tuple[dict, dict, dict, list]] = {}
        for pid, p in ruleset.promotions.items():
            if p.code is not None or not self._in_force(p):
                continue
            regions = _regions(p.condition.root)
            fp = self.compiled[pid]
            for region in regions:
                maps = by_region.setdefault(region, ({}, {}, {}, []))
                if fp.include_all:
                    maps[3].append(fp)
                for values, table in ((fp.categories, maps[0]), (fp.skus, maps[1]), (fp.brands, maps[2])):
                    for value in values:
                        table.setdefault(value, []).append(fp)
        self.by_region = by_region

    def _in_force(self, p: Promotion) -> bool:
        return p.status == "active" and (p.currency is None or p.currency == self.currency) and \
            (p.starts is None or self.now >= p.starts) and (p.ends is None or self.now < p.ends)

    def total(self, cart: dict, account: dict, codes: list[str]) -> int:
        """The order's discount in minor units, as evaluate() gives it in `totals.discount`."""
        currency = self.currency
        lines = [_Line(doc, currency, self.exponent) for doc in cart["lines"]]
        shipments = cart.get("shipments")
        if shipments is None:
            shipments = [cart["shipping"]] if cart.get("shipping") else []
        ship_ids = tuple(s.get("id", "") for s in shipments)
        ship_methods = tuple(s["method"] for s in shipments)
        ship_units = [to_units(Decimal(s["price"]), currency) for s in shipments]
        targeted: dict[str, list[int]] = {}
        found: dict[str, _P] = {}
        region = account["region"]
        for maps in (self.by_region.get(region), self.by_region.get(None)):
            if maps is None:
                continue
            by_category, by_sku, by_brand, include_all = maps
            for i, line in enumerate(lines):
                hits = by_category.get(line.category, ())
                more = by_sku.get(line.sku)
                if more:
                    hits = list(hits) + more
                if line.brand is not None:
                    more = by_brand.get(line.brand)
                    if more:
                        hits = list(hits) + more
                for fp in hits:
                    if fp.excludes is not None and fp.excludes(line):
                        continue
                    got = targeted.get(fp.id)
                    if got is None:
                        targeted[fp.id] = [i]
                        found[fp.id] = fp
                    elif got[-1] != i:   # included twice (category and SKU): once
                        got.append(i)
            for fp in include_all:
                kept = [i for i, line in enumerate(lines) if fp.excludes is None or not fp.excludes(line)]
                if kept:
                    targeted[fp.id] = kept
                    found[fp.id] = fp
        for raw in codes:
            for pid in self.ruleset.codes.get(normalise_code(raw), ()):
                p = self.ruleset.promotions[pid]
                if pid in found or not self._in_force(p):
                    continue
                kept = [i for i, line in enumerate(lines) if p.targets.matches(line)]
                if kept:
                    targeted[pid] = kept
                    found[pid] = self.compiled[pid]
        if not found:
            return 0
        live = [fp for fp in found.values() if self._usable(fp.p)]
        local = self.now.astimezone(ZoneInfo(account["time_zone"]))
        methods = sorted(set(ship_methods))
        fixed = {"region": region, "customer_id": account["id"], "customer_tier": account["tier"],
                 "customer_segments": tuple(account.get("segments", ())), "order_count": account["order_count"],
                 "first_order": account["order_count"] == 0, "sales_channel": cart["channel"],
                 "shipping_method": "" if not methods else methods[0] if len(methods) == 1 else Several(methods),
                 "cart_quantity": sum(line.quantity for line in lines), "local_date": local.date().isoformat(),
                 "local_weekday": WEEKDAYS[local.weekday()], "local_hour": local.hour}
        # Terms on fixed facts only are decided once, before any run.
        live = [fp for fp in live if fp.test is None or fp.measured or fp.test(fixed)]
        cart_ = (lines, ship_ids, ship_methods, ship_units, targeted, fixed)
        best = None
        for members in _candidates(live):
            value = self._run(members, cart_)
            if best is None or value[0] > best[0]:
                best = value
        return 0 if best is None else best[1]

    def _usable(self, p: Promotion) -> bool:
        # No usage is given to the benchmark: only a limit of zero or a spent budget could refuse.
        return not (p.limits.total_uses == 0 or p.limits.uses_per_customer == 0 or p.limits.budget == 0)

    def _run(self, members: list[_P], cart_: tuple) -> tuple[int, int]:
        """(value to the customer, discount) of these promotions run together in stage order."""
        lines, ship_ids, ship_methods, ship_units, targeted, fixed = cart_
        left = [line.subtotal for line in lines]
        shipping = list(ship_units)
        currency = self.currency
        refused: set[str] = set()
        given: dict[str, int] = {}
        total = granted = 0
        v = None
        steps = sorted((step for fp in members for step in fp.steps), key=_first) if len(members) > 1 \
            else members[0].steps
        for _, fp, b in steps:
            pid = fp.id
            if pid in refused:
                continue
            mine = targeted[pid]
            if b is fp.first and fp.test is not None and fp.measured:
                if v is None:
                    v = dict(fixed)
                rest = sum(left)
                v["cart_subtotal"] = rest
                v["order_total"] = rest + sum(shipping)
                v["eligible_subtotal"] = sum(left[i] for i in mine)
                v["eligible_quantity"] = sum(lines[i].quantity for i in mine)
                if not fp.test(v):
                    refused.add(pid)
                    continue
            stage = b.stage
            if stage is Stage.GRANT:
                amount = self._cap(fp, b, to_units(b.amount, currency), given.get(pid, 0))
                if amount is None:
                    refused.add(pid)
                    continue
                granted += amount
                given[pid] = given.get(pid, 0) + amount
                continue
            if stage is Stage.SHIPPING:
                amount = self._shipping(fp, b, shipping, ship_ids, ship_methods, given.get(pid, 0))
            else:
                amount = self._lines(fp, b, lines, left, mine, given.get(pid, 0))
            if amount is None:          # its own threshold refused it
                refused.add(pid)
            elif amount:
                total += amount
                given[pid] = given.get(pid, 0) + amount
        return total + granted, total

    def _cap(self, fp: _P, b, amount: int, given: int) -> int | None:
        """The benefit's cap, then the promotion's per-order cap and budget after its earlier benefits."""
        if b.max_discount is not None:
            amount = min(amount, to_units(b.max_discount, self.currency))
        if fp.max_discount is not None:
            amount = min(amount, max(fp.max_discount - given, 0))
        if fp.budget is not None and amount > fp.budget - given:
            if (fp.p.limits.budget_overrun or self.ruleset.policies.budget_overrun) == "refuse":
                return 0
            amount = max(fp.budget - given, 0)
        return amount

    def _lines(self, fp: _P, b, lines: list[_Line], left: list[int], mine: list[int], given: int) -> int | None:
        """A line benefit on what is left of its lines: rounded once, capped, split by largest remainder."""
        if b.targets is not None:
            mine = [i for i, line in enumerate(lines) if b.targets.matches(line)]
            if not mine:
                return 0
        kind = b.type
        if kind == "percent_off" and b.units is None:
            num, den = b.percent.as_integer_ratio()
            den *= 100
            numerators = [left[i] * num for i in mine]
            exact = sum(numerators)
        elif kind == "amount_off" and b.units is None:
            amount = to_units(b.amount, self.currency)
            if b.scope == "per_unit":
                numerators = [min(amount * lines[i].quantity, left[i]) for i in mine]
                den = 1
            elif b.scope == "per_line":
                numerators = [min(amount, left[i]) for i in mine]
                den = 1
            else:
                rest = sum(left[i] for i in mine)
                if rest == 0:
                    return 0
                share = min(amount, rest)
                numerators = [left[i] * share for i in mine]
                den = rest
            exact = sum(numerators)
        else:   # the other kinds through the engine's own calculators
            shape = Lines(tuple(lines[i].id for i in mine), tuple(lines[i].quantity for i in mine),
                          tuple(left[i] for i in mine))
            calculator = KINDS[kind]
            if b.units is not None and not calculator.two_selections:
                shape = keep_units(b.units, shape)
                if not isinstance(shape, Lines):
                    return None
            result = calculator.calculate(b, shape, 0, self.currency)
            if not isinstance(result, Exact):
                return None
            index = {lines[i].id: i for i in mine}
            mine = [index[line_id] for line_id in result.ids]
            numerators, den, exact = list(result.numerators), result.denominator, result.total()
        amount = self._cap(fp, b, round_units(exact, den, self.rounding), given)
        if not amount:
            return 0
        if len(mine) == 1:
            left[mine[0]] -= amount
            return amount
        parts = allocate_units(amount, numerators, den, [lines[i].id for i in mine])
        for i, part in zip(mine, parts):
            left[i] -= part
        return amount

    def _shipping(self, fp: _P, b, shipping: list[int], ids: tuple, methods: tuple, given: int) -> int:
        targeted = [k for k, m in enumerate(methods) if b.shipping_methods is None or m in b.shipping_methods]
        if not targeted:
            return 0
        calculate = KINDS[b.type].calculate
        rest = [shipping[k] for k in targeted]
        if KINDS[b.type].shipments == "once":
            whole = calculate(b, NO_LINES, sum(rest), self.currency)
            amount = self._cap(fp, b, round_units(whole.shipping, whole.denominator, self.rounding), given)
            if not amount:
                return 0
            todo = amount
            for _, _, k in sorted((-units, ids[k], k) for k, units in zip(targeted, rest)):
                part = min(todo, shipping[k])
                shipping[k] -= part
                todo -= part
            return amount
        each = [calculate(b, NO_LINES, units, self.currency) for units in rest]
        den = lcm(*(r.denominator for r in each))
        numerators = [r.shipping * (den // r.denominator) for r in each]
        amount = self._cap(fp, b, round_units(sum(numerators), den, self.rounding), given)
        if not amount:
            return 0
        parts = allocate_units(amount, numerators, den, [ids[k] for k in targeted])
        for k, part in zip(targeted, parts):
            shipping[k] -= part
        return amount


def _regions(root: Any) -> tuple[str | None, ...]:
    """The regions a tree accepts when a required node (reached through `all`s) is `region equal_to`
    leaves under `any`: the promotion is filed under each; otherwise under None (every region)."""
    required = [root]
    while any(isinstance(n, AllOf) for n in required):
        required = [c for n in required for c in (n.children if isinstance(n, AllOf) else (n,))]
    for node in required:
        leaves = node.children if isinstance(node, AnyOf) else (node,)
        if leaves and all(isinstance(l, Leaf) and l.variable == "region" and l.operator == "equal_to"
                          and isinstance(l.operand, str) for l in leaves):
            return tuple(sorted({l.operand for l in leaves}))
    return (None,)


def _first(step: tuple) -> tuple:
    return step[0]


def _combines(a: Promotion, b: Promotion) -> bool:
    if not a.exclusive and not b.exclusive:
        return True
    return (not a.exclusive or b.stacking_class in a.combines_with) and \
        (not b.exclusive or a.stacking_class in b.combines_with)




def _candidates(live: list[_P]) -> list[list[_P]]:
    """The maximal sets of live promotions that pairwise combine, as evaluate() enumerates them."""
    exclusives = [fp for fp in live if fp.exclusive]
    if not exclusives:
        return [live] if live else []
    if not any(fp.p.combines_with for fp in exclusives):
        stackable = [fp for fp in live if not fp.exclusive]
        return ([stackable] if stackable else []) + [[x] for x in exclusives]
    live = sorted(live, key=lambda fp: fp.p.order)
    nodes: dict[tuple, list[_P]] = {}
    for fp in live:
        p = fp.p
        twins = not p.exclusive or p.stacking_class in p.combines_with
        nodes.setdefault((p.exclusive, p.stacking_class, p.combines_with) if twins else (True, p.id), []).append(fp)
    keys = list(nodes)
    neighbours = [frozenset(j for j, k in enumerate(keys) if k != key and _combines(nodes[key][0].p, nodes[k][0].p))
                  for key in keys]
    found = _cliques(len(keys), neighbours)
    if found is None:
        found = []
        for start in range(len(keys)):
            clique = {start}
            for v in range(len(keys)):
                if v not in clique and all(v in neighbours[u] for u in clique):
                    clique.add(v)
            found.append(frozenset(clique))
        found = list(dict.fromkeys(found))
    return [[fp for i in clique for fp in nodes[keys[i]]] for clique in found]


def _cliques(size: int, neighbours: list[frozenset[int]]) -> list[frozenset[int]] | None:
    """The same search as the engine's (the floor times decisions, not a second Bron–Kerbosch)."""
    return _maximal_cliques(size, neighbours, MAX_CANDIDATES)
