"""Wall time of an up-to-date `edgekit build` (nothing to convert, benchmark or report): goal 3 s.

The time is what a CI job or an app build pays on every run where the model did not change.
Measured ROUNDS times; the median is reported and judged against the goal.
"""
from __future__ import annotations

import statistics
import subprocess
import time

from tests.test_build import EDGEKIT, initialized  # noqa: F401  (the fixture: `edgekit init` + a first build)

GOAL_S = 3.0
ROUNDS = 5


def test_up_to_date_rebuild_time(initialized):  # noqa: F811
    command = [EDGEKIT, "build", "-c", str(initialized["config"])]
    subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
        assert result.returncode == 0 and "cpu: up to date" in result.stderr, result.stderr
    median = statistics.median(seconds)
    print(f"\nup-to-date rebuild: median {median:.2f} s, best {min(seconds):.2f} s over {ROUNDS} (goal {GOAL_S} s)")
    assert median < GOAL_S
