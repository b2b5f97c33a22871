"""Input drift: the share of request inputs outside the calibration ranges in the manifest.

This is the deployment-time form of `edgekit bench`'s calibration-coverage check, with
the same margin: beyond it an int8 artifact saturates and its answers degrade silently.
The share over a window of recent values is a gauge; a warning is logged at most once
per interval for each model, version and input.
"""
from __future__ import annotations

import logging
import time
from collections import deque

import numpy as np

from edgekit.benchmarks.runner import COVERAGE_MARGIN

log = logging.getLogger("edgekit.serve")


class DriftMonitor:
    def __init__(self, ranges: dict[str, tuple[float, float]], metrics, labels: dict[str, str], *,
                 window: int = 100, warn_above: float = 0.01, interval_s: float = 60.0):
        self.bounds = {}
        for name, (low, high) in ranges.items():
            margin = COVERAGE_MARGIN * max(high - low, 1e-12)
            self.bounds[name] = (float(low), float(high), low - margin, high + margin)
        self.metrics, self.labels = metrics, labels
        self.window, self.warn_above, self.interval_s = window, warn_above, interval_s
        self._recent: dict[str, deque[tuple[int, int]]] = {name: deque(maxlen=window) for name in self.bounds}
        self._warned: dict[str, float] = {}

    def observe(self, arrays: dict[str, np.ndarray]) -> None:
        for name, (low, high, lower, upper) in self.bounds.items():
            values = arrays.get(name)
            if values is None or values.size == 0:
                continue
            outside = int(np.count_nonzero((values < lower) | (values > upper)))
            labels = {**self.labels, "input": name}
            self.metrics.input_values.labels(**labels).inc(values.size)
            if outside:
                self.metrics.outside.labels(**labels).inc(outside)
            recent = self._recent[name]
            recent.append((outside, values.size))
            share = sum(o for o, _ in recent) / max(sum(n for _, n in recent), 1)
            self.metrics.drift.labels(**labels).set(share)
            if share > self.warn_above and time.monotonic() - self._warned.get(name, -1e9) >= self.interval_s:
                self._warned[name] = time.monotonic()
                log.warning("input drift: %s version %s input '%s': %.1f%% of the last %d requests' values fall outside "
                            "the calibrated range [%.4g, %.4g] (int8 artifacts saturate there; recalibrate with deployment data)",
                            self.labels["model"], self.labels["version"], name, 100 * share, len(recent), low, high)
