"""Devices: the inventory, `edgekit devices`, `edgekit bench --device`, and the faults, on real parts.

The SSH "device" is Debian's OpenSSH server on 127.0.0.1 (tests/devicelab.py) with a venv that
has only NumPy and the runtimes; adb is the real adb server with no phone attached. One sshd
and one device venv serve the whole session.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import one_line_exit_2
from tests.devicelab import SSHServer, device_venv, ensure_package, free_port

FAST = ("--warmup", "2", "--min-runs", "5", "--min-time", "0")


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("devicelab")
    server = SSHServer(root / "ssh")
    python = device_venv(root / "device-venv")
    bare = root / "bare-venv"  # a Python with nothing: no NumPy, no runtime
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    numpy_only = device_venv(root / "numpy-venv", ("numpy",))  # NumPy, no runtime
    yield {"server": server, "python": str(python), "bare_python": str(bare / "bin" / "python"),
           "numpy_python": str(numpy_only), "root": root}
    server.stop()


@pytest.fixture
def inventory(lab, tmp_path):
    """Write a devices.toml of tables and return its path: inventory(table, table, ...)."""

    def write(*tables: str) -> Path:
        path = tmp_path / "devices.toml"
        path.write_text("\n".join(tables))
        return path

    return write


def loopback(lab, tmp_path, name="loopback", **extra) -> str:
    return lab["server"].table(name, extra.pop("python", lab["python"]), tmp_path / f"work-{name}", **extra)


# --- the inventory ---------------------------------------------------------------------------

def test_devices_lists_the_loopback_device(cli, lab, inventory, tmp_path):
    path = inventory(loopback(lab, tmp_path))
    result = cli("devices", "-i", path)
    assert result.code == 0, result
    line, = result.stdout.strip().splitlines()
    assert line.startswith("loopback  ssh ") and " ok " in line and "onnxruntime 1.32.0" in line
    status, = json.loads(cli("devices", "-i", path, "--json").stdout)
    assert status["reachable"] and status["authenticated"] and status["ok"]
    assert status["free_disk_mb"] > 0 and status["facts"]["cores"] >= 1 and status["facts"]["cpu_model"]
    assert set(status["runtimes"]) >= {"numpy", "ai-edge-litert", "onnxruntime", "openvino"}
    assert "tensorflow" not in status["runtimes"]  # the device has only NumPy and the runtimes


@pytest.mark.parametrize(
    ("table", "fragments"),
    [
        ('[devices.pi]\ntransport = "ssh"\ntarget = "cpu"\nhots = "pi.local"\n', ["devices.pi.hots", "did you mean 'host'"]),
        ('[devices.pi]\ntransport = "serial"\ntarget = "cpu"\n', ["devices.pi.transport", "'serial'"]),
        ('[devices.pi]\ntransport = "ssh"\ntarget = "cpu"\n', ["devices.pi.host", "required for transport = 'ssh'"]),
        ('[devices.pi]\ntransport = "ssh"\nhost = "pi"\n', ["devices.pi.target", "missing"]),
        ('[devices.pi]\ntransport = "ssh"\nhost = "pi"\ntarget = "cpu"\nrunner = "benchmark_app"\n',
         ["devices.pi.binary", "required for runner = 'benchmark_app'"]),
        ('[devices.pi]\ntransport = "ssh"\nhost = "pi"\ntarget = "cpu"\n[devices.pi.cooldown]\nmax_temp = 60\n',
         ["devices.pi.cooldown.max_temp", "did you mean 'max_temperature_c'"]),
        ('[devices.pi]\ntransport = "ssh"\nhost = "pi"\ntarget = "cpu"\nname = "other"\n', ["devices.pi.name", "unknown key"]),
    ],
)
def test_bad_inventory_is_exit_2_naming_file_and_key(cli, inventory, table, fragments):
    path = inventory(table)
    one_line_exit_2(cli("devices", "-i", path), str(path), *fragments)


def test_unknown_device_name_is_exit_2(cli, lab, inventory, tmp_path):
    path = inventory(loopback(lab, tmp_path))
    one_line_exit_2(cli("devices", "loopbak", "-i", path), "unknown device 'loopbak'", "did you mean 'loopback'")


# --- faults at check time: each one line, the other devices go on -----------------------------

def test_unreachable_refused_and_mismatched_hosts_are_their_own_rows(cli, lab, inventory, tmp_path):
    server = lab["server"]
    wrong_known_hosts = tmp_path / "known_hosts"
    other = " ".join(server.other_key.with_suffix(".pub").read_text().split()[:2])
    wrong_known_hosts.write_text(f"[127.0.0.1]:{server.port} {other}\n")
    path = inventory(
        loopback(lab, tmp_path),
        loopback(lab, tmp_path, "deadport", port=free_port()),
        loopback(lab, tmp_path, "stranger", key=str(server.other_key)),
        loopback(lab, tmp_path, "mismatch", known_hosts=str(wrong_known_hosts)),
    )
    result = cli("devices", "-i", path, "--json")
    assert result.code == 1, result
    rows = {s["name"]: s for s in json.loads(result.stdout)}
    assert rows["loopback"]["ok"]
    assert not rows["deadport"]["reachable"] and "unreachable" in rows["deadport"]["error"]
    assert rows["stranger"]["reachable"] and not rows["stranger"]["authenticated"]
    assert "authentication refused" in rows["stranger"]["error"]
    assert "host key of" in rows["mismatch"]["error"] and "does not match" in rows["mismatch"]["error"]
    assert "3 device(s) failed the check: deadport, stranger, mismatch" in result.stderr


def test_accept_new_records_the_host_key_then_holds_it(cli, lab, inventory, tmp_path):
    known = tmp_path / "new_known_hosts"
    path = inventory(loopback(lab, tmp_path, known_hosts=str(known), host_key_policy="accept-new"))
    assert cli("devices", "-i", path).code == 0
    assert f"[127.0.0.1]:{lab['server'].port} ssh-ed25519 " in known.read_text()
    assert cli("devices", "-i", path).code == 0  # now checked against the recorded key


def test_no_python_and_no_runtime_on_the_device(cli, lab, inventory, tmp_path):
    path = inventory(
        loopback(lab, tmp_path, "nopython", python="/nonexistent/bin/python3"),
        loopback(lab, tmp_path, "nonumpy", python=lab["bare_python"]),
    )
    result = cli("devices", "-i", path, "--json")
    assert result.code == 1
    rows = {s["name"]: s for s in json.loads(result.stdout)}
    assert "no usable Python on the device" in rows["nopython"]["error"]
    assert "NumPy is not installed" in rows["nonumpy"]["error"]


@pytest.fixture(scope="session")
def adb_server():
    """The real adb server (Debian's adb) on a free port, with no phone attached."""
    adb = ensure_package("adb", "adb")
    port = free_port()
    subprocess.run([adb, "-P", str(port), "start-server"], check=True, capture_output=True, timeout=60)
    yield f"127.0.0.1:{port}"
    subprocess.run([adb, "-P", str(port), "kill-server"], capture_output=True, timeout=60)


def test_adb_with_no_device_attached_is_a_clear_error(cli, adb_server, inventory):
    path = inventory(f'[devices.phone]\ntransport = "adb"\ntarget = "cpu"\nadb_server = "{adb_server}"\n'
                     'runner = "benchmark_model"\nbinary_on_device = "/data/local/tmp/benchmark_model"\n')
    result = cli("devices", "-i", path)
    assert result.code == 1
    assert "adb: no device attached" in result.stdout and adb_server in result.stdout
    assert "Traceback" not in result.stderr


def _default_adb_servers() -> set[int]:
    import psutil

    return {p.pid for p in psutil.process_iter(["cmdline"]) if "fork-server" in " ".join(p.info["cmdline"] or [])
            and "tcp:5037" in " ".join(p.info["cmdline"] or [])}


def test_adb_server_not_running_is_unreachable(cli, inventory):
    path = inventory(f'[devices.phone]\ntransport = "adb"\ntarget = "cpu"\nadb_server = "127.0.0.1:{free_port()}"\n')
    before = _default_adb_servers()
    status, = json.loads(cli("devices", "-i", path, "--json").stdout)
    assert _default_adb_servers() <= before  # no adb server started on the user's behalf
    assert not status["reachable"] and "not reachable" in status["error"] and "adb start-server" in status["error"]


# --- bench --device ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def device_dist(tmp_path_factory):
    """A small Keras CNN converted for cpu-fp32 (tflite, onnx, openvino), and 16 input samples."""
    import keras
    import numpy as np

    from edgekit import convert

    root = tmp_path_factory.mktemp("device-dist")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    keras.Model(inputs, keras.layers.Dense(10, name="logits")(x)).save(root / "tiny.keras")
    np.savez(root / "data.npz", image=np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32))
    convert(root / "tiny.keras", ["cpu-fp32"], output=root / "dist")
    return {"dir": root / "dist", "data": root / "data.npz", "model": root / "tiny.keras"}


