"""Messages in the customer's language: the gettext catalogues in engine/locales/<language>/LC_MESSAGES/
messages.po, one per language, read and compiled with Babel (babel.messages) the first time a language
is asked for.

A message id is the English template exactly as the engine's tables hold it (engine/reasons.py MESSAGES
and HINTS, the ledger's code sentence, the customer view's own sentences), placeholders and all, so
the tables stay the one place a message is written and a catalogue only says it again in another
language. The English catalogue is the customer's English: it may word a sentence differently from the
merchant's trace, which stays as evaluate() writes it (it is the audit record). A translation keeps
the template's placeholders, except the English plural ending `{plural}`, which other languages may
drop (tests/test_translations.py checks both).

Adding a language: copy en/LC_MESSAGES/messages.po, translate each msgstr, add the language to
LANGUAGES (and to `customer_message` in schemas/promotion.schema.json), and a locale to the customer
view's LOCALES.
"""
from __future__ import annotations

import io
import string
import threading
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LANGUAGES = ("en", "ja")
DEFAULT_LANGUAGE = "en"
LOCALE_DIR = Path(__file__).resolve().parent / "locales"
DOMAIN = "messages"
DROPPABLE = frozenset({"plural"})   # placeholders a translation may leave out

_compiled: dict[str, Translations] = {}
_lock = threading.Lock()


def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def catalogue(language: str) -> Catalog:
    """The catalogue of `language` as Babel reads it (for tests and tools)."""
    with open(catalogue_path(language), "rb") as f:
        return read_po(f, locale=language, domain=DOMAIN)


def translations(language: str) -> Translations:
    """The compiled messages of `language` (one of LANGUAGES; anything else gets English)."""
    language = language if language in LANGUAGES else DEFAULT_LANGUAGE
    found = _compiled.get(language)
    if found is None:
        with _lock:
            found = _compiled.get(language)
            if found is None:
                compiled = io.BytesIO()
                write_mo(compiled, catalogue(language))
                compiled.seek(0)
                found = _compiled[language] = Translations(compiled, domain=DOMAIN)
    return found


def language_of(locale: str) -> str:
    """`ja_JP` -> `ja`; a language without a catalogue -> en."""
    language = locale.replace("-", "_").split("_")[0].lower()
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


def translate(template: str, locale: str) -> str:
    """`template` in the language of `locale`; the template itself when the catalogue lacks it."""
    return translations(language_of(locale)).gettext(template)


def render(template: str, locale: str, **values: object) -> str:
    """`template` translated for `locale`, then filled in with `values` (already formatted for it)."""
    return translate(template, locale).format(**values)


def placeholders(template: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)
