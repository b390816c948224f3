"""ServeMetrics: Prometheus counters for GET /metrics, fed by the backend (a PassObserver) and by each request."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Request latency in seconds: an as-you-type completion should answer within a few hundred ms; a large n or a
# queue full of other clients' rows takes seconds.
LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Rows per batched forward pass: up to --max-rows (16 by default), n > 1 requests add several at once.
ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    """One registry per app (tests build several apps in one process; the global registry would reject the
    second set of names). Every method is safe to call from the engine's thread: prometheus_client locks."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("coda_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("coda_request_seconds", "Time from a request's arrival to its answer (a stream's "
                                 "last event)", ["endpoint"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.queue_waiting = Gauge("coda_queue_depth", "Rows waiting for a place in the batch", registry=r)
        self.rows_in_flight = Gauge("coda_rows_in_flight", "Rows being decoded", registry=r)
        self.rows_per_pass = Histogram("coda_rows_per_pass", "Rows in one batched forward pass",
                                       buckets=ROWS_BUCKETS, registry=r)
        self.passes = Counter("coda_passes", "Batched forward passes", registry=r)
        self.pass_tokens = Counter("coda_pass_tokens", "Canvas positions the forward passes computed", registry=r)
        self.tokens_predicted = Counter("coda_tokens_predicted", "Tokens of the completions answered", registry=r)
        self.cache_lookups = Counter("coda_cache_lookups", "Lookups of a client's cached canvas", ["result"],
                                     registry=r)
        self.cache_reused_tokens = Counter("coda_cache_reused_tokens", "Canvas positions taken from a cache",
                                           registry=r)

    # ---- backend.PassObserver --------------------------------------------------------------------------------

    def pass_done(self, rows: int, tokens: int) -> None:
        self.passes.inc()
        self.rows_per_pass.observe(rows)
        self.pass_tokens.inc(tokens)

    def cache_lookup(self, hit: bool, reused_tokens: int) -> None:
        self.cache_lookups.labels("hit" if hit else "miss").inc()
        self.cache_reused_tokens.inc(reused_tokens)

    def queue_depth(self, waiting: int, rows_in_flight: int) -> None:
        self.queue_waiting.set(waiting)
        self.rows_in_flight.set(rows_in_flight)

    # ---- per request -----------------------------------------------------------------------------------------

    def request_done(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def predicted(self, tokens: int) -> None:
        self.tokens_predicted.inc(tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
