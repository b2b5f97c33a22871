"""`--cluster` on a real multi-node Ray cluster on this host: conversion jobs on CPU nodes, benchmarks on
the slot `edgekit devices attach` advertised for the SSH loopback device, a node killed mid-run.

One module-scoped cluster (head without CPUs, one CPU worker, one attach host with a CPU and
the devices), stopped by the fixture's finalizer whatever happens; every wait is bounded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
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
SLOW_S = 3  # a slow device's cool-down before each artifact: the window a test kills its node in


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
    # slow-a realizes another target (a build's cpu artifacts never go there) and cools down before each
    # artifact, so that a test can catch its jobs mid-run; it runs cpu artifacts with --all.
    inventory.write_text(server.table("loopback", str(python), root / "device-work")
                         + server.table("unplugged", str(python), root / "device-work2", port=free_port())
                         + server.table("slow-a", str(python), root / "device-work3", target="cpu-fp32",
                                        cooldown={"seconds": SLOW_S}))
    lab = RayLab(root / "ray")
    try:
        lab.head(cpus=0)  # the head only schedules: conversions go to the workers
        lab.worker("cpu-a")
        attach_log = lab.attach(inventory)
        yield {"lab": lab, "attach_log": attach_log, "root": root, "server": server, "python": python}
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
    labels = farm["lab"].node_labels()  # `ray start --labels`: what the node says it serves
    assert {"edgekit.io/devices": "loopback.slow-a", "edgekit.io/targets": "cpu.cpu-fp32"}.items() <= \
        next((n.items() for n in labels if "edgekit.io/devices" in n), {}.items()), labels


def test_node_labels_are_valid_ray_labels_whatever_the_names():
    from types import SimpleNamespace

    from edgekit.cluster.attach import node_labels

    many = [SimpleNamespace(name=f"phone-{i:02d}_", target="profiles/pixel 8.toml") for i in range(12)]
    for value in node_labels(many).values():  # Kubernetes label syntax, which `ray start` enforces
        assert re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?", value), value


def _shas(manifest: Path) -> dict[str, str]:
    data = json.loads(manifest.read_text())
    return {f"{a['target']}/{a['format']}": a["sha256"] for a in data["artifacts"]}


@pytest.fixture(scope="module")
def local_build(digits_example, tmp_path_factory) -> Path:
    """The example built on this host (no bench): the reference bytes, and artifacts for cluster benches."""
    local = tmp_path_factory.mktemp("local")
    done = _run("build", "-c", _config(local, digits_example), "--no-bench", "-q")
    assert done.returncode == 0, done.stderr[-3000:]
    return local


def test_cluster_build_matches_a_local_build_and_benchmarks_on_the_device(farm, local_build, digits_example, tmp_path):
    local = local_build
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


def _bench_killing(lab, node: str, dist: Path, out: Path, devices: list[str], ready: str) -> tuple[int, str]:
    """`edgekit bench --cluster` on these devices; `node` is killed once a progress line contains `ready`."""
    argv = [EDGEKIT, "bench", str(dist), "--cluster", lab.address, "--all", "--warmup", "2", "--min-runs", "10",
            "--min-time", "0.05", "--report", str(out / "report.json"), "--junit", str(out / "junit.xml")]
    for name in devices:
        argv += ["--device", name]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 180
    try:
        while not any(ready in line for line in lines):
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.1)
        lab.kill(node)
        process.wait(timeout=200)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=10)
    return process.returncode, "".join(lines)


def test_a_device_node_lost_mid_bench_is_retried_on_another_else_its_rows_name_the_node(farm, local_build, tmp_path):
    """Runs last: it kills the fixture's lab host. slow-a and slow-b realize the same target on two nodes."""
    lab, dist = farm["lab"], local_build / "dist"
    inventory = tmp_path / "devices-b.toml"
    inventory.write_text(farm["server"].table("slow-b", str(farm["python"]), tmp_path / "work-b", target="cpu-fp32",
                                              cooldown={"seconds": SLOW_S}))
    lab.attach(inventory, cpus=0, name="attach-b")

    # slow-a takes jobs 1 and 3, slow-b job 2: slow-b's node dies while it runs, and slow-a runs job 2 too.
    (tmp_path / "retried").mkdir()
    code, text = _bench_killing(lab, "attach-b", dist, tmp_path / "retried", ["slow-a", "slow-b"],
                                "slow-b: 0 queued, 1 running")
    assert code == 0, text[-3000:]
    assert "device slow-b: its slot on node" in text and "retrying" in text, text[-3000:]
    rows = [r["measurement"] for r in json.loads((tmp_path / "retried" / "report.json").read_text())["results"]]
    assert len(rows) == 3 and all(r["latency"] and not r["error"] and r["device"]["name"] == "slow-a" for r in rows)
    assert sum("after device slow-b's node was lost" in " ".join(r["notes"]) for r in rows) == 1, rows

    # Now no other node serves it: the jobs lost with slow-a's node are error rows naming the node; the row
    # done before it is kept, the report and JUnit file are written, and the run exits 1.
    (tmp_path / "lost").mkdir()
    code, text = _bench_killing(lab, "attach", dist, tmp_path / "lost", ["slow-a"], "slow-a: 1 queued, 1 running, 1 done")
    assert code == 1, text[-3000:]
    rows = [r["measurement"] for r in json.loads((tmp_path / "lost" / "report.json").read_text())["results"]]
    done, lost = [r for r in rows if not r["error"]], [r for r in rows if r["error"]]
    assert len(done) == 1 and done[0]["latency"] and len(lost) == 2, rows
    assert all(re.search(r"device slow-a: its slot on node [0-9a-f]{12} was lost", r["error"]) for r in lost), lost
    errors = [e.get("message") for e in ET.parse(tmp_path / "lost" / "junit.xml").getroot().iter("error")]
    assert len(errors) == 2 and all("slow-a" in e and "was lost" in e for e in errors), errors