def device_table(lab, tmp_path, name="loopback", **extra) -> str:
    return loopback(lab, tmp_path, name, **{"target": "cpu-fp32", **extra})


def test_bench_on_the_loopback_device(cli, lab, inventory, tmp_path, device_dist):
    path = inventory(device_table(lab, tmp_path))
    result = cli("bench", device_dist["dir"], "--device", "loopback", "-i", path, "--data", device_dist["data"],
                 *FAST, "--json")
    assert result.code == 0, result
    report = json.loads(result.stdout)
    names = [r["measurement"]["name"] for r in report["results"]]
    assert names == ["cpu-fp32/tflite@loopback", "cpu-fp32/onnx@loopback", "cpu-fp32/openvino@loopback"]
    for row in report["results"]:
        m = row["measurement"]
        assert m["error"] is None and m["latency"]["runs"] >= 5 and m["latency"]["p50_ms"] > 0
        block = m["device"]
        assert block["name"] == "loopback" and block["transport"] == "ssh" and block["artifact_pushed"]
        assert block["fingerprint"]["cpu_model"] and block["fingerprint"]["kernel"].startswith("Linux")
        assert block["fingerprint"]["runtime"].split()[0] in ("ai-edge-litert", "onnxruntime", "openvino")
        assert set(block["thermal"]) == {"before", "after", "cooldown"} and block["throttled"] is False
        assert m["fidelity"]["cosine"] > 0.9999  # outputs came back from the device and were scored here
    assert report["results"][2]["measurement"]["backend"]["inference_precision"] == "f32"
    # content-addressed: the same artifacts are not pushed again
    again = json.loads(cli("bench", device_dist["dir"], "--device", "loopback", "-i", path, *FAST, "--json").stdout)
    assert [r["measurement"]["device"]["artifact_pushed"] for r in again["results"]] == [False, False, False]


