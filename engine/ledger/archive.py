"""The rule sets the ledger has priced orders with, kept by version in `promo_ruleset_versions`.

A cancel or a return re-derives the order's trace with the rule set it was priced with. After a reload
or a restart that rule set is no longer the one being served, so the first `reserve()` of each version
stores its rule files (the names and bytes `RuleSet.version` hashes) and an operation that meets an
older version builds it again from them with `build_ruleset`. A version is written once and never
changed: a rebuilt set whose version differs from the row's is refused rather than trusted.

The blob: zlib over JSON `{"format": 1, "files": {name: base64 of the bytes}}` (rule files are YAML
text, but the version hashes bytes, so bytes are what is kept).
"""
from __future__ import annotations

import base64
import json
import zlib
from datetime import datetime
from typing import Mapping

from sqlalchemy import Connection, insert, select

from ..errors import RuleFileError
from ..model import RuleSet
from ..ruleset import build_ruleset
from .common import iso
from .store import ruleset_versions

FORMAT = 1
MAX_BLOB_BYTES = 256 * 1024 * 1024   # what unpack() inflates at most: a rule set is far smaller


def pack(files: Mapping[str, bytes]) -> bytes:
    doc = {"format": FORMAT, "files": {name: base64.b64encode(data).decode("ascii")
                                       for name, data in sorted(files.items())}}
    return zlib.compress(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), 9)


def unpack(blob: bytes) -> dict[str, bytes]:
    inflate = zlib.decompressobj()
    text = inflate.decompress(blob, MAX_BLOB_BYTES)
    if inflate.unconsumed_tail:
        raise ValueError("the archived rule set inflates past its bound")
    doc = json.loads(text)
    if doc.get("format") != FORMAT:
        raise ValueError(f"unknown archive format {doc.get('format')!r}")
    return {name: base64.b64decode(data) for name, data in doc["files"].items()}


def record(conn: Connection, ruleset: RuleSet, when: datetime) -> bool:
    """Store `ruleset`'s files under its version unless they are already there; True when it is stored
    (now or before). A rule set without sources (not built by build_ruleset) cannot be stored: False.
    Two transactions storing the same version at once collide on the primary key, and the ledger
    retries the loser, which then finds the row."""
    if not ruleset.sources:
        return False
    found = conn.execute(select(ruleset_versions.c.version)
                         .where(ruleset_versions.c.version == ruleset.version)).first()
    if found is None:
        conn.execute(insert(ruleset_versions).values(version=ruleset.version, files=pack(ruleset.sources),
                                                     created_at=iso(when)))
    return True


def rebuilt(conn: Connection, version: str) -> RuleSet | None:
    """The rule set stored under `version`, built again; None when the ledger never stored it, or when
    what is stored no longer builds to that version (the engine's checks or the version's definition
    changed since)."""
    row = conn.execute(select(ruleset_versions.c.files).where(ruleset_versions.c.version == version)).first()
    if row is None:
        return None
    try:
        files = unpack(bytes(row.files))
        ruleset = build_ruleset({f"archived/{name}": data for name, data in files.items()})
    except (ValueError, KeyError, TypeError, RuleFileError, zlib.error):
        return None
    return ruleset if ruleset.version == version else None


def stored_versions(conn: Connection) -> list[tuple[str, str]]:
    """(version, created_at) of every stored rule set, oldest first."""
    return [(r.version, r.created_at) for r in conn.execute(
        select(ruleset_versions.c.version, ruleset_versions.c.created_at)
        .order_by(ruleset_versions.c.created_at, ruleset_versions.c.version))]
