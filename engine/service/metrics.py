"""The service's metrics, in the Prometheus text format (prometheus_client): requests by route and
status, their latency, refusals by reason, rule-set reloads by outcome. One registry per application,
not the library's global one, so two applications in one process (the tests) count apart. Routes are
counted by their template (`/v1/checkouts/{order_id}/commit`), never by the path a client sent, so a
client cannot grow the metrics without bound."""
from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

MEDIA_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
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
        return generate_latest(self.registry)
