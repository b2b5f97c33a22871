"""What a benchmark saw, and how it was judged: the data behind every report.

Plain dataclasses with `to_dict`, so reports (JSON, Markdown, JUnit, HTML) and the
console table all read the same figures. A figure that was not measured is None,
with the reason in `skipped` or `notes` — never a made-up number.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

REPORT_SCHEMA = "edgekit.report/1"


# What report.json keeps of the timings unless --raw-samples (README: "Latency in the report").
SAMPLES_KEPT = 200  # the first timings, in order: warm-up drift and periodic stalls show there
QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)
HISTOGRAM_BINS = 40  # log-spaced from min to max
OUTLIERS_KEPT = 200  # an even selection of the timings outside [p1, p99] (the HTML box plot's fliers)


@dataclass
class LatencyStats:
    """Steady-state latency of single inferences, in milliseconds.

    Every figure is computed from all `runs` timings. Of the timings themselves the report
    keeps a bounded sample: `samples_ms` holds the first SAMPLES_KEPT (all of them with
    `raw=True`, i.e. `edgekit bench --raw-samples`), beside fixed quantiles, a histogram
    and the outliers.
    """

    runs: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    throughput_ips: float  # inferences per second at the measured batch size
    cv: float  # coefficient of variation (std / mean): a noisy host shows here
    samples_ms: list[float] = field(default_factory=list, repr=False)  # the first SAMPLES_KEPT timings, or all
    quantiles_ms: dict[str, float] = field(default_factory=dict, repr=False)  # "p1" ... "p99.9"
    histogram: dict[str, list[float]] = field(default_factory=dict, repr=False)  # edges_ms (bins + 1), counts
    outliers_ms: list[float] = field(default_factory=list, repr=False)  # sorted, outside [p1, p99]

    @classmethod
    def from_ns(cls, timings_ns: list[int], batch: int = 1, raw: bool = False) -> LatencyStats:
        ms = np.asarray(timings_ns, dtype=np.float64) / 1e6
        mean = float(ms.mean())
        p50, p90, p95, p99 = (float(v) for v in np.percentile(ms, [50, 90, 95, 99]))
        quantiles = np.percentile(ms, QUANTILES)
        p1 = quantiles[0]
        outliers = np.sort(ms[(ms < p1) | (ms > p99)])
        if outliers.size > OUTLIERS_KEPT:
            outliers = outliers[np.linspace(0, outliers.size - 1, OUTLIERS_KEPT).astype(int)]
        return cls(
            runs=len(ms),
            mean_ms=mean,
            std_ms=float(ms.std()),
            min_ms=float(ms.min()),
            p50_ms=p50,
            p90_ms=p90,
            p95_ms=p95,
            p99_ms=p99,
            max_ms=float(ms.max()),
            throughput_ips=batch * 1000.0 / mean if mean > 0 else 0.0,
            cv=float(ms.std() / mean) if mean > 0 else 0.0,
            samples_ms=_rounded(ms if raw else ms[:SAMPLES_KEPT]),
            quantiles_ms={f"p{q:g}": round(float(v), 5) for q, v in zip(QUANTILES, quantiles)},
            histogram=_histogram(ms),
            outliers_ms=_rounded(outliers),
        )

    @property
    def all_samples(self) -> bool:
        """True when `samples_ms` holds every timing (raw, or a run of at most SAMPLES_KEPT)."""
        return len(self.samples_ms) == self.runs


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 5) for v in values]


def _histogram(ms: np.ndarray) -> dict[str, list[float]]:
    low, high = float(ms.min()), float(ms.max())
    if low <= 0 or high <= low:  # one value (or a clock that read 0): one bin
        edges = np.array([low, high if high > low else low + 1e-6])
    else:
        edges = np.geomspace(low, high, HISTOGRAM_BINS + 1)
    counts, _ = np.histogram(ms, bins=edges)
    return {"edges_ms": _rounded(edges), "counts": [int(c) for c in counts]}


@dataclass
class Measurement:
    """Everything measured for one artifact on one backend."""

    name: str  # display name: target/format or the file name
    path: str
    format: str
    runtime: str
    target: str | None = None
    precision: str | None = None
    device_requested: str | None = None
    backend: dict[str, Any] = field(default_factory=dict)  # describe(): what actually ran
    size_mb: float | None = None
    load_ms: float | None = None
    first_inference_ms: float | None = None
    latency: LatencyStats | None = None  # a clock around each call: what an application sees
    # The same inferences timed inside the runtime, where it keeps a timer (backend["runtime_timer"]):
    # the figure the runtime's own tool reports, without the cost of the call from Python.
    runtime_latency: LatencyStats | None = None
    peak_memory_mb: float | None = None  # peak RSS of the worker process
    model_memory_mb: float | None = None  # RSS added by loading the model
    metrics: dict[str, float] = field(default_factory=dict)  # accuracy, f1, roc_auc, mae, ...
    confusion_matrix: list[list[int]] | None = None
    fidelity: dict[str, float | None] | None = None  # against the reference model
    reference_metrics: dict[str, float] = field(default_factory=dict)
    compatibility: dict[str, Any] | None = None  # op placement on the target's accelerator (converters/compat.py)
    skipped: dict[str, str] = field(default_factory=dict)  # figure -> why it was not measured
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the artifact could not be benchmarked at all
    log: str | None = None  # the worker's own output (the runtime's banners, warnings, a crash's last words)
    # Measured on an inventory device (`bench --device`): name, transport, fingerprint, thermal record.
    device: dict[str, Any] | None = None

    def value(self, key: str) -> float | None:
        """A measured figure by budget key name, or None when it was not measured."""
        if key.startswith("latency_") and self.latency is not None:
            return getattr(self.latency, key.removeprefix("latency_"), None)
        if key == "throughput_ips" and self.latency is not None:
            return self.latency.throughput_ips
        if key in ("load_ms", "first_inference_ms", "peak_memory_mb", "size_mb", "model_memory_mb"):
            return getattr(self, key)
        if key == "accelerated_ops":
            return self.compatibility.get("fraction") if self.compatibility else None
        if key == "accuracy_drop":
            ref, got = self.reference_metrics.get("accuracy"), self.metrics.get("accuracy")
            return None if ref is None or got is None else ref - got
        if self.fidelity and key in self.fidelity:
            return self.fidelity[key]
        return self.metrics.get(key)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["accuracy_drop"] = self.value("accuracy_drop")
        return data


@dataclass
class Verdict:
    """One budget judged against one measurement."""

    budget: str  # the key as the user wrote it, e.g. latency_p90_ms
    limit: float
    measured: float | None
    status: str  # pass | fail | not measured
    reason: str = ""  # why it failed or was not measured

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass
class Result:
    measurement: Measurement
    verdicts: list[Verdict] = field(default_factory=list)

    def passed(self, strict: bool = False) -> bool:
        if self.measurement.error:
            return False
        bad = {"fail", "not measured"} if strict else {"fail"}
        return not any(v.status in bad for v in self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {"measurement": self.measurement.to_dict(), "verdicts": [asdict(v) for v in self.verdicts]}


@dataclass
class Report:
    results: list[Result]
    host: dict[str, Any]
    settings: dict[str, Any]  # warmup, min_runs, min_time, threads, batch, strict, data, reference
    created: str
    edgekit_version: str

    @property
    def passed(self) -> bool:
        strict = bool(self.settings.get("strict"))
        return all(r.passed(strict) for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "edgekit_version": self.edgekit_version,
            "created": self.created,
            "passed": self.passed,
            "host": self.host,
            "settings": self.settings,
            "results": [r.to_dict() for r in self.results],
        }
