"""The service's metrics, in the Prometheus text format (prometheus_client): requests by route and
status, their latency, refusals by reason, rule-set reloads by outcome. One registry per application,
not the library's global one, so two applications in one process (the tests) count apart. Routes are
counted by their template (`/v1/checkouts/{order_id}/commit`), never by the path a client sent, so a
client cannot grow the metrics without bound.

With several workers (`promo serve --workers N`), prometheus_client's multiprocess mode: every worker
writes its counts to files in the directory PROMETHEUS_MULTIPROC_DIR names (set by `promo serve` before
any worker starts), and a scrape, whichever worker answers it, reads them all and adds them up
(`MultiProcessCollector`), so /metrics counts the requests of every worker, those of a worker that has
since exited included."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import values
from prometheus_client.multiprocess import MultiProcessCollector

from .shared import METRICS_VARIABLE

MEDIA_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Metrics:
    multiprocess: str | None = None     # the directory every worker counts in, or None: this process only
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        scraped = r
        if self.multiprocess is not None:
            if os.environ.get(METRICS_VARIABLE) != self.multiprocess:
                raise RuntimeError(f"{METRICS_VARIABLE} must be {self.multiprocess} before prometheus_client "
                                   f"is imported, or the workers' counts are not shared")
            if values.ValueClass is values.MutexValue:
                raise RuntimeError(f"prometheus_client was imported before {METRICS_VARIABLE} was set: "
                                   f"this process would count apart from the other workers")
            scraped = CollectorRegistry()
            MultiProcessCollector(scraped, path=self.multiprocess)
        object.__setattr__(self, "scraped", scraped)
        object.__setattr__(self, "requests", Counter(
            "promo_requests", "HTTP requests answered", ["method", "route", "status"], registry=r))
        object.__setattr__(self, "latency", Histogram(
            "promo_request_seconds", "Time to answer a request", ["route"], buckets=LATENCY_BUCKETS, registry=r))
        object.__setattr__(self, "refusals", Counter(
            "promo_refusals", "Requests refused, by reason code", ["reason"], registry=r))
        object.__setattr__(self, "reloads", Counter(
            "promo_reloads", "Rule-set reloads, by outcome", ["outcome"], registry=r))

    def observe(self, method: str, route: str, status: int, seconds: float, reasons: tuple[str, ...]) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        for reason in reasons:
            self.refusals.labels(reason).inc()

    def reloaded(self, outcome: str) -> None:
        self.reloads.labels(outcome).inc()

    def text(self) -> bytes:
        return generate_latest(self.scraped)
