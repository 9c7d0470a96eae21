"""Bad carts, accounts, codes, usage and times get a clear InputError naming the place, and nothing
is evaluated; good ones are never mutated."""
import copy
from datetime import datetime
from pathlib import Path

import pytest

from engine import InputError, evaluate, load_ruleset, read_json

ROOT = Path(__file__).resolve().parent.parent
RULES = load_ruleset(ROOT / "rules")
NOW = "2026-11-21T10:00:00+09:00"


def cart(**changes):
    base = {"currency": "JPY", "channel": "web", "lines": [
        {"id": "L1", "sku": "BOOK-1", "category": "books", "seller": "first_party", "product_type": "physical",
         "unit_price": "1500", "quantity": 2}], "shipping": {"method": "standard", "price": "500"}}
    base.update(changes)
    return base


def line(**changes):
    base = dict(cart()["lines"][0])
    base.update(changes)
    return base


ACCOUNT = {"id": "c1", "region": "JP", "tier": "standard", "order_count": 3, "time_zone": "Asia/Tokyo"}


def refused(c=None, account=None, **kwargs):
    with pytest.raises(InputError) as exc:
        evaluate(RULES, c if c is not None else cart(), account if account is not None else ACCOUNT,
                 now=kwargs.pop("now", NOW), **kwargs)
    return exc.value.problems


@pytest.mark.parametrize("price, fragment", [
    (1500.0, "quoted"), ("-1", "is not valid"), ("0", "is not valid"), ("1500.5", "finer than JPY"),
    ("1e3", "is not valid"), ("NaN", "is not valid"), ("1500\n", "U+000A")])
def test_bad_prices_are_refused_with_their_path(price, fragment):
    [p] = refused(cart(lines=[line(unit_price=price)]))
    assert p.path == "$.lines[0].unit_price" and fragment in p.message


@pytest.mark.parametrize("quantity", [0, -1, 10_000, 1.5, "2"])
def test_bad_quantities_are_refused(quantity):
    [p] = refused(cart(lines=[line(quantity=quantity)]))
    assert p.path == "$.lines[0].quantity"


def test_a_cart_in_a_currency_the_rule_set_does_not_know_is_refused():
    [p] = refused(cart(currency="EUR", lines=[]))
    assert p.path == "$.currency" and "not one the rule set knows" in p.message


def test_a_kwd_price_with_four_decimals_is_refused():
    [p] = refused(cart(currency="KWD", lines=[line(unit_price="1.2345")], shipping={"method": "x", "price": "1.000"}))
    assert "finer than KWD" in p.message


def test_duplicate_line_ids_unknown_keys_and_missing_fields_are_all_reported():
    problems = refused(cart(lines=[line(), line(), {**line(id="L2"), "colour": "red"}]))
    assert any("colour" in p.message for p in problems)
    problems = refused(cart(lines=[line(), line()]))
    assert [p.path for p in problems] == ["$.lines[1].id"]
    bad = line()
    del bad["seller"]
    [p] = refused(cart(lines=[bad]))
    assert "missing required key 'seller'" in p.message


def test_account_problems_name_the_field():
    [p] = refused(account={**ACCOUNT, "time_zone": "Mars/Olympus"})
    assert p.path == "$.time_zone" and "unknown time zone" in p.message
    [p] = refused(account={**ACCOUNT, "region": "jp"})
    assert p.path == "$.region"
    [p] = refused(account={**ACCOUNT, "order_count": -1})
    assert p.path == "$.order_count"


def test_naive_or_malformed_now_is_refused():
    assert "naive" in refused(now="2026-11-21T10:00:00")[0].message
    assert "naive" in refused(now=datetime(2026, 11, 21, 10))[0].message
    assert "ISO 8601" in refused(now="tomorrow")[0].message


def test_codes_must_be_a_list_of_short_non_empty_strings():
    assert "list of strings" in refused(codes="WELCOME")[0].message
    assert "at most" in refused(codes=["X" * 100])[0].message
    assert "empty" in refused(codes=["   "])[0].message