def test_a_device_needs_artifacts_of_its_target_or_all(cli, lab, inventory, tmp_path, device_dist):
    path = inventory(device_table(lab, tmp_path, target="raspberry-pi-5"))
    one_line_exit_2(cli("bench", device_dist["dir"], "--device", "loopback", "-i", path),
                    "device 'loopback' realizes target 'raspberry-pi-5'", "--all")
    result = cli("bench", device_dist["dir"] / "manifest.json", "--device", "loopback", "-i", path, "--all", *FAST,
                 "--json")
    assert result.code == 0, result
    assert len(json.loads(result.stdout)["results"]) == 3


def test_device_that_is_not_in_the_inventory_is_exit_2(cli, lab, inventory, tmp_path, device_dist):
    path = inventory(device_table(lab, tmp_path))
    one_line_exit_2(cli("bench", device_dist["dir"], "--device", "lopback", "-i", path),
                    "--device lopback: unknown device", "did you mean 'loopback'")


def test_accelerator_and_the_old_device_spelling(cli, device_dist):
    xml = device_dist["dir"] / "cpu-fp32" / "tiny.xml"
    new = json.loads(cli("bench", xml, "--accelerator", "TPU9", *FAST, "--json").stdout)
    assert "TPU9 not present" in new["results"][0]["measurement"]["skipped"]["latency"]
    old = cli("bench", xml, "--device", "TPU9", *FAST)  # no inventory here: the runtime's device, with a note
    assert "--device TPU9 is the runtime's device here" in old.stderr and "spelled --accelerator" in old.stderr


# --- faults during bench: each one line, that device's rows only, exit 1 ----------------------

def _rows(result) -> dict[str, dict]:
    return {r["measurement"]["name"]: r["measurement"] for r in json.loads(result.stdout)["results"]}


