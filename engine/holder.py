"""The live rule set of a long-running checkout: read it on every request, reload it on deploy.

`reload()` builds the new RuleSet completely (every file read, checked and compiled, the candidate
index built) before one reference assignment makes it current, so a reader sees either the old rule
set or the new one, never half of each. A rule set with any problem does not replace the current one:
RuleFileError is raised and readers keep what they had.

A compiled rule set is hundreds of thousands of small objects (about 21 per promotion) that live as
long as the process. Python's cyclic garbage collector walks every one of them in each full
collection, which a busy checkout triggers every few hundred evaluations: at 10,000 promotions that
is a pause of 100-200 ms in whichever request it lands on (`make bench` shows it in the p99). So, by
default, the holder moves what is alive after a load out of the collector's reach (`gc.freeze()`).
A rule set holds no reference cycles, so a replaced one is still freed, by reference counting, when
the last request using it ends. Pass `exempt_from_gc=False` to leave the collector alone (for
example when the application manages `gc.freeze()` itself before forking workers).
"""
from __future__ import annotations

import gc
import threading
from pathlib import Path

from .model import RuleSet
from .ruleset import load_ruleset


def exempt_from_gc() -> None:
    """Collect what is garbage now, then move everything still alive (a rule set just loaded, the
    application's own long-lived objects) to the permanent generation the collector never scans."""
    gc.collect()
    gc.freeze()


class RuleSetHolder:
    def __init__(self, directory: str | Path, exempt_from_gc: bool = True):
        self._directory = Path(directory)
        self._reloading = threading.Lock()
        self._exempt = exempt_from_gc
        self._current = self._load(self._directory)

    @property
    def current(self) -> RuleSet:
        """The rule set to evaluate with; take it once per request and keep using that one."""
        return self._current

    def reload(self, directory: str | Path | None = None) -> RuleSet:
        """Load `directory` (default: the one last loaded) and make it current; return it."""
        with self._reloading:  # two reloads at once run one after the other
            target = self._directory if directory is None else Path(directory)
            fresh = self._load(target)
            self._current, self._directory = fresh, target
            return fresh

    def _load(self, directory: Path) -> RuleSet:
        ruleset = load_ruleset(directory)
        if self._exempt:
            exempt_from_gc()
        return ruleset
