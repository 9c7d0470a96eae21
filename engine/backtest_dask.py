"""`promo diff --workers N` / `--scheduler ADDRESS`: the backtest on a Dask cluster.

Two ways to get the corpus to the workers, with the same result (the one-process result):

* The client reads it (the default): as lines (corpus.read_lines: split and numbered, not decoded), cut
  into chunks of CHUNK_LINES; each chunk is decoded, replayed against both rule sets and summarised on a
  worker (`summarise_chunk`). Every byte of the corpus goes through the client, which bounds the run.
* The workers read it (`--read-on-workers`, `diff_on_ranges`): the client only takes the file's size and
  cuts it into byte ranges of about RANGE_BYTES (`cut_ranges`); a range holds the lines that start in it
  (corpus.read_range). Phase 1, on the workers: each range's lines are counted (`count_range`, newlines
  at disk speed) and the client sums the counts into each range's first line number (`number_ranges`),
  so that lines keep their numbers. Phase 2: each range is read, decoded, replayed and summarised on a
  worker (`summarise_range`). A worker that cannot open the path, or sees a file of another size or a
  range of another line count than the client and phase 1 did, returns the refusal as its result
  (`CorpusUnreadable`, corpus.CorpusChanged), which the client raises.

Either way the client merges the parts' DiffSummaries as they arrive, with at most IN_FLIGHT_PER_THREAD
parts per worker thread in flight, so its memory stays flat however long the corpus: DiffSummary.merge
is associative and order-independent, so the result is the one-pass result.

The rule sets travel once: their files' bytes (`RuleSet.sources`) are scattered to every worker
(`broadcast=True`), and each worker process builds a rule set once from them and keeps it, keyed by
its version, for every part after (a built RuleSet holds compiled conditions, which do not pickle).

With on_error "stop", a part stops at its first bad line and returns it; the client submits no more
parts, cancels the parts after it, waits for the parts before it (one of them may hold an earlier bad
line) and raises the earliest, with its line number, as the in-process run would.
"""
from __future__ import annotations

from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

from .backtest import DiffSummary, summarise
from .corpus import CorpusChanged, CorpusError, count_line_starts, parse_line, read_range
from .model import RuleSet
from .holder import exempt_from_gc
from .ruleset import build_ruleset

CHUNK_LINES = 500            # about 0.5 MB of generated carts; a second of one worker's time
IN_FLIGHT_PER_THREAD = 3     # enough to keep a worker busy while the client reads the next chunk
RANGE_BYTES = 8 * 1024 * 1024    # about 9,000 generated carts: some 13 s of one worker, 10 ms to count
MIN_RANGE_BYTES = 64 * 1024      # smaller ranges would cost more in tasks than they share out
RANGES_PER_THREAD = 3            # a small corpus is still cut so that every worker thread has work
_KEPT_RULESETS = 4

Line = tuple[int, bytes] | CorpusError
Call = tuple[int, Callable[..., Any], tuple]      # (lines it covers, function, arguments)
_built: dict[str, RuleSet] = {}      # per worker process: version -> the rule set built from its files


# Dask keeps the last N messages of every connection (and scheduler transitions) for debugging, 1,000 by
# default: with chunks of corpus lines in those messages, that is hundreds of MiB held by the client (and,
# for a local cluster, its in-process scheduler). The backtest keeps none, so memory stays flat.
CLIENT_CONFIG = {"distributed.admin.low-level-log-length": 0}


@dataclass(frozen=True)
class CorpusRange:
    """Bytes [start, end) of the corpus file: the `lines` lines that start there (blank ones too), the
    first of them numbered `first_line`."""

    start: int
    end: int
    first_line: int
    lines: int


@dataclass(frozen=True)
class CorpusPlan:
    """The corpus file as the workers read it: its absolute path, its size when the run began, and its
    ranges, in file order."""

    path: str
    size: int
    ranges: tuple[CorpusRange, ...]

    @property
    def lines(self) -> int:
        return sum(r.lines for r in self.ranges)


class CorpusUnreadable(Exception):
    """A worker could not open or read the corpus at `path` (not on storage it shares, deleted, not
    allowed): `reason` says why, in the system's words."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"the workers cannot read {path}: {reason}")

    def __reduce__(self) -> tuple:
        return (CorpusUnreadable, (self.path, self.reason))


class SchedulerUnreachable(ConnectionError):
    """--scheduler names no scheduler that answers (within 10 s)."""


@contextmanager
def cluster_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client for the run: of an existing cluster at `scheduler`, or of a local cluster of
    `workers` processes started here and shut down however the run ends."""
    import dask
    from distributed import Client
    with dask.config.set(CLIENT_CONFIG):
        if scheduler is not None:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise SchedulerUnreachable(f"{scheduler}: cannot connect: {exc}") from None
            with client:
                yield client
        else:
            with local_cluster(workers or 1) as cluster, Client(cluster) as client:
                client.run(_quiet_shutdown)
                yield client


