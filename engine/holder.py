"""The live rule set of a long-running checkout: read it on every request, reload it on deploy.

`reload()` builds the new RuleSet completely (every file read, checked and compiled, the candidate
index built) before one reference assignment makes it current, so a reader sees either the old rule
set or the new one, never half of each. A rule set with any problem does not replace the current one:
RuleFileError is raised and readers keep what they had.
"""
from __future__ import annotations

import threading
from pathlib import Path

from .model import RuleSet
from .ruleset import load_ruleset


class RuleSetHolder:
    def __init__(self, directory: str | Path):
        self._directory = Path(directory)
        self._reloading = threading.Lock()
        self._current = load_ruleset(self._directory)

    @property
    def current(self) -> RuleSet:
        """The rule set to evaluate with; take it once per request and keep using that one."""
        return self._current

    def reload(self, directory: str | Path | None = None) -> RuleSet:
        """Load `directory` (default: the one last loaded) and make it current; return it."""
        with self._reloading:  # two reloads at once run one after the other
            target = self._directory if directory is None else Path(directory)
            fresh = load_ruleset(target)
            self._current, self._directory = fresh, target
            return fresh
