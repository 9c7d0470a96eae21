"""Condition trees: compiled once from a rule file, evaluated per promotion with every leaf recorded.

The tree language is business-rules' (`all` / `any` / leaf `{name, operator, value}`) and so are
the operator semantics: numeric comparisons with business-rules' epsilon of 0.000001, strings
compared as given, select lists compared case-insensitively. The operators are plain functions
here (the `OPERATORS` registry) so evaluating a leaf is one call, not a wrapper object, a cast
and a `getattr`; `tests/test_conditions.py` checks them against `business_rules.engine`.

Deciding and explaining are separate: `Condition.passes` is the tree compiled once into fused
closures that stop at the first leaf that decides (no per-leaf list), called for every promotion;
`Condition.measure` evaluates every leaf, not just until the first failure, so the trace can report
all failures, and is called only for a tree that failed and only when its explanation is built.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Mapping, Union

from business_rules.fields import FIELD_NO_INPUT
from business_rules.operators import NumericType

from .variables import QUANTITY_VARIABLES, SPEND_VARIABLES, VARIABLE_TYPES

EPSILON = NumericType.EPSILON


def _ci_equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    return a == b


def _ci_contains(values: Any, item: Any) -> bool:
    return any(_ci_equal(v, item) for v in values)


def _shares_exactly_one(values: Any, other: Any) -> bool:
    return sum(1 for o in other if _ci_contains(values, o)) == 1


# (field type, operator) -> function(actual, expected) -> bool, with business-rules' semantics.
OPERATORS: dict[tuple[str, str], Callable[[Any, Any], bool]] = {
    ("numeric", "equal_to"): lambda a, b: abs(a - b) <= EPSILON,
    ("numeric", "greater_than"): lambda a, b: (a - b) > EPSILON,
    ("numeric", "greater_than_or_equal_to"): lambda a, b: (a - b) > EPSILON or abs(a - b) <= EPSILON,
    ("numeric", "less_than"): lambda a, b: (b - a) > EPSILON,
    ("numeric", "less_than_or_equal_to"): lambda a, b: (b - a) > EPSILON or abs(a - b) <= EPSILON,
    ("string", "equal_to"): lambda a, b: (a or "") == (b or ""),
    ("string", "equal_to_case_insensitive"): lambda a, b: (a or "").lower() == (b or "").lower(),
    ("string", "starts_with"): lambda a, b: (a or "").startswith(b or ""),
    ("string", "ends_with"): lambda a, b: (a or "").endswith(b or ""),
    ("string", "contains"): lambda a, b: (b or "") in (a or ""),
    ("string", "non_empty"): lambda a, _: bool(a),
    ("boolean", "is_true"): lambda a, _: bool(a),
    ("boolean", "is_false"): lambda a, _: not a,
    ("select", "contains"): lambda a, b: _ci_contains(a, b),
    ("select", "does_not_contain"): lambda a, b: not _ci_contains(a, b),
    ("select_multiple", "contains_all"): lambda a, b: all(_ci_contains(a, o) for o in b),
    ("select_multiple", "is_contained_by"): lambda a, b: all(_ci_contains(b, v) for v in a),
    ("select_multiple", "shares_at_least_one_element_with"): lambda a, b: any(_ci_contains(a, o) for o in b),
    ("select_multiple", "shares_exactly_one_element_with"): _shares_exactly_one,
    ("select_multiple", "shares_no_elements_with"): lambda a, b: not any(_ci_contains(a, o) for o in b),
}

NO_INPUT_OPERATORS = frozenset({"non_empty", "is_true", "is_false"})
assert FIELD_NO_INPUT == "none"  # business-rules' marker for operators that take no value
THRESHOLD_OPERATORS = frozenset({"greater_than", "greater_than_or_equal_to"})


@dataclass(frozen=True)
class Leaf:
    index: int
    variable: str
    operator: str
    value: Any            # as written in the rule file (for the trace)
    operand: Any          # as compared (Decimal for numeric variables)
    test: Callable[[Any, Any], bool]


@dataclass(frozen=True)
class AllOf:
    children: tuple["Node", ...]


@dataclass(frozen=True)
class AnyOf:
    children: tuple["Node", ...]


Node = Union[Leaf, AllOf, AnyOf]


class Several(tuple):
    """A variable with several values at once (the methods of a cart's several shipments): a leaf on
    it passes when it passes for any one of them. The trace records all of them."""

    __slots__ = ()


@dataclass(frozen=True)
class LeafResult:
    """One leaf as measured: the trace's record of a condition."""

    variable: str
    operator: str
    expected: Any
    actual: Any
    passed: bool


@dataclass(frozen=True)
class Condition:
    """A compiled tree. `root` is None for a promotion without eligibility terms."""

    root: Node | None
    leaves: tuple[Leaf, ...]
    variables: frozenset[str]
    passes: Callable[[Mapping[str, Any]], bool] = field(default=lambda values: True, compare=False, repr=False)
    """The tree's verdict for variable values, as `measure` gives it, without recording any leaf."""

    def measure(self, values: Mapping[str, Any]) -> tuple[bool, tuple[LeafResult, ...]]:
        """Evaluate every leaf against variable values; return the tree's verdict and, when it fails,
        every leaf as measured (a passing tree's leaves are not reported, so they are not recorded)."""
        if self.root is None:
            return True, ()
        leaves = self.every_leaf(values)
        if _decide(self.root, [leaf.passed for leaf in leaves]):
            return True, ()
        return False, leaves

    def every_leaf(self, values: Mapping[str, Any]) -> tuple[LeafResult, ...]:
        """Every leaf as measured, whatever the tree's verdict (`promo explain` shows them all)."""
        measured = []
        for leaf in self.leaves:
            actual = values[leaf.variable]
            ok = leaf.test(actual, leaf.operand) if type(actual) is not Several else \
                any(leaf.test(one, leaf.operand) for one in actual)
            measured.append(LeafResult(leaf.variable, leaf.operator, leaf.value, actual, ok))
        return tuple(measured)

    def passes_if(self, outcomes: list[bool]) -> bool:
        """The tree's verdict for given leaf outcomes (used to ask "would it pass if ... were met?")."""
        return True if self.root is None else _decide(self.root, outcomes)

    def blame(self, outcomes: list[bool]) -> tuple[int, ...]:
        """Indices of the failed leaves that made the tree fail: none from a branch that passed."""
        found: list[int] = []

        def walk(node: Node) -> None:
            if _decide(node, outcomes):
                return
            if isinstance(node, Leaf):
                found.append(node.index)
                return
            for child in node.children:
                walk(child)

        if self.root is not None:
            walk(self.root)
        return tuple(sorted(found))

    def threshold_leaves(self) -> tuple[Leaf, ...]:
        """Leaves a customer can satisfy by adding spend or units: `eligible_subtotal >= 3000`."""
        return tuple(l for l in self.leaves if l.operator in THRESHOLD_OPERATORS
                     and l.variable in SPEND_VARIABLES | QUANTITY_VARIABLES)


def _decide(node: Node, outcomes: list[bool]) -> bool:
    if isinstance(node, Leaf):
        return outcomes[node.index]
    if isinstance(node, AllOf):
        return all(_decide(c, outcomes) for c in node.children)
    return any(_decide(c, outcomes) for c in node.children)


def compile_condition(tree: Mapping[str, Any] | None) -> Condition:
    """Compile a tree that has already passed the schema and the semantic checks."""
    if tree is None:
        return Condition(None, (), frozenset())
    leaves: list[Leaf] = []
    root = _build(tree, leaves)
    return Condition(root, tuple(leaves), frozenset(l.variable for l in leaves), _compiled(root))


def _build(node: Mapping[str, Any], leaves: list[Leaf]) -> Node:
    """The tree of `node`, its leaves numbered in order and added to `leaves`. (Not nested in
    compile_condition: a nested function that calls itself is a reference cycle left for the garbage
    collector, once per promotion loaded.)"""
    if "all" in node:
        return AllOf(tuple([_build(c, leaves) for c in node["all"]]))
    if "any" in node:
        return AnyOf(tuple([_build(c, leaves) for c in node["any"]]))
    name, op = node["name"], node["operator"]
    kind = VARIABLE_TYPES[name]
    value = node.get("value")
    leaf = Leaf(len(leaves), name, op, value, operand(kind, value), OPERATORS[(kind, op)])
    leaves.append(leaf)
    return leaf


def _compiled(node: Node) -> Callable[[Mapping[str, Any]], bool]:
    """One function for the tree: a leaf reads its variable and calls its operator; `all` and `any`
    chain their children with `and` / `or`, so evaluation stops at the first child that decides."""
    if isinstance(node, Leaf):
        name, test, expected = node.variable, node.test, node.operand

        def leaf(values: Mapping[str, Any]) -> bool:
            actual = values[name]
            if type(actual) is Several:
                return any(test(one, expected) for one in actual)
            return bool(test(actual, expected))
        return leaf
    parts = tuple(_compiled(child) for child in node.children)
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        if isinstance(node, AllOf):
            return lambda values: first(values) and second(values)
        return lambda values: first(values) or second(values)
    if isinstance(node, AllOf):
        return lambda values: all(part(values) for part in parts)
    return lambda values: any(part(values) for part in parts)


def operand(kind: str, value: Any) -> Any:
    """The value a leaf compares against, in the form its operator expects."""
    if kind == "numeric":
        return Decimal(str(value)) if isinstance(value, (int, str)) and not isinstance(value, bool) else value
    if kind == "select_multiple" and value is not None:
        return tuple(value)
    return value