def test_usage_must_be_well_formed():
    assert refused(usage={"welcome-first-order-jp": {"total_uses": -1}})[0].path.endswith("total_uses")
    assert "unknown keys" in refused(usage={"welcome-first-order-jp": {"uses": 1}})[0].message
    assert "finer than JPY" in refused(usage={"welcome-first-order-jp": {"budget_spent": "0.5"}})[0].message


@pytest.mark.parametrize("kwargs, where", [
    ({"codes": None}, "codes"), ({"codes": 5}, "codes"), ({"usage": [1]}, "usage"),
    ({"preview": [["x"]]}, "preview"), ({"preview": None}, "preview")])
def test_wrong_shapes_of_codes_usage_and_preview_are_input_errors_not_crashes(kwargs, where):
    assert refused(**kwargs)[0].file == where


def test_a_usage_object_finer_than_the_currency_is_refused():
    from decimal import Decimal
    from engine import Usage
    [p] = refused(usage={"welcome-first-order-jp": Usage(0, 0, Decimal("0.5"))})
    assert "finer than JPY" in p.message


def test_a_hand_built_cart_object_is_not_trusted():
    from decimal import Decimal
    from engine.model import Cart, Line
    negative = Cart(None, "JPY", "web", (Line("1", "s", "s", "books", None, "first_party", "physical",
                                                Decimal("-5000"), 1),), None)
    assert refused(negative)[0].path == "$"


def test_previewing_an_unknown_promotion_is_refused():
    assert "no promotion with id" in refused(preview=["no-such-promo"])[0].message


def test_evaluate_never_mutates_its_inputs():
    c, a = cart(), dict(ACCOUNT)
    usage = {"welcome-first-order-jp": {"total_uses": 1}}
    before = copy.deepcopy((c, a, usage))
    evaluate(RULES, c, a, codes=["WELCOME"], now=NOW, usage=usage)
    assert (c, a, usage) == before


def test_read_json_refuses_nan_and_reports_bad_json_with_a_line(tmp_path):
    path = tmp_path / "cart.json"
    path.write_text('{"currency": NaN}')
    with pytest.raises(InputError, match="NaN"):
        read_json(path)
    path.write_text('{"currency": "JPY",\n "lines": [}')
    with pytest.raises(InputError) as exc:
        read_json(path)
    assert exc.value.problems[0].line == 2


def test_a_huge_cart_is_refused_by_the_schema():
    [p] = refused(cart(lines=[line(id=f"L{i}") for i in range(1001)]))
    assert p.path == "$.lines" and "at most 1000" in p.message


# --- balances on the account -------------------------------------------------------------------

LOT = {"id": "lot-1", "amount": "1000", "currency": "JPY", "granted_at": "2026-11-01T00:00:00+09:00",
       "expires_at": "2026-12-01T00:00:00+09:00"}


def with_balances(**changes):
    account = dict(ACCOUNT, promotional_balance=[dict(LOT)], gift_card={"amount": "500", "currency": "JPY"},
                   points={"balance": 100, "value": "1", "currency": "JPY", "use": "as_needed"})
    account.update(changes)
    return account


