"""Prometheus metrics of one server, on its own registry (several servers can live in one process).

Labels are bounded by what the server serves: a request for an unknown model is counted
under model="" so that clients cannot grow the label set with made-up names.
"""
from __future__ import annotations

from edgekit._deps import require

SERVED = ("model", "version", "runtime", "device")
# Latency buckets from 100 us (a tiny int8 model) to 10 s (a worker restart under load).
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        prometheus = require("prometheus_client")
        self.registry = prometheus.CollectorRegistry()
        self._latest = prometheus.generate_latest
        self.content_type = prometheus.CONTENT_TYPE_LATEST
        r = self.registry
        self.requests = prometheus.Counter("edgekit_requests", "Inference requests answered", [*SERVED, "protocol", "code"], registry=r)
        self.errors = prometheus.Counter("edgekit_request_errors", "Requests that failed, by kind", [*SERVED, "kind"], registry=r)
        self.latency = prometheus.Histogram("edgekit_request_latency_seconds", "Request latency, body read to response",
                                            SERVED, buckets=BUCKETS, registry=r)
        self.inflight = prometheus.Gauge("edgekit_inflight_requests", "Requests being served now", SERVED, registry=r)
        self.batch_rows = prometheus.Histogram("edgekit_batch_rows", "Rows per runtime call (dynamic batching)",
                                               SERVED, buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.input_values = prometheus.Counter("edgekit_input_values", "Input values received", ["model", "version", "input"], registry=r)
        self.outside = prometheus.Counter("edgekit_input_values_outside_calibration",
                                          "Input values outside the calibrated range (int8 saturates there)",
                                          ["model", "version", "input"], registry=r)
        self.drift = prometheus.Gauge("edgekit_input_drift_ratio",
                                      "Share of input values outside the calibrated range, over the recent window",
                                      ["model", "version", "input"], registry=r)
        self.restarts = prometheus.Counter("edgekit_worker_restarts", "Worker processes replaced after a crash or hang",
                                           ["model", "version", "runtime", "device"], registry=r)
        self.versions = prometheus.Gauge("edgekit_model_version_available", "1 while a version is loaded and serving",
                                         ["model", "version", "state"], registry=r)

    def render(self) -> bytes:
        return self._latest(self.registry)
