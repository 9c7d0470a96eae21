"""`promo diff --workers N` / `--scheduler ADDRESS`: the backtest on a Dask cluster.

The client reads the corpus as lines (corpus.read_lines: split and numbered, not decoded) and cuts
them into chunks; each chunk is decoded, replayed against both rule sets and summarised on a worker
(`summarise_chunk`), and the client merges the chunks' DiffSummaries as they arrive. At most a few
chunks per worker thread are in flight, so the client's memory stays flat however long the corpus:
DiffSummary.merge is associative and order-independent, so the result is the one-pass result.

The rule sets travel once: their files' bytes (`RuleSet.sources`) are scattered to every worker
(`broadcast=True`), and each worker process builds a rule set once from them and keeps it, keyed by
its version, for every chunk after (a built RuleSet holds compiled conditions, which do not pickle).

With on_error "stop", a chunk stops at its first bad line and returns it; the client stops reading,
cancels the chunks after it, waits for the chunks before it (one of them may hold an earlier bad line)
and raises the earliest, with its line number, as the in-process run would.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping

from .backtest import DiffSummary, summarise
from .corpus import CorpusError, parse_line
from .model import RuleSet
from .ruleset import build_ruleset

CHUNK_LINES = 500            # about 0.5 MB of generated carts; a second of one worker's time
IN_FLIGHT_PER_THREAD = 3     # enough to keep a worker busy while the client reads the next chunk
_KEPT_RULESETS = 4

Line = tuple[int, bytes] | CorpusError
_built: dict[str, RuleSet] = {}      # per worker process: version -> the rule set built from its files


# Dask keeps the last N messages of every connection (and scheduler transitions) for debugging, 1,000 by
# default: with chunks of corpus lines in those messages, that is hundreds of MiB held by the client (and,
# for a local cluster, its in-process scheduler). The backtest keeps none, so memory stays flat.
CLIENT_CONFIG = {"distributed.admin.low-level-log-length": 0}


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
                yield client


def local_cluster(workers: int) -> Any:
    """A cluster of `workers` processes on this machine, one thread each (evaluate() holds the GIL)."""
    from distributed import LocalCluster
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


def diff_on_cluster(client: Any, base: RuleSet, head: RuleSet, lines: Iterable[Line], *, on_error: str = "stop",
                    top_n: int, source: str, chunk_lines: int = CHUNK_LINES,
                    advance: Callable[[int], None] | None = None) -> DiffSummary:
    """The DiffSummary of the corpus lines, computed chunk by chunk on the client's cluster. `advance`
    is told how many lines each finished chunk held (the progress bar)."""
    from distributed import as_completed

    # hash=False: each run its own keys. Content-hashed keys are shared with an earlier run on the same
    # client, whose release of them can reach the scheduler after this run's scatter ("lost dependencies").
    base_files, head_files = client.scatter([dict(base.sources), dict(head.sources)], broadcast=True, hash=False)
    threads = max(sum(client.nthreads().values()), 1)
    chunks = enumerate(_chunks(lines, chunk_lines))
    pending: dict[Any, tuple[int, int]] = {}      # future -> (chunk number, lines in it)
    running = as_completed()

    def submit() -> bool:
        number, chunk = next(chunks, (None, None))
        if chunk is None:
            return False
        future = client.submit(summarise_chunk, base_files, head_files, base.version, head.version, chunk,
                               on_error, top_n, source, pure=False)
        pending[future] = (number, len(chunk))
        running.add(future)
        return True

    summary, first_error, stop_after = DiffSummary(top_n=top_n), None, None
    try:
        for _ in range(threads * IN_FLIGHT_PER_THREAD):
            if not submit():
                break
        while pending:
            future = next(running)
            if future not in pending:         # cancelled after an earlier chunk's bad line
                continue
            number, size = pending.pop(future)
            part, error = future.result()
            future.release()
            summary = summary.merge(part)
            if advance is not None:
                advance(size)
            if error is not None:
                if first_error is None or error.line < first_error.line:
                    first_error = error
                stop_after = number if stop_after is None else min(stop_after, number)
                later = [f for f, (n, _) in pending.items() if n > stop_after]
                client.cancel(later)
                for f in later:
                    del pending[f]
            elif stop_after is None:
                submit()
    finally:
        if pending:
            client.cancel(list(pending))
    if first_error is not None:
        raise first_error
    return summary


def summarise_chunk(base_files: Mapping[str, bytes], head_files: Mapping[str, bytes], base_version: str,
                    head_version: str, chunk: list[Line], on_error: str, top_n: int,
                    source: str) -> tuple[DiffSummary, CorpusError | None]:
    """Runs on a worker: one chunk's summary, and with on_error "stop" the chunk's first bad line (the
    summary then covers the lines before it)."""
    base, head = _ruleset(base_files, base_version), _ruleset(head_files, head_version)
    entries = (item if isinstance(item, CorpusError) else parse_line(item[1], source, item[0]) for item in chunk)
    return summarise(base, head, entries, on_error=on_error, top_n=top_n, source=source)


def _ruleset(files: Mapping[str, bytes], version: str) -> RuleSet:
    ruleset = _built.get(version)
    if ruleset is None:
        if len(_built) >= _KEPT_RULESETS:
            _built.clear()
        ruleset = _built[version] = build_ruleset(files)
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