@pytest.mark.parametrize("changes, path, fragment", [
    ({"promotional_balance": [dict(LOT, currency="EUR")]}, "$.promotional_balance[0].currency", "not one the rule set"),
    ({"promotional_balance": [dict(LOT, amount="-5")]}, "$.promotional_balance[0].amount", "is not valid"),
    ({"promotional_balance": [dict(LOT, amount=1000)]}, "$.promotional_balance[0].amount", "quoted"),
    ({"promotional_balance": [dict(LOT, amount="10.5")]}, "$.promotional_balance[0].amount", "finer than JPY"),
    ({"promotional_balance": [dict(LOT), dict(LOT)]}, "$.promotional_balance[1].id", "duplicate lot id"),
    ({"promotional_balance": [dict(LOT, expires_at="2026-10-01T00:00:00+09:00")]},
     "$.promotional_balance[0].expires_at", "expire after it is granted"),
    ({"promotional_balance": [dict(LOT, granted_at="2026-11-01T00:00:00")]},
     "$.promotional_balance[0].granted_at", "no UTC offset"),
    ({"promotional_balance": [dict(LOT, pays_for={"excludes": ["marketplace"]})]},
     "$.promotional_balance[0].pays_for.excludes[0]", ""),
    ({"gift_card": {"amount": "-1", "currency": "JPY"}}, "$.gift_card.amount", "is not valid"),
    ({"gift_card": {"amount": "10", "currency": "GBP"}}, "$.gift_card.currency", "not one the rule set"),
    ({"points": {"balance": 100, "value": "0.5", "currency": "JPY", "use": 10}}, "$.points.value", "finer than JPY"),
    ({"points": {"balance": 100, "value": "0.001", "currency": "USD", "use": 10}}, "$.points.value", "finer than USD"),
    ({"points": {"balance": 100, "value": "0", "currency": "JPY", "use": 10}}, "$.points.value", "more than 0"),
    ({"points": {"balance": 100, "value": "1", "currency": "JPY", "use": 101}}, "$.points.use", "holds 100"),
    ({"points": {"balance": -1, "value": "1", "currency": "JPY", "use": 0}}, "$.points.balance", ""),
    ({"points": {"balance": 10, "value": "1", "currency": "JPY", "use": "all"}}, "$.points.use", ""),
])
def test_bad_balances_are_refused_naming_the_field(changes, path, fragment):
    problems = refused(account=with_balances(**changes))
    assert [p.path for p in problems] == [path], problems
    assert fragment in problems[0].message


def test_every_bad_balance_is_listed_at_once():
    account = with_balances(promotional_balance=[dict(LOT, amount="0.5"), dict(LOT, currency="EUR")],
                            points={"balance": 1, "value": "1", "currency": "JPY", "use": 2})
    assert {p.path for p in refused(account=account)} == {
        "$.promotional_balance[0].amount", "$.promotional_balance[1].id", "$.promotional_balance[1].currency",
        "$.points.use"}


def test_a_lot_in_a_known_currency_other_than_the_carts_is_reported_not_refused():
    account = with_balances(promotional_balance=[dict(LOT, currency="USD", amount="10.00")])
    trace = evaluate(RULES, cart(), account, now=NOW)
    [not_used] = trace.tenders.not_used
    assert (not_used.id, not_used.reason.value) == ("lot-1", "currency_mismatch")


def test_balances_in_the_account_are_not_mutated():
    account = with_balances()
    before = copy.deepcopy(account)
    evaluate(RULES, cart(), account, now=NOW)
    assert account == before


# parse_cart's shortcuts (engine/inputs.py) must build exactly what the plain code builds.

def test_lines_built_by_parse_cart_are_the_lines_the_constructor_builds():
    import dataclasses
    from engine.inputs import parse_cart
    from engine.model import Line
    parsed = parse_cart(cart(lines=[line(), line(id="L2", name="Book", brand="acme", unit_price="12")]), RULES)
    for built in parsed.lines:
        assert list(vars(built)) == [f.name for f in dataclasses.fields(Line)]  # every field, in order
        plain = Line(**vars(built))
        assert built == plain and hash(built) == hash(plain) and repr(built) == repr(plain)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.lines[0].quantity = 3


def _money_patterns():
    from engine.schemas import schema
    cart_schema, account_schema = schema("cart"), schema("account")
    return sorted({cart_schema["$defs"]["money"]["pattern"], account_schema["$defs"]["money"]["pattern"],
                   cart_schema["$defs"]["line"]["properties"]["unit_price"]["pattern"]})


def _both_ways(text, currency):
    """(the shortcut's answer, parse_money's answer or its error message)"""
    from engine.inputs import _checked_money, _unit
    from engine.money import MoneyError, parse_money
    try:
        slow = parse_money(text, currency, "x")
    except MoneyError as exc:
        slow = str(exc)
    return _checked_money(text, _unit(currency)), slow


