"""The errors promo-engine raises. Each subclasses the builtin it resembles and carries every problem found.

Validation collects all problems first and fails once, so a marketer sees every mistake in one run,
each as `file:line:column: json.path: message`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with an input, with where it is."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        if self.line == 0:  # JSON documents handed over in memory have no lines to point at
            return f"{self.file}: {self.path}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"


class PromoError(ValueError):
    """Base class: every error promo-engine raises on bad input is one of these."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...], summary: str):
        self.problems = tuple(sorted(problems))
        lines = [summary] + [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class RuleFileError(PromoError):
    """The rule set does not load: one or more rule files are malformed or inconsistent."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]):
        n = len(problems)
        super().__init__(problems, f"rule set has {n} problem{'s' if n != 1 else ''}; nothing was loaded")


class InputError(PromoError):
    """A cart, account, code list, usage snapshot or `now` given to evaluate() is not acceptable."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...], what: str = "input"):
        n = len(problems)
        super().__init__(problems, f"{what} has {n} problem{'s' if n != 1 else ''}; nothing was evaluated")


class InvariantError(AssertionError):
    """A money invariant failed inside the engine. Raised instead of returning a wrong amount."""
