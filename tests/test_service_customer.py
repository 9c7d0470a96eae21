"""The customer's view (engine/service/customer.py): the locale chosen from Accept-Language, and a
view made from a trace that shows nothing of the account."""
from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from engine import evaluate
from engine.ruleset import build_ruleset
from engine.service.customer import customer_view, locale_for
from engine.service.openapi import project_schema
from tests.service_support import RULES, account, cart

NOW = "2026-11-21T10:00:00+09:00"


@pytest.mark.parametrize("header, locale", [
    (None, "en_US"), ("", "en_US"), ("ja", "ja_JP"), ("ja-JP,en;q=0.5", "ja_JP"), ("en-GB,ja;q=0.9", "en_US"),
    ("fr-FR, ja;q=0.1", "ja_JP"), ("fr", "en_US"), ("*", "en_US"), ("ja;q=bogus, en", "en_US"),
])
def test_the_locale_follows_accept_language(header, locale):
    assert locale_for(header) == locale


def test_a_single_use_code_is_shown_as_typed_and_refused_codes_read_the_same():
    rules = build_ruleset({f"rules/{name}": data for name, data in RULES.items()})
    token = rules.promotions["pool-300"].code
    trace = evaluate(rules, cart(), account(), codes=[token, "GONE"], now=NOW)
    view = customer_view(trace, "ja_JP", {token: "K7QX-M3HD-9WTR-BC4N"}, ["USED-CODE"])
    Draft202012Validator(project_schema("customer_trace")).validate(view)
    assert [c["code"] for c in view["codes"]] == ["K7QX-M3HD-9WTR-BC4N", "GONE", "USED-CODE"]
    assert [c["accepted"] for c in view["codes"]] == [True, False, False]
    assert view["codes"][1]["message"] == view["codes"][2]["message"]
    assert view["promotions"] == [{"name": "pool-300 name", "code": "K7QX-M3HD-9WTR-BC4N",
                                   "saved": {"amount": "300", "display": "￥300"}}]