@pytest.mark.parametrize("text", ["1500", "12.50", "12.5", "0", "0.5", "0.0001", "0.00001", "0.0000001", "1.2345",
                                  "0.10000000", "5\n", "1.5\n", "12.50\n", "999999999999999.999999"])
@pytest.mark.parametrize("currency", ["JPY", "USD", "KWD", "UYW", "ZZZ"])
def test_the_money_shortcut_answers_as_parse_money_or_leaves_it_to_it(text, currency):
    fast, slow = _both_ways(text, currency)
    assert fast is None or (fast == slow and str(fast) == str(slow))
    if currency == "USD" and text in ("1500", "12.50", "12.5", "0.5"):
        assert fast is not None  # the ordinary amounts do take the shortcut


def test_money_patterns_are_read_from_the_schemas():
    assert len(_money_patterns()) == 2  # `$defs/money` (the same in both) and the unit price's


from hypothesis import given, settings as hsettings, strategies as hst  # noqa: E402


@hsettings(max_examples=1000, deadline=None)
@given(hst.sampled_from(_money_patterns()).flatmap(hst.from_regex), hst.sampled_from(["JPY", "USD", "KWD", "UYW"]))
def test_the_money_shortcut_agrees_with_parse_money_on_whatever_the_schemas_admit(text, currency):
    fast, slow = _both_ways(text, currency)
    assert fast is None or (fast == slow and str(fast) == str(slow))


@pytest.mark.parametrize("price", ["0.0000010", "0.00000100000", "0.12000"])
def test_prices_the_schema_admits_keep_parse_moneys_verdict_and_words(price):
    from engine.money import MoneyError, parse_money
    from engine.schemas import check
    assert check("cart", cart(lines=[line(unit_price=price)])) == []
    try:
        parse_money(price, "JPY", "$.lines[0].unit_price")
        expected = []
    except MoneyError as exc:
        expected = [str(exc)]
    problems = refused(cart(lines=[line(unit_price=price)])) if expected else []
    assert [p.message for p in problems] == expected


# --- issue 10: text matches exactly, everything is bounded (trust boundaries) ----------------------

def refused_unchanged(c=None, account=None, **kwargs):
    """refused(), and the documents handed over are exactly as before."""
    c = c if c is not None else cart()
    account = account if account is not None else ACCOUNT
    before = copy.deepcopy((c, account, kwargs))
    problems = refused(c, account, **kwargs)
    assert (c, account, kwargs) == before
    return problems


@pytest.mark.parametrize("field, value", [("category", "alcohol\n"), ("sku", "GIFT-1\n"), ("brand", "acme\n"),
                                          ("category", "books\r\n"), ("id", "L1\x00"), ("name", "Book\x1b[2J"),
                                          ("name", "Bo\ud800ok"), ("category", "bo\x85oks")])
def test_a_line_text_with_a_trailing_newline_or_control_character_is_refused(field, value):
    [p] = refused_unchanged(cart(lines=[line(**{field: value})]))
    assert p.path == f"$.lines[0].{field}" and "must not contain the character U+" in p.message


def test_a_category_with_a_trailing_newline_is_refused():
    [p] = refused_unchanged(cart(lines=[line(category="alcohol\n")]))
    assert (p.path, p.message) == ("$.lines[0].category", "must not contain the character U+000A (at position 7)")


def test_an_account_segment_with_a_trailing_newline_is_refused():
    [p] = refused_unchanged(account=dict(ACCOUNT, segments=["banned\n"]))
    assert p.path == "$.segments[0]" and "U+000A" in p.message


def test_lot_ids_that_differ_only_by_a_trailing_newline_are_refused():
    lots = [{"id": "x", "amount": "100", "currency": "JPY", "granted_at": "2026-11-01T00:00:00+09:00"},
            {"id": "x\n", "amount": "100", "currency": "JPY", "granted_at": "2026-11-01T00:00:00+09:00"}]
    [p] = refused_unchanged(account=dict(ACCOUNT, promotional_balance=lots))
    assert p.path == "$.promotional_balance[1].id"


