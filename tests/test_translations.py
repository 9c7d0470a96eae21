"""The customer's messages in their language (engine/translations.py): every template the customer view
can show, and every reason message, is in every catalogue with its placeholders kept; the catalogues
hold nothing else; the languages of a promotion's own message are the catalogues' languages."""
from __future__ import annotations

import pytest

from engine import schemas
from engine.reasons import HINTS, MESSAGES
from engine.service.customer import TEMPLATES
from engine.translations import DROPPABLE, LANGUAGES, catalogue, placeholders, render, translate

SHOWN = (*TEMPLATES, *MESSAGES.values())


def entries(language: str) -> dict[str, str]:
    return {m.id: m.string for m in catalogue(language) if m.id and not m.fuzzy}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_customer_template_has_a_translation_with_the_same_placeholders(language):
    found = entries(language)
    for template in SHOWN:
        assert found.get(template), f"{language}: no translation of {template!r}"
        kept, wanted = placeholders(found[template]), placeholders(template)
        assert kept <= wanted, f"{language}: {found[template]!r} has placeholders {template!r} lacks"
        assert wanted - kept <= DROPPABLE, f"{language}: {found[template]!r} drops {sorted(wanted - kept)}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_catalogue_holds_only_templates_the_engine_has(language):
    assert set(entries(language)) <= set(SHOWN)


def test_japanese_is_translated_and_english_is_the_template():
    for template in SHOWN:
        assert not translate(template, "ja_JP").isascii(), template
    assert all(translate(t, "en_US") == t for t in SHOWN)


def test_a_hint_is_rendered_in_japanese_and_an_unknown_language_gets_english():
    assert render(HINTS["cart_spend"], "ja_JP", shortfall="￥500", name="秋のセール") == \
        "カートにあと￥500分追加すると、秋のセールが適用されます。"
    assert render(HINTS["cart_spend"], "fr_FR", shortfall="¥500", name="Sale") == "Add ¥500 more to your cart to get Sale."


def test_a_promotions_own_message_takes_exactly_the_catalogues_languages():
    own = schemas.schema("promotion")["properties"]["customer_message"]
    assert tuple(sorted(own["properties"])) == tuple(sorted(LANGUAGES))
