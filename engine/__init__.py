"""promo-engine: promotion rule files in YAML, checked by JSON Schema, evaluated into a discount trace.

    from engine import load_ruleset, evaluate
    rules = load_ruleset("rules")                      # once; raises RuleFileError listing every problem
    trace = evaluate(rules, cart, account, codes=["WELCOME"], now="2026-11-21T10:00:00+09:00")
    trace.to_json()
"""
from .errors import InputError, InvariantError, Problem, PromoError, RuleFileError
from .evaluate import evaluate
from .holder import RuleSetHolder
from .inputs import parse_account, parse_cart, read_json
from .model import RuleSet, Usage
from .reasons import Reason
from .ruleset import load_ruleset
from .trace import Trace

__all__ = [
    "InputError", "InvariantError", "Problem", "PromoError", "Reason", "RuleFileError", "RuleSet",
    "RuleSetHolder", "Trace", "Usage", "evaluate", "load_ruleset", "parse_account", "parse_cart", "read_json",
]