@pytest.mark.parametrize("field, value", [("tier", "gold\x00"), ("id", "c1\n"), ("time_zone", "UTC\n")])
def test_account_text_with_control_characters_is_refused(field, value):
    [p] = refused_unchanged(account=dict(ACCOUNT, **{field: value}))
    assert p.path == f"$.{field}"


@pytest.mark.parametrize("code", ["WELCOME\x00", "WEL\u200bCOME", "\ufeffWELCOME", "WELCOME\n", "WEL\u202eCOME"])
def test_an_entered_code_with_a_control_or_invisible_character_is_refused(code):
    [p] = refused_unchanged(codes=[code])
    assert p.path == "$[0]" and p.file == "codes" and "character U+" in p.message


def test_too_many_codes_are_refused_before_any_is_read():
    def codes():
        yield from ["WELCOME"] * 21
        raise AssertionError("read past the cap")
    [p] = refused(codes=codes())
    assert p.path == "$" and "at most 20 codes" in p.message
    [p] = refused(codes=["x\x00"] * 10_000)
    assert p.path == "$" and "at most 20 codes" in p.message


@pytest.mark.parametrize("quantity", [2.0, True, 1e300, 10 ** 5000], ids=["2.0", "True", "1e300", "5000-digits"])
def test_a_quantity_must_be_a_true_integer(quantity):
    problems = refused_unchanged(cart(lines=[line(quantity=quantity)]))
    assert {p.path for p in problems} == {"$.lines[0].quantity"} and all(len(p.message) < 200 for p in problems)


@pytest.mark.parametrize("changes", [{"order_count": 3.0}, {"points": {"balance": 10.0, "value": "1", "currency": "JPY",
                                                                       "use": "as_needed"}},
                                     {"points": {"balance": 10, "value": "1", "currency": "JPY", "use": 2.0}}])
def test_account_counts_must_be_true_integers(changes):
    problems = refused_unchanged(account=dict(ACCOUNT, **changes))
    assert problems and all(p.path.startswith(("$.order_count", "$.points")) for p in problems)


def test_a_hundred_thousand_line_cart_is_refused_at_once():
    import time
    big = cart(lines=[line(id=f"L{i}") for i in range(100_000)])
    started = time.perf_counter()
    [p] = refused(big)
    assert time.perf_counter() - started < 3   # generous: it is milliseconds, not a check of every line
    assert (p.path, p.message) == ("$.lines", "has 100000 items; at most 1000 are allowed")


def test_a_deeply_nested_cart_in_memory_is_refused_before_the_schema_check():
    deep: dict = {}
    for _ in range(100_000):
        deep = {"a": deep}
    [p] = refused(cart(shipping=deep))
    assert p.path.startswith("$.shipping") and "nested deeper than" in p.message


def test_a_ten_megabyte_text_is_refused_and_not_echoed():
    [p] = refused(cart(lines=[line(name="x" * 10_000_000)]))
    assert p.path == "$.lines[0].name" and len(str(p)) < 300


@pytest.mark.parametrize("now", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z",
                                 "2200-01-01T00:00:00Z", datetime.fromisoformat("9999-12-31T00:00:00-05:00")])
def test_now_outside_the_accepted_range_is_refused(now):
    [p] = refused(now=now)
    assert p.file == "now" and "outside the accepted range" in p.message


def test_the_edges_of_the_accepted_range_are_inclusive_then_exclusive():
    from engine.inputs import parse_now
    assert parse_now("1970-01-01T00:00:00Z") and parse_now("2199-12-31T23:59:59.999999Z")
    with pytest.raises(InputError):
        parse_now("2200-01-01T00:00:00Z")


@pytest.mark.parametrize("field", ["granted_at", "expires_at"])
def test_lot_dates_outside_the_accepted_range_are_refused(field):
    lot = {"id": "lot", "amount": "100", "currency": "JPY", "granted_at": "2026-11-01T00:00:00+09:00",
           field: "9999-12-31T23:59:59-12:00"}
    problems = refused_unchanged(account=dict(ACCOUNT, promotional_balance=[lot]))
    assert [p.path for p in problems] == [f"$.promotional_balance[0].{field}"]
    assert "outside the accepted range" in problems[0].message


