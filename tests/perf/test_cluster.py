"""Cluster cost on this 2-core host: scheduling overhead per job, and a 2-model x 4-target x 3-format
build on a real local cluster (head + two 1-CPU workers) against the same build locally.

Run: .venv/bin/python -m pytest tests/perf/test_cluster.py -o addopts="" -q -s
Prints the figures; asserts only that both builds made the same bytes. On two cores the cluster
cannot be faster: the figure shows what it costs (process hops, one TensorFlow import per worker,
the model and data through the object store).
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.raylab import ENV, RayLab

EDGEKIT = str(Path(sys.executable).parent / "edgekit")
TARGETS = ("cpu", "gpu", "npu", "cpu-fp32")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    lab = RayLab(tmp_path_factory.mktemp("perf-ray"))
    try:
        lab.head(cpus=0)
        lab.worker("a")
        lab.worker("b")
        yield lab
    finally:
        lab.stop()


def test_scheduling_overhead_per_job(cluster):
    """Submitted -> started, for 40 empty jobs through the same Board the conversion jobs report to."""
    probe = f"""
import statistics, time
from edgekit.cluster import connect
from edgekit.cluster.board import remote_board, overheads
from edgekit.cluster.jobs import where
c = connect({cluster.address!r}); ray = c.ray
board = remote_board(ray)
def job(board, name):
    ray.get(board.started.remote(name, where()))
task = ray.remote(num_cpus=1)(job)
ray.get([task.remote(board, "warm-%d" % i) for i in range(4)])  # workers started once
board2 = remote_board(ray)
refs = []
for i in range(40):
    ray.get(board2.submitted.remote(str(i), "x"))
    refs.append(task.remote(board2, str(i)))
ray.get(refs)
o = overheads(ray.get(board2.snapshot.remote()))
print("OVERHEAD", json.dumps({{"median_ms": statistics.median(o) * 1e3, "p90_ms": sorted(o)[int(0.9 * len(o))] * 1e3}}))
"""
    done = subprocess.run([sys.executable, "-c", "import json\n" + probe], capture_output=True, text=True, timeout=300,
                          env=ENV)
    line = next(l for l in done.stdout.splitlines() if l.startswith("OVERHEAD"))
    figures = json.loads(line.split(" ", 1)[1])
    print(f"\nscheduling overhead per job (submitted -> started, 40 jobs, 2 workers, queueing included): "
          f"median {figures['median_ms']:.1f} ms, p90 {figures['p90_ms']:.1f} ms")


def _project(folder: Path, digits, name: str) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(digits["model"], folder / f"{name}.keras")
    shutil.copy(digits["calibration"], folder / "calib.npz")
    tables = "".join(f"[targets.{t}]\n" for t in TARGETS)
    (folder / "edgekit.toml").write_text(f'[model]\npath = "{name}.keras"\n[data]\ncalibration = "calib.npz"\n{tables}')
    return folder / "edgekit.toml"


def test_build_on_the_cluster_against_local(cluster, digits_example, tmp_path):
    """Two models: the digits CNN under two names (two projects, as a nightly zoo job builds them)."""
    timings = {"local": 0.0, "cluster": 0.0}
    shas = {}
    for where in timings:
        for model in ("digits",):
            for copy in ("a", "b"):
                config = _project(tmp_path / where / f"{model}-{copy}", digits_example, f"{model}{copy}")
                argv = [EDGEKIT, "build", "-c", str(config), "--no-bench", "-q"]
                if where == "cluster":
                    argv += ["--cluster", cluster.address]
                started = time.perf_counter()
                done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, env=ENV)
                timings[where] += time.perf_counter() - started
                assert done.returncode == 0, done.stderr[-2000:]
                data = json.loads((config.parent / "dist" / "manifest.json").read_text())
                shas[(where, copy)] = sorted(a["sha256"] for a in data["artifacts"])
    assert shas[("local", "a")] == shas[("cluster", "a")]
    print(f"\n2 models x {len(TARGETS)} targets x 3 formats, --no-bench: local {timings['local']:.1f} s, "
          f"cluster (2 x 1-CPU workers) {timings['cluster']:.1f} s, ratio {timings['cluster'] / timings['local']:.2f}")
