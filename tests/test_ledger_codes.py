"""Single-use codes: an unambiguous alphabet, enough entropy, stored hashed, matched however they are
typed; and one customer-facing sentence for every code that cannot be used."""
from __future__ import annotations

import math

from engine.ledger import CODE_REFUSED_MESSAGE, CodeCheck, CodeStatus, LedgerReason, Refusal, customer_message
from engine.ledger.codes import ALPHABET, SYMBOLS, canonical, code_hash, generate
from engine.trace import CodeResult


def test_codes_use_no_look_alike_symbols_and_carry_more_than_75_bits():
    assert not set("01OIL") & set(ALPHABET)
    assert SYMBOLS * math.log2(len(ALPHABET)) > 75
    codes = generate(500, prefix="SPRING")
    assert len(set(codes)) == 500
    assert all(c.startswith("SPRING-") and set(canonical(c)[6:]) <= set(ALPHABET) for c in codes)


def test_a_code_matches_however_it_is_typed_and_only_its_hash_is_kept():
    code = generate(1)[0]
    typed = "  " + code.lower().replace("-", " ") + " "
    assert code_hash(typed) == code_hash(code)
    other = generate(1)[0]
    assert other != code and code_hash(other) != code_hash(code)


def test_unknown_expired_and_used_codes_read_the_same_to_the_customer():
    refused = [CodeCheck("X", CodeStatus.UNKNOWN_CODE), CodeCheck("X", CodeStatus.EXPIRED, "p"),
               CodeCheck("X", CodeStatus.CODE_ALREADY_USED, "p"),
               CodeResult("X", "X", "unknown_code", (), "The code X is not valid."),
               Refusal("code", "p", LedgerReason.CODE_ALREADY_USED, "detail for the merchant")]
    assert {customer_message(r) for r in refused} == {CODE_REFUSED_MESSAGE}
    fine = [CodeCheck("X", CodeStatus.POOL, "p"), CodeCheck("X", CodeStatus.SHARED, "p"),
            CodeResult("X", "X", "matched", ("p",), None),
            Refusal("promotion", "p", LedgerReason.BUDGET_EXHAUSTED, "not about a code")]
    assert {customer_message(r) for r in fine} == {None}
