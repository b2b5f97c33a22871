"""The `edgekit build` benchmark cache key names where a measurement was taken (this host, or a cluster
slot's device), and budgets stay out of it. Pure key logic: no model is converted or measured."""
from __future__ import annotations

from pathlib import Path

from edgekit.artifact import Artifact
from edgekit.benchmarks.runner import Settings
from edgekit.buildbench import _key, _places, device_place, local_place, measured_at, place_key
from edgekit.config import load_config
from edgekit.targets.hardware import host_facts


def _config(folder: Path, budgets: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.keras").write_bytes(b"not loaded: only the path's kind is checked")
    (folder / "edgekit.toml").write_text(f'[model]\npath = "model.keras"\n[targets.cpu]\nbudgets = {{ {budgets} }}\n')
    return load_config(folder / "edgekit.toml")


def _artifact(fmt: str = "tflite") -> Artifact:
    return Artifact("cpu", fmt, "fp32", Path(f"cpu/model.{fmt}"), "tflite", "cpu", [], [], {}, 0.0, sha256="ab" * 32)


def _slot(name: str = "pi-1", **facts) -> dict:
    return {"name": name, "target": "cpu", "transport": "ssh", "address": "pi@10.0.0.7:22", "runner": "python",
            "cpu": "Cortex-A76", "os": "Debian 12", "runtimes": {"onnxruntime": "1.20.0"}, "host": "lab-host-1",
            "node": "node-id-1", **facts}


def test_budgets_are_not_part_of_the_key(tmp_path):
    loose = _config(tmp_path / "a", "latency_p90_ms = 50.0")
    tight = _config(tmp_path / "b", "latency_p90_ms = 0.001, size_mb = 1")
    args = (Settings(), None, None)
    assert _key(_artifact(), loose, *args) == _key(_artifact(), tight, *args)
    assert _key(_artifact(), loose, *args) != _key(_artifact("onnx"), loose, *args)


def test_where_it_was_measured_is_part_of_the_key(tmp_path):
    base = _key(_artifact(), _config(tmp_path, "size_mb = 4"), Settings(), None, None)
    host = host_facts()
    here = place_key(base, local_place(host))
    on_device = place_key(base, device_place(_slot()))
    assert len({here, on_device, place_key(base, device_place(_slot("pi-2"))),
                place_key(base, device_place(_slot(cpu="Cortex-A72"))),
                place_key(base, device_place(_slot(host="lab-host-2"))),
                place_key(base, local_place({**host, "cpu": {"model": "another CPU"}}))}) == 6
    # A lab host gets a new Ray node id each time it attaches: the same device is the same place.
    assert place_key(base, device_place(_slot(node="node-id-2"))) == on_device


def test_a_fresh_measurement_is_keyed_where_its_row_says_it_ran():
    host, slots = host_facts(), {"pi-1": _slot()}
    assert measured_at({"device": None}, host, slots) == local_place(host)
    assert measured_at({"device": {"name": "pi-1"}}, host, slots) == device_place(slots["pi-1"])
    assert measured_at({"device": {"name": "gone"}}, host, slots) is None  # not cached: where is unknown


def test_a_local_build_looks_only_at_this_host():
    host = host_facts()
    places, slots = _places(None, [_artifact(), _artifact("onnx")], host)
    assert places == [[local_place(host)], [local_place(host)]] and slots == {}