@pytest.mark.parametrize("zone", ["Asia", "../../etc/passwd", "", "UTC\n", "/etc/localtime", "localtime",
                                  "Asia/Tokyo/", "asia/tokyo", "Nowhere/City"])
def test_only_real_iana_time_zone_keys_are_accepted(zone):
    [p] = refused_unchanged(account=dict(ACCOUNT, time_zone=zone))
    assert p.path == "$.time_zone" and "/work" not in p.message and "Errno" not in p.message


def test_real_time_zone_keys_are_accepted():
    from engine.inputs import known_time_zone
    assert all(known_time_zone(z) for z in ("UTC", "Asia/Tokyo", "America/Los_Angeles", "Etc/GMT+12"))


@pytest.mark.parametrize("value", ["0", "0.00", "0.0"])
def test_a_point_worth_nothing_is_refused(value):
    points = {"balance": 100, "value": value, "currency": "JPY", "use": "as_needed"}
    [p] = refused_unchanged(account=dict(ACCOUNT, points=points))
    assert p.path == "$.points.value"


def test_usage_counts_are_bounded():
    [p] = refused(usage={"welcome-first-order-jp": {"total_uses": 10 ** 5000}})
    assert p.path == "$.welcome-first-order-jp.total_uses" and len(p.message) < 200


# --- read_json -----------------------------------------------------------------------------------

def _read_refused(path):
    with pytest.raises(InputError) as exc:
        read_json(path)
    [p] = exc.value.problems
    return p


def test_read_json_refuses_a_file_over_its_cap_without_reading_it(tmp_path, monkeypatch):
    path = tmp_path / "cart.json"
    with open(path, "wb") as f:   # 50 MB, sparse: nothing to read if it is not read
        f.truncate(50 * 1024 * 1024)
    reads = []
    import engine.yamlsafe as yamlsafe
    monkeypatch.setattr(yamlsafe.os, "read", lambda fd, n: reads.append(n) or b"")
    p = _read_refused(path)
    assert p.file == str(path) and "larger than 4 MiB" in p.message and reads == []


def test_read_json_catches_a_file_that_grows_while_it_is_read(tmp_path, monkeypatch):
    import engine.yamlsafe as yamlsafe
    from engine.inputs import MAX_JSON_BYTES
    path = tmp_path / "cart.json"
    path.write_text("{}")
    real_fstat = yamlsafe.os.fstat

    class Small:   # stat says small; the file then turns out to be larger
        def __init__(self, info):
            self.st_mode, self.st_size = info.st_mode, 2
    path.write_bytes(b"[" + b"0," * MAX_JSON_BYTES + b"0]")
    monkeypatch.setattr(yamlsafe.os, "fstat", lambda fd: Small(real_fstat(fd)))
    assert "larger than" in _read_refused(path).message