def local_cluster(workers: int) -> Any:
    """A cluster of `workers` processes on this machine, one thread each (evaluate() holds the GIL). No
    dashboard; the scheduler's HTTP server (health checks) takes any free port, rather than warning on
    standard error when another cluster holds 8787."""
    from distributed import LocalCluster
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                        scheduler_kwargs={"dashboard_address": ":0"})


def _quiet_shutdown() -> None:
    """In a worker of the local cluster: no warning on standard error when the cluster is shut down while
    a part still runs (after a bad line stopped the run, its later parts are cancelled, but a part already
    running finishes only with the worker)."""
    import logging
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)


def diff_on_cluster(client: Any, base: RuleSet, head: RuleSet, lines: Iterable[Line], *, on_error: str = "stop",
                    top_n: int, source: str, chunk_lines: int = CHUNK_LINES,
                    advance: Callable[[int], None] | None = None) -> DiffSummary:
    """The DiffSummary of the corpus lines (read here, by the client), computed chunk by chunk on the
    client's cluster. `advance` is told how many lines each finished chunk held (the progress bar)."""
    base_files, head_files = _scatter_rules(client, base, head)
    calls = ((len(chunk), summarise_chunk, (base_files, head_files, base.version, head.version, chunk, on_error,
                                            top_n, source)) for chunk in _chunks(lines, chunk_lines))
    return _merged(client, calls, top_n, advance)


def plan_ranges(client: Any, path: str, size: int, *, range_bytes: int | None = None,
                min_range_bytes: int | None = None) -> CorpusPlan:
    """Phase 1 of --read-on-workers: the corpus file at `path` (absolute, the same on every worker) of
    `size` bytes cut into ranges, whose lines the workers count; each range's first line number is the
    sum of the counts before it."""
    cuts = cut_ranges(size, _threads(client), range_bytes, min_range_bytes)
    counts = [0] * len(cuts)
    calls = ((0, count_range, (path, start, end, size)) for start, end in cuts)
    with _Tasks(client, calls) as tasks:
        for number, _, result in tasks:
            counts[number] = _raised(result)
    return CorpusPlan(path, size, number_ranges(cuts, counts))


def diff_on_ranges(client: Any, base: RuleSet, head: RuleSet, plan: CorpusPlan, *, on_error: str = "stop",
                   top_n: int, source: str, advance: Callable[[int], None] | None = None) -> DiffSummary:
    """Phase 2 of --read-on-workers: the DiffSummary of the corpus, each range read, replayed and
    summarised by a worker. `advance` is told how many lines each finished range held."""
    base_files, head_files = _scatter_rules(client, base, head)
    calls = ((part.lines, summarise_range, (base_files, head_files, base.version, head.version, plan.path, plan.size,
                                            part, on_error, top_n, source)) for part in plan.ranges if part.lines)
    return _merged(client, calls, top_n, advance)


