"""report.json keeps a bounded latency sample unless --raw-samples; every figure still uses all timings."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.benchmarks.measurement import HISTOGRAM_BINS, OUTLIERS_KEPT, SAMPLES_KEPT, LatencyStats, Measurement, Result
from edgekit.report_html import _box_stats

# 44,000 timings: what one small artifact gave with the default 1 s minimum
TIMINGS = (np.random.default_rng(0).lognormal(-1.5, 0.25, 44_000) * 1e6).astype(np.int64)


def test_the_default_sample_is_bounded_and_documented_figures_use_every_timing():
    stats = LatencyStats.from_ns(TIMINGS)
    ms = TIMINGS / 1e6
    assert stats.runs == len(TIMINGS) and not stats.all_samples
    assert stats.samples_ms == pytest.approx(ms[:SAMPLES_KEPT], abs=1e-5)  # the first ones, in order
    assert stats.p99_ms == pytest.approx(np.percentile(ms, 99))
    assert list(stats.quantiles_ms) == ["p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99.9"]
    assert stats.quantiles_ms["p25"] == pytest.approx(np.percentile(ms, 25), abs=1e-5)
    assert len(stats.histogram["edges_ms"]) == HISTOGRAM_BINS + 1 and sum(stats.histogram["counts"]) == stats.runs
    assert len(stats.outliers_ms) == OUTLIERS_KEPT
    assert all(v < stats.quantiles_ms["p1"] or v > stats.p99_ms - 1e-5 for v in stats.outliers_ms)
    assert len(json.dumps(stats.__dict__)) < 12_000  # was ~400 kB with every sample


def test_raw_keeps_every_sample():
    stats = LatencyStats.from_ns(TIMINGS, raw=True)
    assert len(stats.samples_ms) == len(TIMINGS) and stats.all_samples


def test_the_html_box_plot_is_the_same_from_the_bounded_sample():
    def box(stats):
        return _box_stats(Result(Measurement(name="a", path="a.tflite", format="tflite", runtime="tflite", latency=stats)))

    raw, bounded = box(LatencyStats.from_ns(TIMINGS, raw=True)), box(LatencyStats.from_ns(TIMINGS))
    for key in ("med", "q1", "q3", "whislo", "whishi"):
        assert bounded[key] == pytest.approx(raw[key], abs=1e-5), key
    assert np.asarray(bounded["fliers"]) == pytest.approx(np.asarray(raw["fliers"]), abs=1e-5)


def test_a_single_timing_has_one_bin():
    stats = LatencyStats.from_ns([2_000_000])
    assert stats.histogram["counts"] == [1] and stats.all_samples
