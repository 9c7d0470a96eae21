"""API keys: creating them, the key file that keeps only their hashes, and checking a presented key.

A key is `pe_` followed by 32 random bytes from `secrets` (URL-safe base64): 256 bits, so a plain
SHA-256 of it is as good as a slow hash (nothing to guess from a dictionary) and costs a microsecond per
request. The key file is JSON, `{"keys": [{"name", "scope", "sha256", "created_at", "revoked_at"}]}`,
written with mode 0600; the plain key is printed once, by `promo keys create`, and never stored.

A presented key is hashed and compared with every stored hash by `hmac.compare_digest`, without stopping
at the first match, so neither the comparison nor the loop tells a guesser how close it came.

Scopes: `checkout` may evaluate and run checkouts; `admin` may do everything (preview drafts, pass its
own `now`, reload rules, read promotions, orders and metrics).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

KEY_PREFIX = "pe_"
MAX_KEY_FILE_BYTES = 1024 * 1024
MAX_PRESENTED = 200                       # characters of a presented key looked at; a real one is 46
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class Scope(str, Enum):
    CHECKOUT = "checkout"
    ADMIN = "admin"


# What each scope may do: a scope grants itself and everything listed after it.
GRANTS: dict[Scope, frozenset[Scope]] = {
    Scope.CHECKOUT: frozenset({Scope.CHECKOUT}),
    Scope.ADMIN: frozenset({Scope.ADMIN, Scope.CHECKOUT}),
}


class KeyFileError(ValueError):
    """The key file is missing, unreadable or malformed; the message names the file and what to fix."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    scope: Scope
    sha256: str
    created_at: str
    revoked_at: str | None = None

    def allows(self, needed: Scope) -> bool:
        return needed in GRANTS[self.scope]


@dataclass(frozen=True)
class KeyRing:
    """The keys of one key file, as read at one moment."""

    keys: tuple[ApiKey, ...]

    def find(self, presented: str) -> ApiKey | None:
        """The live key whose hash matches `presented`, or None. Every stored hash is compared."""
        digest = key_hash(presented[:MAX_PRESENTED])
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.sha256, digest) and key.revoked_at is None:
                found = key
        return found


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def read_keys(path: str | Path) -> KeyRing:
    """The key file at `path`, checked; KeyFileError naming what is wrong."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"key file {p} is larger than {MAX_KEY_FILE_BYTES // 1024} KiB")
        doc = json.loads(p.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"key file {p} does not exist; create a key with "
                           f"`promo keys create --file {p} --name NAME --scope checkout|admin`") from None
    except OSError as exc:
        raise KeyFileError(f"key file {p} cannot be read: {exc.strerror or type(exc).__name__}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyFileError(f"key file {p} is not JSON; it is written by `promo keys create`") from None
    if not isinstance(doc, dict) or set(doc) != {"keys"} or not isinstance(doc["keys"], list):
        raise KeyFileError(f"key file {p} is not a key file: expected {{\"keys\": [...]}}")
    keys = []
    for i, entry in enumerate(doc["keys"]):
        problem = _entry_problem(entry)
        if problem is not None:
            raise KeyFileError(f"key file {p}: keys[{i}] {problem}")
        keys.append(ApiKey(entry["name"], Scope(entry["scope"]), entry["sha256"], entry["created_at"],
                           entry.get("revoked_at")))
    return KeyRing(tuple(keys))


def _entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict) or not {"name", "scope", "sha256", "created_at"} <= set(entry) \
            or not set(entry) <= {"name", "scope", "sha256", "created_at", "revoked_at"}:
        return "needs exactly name, scope, sha256, created_at and, once revoked, revoked_at"
    if not isinstance(entry["name"], str) or not NAME.fullmatch(entry["name"]):
        return "has a name that is not 1-64 letters, digits, '.', '_' or '-'"
    if entry["scope"] not in {s.value for s in Scope}:
        return f"has a scope that is not one of {', '.join(s.value for s in Scope)}"
    if not isinstance(entry["sha256"], str) or not _HEX64.fullmatch(entry["sha256"]):
        return "has a sha256 that is not 64 lower-case hex digits"
    if not isinstance(entry["created_at"], str) or not isinstance(entry.get("revoked_at", ""), (str, type(None))):
        return "has a created_at or revoked_at that is not text"
    return None


def create_key(path: str | Path, name: str, scope: Scope) -> str:
    """Add a key named `name` to the key file (created if missing) and return the plain key, which is
    not kept anywhere. A name names one key: a revoked name may not be reused either."""
    if not NAME.fullmatch(name):
        raise KeyFileError(f"a key name is 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit; "
                           f"got {name!r}")
    p = Path(path)
    ring = read_keys(p) if p.exists() else KeyRing(())
    if any(k.name == name for k in ring.keys):
        raise KeyFileError(f"key file {p} already has a key named {name!r}; choose another name")
    key = new_key()
    added = ApiKey(name, scope, key_hash(key), _now())
    _write(p, KeyRing(ring.keys + (added,)))
    return key


def revoke_key(path: str | Path, name: str) -> None:
    p = Path(path)
    ring = read_keys(p)
    if not any(k.name == name and k.revoked_at is None for k in ring.keys):
        raise KeyFileError(f"key file {p} has no live key named {name!r}")
    now = _now()
    _write(p, KeyRing(tuple(ApiKey(k.name, k.scope, k.sha256, k.created_at, now)
                            if k.name == name and k.revoked_at is None else k for k in ring.keys)))


def _write(path: Path, ring: KeyRing) -> None:
    """Replace the key file in one rename, readable by its owner only."""
    doc = {"keys": [{"name": k.name, "scope": k.scope.value, "sha256": k.sha256, "created_at": k.created_at,
                     **({"revoked_at": k.revoked_at} if k.revoked_at else {})} for k in ring.keys]}
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(doc, out, indent=2)
        out.write("\n")
    os.replace(temp, path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