def test_unreachable_device_fails_its_rows_and_the_others_go_on(cli, lab, inventory, tmp_path, device_dist):
    path = inventory(device_table(lab, tmp_path, "deadport", port=free_port()), device_table(lab, tmp_path))
    result = cli("bench", device_dist["dir"], "--device", "deadport", "--device", "loopback", "-i", path, *FAST,
                 "--json")
    assert result.code == 1, result
    rows = _rows(result)
    assert len(rows) == 6
    for name, m in rows.items():
        if name.endswith("@deadport"):
            assert m["error"].startswith("device deadport: unreachable: ") and "\n" not in m["error"]
        else:
            assert m["error"] is None and m["latency"]["p50_ms"] > 0


def test_no_runtime_on_the_device_is_each_artifacts_error(cli, lab, inventory, tmp_path, device_dist):
    path = inventory(device_table(lab, tmp_path, "numpyonly", python=lab["numpy_python"]))
    result = cli("bench", device_dist["dir"], "--device", "numpyonly", "-i", path, *FAST, "--json")
    assert result.code == 1
    errors = [m["error"] for m in _rows(result).values()]
    assert "no tflite runtime" in errors[0] and "pip install ai-edge-litert or tflite-runtime there" in errors[0]
    assert "no onnxruntime runtime" in errors[1] and "no openvino runtime" in errors[2]


def _workers(workdir: Path) -> list:
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "device_worker.py" in cmdline and "job.json" in cmdline and str(workdir) in cmdline:
            found.append(process)
    return found


def test_a_run_past_its_timeout_is_killed_on_the_device(cli, lab, inventory, tmp_path, device_dist):
    path = inventory(device_table(lab, tmp_path, timeout=4))
    started = time.monotonic()
    result = cli("bench", device_dist["dir"] / "cpu-fp32" / "tiny.onnx", "--device", "loopback", "-i", path, "--all",
                 "--min-time", "120", "--json")
    assert time.monotonic() - started < 60
    assert result.code == 1
    for m in _rows(result).values():
        assert "timed out after 4 s; the remote process group was killed" in m["error"]
    assert _workers(tmp_path / "work-loopback") == []  # nothing left running on the device
    assert list((tmp_path / "work-loopback" / "run").iterdir()) == []  # no pid file left either


def test_full_disk_on_the_device(cli, lab, inventory, tmp_path, device_dist):
    workdir = tmp_path / "work-full"
    workdir.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(workdir)],
                             capture_output=True).returncode == 0
    try:
        if mounted:  # a real full filesystem
            subprocess.run(["dd", "if=/dev/zero", f"of={workdir}/filler", "bs=64k"], capture_output=True)
        else:  # no mount privilege: the kernel's ENOSPC device stands in where the first file is written
            from edgekit.benchmarks.remote.bench import WORKER_FILES
            from edgekit.benchmarks.remote.transport import addressed_folder

            folder = Path(addressed_folder(list(WORKER_FILES), str(workdir)))
            folder.mkdir(parents=True)
            (folder / "device_worker.py.part").symlink_to("/dev/full")
        path = inventory(lab["server"].table("full", lab["python"], workdir, target="cpu-fp32"))
        result = cli("bench", device_dist["dir"], "--device", "full", "-i", path, *FAST, "--json")
        assert result.code == 1
        for m in _rows(result).values():
            assert m["error"].startswith("device full: ") and "disk full" in m["error"], m["error"]
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(workdir)], capture_output=True)


