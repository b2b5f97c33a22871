"""The remote path adds nothing inside the timed loop: loopback-device p50 vs local `edgekit bench` p50.

Same artifact, same threads, same host (the SSH device is 127.0.0.1, tests/devicelab.py), runs
interleaved local/remote so that drift in the host's load hits both alike. Goal: the median
of the remote p50s within 5 % of the median of the local p50s. Prints every round, so the
noise is in the log beside the ratio.

Run: .venv/bin/python -m pytest tests/perf/test_remote.py -o addopts="" -q -s
"""
from __future__ import annotations

import statistics

import pytest

from tests.devicelab import SSHServer, device_venv

ROUNDS = 5
THREADS = 1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import keras
    import numpy as np

    from edgekit import convert
    from edgekit.targets.devices import devices_from_dict

    root = tmp_path_factory.mktemp("remote-perf")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 3), name="image")
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(10)(x)).save(root / "cnn.keras")
    manifest = convert(root / "cnn.keras", ["cpu-fp32"], output=root / "dist")
    server = SSHServer(root / "ssh")
    python = device_venv(root / "device-venv")
    import tomllib

    table = tomllib.loads(server.table("loopback", str(python), root / "work", target="cpu-fp32"))
    device = devices_from_dict(table["devices"], root / "devices.toml")["loopback"]
    yield {"manifest": manifest, "device": device}
    server.stop()


def test_loopback_p50_matches_local(setup):
    from edgekit import benchmark
    from edgekit.benchmarks.runner import Settings

    settings = Settings(threads=THREADS, warmup=20, min_runs=200, min_time=2.0)
    local: dict[str, list[float]] = {}
    remote: dict[str, list[float]] = {}
    for round_ in range(ROUNDS):  # interleaved: local, then loopback, per round
        for where, runs in ((None, local), ([setup["device"]], remote)):
            for result in benchmark(setup["manifest"].path, settings=settings, devices=where).results:
                runs.setdefault(result.measurement.format, []).append(result.measurement.latency.p50_ms)
        print(f"round {round_}: " + ", ".join(f"{f} local {local[f][-1]:.4f} / loopback {remote[f][-1]:.4f} ms"
                                              for f in local))
    ratios = {}
    for fmt in local:
        ratios[fmt] = statistics.median(remote[fmt]) / statistics.median(local[fmt])
        spread = (max(local[fmt]) - min(local[fmt])) / statistics.median(local[fmt])
        print(f"{fmt}: loopback/local p50 = {ratios[fmt]:.3f} over {ROUNDS} interleaved rounds "
              f"(local p50 {statistics.median(local[fmt]):.4f} ms, spread across rounds {spread:.1%}; {THREADS} thread)")
    assert all(0.95 <= r <= 1.05 for r in ratios.values()), ratios
