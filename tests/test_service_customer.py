"""The customer's view (engine/service/customer.py): the locale chosen from Accept-Language, and a
view made from a trace that shows nothing of the account."""
from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from engine import evaluate
from engine.errors import RuleFileError
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
    assert view["promotions"] == [{"name": "pool-300 name", "code": "K7QX-M3HD-9WTR-BC4N", "message": "pool-300 name",
                                   "saved": {"amount": "300", "display": "￥300"}}]
    assert view["codes"][1]["message"] == "このコードはご利用いただけません。"


MESSAGE = b'customer_message: {en: "100 yen off your order.", ja: "\xe3\x81\x94\xe6\xb3\xa8\xe6\x96\x87\xe3\x81\x8b\xe3\x82\x89100\xe5\x86\x86\xe5\xbc\x95\xe3\x81\x8d"}\n'


def _rules(extra: bytes = b"", spend: bytes | None = None):
    files = dict(RULES, **{"welcome-100.yaml": RULES["welcome-100.yaml"] + extra})
    if spend is not None:
        files["spend-600.yaml"] = spend
    return build_ruleset({f"rules/{name}": data for name, data in files.items()})


@pytest.mark.parametrize("locale, said", [("ja_JP", "ご注文から100円引き"), ("en_US", "100 yen off your order.")])
def test_an_applied_promotion_says_its_own_message_in_the_customers_language(locale, said):
    rules = _rules(MESSAGE)
    view = customer_view(evaluate(rules, cart(), account(), codes=["WELCOME"], now=NOW), locale, ruleset=rules)
    assert [p["message"] for p in view["promotions"]] == [said]


def test_a_promotions_message_falls_back_to_english_then_to_its_name():
    rules = _rules(b'customer_message: {en: "100 yen off."}\n')
    trace = evaluate(rules, cart(), account(), codes=["WELCOME"], now=NOW)
    assert customer_view(trace, "ja_JP", ruleset=rules)["promotions"][0]["message"] == "100 yen off."
    plain = _rules()
    trace = evaluate(plain, cart(), account(), codes=["WELCOME"], now=NOW)
    assert customer_view(trace, "ja_JP", ruleset=plain)["promotions"][0]["message"] == "welcome-100 name"


@pytest.mark.parametrize("message, path", [
    (b'customer_message: {fr: "Bonjour"}\n', "$.customer_message.fr"),
    (b'customer_message: {en: "Save {amount} now"}\n', "$.customer_message.en"),
    (b'customer_message: {en: "<b>Save</b>"}\n', "$.customer_message.en"),
    (b'customer_message: {}\n', "$.customer_message"),
    (b'customer_message: {en: "' + b"x" * 201 + b'"}\n', "$.customer_message.en"),
])
def test_a_promotions_message_is_one_bounded_sentence_in_a_known_language(message, path):
    with pytest.raises(RuleFileError) as exc:
        _rules(message)
    assert [p.path for p in exc.value.problems] == [path]


def test_a_near_miss_hint_is_in_japanese_with_the_amount_for_the_customers_locale():
    rules = _rules()
    trace = evaluate(rules, cart(price="1500"), account(), now=NOW)   # ¥4,500 of ¥5,000
    assert [h.message for h in trace.hints] == ["Add ¥500 more to your cart to get Spend 5000 get 600 off."]
    assert customer_view(trace, "ja_JP", ruleset=rules)["hints"] == \
        ["カートにあと￥500分追加すると、Spend 5000 get 600 offが適用されます。"]
    assert customer_view(trace, "en_US", ruleset=rules)["hints"] == [trace.hints[0].message]


def test_a_quantity_hint_drops_the_english_plural_in_japanese():
    spend = (b"id: spend-600\nname: Four or more\nstatus: active\ncurrency: JPY\n"
             b"eligibility: {all: [{name: eligible_quantity, operator: greater_than_or_equal_to, value: 4}]}\n"
             b"targets: {include: all}\nbenefits: [{type: amount_off, scope: per_order, amount: \"600\"}]\n"
             b"stacking: {priority: 5, exclusive: false}\n")
    rules = _rules(spend=spend)
    trace = evaluate(rules, cart(quantity=2), account(), now=NOW)
    assert [h.message for h in trace.hints] == ["Add 2 more eligible items to get Four or more."]
    assert customer_view(trace, "ja_JP", ruleset=rules)["hints"] == ["対象商品をあと2点追加すると、Four or moreが適用されます。"]
