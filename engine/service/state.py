"""What one service process serves with: the rule set and the ledger that prices with it (swapped together,
in one assignment, by a reload), the API keys (read again when the key file changes), and the clock.

A reload builds the new rule set completely before it replaces the old one; a rule set with any problem
is refused (RuleFileError) and the old one keeps serving. An order priced before the reload (or before
a restart) can still be cancelled: the ledger keeps every rule set it priced orders with, in its
database; the new ledger is also handed the rule sets this process has already compiled, so that they
are not built again.

With several workers (`Settings.shared`, shared.py), the rule set is the one published to all of them:
a worker starts with it, a reload publishes what it loaded, and `current()`, at the start of every
request, switches to a newer publication before the request takes its rule set. So once a reload has
answered, every request any worker starts is priced with the new version. A worker that cannot build
a publication to its version keeps serving what it had, says so in /readyz (503) and the log, and tries
again only when something new is published.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from sqlalchemy import Engine, text

from ..holder import exempt_from_gc
from ..ledger import Ledger, make_engine
from ..model import RuleSet
from ..ruleset import load_ruleset
from .examples import read_examples
from .keys import KeyFileError, KeyRing, read_keys
from .shared import Published, SharedRules, Stamp, UnbuildablePublication

log = logging.getLogger("promo.service")


@dataclass(frozen=True)
class Settings:
    rules: str
    keys: str
    ledger: str | None = None
    timeout_seconds: float = 10.0
    workers: int = 1
    shared: str | None = None        # with workers > 1: the directory of the published rule set (shared.py)
    metrics: str | None = None       # with workers > 1: prometheus_client's multiprocess directory
    examples: str | None = None      # the preview page's example cases (examples.py); None: none


@dataclass(frozen=True)
class Served:
    """What one request uses, taken once at its start: a reload never changes it under the request."""

    ruleset: RuleSet
    ledger: Ledger | None
    loaded_at: str                   # with several workers: when it was published, the same on each
    generation: int = 0              # with several workers: the publication it is


@dataclass(frozen=True)
class Reloaded:
    previous_version: str            # what was served (with several workers: published) before
    served: Served


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
    def __init__(self, settings: Settings, on_reload: Callable[[str], None] = lambda outcome: None):
        self.settings = settings
        self.keys = KeyFile(settings.keys)
        self.examples = read_examples(settings.examples) if settings.examples else ()   # read once, at start
        self._engine: Engine | None = make_engine(settings.ledger) if settings.ledger else None
        self._reloading = threading.Lock()
        self._on_reload = on_reload          # metrics: a reload's outcome
        self._shared = SharedRules(settings.shared) if settings.shared else None
        self._seen: Stamp | None = None      # current.json as last looked at
        self.behind: str | None = None       # why the published rule set is not the one served
        if self._shared is None:
            self.served = self._serve(_loaded(load_ruleset(settings.rules)), (), _stamp())
            return
        with self._shared.locked():          # the first process publishes; every worker starts on it
            self._seen = self._shared.stamp()
            published = self._shared.read()
            if published is None:
                ruleset = _loaded(load_ruleset(settings.rules))
                published = self._shared.publish(ruleset, _stamp())
                self._seen = self._shared.stamp()
            else:
                ruleset = _loaded(self._shared.build(published))
            self.served = self._serve(ruleset, (), published.published_at, published.generation)

    def _serve(self, ruleset: RuleSet, history: tuple[RuleSet, ...], loaded_at: str, generation: int = 0) -> Served:
        ledger = Ledger(self._engine, ruleset, actor="promo-serve", history=history) if self._engine else None
        return Served(ruleset, ledger, loaded_at, generation)

    def _history(self) -> tuple[RuleSet, ...]:
        ledger = self.served.ledger
        return tuple(ledger.rulesets.values()) if ledger is not None else ()

    def outdated(self) -> bool:
        """Whether another worker may have published since this one last looked (one stat)."""
        return self._shared is not None and self._shared.stamp() != self._seen

    def current(self) -> Served:
        """What a request serves with: with several workers, the latest publication (built first when it
        is new to this worker; call it from a worker thread, since that may take a while)."""
        if self.outdated():
            with self._reloading:
                self._follow()
        return self.served

    def _follow(self) -> None:
        assert self._shared is not None
        stamp = self._shared.stamp()
        if stamp == self._seen:
            return                               # another thread followed while this one waited
        try:
            try:
                published = self._shared.read()
            except (OSError, ValueError, KeyError, TypeError) as exc:   # damaged: never written like this
                self._not_followed(f"the published state cannot be read: {exc}")
                return
            self._switch(published)
        finally:
            # Only now: until the switch is made, other requests must wait for it here, not pass by.
            self._seen = stamp

    def _switch(self, published: Published | None) -> None:
        assert self._shared is not None
        if published is None or published.generation <= self.served.generation:
            return
        if published.version == self.served.ruleset.version:
            self.served = Served(self.served.ruleset, self.served.ledger, published.published_at,
                                 published.generation)
            self.behind = None
            return
        try:
            fresh = _loaded(self._shared.build(published))
        except UnbuildablePublication as exc:
            self._not_followed(f"serves {self.served.ruleset.version}, not the published {published.version}: {exc}")
            return
        self.served = self._serve(fresh, self._history(), published.published_at, published.generation)
        self.behind = None
        self._on_reload("followed")

    def _not_followed(self, why: str) -> None:
        self.behind = why
        log.error("promo serve worker %d: %s", os.getpid(), why)
        self._on_reload("not_followed")

    def reload(self) -> Reloaded:
        """Load the rules directory again and serve it (with several workers: publish it to all).
        RuleFileError: nothing changed, nothing published."""
        with self._reloading:
            if self._shared is None:
                before = self.served
                fresh = _loaded(load_ruleset(self.settings.rules))
                self.served = self._serve(fresh, self._history(), _stamp())
                return Reloaded(before.ruleset.version, self.served)
            with self._shared.locked():          # one reload at a time across the workers
                previous = self._shared.read()
                fresh = _loaded(load_ruleset(self.settings.rules))
                published = self._shared.publish(fresh, _stamp())
                self._seen = self._shared.stamp()
                self.served = self._serve(fresh, self._history(), published.published_at, published.generation)
                self.behind = None
                return Reloaded(previous.version if previous else fresh.version, self.served)

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


def _loaded(ruleset: RuleSet) -> RuleSet:
    """A rule set lives as long as it is served: out of the garbage collector's reach (holder.py says why)."""
    exempt_from_gc()
    return ruleset


def _stamp() -> str:
    return now_utc().isoformat(timespec="seconds")
