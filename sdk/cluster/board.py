"""Where each job stands (queued, running on which node, done), kept by one small actor on the driver's node.

Jobs report their start to it; the driver reads it to print progress per device and to name
the node a lost job last ran on. Its timestamps are also the scheduling overhead the perf
suite reports (submitted -> started).
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any


class Board:
    """Plain class; `remote_board` makes it an actor pinned to the driver's node."""

    def __init__(self):
        self.jobs: dict[str, dict[str, Any]] = {}

    def submitted(self, job: str, queue: str) -> None:
        self.jobs[job] = {"queue": queue, "state": "queued", "submitted": time.time(), "starts": []}

    def started(self, job: str, place: dict[str, str]) -> None:
        entry = self.jobs.setdefault(job, {"queue": "?", "state": "queued", "submitted": time.time(), "starts": []})
        entry["state"] = "running"
        entry["starts"].append({**place, "at": time.time()})

    def done(self, job: str) -> None:
        if job in self.jobs:
            self.jobs[job]["state"] = "done"

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.jobs


def remote_board(ray):
    """A Board actor on this driver's node: the job states survive any worker node's loss."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    actor = ray.remote(num_cpus=0)(Board).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False))
    return actor.remote()


def progress_line(jobs: dict[str, dict[str, Any]]) -> str:
    """`convert: 2 queued, 1 running, 5 done; loopback: 0 queued, 1 running, 2 done`."""
    per_queue: dict[str, Counter] = {}
    for entry in jobs.values():
        per_queue.setdefault(entry["queue"], Counter())[entry["state"]] += 1
    return "; ".join(f"{queue}: {c['queued']} queued, {c['running']} running, {c['done']} done"
                     for queue, c in per_queue.items())


def overheads(jobs: dict[str, dict[str, Any]]) -> list[float]:
    """Seconds from submission to the first start, per job that started."""
    return [e["starts"][0]["at"] - e["submitted"] for e in jobs.values() if e["starts"]]