def cut_ranges(size: int, threads: int, range_bytes: int | None = None,
               min_range_bytes: int | None = None) -> tuple[tuple[int, int], ...]:
    """A file of `size` bytes cut into (start, end) ranges of about `range_bytes` (RANGE_BYTES), and
    into at least RANGES_PER_THREAD a worker thread when that leaves none under `min_range_bytes`
    (MIN_RANGE_BYTES). The cuts fall anywhere: a range holds the lines that start in it."""
    range_bytes = range_bytes or RANGE_BYTES
    min_range_bytes = min_range_bytes or MIN_RANGE_BYTES
    if size <= 0:
        return ()
    parts = max(-(-size // range_bytes), min(threads * RANGES_PER_THREAD, size // min_range_bytes), 1)
    cuts = [size * i // parts for i in range(parts + 1)]
    return tuple(zip(cuts, cuts[1:]))


def number_ranges(cuts: Iterable[tuple[int, int]], counts: Iterable[int]) -> tuple[CorpusRange, ...]:
    """The ranges with their first line numbers: 1 plus the lines of the ranges before."""
    out, first = [], 1
    for (start, end), lines in zip(cuts, counts, strict=True):
        out.append(CorpusRange(start, end, first, lines))
        first += lines
    return tuple(out)


def _merged(client: Any, calls: Iterable[Call], top_n: int, advance: Callable[[int], None] | None) -> DiffSummary:
    """The parts' summaries merged as they finish; with a bad line in a part (on_error "stop"), no more
    parts are started, the later ones are cancelled and the earliest bad line is raised."""
    summary, first_error = DiffSummary(top_n=top_n), None
    with _Tasks(client, calls) as tasks:
        for number, lines, result in tasks:
            part, error = _raised(result)
            summary = summary.merge(part)
            if advance is not None:
                advance(lines)
            if error is not None:
                if first_error is None or error.line < first_error.line:
                    first_error = error
                tasks.stop_after(number)
    if first_error is not None:
        raise first_error
    return summary


class _Tasks:
    """Calls run on the cluster in their order, at most IN_FLIGHT_PER_THREAD a worker thread at a time,
    iterated as (number, lines, result) as each finishes. `stop_after(n)` starts no more and cancels the
    calls after the n-th; leaving the `with` cancels whatever is still running."""

    def __init__(self, client: Any, calls: Iterable[Call]):
        from distributed import as_completed
        self.client, self.calls = client, enumerate(calls)
        self.pending: dict[Any, tuple[int, int]] = {}      # future -> (call number, lines)
        self.running = as_completed()
        self.stopped_after: int | None = None

    def __enter__(self) -> "_Tasks":
        for _ in range(_threads(self.client) * IN_FLIGHT_PER_THREAD):
            if not self._submit():
                break
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pending:
            self.client.cancel(list(self.pending))

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        while self.pending:
            future = next(self.running)
            if future not in self.pending:         # cancelled by stop_after
                continue
            number, lines = self.pending.pop(future)
            result = future.result()
            future.release()
            yield number, lines, result
            if self.stopped_after is None:
                self._submit()

    def stop_after(self, number: int) -> None:
        self.stopped_after = number if self.stopped_after is None else min(self.stopped_after, number)
        later = [f for f, (n, _) in self.pending.items() if n > self.stopped_after]
        self.client.cancel(later)
        for f in later:
            del self.pending[f]

    def _submit(self) -> bool:
        number, call = next(self.calls, (None, None))
        if call is None:
            return False
        lines, function, args = call
        future = self.client.submit(function, *args, pure=False)
        self.pending[future] = (number, lines)
        self.running.add(future)
        return True


def _scatter_rules(client: Any, base: RuleSet, head: RuleSet) -> list[Any]:
    # hash=False: each run its own keys. Content-hashed keys are shared with an earlier run on the same
    # client, whose release of them can reach the scheduler after this run's scatter ("lost dependencies").
    return client.scatter([dict(base.sources), dict(head.sources)], broadcast=True, hash=False)


def _threads(client: Any) -> int:
    return max(sum(client.nthreads().values()), 1)


def _raised(result: Any) -> Any:
    """A worker's result, or the refusal it returned raised here."""
    if isinstance(result, (CorpusUnreadable, CorpusChanged)):
        raise result
    return result


def summarise_chunk(base_files: Mapping[str, bytes], head_files: Mapping[str, bytes], base_version: str,
                    head_version: str, chunk: list[Line], on_error: str, top_n: int,
                    source: str) -> tuple[DiffSummary, CorpusError | None]:
    """Runs on a worker: one chunk's summary, and with on_error "stop" the chunk's first bad line (the
    summary then covers the lines before it)."""
    return _summarised(base_files, head_files, base_version, head_version, chunk, on_error, top_n, source)


def count_range(path: str, start: int, end: int, size: int) -> int | CorpusUnreadable | CorpusChanged:
    """Runs on a worker: how many lines start in the range, or why the file cannot be counted."""
    try:
        return count_line_starts(path, start, end, size=size)
    except CorpusChanged as exc:
        return exc
    except OSError as exc:
        return _unreadable(path, exc)


def summarise_range(base_files: Mapping[str, bytes], head_files: Mapping[str, bytes], base_version: str,
                    head_version: str, path: str, size: int, part: CorpusRange, on_error: str, top_n: int,
                    source: str) -> tuple[DiffSummary, CorpusError | None] | CorpusUnreadable | CorpusChanged:
    """Runs on a worker: one range's summary (as summarise_chunk's), or why the file cannot be read.
    Refusals are returned, not raised, so that Dask neither logs them nor wraps them."""
    try:
        with closing(read_range(path, part.start, part.end, part.first_line, source, size=size,
                                lines=part.lines)) as lines:
            return _summarised(base_files, head_files, base_version, head_version, lines, on_error, top_n, source)
    except CorpusChanged as exc:
        return exc
    except OSError as exc:
        return _unreadable(path, exc)


def _summarised(base_files: Mapping[str, bytes], head_files: Mapping[str, bytes], base_version: str,
                head_version: str, lines: Iterable[Line], on_error: str, top_n: int,
                source: str) -> tuple[DiffSummary, CorpusError | None]:
    base, head = _ruleset(base_files, base_version), _ruleset(head_files, head_version)
    entries = (item if isinstance(item, CorpusError) else parse_line(item[1], source, item[0]) for item in lines)
    return summarise(base, head, entries, on_error=on_error, top_n=top_n, source=source)


def _unreadable(path: str, exc: OSError) -> CorpusUnreadable:
    return CorpusUnreadable(path, exc.strerror or type(exc).__name__)


def _ruleset(files: Mapping[str, bytes], version: str) -> RuleSet:
    """The rule set of these files, built once per worker process and kept out of the garbage collector's
    reach (holder.exempt_from_gc: a full collection would walk every compiled object of it, again and again,
    while the worker evaluates)."""
    ruleset = _built.get(version)
    if ruleset is None:
        if len(_built) >= _KEPT_RULESETS:
            _built.clear()
        ruleset = _built[version] = build_ruleset(files)
        exempt_from_gc()
    return ruleset


def _chunks(lines: Iterable[Line], size: int) -> Iterator[list[Line]]:
    chunk: list[Line] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