@pytest.mark.parametrize("text, fragment", ids=["duplicate", "int", "float", "1e400", "infinity", "deep", "40"],
                         argvalues=[
    ('{"id": "a", "id": "b"}', "duplicate key 'id'"),
    ('{"quantity": 1' + "0" * 5000 + "}", "digits"),
    ('{"price": 1.' + "5" * 5000 + "}", "out of range"),
    ('{"price": 1e400}', "out of range"),
    ('{"x": -Infinity}', "not a number"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
    ("[" * 40 + "]" * 40, "nested deeper than"),
])
def test_read_json_refuses_what_no_input_needs(tmp_path, text, fragment):
    path = tmp_path / "in.json"
    path.write_text(text)
    p = _read_refused(path)
    assert fragment in p.message and len(p.message) < 200


def test_read_json_refuses_a_directory_or_a_fifo_without_blocking(tmp_path):
    import os
    assert "cannot read" in _read_refused(tmp_path).message
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "cannot read" in _read_refused(fifo).message


def test_read_json_still_reads_ordinary_files(tmp_path):
    path = tmp_path / "cart.json"
    path.write_text('{"a": [1, 2.5, "x", {"b": null}]}')
    assert read_json(path) == {"a": [1, 2.5, "x", {"b": None}]}


from tests.test_schemas import _ACCOUNT_FULL, _CART, _mutated_deep  # noqa: E402


@hsettings(max_examples=600, deadline=None)
@given(_mutated_deep(_CART), _mutated_deep(dict(_ACCOUNT_FULL, promotional_balance=[
    dict(_ACCOUNT_FULL["promotional_balance"][0]), dict(_ACCOUNT_FULL["promotional_balance"][1], currency="JPY")])))
def test_evaluate_answers_odd_carts_and_accounts_with_a_trace_or_an_input_error_only(c, account):
    before = copy.deepcopy((c, account))
    try:
        evaluate(RULES, c, account, now=NOW, codes=["welcome"])
    except InputError:
        pass
    assert (c, account) == before


def shipments_cart(shipments, lines=None):
    c = {k: v for k, v in cart().items() if k != "shipping"}
    c["lines"] = lines or [line(id="L1"), line(id="L2")]
    c["shipments"] = shipments
    return c


def test_a_cart_may_list_its_shipments_and_each_line_it_names_is_carried_once():
    trace = evaluate(RULES, shipments_cart([{"id": "a", "method": "standard", "price": "500", "lines": ["L1"]},
                                            {"id": "b", "method": "express", "price": "800", "lines": ["L2"]}]),
                     ACCOUNT, now=NOW)
    assert trace.shipping is None and [(s.id, s.lines, s.price) for s in trace.shipments] == \
        [("a", ("L1",), 500), ("b", ("L2",), 800)]
    assert trace.totals.shipping == 1300


def test_an_empty_shipments_list_ships_nothing():
    trace = evaluate(RULES, shipments_cart([]), ACCOUNT, now=NOW)
    assert trace.shipments == () and trace.shipping is None and trace.totals.shipping == 0


@pytest.mark.parametrize("shipments, path, fragment", [
    ([{"id": "a", "method": "m", "price": "1"}, {"id": "a", "method": "m", "price": "2"}], "$.shipments[1].id",
     "duplicate shipment id"),
    ([{"id": "a ", "method": "m", "price": "1"}], "$.shipments[0].id", "no spaces"),
    ([{"id": "a", "method": "m", "price": "1", "lines": ["L9"]}], "$.shipments[0].lines[0]", "no line 'L9'"),
    ([{"id": "a", "method": "m", "price": "1", "lines": ["L1"]}, {"id": "b", "method": "m", "price": "1",
                                                                  "lines": ["L2", "L1"]}],
     "$.shipments[1].lines[1]", "already in shipment 'a'"),
    ([{"id": "a", "method": "m", "price": "1", "lines": ["L1", "L1"]}], "$.shipments[0].lines[1]", "already in"),
    ([{"id": "a", "method": "m", "price": "1.5"}], "$.shipments[0].price", "finer than JPY"),
    ([{"id": "a", "method": "m", "price": 1}], "$.shipments[0].price", ""),
    ([{"id": "a", "method": "", "price": "1"}], "$.shipments[0].method", ""),
    ([{"id": "a", "method": "m", "price": "1", "carrier": "x"}], "$.shipments[0].carrier", "unknown key"),
    ([{"id": f"s{i}", "method": "m", "price": "1"} for i in range(51)], "$.shipments", ""),
])
def test_bad_shipments_are_refused_with_their_path(shipments, path, fragment):
    problems = refused(shipments_cart(shipments))
    assert any(p.path == path and fragment in p.message for p in problems), problems


def test_a_cart_that_gives_both_shipping_and_shipments_is_refused():
    [p] = refused(dict(shipments_cart([{"id": "a", "method": "m", "price": "1"}]),
                       shipping={"method": "standard", "price": "500"}))
    assert p.path == "$.shipments" and "not both" in p.message
