"""The timed loop every latency figure comes from, local or on a device.

Dependency-free on purpose (the standard library's `time` only): `edgekit bench` imports it
in its local worker, and pushes this very file beside the device worker, so a number
measured on a Raspberry Pi and one measured here come from the same lines.
"""
from __future__ import annotations

import time


def timed_loop(infer, feeds, warmup: int, min_runs: int, min_time: float, max_time: float,
               runtime_clock=None, runtime_timings=None) -> list[int]:
    """Nanoseconds of single inferences, timed until both min_runs and min_time are reached (max_time caps it).

    Nothing but the call sits between the two clock reads: no allocation, no logging.
    `runtime_clock`, where the runtime times its own requests (OpenVINO's
    InferRequest.latency, which is what benchmark_app reports), is read after the second
    clock read, into `runtime_timings`: the same inferences, timed inside the runtime.
    """
    for _ in range(warmup):
        infer(feeds)
    timings: list[int] = []
    clock = time.perf_counter_ns
    deadline_min = clock() + int(min_time * 1e9)
    deadline_max = clock() + int(max_time * 1e9)
    while True:
        start = clock()
        infer(feeds)
        end = clock()
        timings.append(end - start)
        if runtime_clock is not None:
            runtime_timings.append(runtime_clock())
        if (len(timings) >= min_runs and end >= deadline_min) or end >= deadline_max:
            return timings
