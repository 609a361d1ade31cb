"""The service's Prometheus metrics: request latency, answers by code, the model serving. No patient ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Upper bounds (seconds) of the request latency histogram, from 0.25 ms.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class ServeMetrics:
    """One registry per app, so tests and reloads never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram("heartrisk_http_request_duration_seconds", "request latency, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.requests = Counter("heartrisk_http_requests_total", "requests, by route and HTTP status",
                                ["route", "status"], registry=r)
        self.errors = Counter("heartrisk_http_errors_total",
                              "refused requests and rejected events, by error code", ["error_code"], registry=r)
        self.predictions = Counter("heartrisk_http_predictions_total", "predictions, by risk level",
                                   ["risk_level"], registry=r)
        self.model = Gauge("heartrisk_http_model_info", "the model version serving (1)", ["version"], registry=r)
        self.reload_failures = Counter("heartrisk_http_model_reload_failures_total",
                                       "model versions refused at reload (the old one kept serving)", registry=r)

    def serving(self, version: str) -> None:
        """Mark ``version`` as the one serving."""
        self.model.clear()
        self.model.labels(version=version).set(1)

    def exposition(self) -> bytes:
        """The text format for ``GET /metrics``."""
        return generate_latest(self.registry)
