"""`--cluster` on a real multi-node Ray cluster on this host: conversion jobs on CPU nodes, benchmarks on
the slot `edgekit devices attach` advertised for the SSH loopback device, a node killed mid-run.

One module-scoped cluster (head without CPUs, one CPU worker, one attach host with a CPU and
the devices), stopped by the fixture's finalizer whatever happens; every wait is bounded.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import one_line_exit_2
from tests.devicelab import SSHServer, device_venv, free_port
from tests.raylab import ENV, RayLab

EDGEKIT = str(Path(sys.executable).parent / "edgekit")
FAST_BENCH = "[bench]\nwarmup = 2\nmin_runs = 10\nmin_time = 0.05\n"


def _config(folder: Path, digits: dict[str, Path]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(digits["model"], folder / "model.keras")
    shutil.copy(digits["calibration"], folder / "calib.npz")
    shutil.copy(digits["evaluation"], folder / "eval.npz")
    config = folder / "edgekit.toml"
    config.write_text('[model]\npath = "model.keras"\n[data]\ncalibration = "calib.npz"\nevaluation = "eval.npz"\n'
                      '[targets.cpu]\n[output]\nreports = ["json", "junit"]\n' + FAST_BENCH)
    return config


def _run(*args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([EDGEKIT, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    root = tmp_path_factory.mktemp("farm")
    server = SSHServer(root / "ssh")
    python = device_venv(root / "device-venv")
    inventory = root / "devices.toml"
    inventory.write_text(server.table("loopback", str(python), root / "device-work")
                         + server.table("unplugged", str(python), root / "device-work2", port=free_port()))
    lab = RayLab(root / "ray")
    try:
        lab.head(cpus=0)  # the head only schedules: conversions go to the workers
        lab.worker("cpu-a")
        attach_log = lab.attach(inventory)
        yield {"lab": lab, "attach_log": attach_log, "root": root}
    finally:
        lab.stop()
        server.stop()


def test_unreachable_cluster_is_exit_2_before_anything(cli, tmp_path, digits_example):
    config = _config(tmp_path / "p", digits_example)
    dead = f"127.0.0.1:{free_port()}"
    for result in (cli("build", "-c", config, "--cluster", dead), cli("bench", tmp_path, "--cluster", dead),
                   cli("devices", "attach", "--cluster", dead, "-i", tmp_path / "none.toml")):
        assert result.code == 2, result
    one_line_exit_2(cli("build", "-c", config, "--cluster", dead), dead, "does not answer")
    assert not (tmp_path / "p" / "dist").exists()
    config.write_text(config.read_text() + f'[cluster]\naddress = "{dead}"\n')
    one_line_exit_2(cli("build", "-c", config), "cluster.address", "does not answer")
    one_line_exit_2(cli("build", "-c", config, "--cluster", "not an address"), "not a cluster address")


def test_without_ray_cluster_names_the_extra(tmp_path):
    probe = ("import sys; sys.modules['ray'] = None\nfrom edgekit.cli import app\n"
             f"app(args=['bench', {str(tmp_path)!r}, '--cluster', '127.0.0.1:{{port}}'], prog_name='edgekit')")
    import socket

    with socket.socket() as listener:  # something answers, so the missing package is what stops it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        done = subprocess.run([sys.executable, "-c", probe.format(port=listener.getsockname()[1])],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'edgekit[cluster]'" in done.stderr and "Traceback" not in done.stderr


def test_local_runs_never_import_ray(tiny_keras_path, tmp_path):
    probe = ("import sys\nfrom edgekit.cli import app\n"
             f"try:\n    app(args=['convert', {str(tiny_keras_path)!r}, '-t', 'cpu-fp32', '--format', 'onnx', '-o', "
             f"{str(tmp_path / 'out')!r}, '-q'], prog_name='edgekit')\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"
             "print('RAY', 'ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=240)
    assert "EXIT 0" in done.stdout and "RAY False" in done.stdout, done


def test_attach_advertises_healthy_devices_and_names_the_failed_one(farm):
    log = farm["attach_log"]
    assert "attached loopback (target cpu)" in log
    assert "not attached: unplugged: failed its health check" in log


def _shas(manifest: Path) -> dict[str, str]:
    data = json.loads(manifest.read_text())
    return {f"{a['target']}/{a['format']}": a["sha256"] for a in data["artifacts"]}


def test_cluster_build_matches_a_local_build_and_benchmarks_on_the_device(farm, digits_example, tmp_path):
    local = tmp_path / "local"
    config_local = _config(local, digits_example)
    assert _run("build", "-c", config_local, "--no-bench", "-q").returncode == 0
    remote = tmp_path / "remote"
    config = _config(remote, digits_example)
    done = _run("build", "-c", config, "--cluster", farm["lab"].address)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "conversion job(s) on" in done.stderr and "queued" in done.stderr and "done" in done.stderr
    local_shas, remote_shas = _shas(local / "dist" / "manifest.json"), _shas(remote / "dist" / "manifest.json")
    assert len(remote_shas) == 3 and remote_shas == local_shas  # byte-identical across nodes
    for key, sha in remote_shas.items():  # the files on disk are those bytes
        artifact = next(a for a in json.loads((remote / "dist" / "manifest.json").read_text())["artifacts"]
                        if f"{a['target']}/{a['format']}" == key)
        path = remote / "dist" / artifact["path"]
        if artifact["format"] != "openvino":
            assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    report = json.loads((remote / "dist" / "reports" / "report.json").read_text())
    measured = [r["measurement"] for r in report["results"]]
    assert [m["name"] for m in measured] == [f"cpu/{f}@loopback" for f in ("tflite", "onnx", "openvino")]
    assert all(m["device"]["name"] == "loopback" and m["latency"] and not m["error"] for m in measured)
    assert "unplugged" not in done.stderr or "out of rotation" in done.stderr
    junit = ET.parse(remote / "dist" / "reports" / "junit.xml").getroot()
    assert int(junit.get("tests", junit[0].get("tests") if len(junit) else 0)) >= 1
    again = _run("build", "-c", config, "--cluster", farm["lab"].address, "--json")  # the cache works the same
    assert again.returncode == 0 and json.loads(again.stdout)["benchmarked"] == []


def test_a_node_lost_mid_run_has_its_job_retried_on_another(farm, digits_example, tmp_path):
    lab = farm["lab"]
    config = _config(tmp_path / "p", digits_example)
    process = subprocess.Popen([EDGEKIT, "build", "-c", str(config), "--cluster", lab.address, "--no-bench"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    lines: list[str] = []

    def read():
        for line in process.stderr:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any("2 running" in line for line in lines):
        assert process.poll() is None, "".join(lines)
        time.sleep(0.2)
    lab.kill("cpu-a")  # both workers are converting: one of them is lost now
    try:
        process.wait(timeout=200)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=10)
    text = "".join(lines)
    assert process.returncode == 0, text[-3000:]
    assert "was lost; retried on node" in text, text[-3000:]
    assert len(_shas(tmp_path / "p" / "dist" / "manifest.json")) == 3
