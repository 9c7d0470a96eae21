"""What the workers of one `promo serve --workers N` share: the rule set published to all of them, and
the directory their metrics are counted in. Both live in a private directory that `promo serve` makes
before the workers start and removes when it exits (`Workers`).

The published rule set is two things in `rules/`: a snapshot of the rule files a worker built it from
(`<version hash>.pack`, the ledger's archive format, written once and never changed), then
`current.json`, `{"generation", "version", "published_at"}`, written to a temporary file and renamed
over the old one, so a reader sees the old state or the new one, never half of each. The snapshot is
written first, so a state that names a version always finds its files. Publishing holds an exclusive
lock (`flock` on `rules/lock`), so two reloads answered by two workers at once are put one after the
other and generations only grow.

A worker follows by looking at `current.json` at the start of each request (one `stat`; the file is
read only when its inode, size or modification time changed) and, when it names a newer generation,
building the snapshot: from the publisher's bytes, not from the rules directory, which may have changed
since. A snapshot that no longer builds to the version it is filed under is refused and the worker
keeps what it serves (state.py says what it does then).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from ..ledger.archive import pack, unpack
from ..model import RuleSet
from ..ruleset import build_ruleset

METRICS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"   # prometheus_client's multiprocess mode reads it at import
STATE_FILE = "current.json"

Stamp = tuple[int, int, int]   # inode, size, modification time (ns) of current.json


class UnbuildablePublication(RuntimeError):
    """The published rule set cannot be built as published: the worker keeps what it serves."""


@dataclass(frozen=True)
class Published:
    generation: int
    version: str
    published_at: str


class SharedRules:
    """The rule set published to every worker, in `directory` (made by Workers)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._state = self.directory / STATE_FILE

    def stamp(self) -> Stamp | None:
        """Cheap enough for every request: a changed stamp means another worker may have published."""
        try:
            info = os.stat(self._state)
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns

    def read(self) -> Published | None:
        try:
            doc = json.loads(self._state.read_bytes())
        except FileNotFoundError:
            return None
        return Published(int(doc["generation"]), str(doc["version"]), str(doc["published_at"]))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Held while a worker reads the state, loads the rules directory and publishes."""
        with open(self.directory / "lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def publish(self, ruleset: RuleSet, published_at: str) -> Published:
        """Make `ruleset` the one every worker serves; hold `locked()` around the read that decided it."""
        before = self.read()
        snapshot = self._snapshot(ruleset.version)
        if not snapshot.exists():
            _write_atomically(snapshot, pack(ruleset.sources))
        published = Published((before.generation if before else 0) + 1, ruleset.version, published_at)
        _write_atomically(self._state, json.dumps(published.__dict__, sort_keys=True).encode())
        return published

    def build(self, published: Published) -> RuleSet:
        """The published rule set, built from the publisher's snapshot; UnbuildablePublication when the
        snapshot is missing or unreadable, no longer loads, or builds to another version than the one it
        is published as."""
        try:
            files: Mapping[str, bytes] = unpack(self._snapshot(published.version).read_bytes())
            ruleset = build_ruleset({f"published/{name}": data for name, data in files.items()})
        except (OSError, ValueError, KeyError, TypeError, zlib.error) as exc:   # RuleFileError is a ValueError
            raise UnbuildablePublication(f"the published rule set {published.version} does not build: "
                                         f"{str(exc).splitlines()[0]}") from None
        if ruleset.version != published.version:
            raise UnbuildablePublication(f"the published rule set builds to {ruleset.version}, "
                                         f"not {published.version}")
        return ruleset

    def _snapshot(self, version: str) -> Path:
        return self.directory / f"{version.partition(':')[2] or version}.pack"


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class Workers:
    """The private directory of one `promo serve --workers N` run: `rules/` (SharedRules) and `metrics/`
    (prometheus_client's multiprocess files). Entering sets PROMETHEUS_MULTIPROC_DIR, which must happen
    before prometheus_client is first imported in a worker (the workers are new processes that inherit
    it); leaving removes the directory and puts the variable back as it was."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="promo-serve-"))   # mode 0700: this user's only
        self.rules = self.root / "rules"
        self.metrics = self.root / "metrics"
        self._previous: str | None = None

    def __enter__(self) -> "Workers":
        self.rules.mkdir()
        self.metrics.mkdir()
        self._previous = os.environ.get(METRICS_VARIABLE)
        os.environ[METRICS_VARIABLE] = str(self.metrics)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is None:
            os.environ.pop(METRICS_VARIABLE, None)
        else:
            os.environ[METRICS_VARIABLE] = self._previous
        shutil.rmtree(self.root, ignore_errors=True)
