"""What one service process serves with: the rule set and the ledger that prices with it (swapped together,
in one assignment, by a reload), the API keys (read again when the key file changes), and the clock.

A reload builds the new rule set completely before it replaces the old one; a rule set with any problem
is refused (RuleFileError) and the old one keeps serving. An order priced before the reload (or before
a restart) can still be cancelled: the ledger keeps every rule set it priced orders with, in its
database; the new ledger is also handed the rule sets this process has already compiled, so that they
are not built again.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine, text

from ..holder import RuleSetHolder
from ..ledger import Ledger, make_engine
from ..model import RuleSet
from .keys import KeyFileError, KeyRing, read_keys


@dataclass(frozen=True)
class Settings:
    rules: str
    keys: str
    ledger: str | None = None
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class Served:
    """What one request uses, taken once at its start: a reload never changes it under the request."""

    ruleset: RuleSet
    ledger: Ledger | None
    loaded_at: str


def now_utc() -> datetime:
    """The server's clock: it decides `now` for every checkout-scoped request."""
    return datetime.now(timezone.utc)


class KeyFile:
    """The key file, read again when its size or modification time changes (so `promo keys revoke` takes
    effect without a restart). A key file that has become unreadable keeps the keys last read."""

    def __init__(self, path: str):
        self._path = Path(path)
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._ring = read_keys(self._path)

    def _stat(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self._path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    @property
    def ring(self) -> KeyRing:
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            with self._lock:
                try:
                    self._ring = read_keys(self._path)
                except KeyFileError:
                    pass   # a half-written or broken file: the keys read last stay in force
                self._stamp = stamp
        return self._ring


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.keys = KeyFile(settings.keys)
        self._holder = RuleSetHolder(settings.rules)
        self._engine: Engine | None = make_engine(settings.ledger) if settings.ledger else None
        self._reloading = threading.Lock()
        self.served = Served(self._holder.current, self._ledger(self._holder.current, ()), _stamp())

    def _ledger(self, ruleset: RuleSet, history: tuple[RuleSet, ...]) -> Ledger | None:
        if self._engine is None:
            return None
        return Ledger(self._engine, ruleset, actor="promo-serve", history=history)

    def reload(self) -> tuple[Served, Served]:
        """Load the rules directory again and serve it; (before, after). RuleFileError: nothing changed."""
        with self._reloading:
            before = self.served
            fresh = self._holder.reload()
            history = tuple(before.ledger.rulesets.values()) if before.ledger is not None else ()
            after = Served(fresh, self._ledger(fresh, history), _stamp())
            self.served = after
            return before, after

    def ledger_reachable(self) -> bool:
        if self._engine is None:
            return True
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure to reach the database means "not ready"
            return False
        return True

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _stamp() -> str:
    return now_utc().isoformat(timespec="seconds")