def test_connection_dropped_mid_run(lab, inventory, tmp_path, device_dist):
    """sshd (and every session it forked) is stopped while the worker runs: that device's rows fail, others go on."""
    doomed = SSHServer(tmp_path / "ssh-doomed")
    workdir = tmp_path / "work-doomed"
    path = inventory(doomed.table("doomed", lab["python"], workdir, target="cpu-fp32"), device_table(lab, tmp_path))
    command = [sys.executable, "-m", "edgekit.cli", "bench", str(device_dist["dir"]), "--device", "doomed",
               "--device", "loopback", "-i", str(path), "--warmup", "2", "--min-runs", "5", "--min-time", "5",
               "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _workers(workdir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _workers(workdir), "the worker never started on the doomed device"
        doomed.stop()
        stdout, stderr = process.communicate(timeout=240)
    finally:
        process.kill()
        doomed.stop()
        for worker in _workers(workdir):  # orphaned by the dropped link: ours to clean up
            worker.kill()
    assert process.returncode == 1, stderr
    rows = {r["measurement"]["name"]: r["measurement"] for r in json.loads(stdout)["results"]}
    doomed_rows = [m for n, m in rows.items() if n.endswith("@doomed")]
    assert "connection lost" in doomed_rows[0]["error"] and "\n" not in doomed_rows[0]["error"]
    assert all("device doomed: " in m["error"] for m in doomed_rows[1:])
    assert all(m["error"] is None for n, m in rows.items() if n.endswith("@loopback"))


# --- edgekit build with [bench] devices ----------------------------------------------------------

def test_build_measures_on_bench_devices(cli, lab, tmp_path, device_dist):
    config = tmp_path / "edgekit.toml"
    device = device_table(lab, tmp_path)
    config.write_text(f'[model]\npath = "{device_dist["model"]}"\n\n[targets.cpu-fp32]\nformats = ["onnx"]\n\n'
                      f'[bench]\nwarmup = 2\nmin_runs = 5\nmin_time = 0\ndevices = ["loopback"]\n\n{device}')
    result = cli("build", "-c", config, "--json")
    assert result.code == 0, result
    rows = json.loads(result.stdout)
    names = [r["measurement"]["name"] for r in rows["report"]["results"]] if "report" in rows else None
    report = json.loads((tmp_path / "dist" / "reports" / "report.json").read_text())
    names = [r["measurement"]["name"] for r in report["results"]]
    assert names == ["cpu-fp32/onnx", "cpu-fp32/onnx@loopback"]
    assert report["results"][1]["measurement"]["device"]["fingerprint"]["runtime"].startswith("onnxruntime")


def test_bench_devices_must_name_an_inventory_device(cli, lab, tmp_path, device_dist):
    config = tmp_path / "edgekit.toml"
    config.write_text(f'[model]\npath = "{device_dist["model"]}"\n[targets.cpu-fp32]\n[bench]\ndevices = ["lopback"]\n'
                      + device_table(lab, tmp_path))
    one_line_exit_2(cli("build", "-c", config), str(config), "bench.devices[0]", "unknown device 'lopback'",
                    "did you mean 'loopback'")


def test_vendor_binary_route_with_openvinos_benchmark_app(cli, lab, inventory, tmp_path, device_dist):
    """The vendor-binary runner end to end over SSH, with the real benchmark_app of the openvino package."""
    tool = Path(sys.executable).parent / "benchmark_app"
    path = inventory(device_table(lab, tmp_path, runner="benchmark_app", binary_on_device=str(tool)))
    result = cli("bench", device_dist["dir"] / "cpu-fp32" / "tiny.xml", "--device", "loopback", "-i", path, "--all",
                 "--threads", "1", *FAST, "--json")
    assert result.code == 0, result
    m, = _rows(result).values()
    assert m["backend"]["runtime"] == "benchmark_app" and "-nthreads" in m["backend"]["argv"]
    assert m["latency"] is not None, (m["skipped"], m["backend"]["output_tail"])
    assert m["latency"]["p50_ms"] > 0 and m["latency"]["runs"] >= 5  # parsed from the tool's own report
    assert m["device"]["fingerprint"]["runtime"].startswith("benchmark_app")


def test_cooldown_is_recorded_and_a_missing_sensor_is_said(cli, lab, inventory, tmp_path, device_dist):
    path = inventory(device_table(lab, tmp_path, cooldown={"seconds": 0.2, "max_temperature_c": 70}))
    result = cli("bench", device_dist["dir"] / "cpu-fp32" / "tiny.onnx", "--device", "loopback", "-i", path, "--all",
                 *FAST, "--json")
    assert result.code == 0, result
    m, = _rows(result).values()
    cooldown = m["device"]["thermal"]["cooldown"]
    assert cooldown["fixed_s"] == 0.2
    if m["device"]["thermal"]["before"]["temperatures_c"] is None:  # this host exposes no thermal zone
        assert "no temperature sensor" in cooldown["note"]
    else:
        assert "waited_s" in cooldown
