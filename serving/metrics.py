"""Prometheus metrics of the service, besides BentoML's request counters and latency histograms."""

from __future__ import annotations

from serving import runtime
from serving.scorer import RequestStats


class ServiceMetrics:
    """Prometheus metrics of the service, besides BentoML's request metrics (one set per process).

    Created when the app is built, in the worker, after BentoML has set up Prometheus'
    multiprocess directory, so ``prometheus_client`` is imported only then.
    """

    _instance: ServiceMetrics | None = None

    @classmethod
    def get(cls) -> ServiceMetrics:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.items = Counter("activity_scorer_items", "Activities scored (items of /score, candidates of /rank)",
                             ["endpoint"])
        self.unseen = Counter("activity_scorer_unseen_values", "Category values not seen in training (drift)",
                              ["feature"])
        self.refused = Counter("activity_scorer_refused", "Requests refused (bad input, limits, auth)",
                               ["endpoint", "status"])
        self.batch_size = Histogram("activity_scorer_batch_requests", "/score requests scored together in one call",
                                    buckets=(1, 2, 4, 8, 16, 32))
        self.gc_pause = Histogram("activity_scorer_gc_pause_seconds", "Garbage-collection pauses by generation",
                                  ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
        runtime.GcWatch(lambda generation, seconds: self.gc_pause.labels(generation=str(generation)).observe(seconds)
                        ).install()

    def observe(self, path: str, status: int, stats: RequestStats) -> None:
        if stats.items:
            self.items.labels(endpoint=path).inc(stats.items)
        for feature, n in stats.unseen.items():
            self.unseen.labels(feature=feature).inc(n)
        if 400 <= status < 500:
            self.refused.labels(endpoint=path, status=str(status)).inc()
