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
    yield {"server": server, "python": str(python), "bare_python": str(bare / "bin" / "python"), "root": root}
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


def test_adb_server_not_running_is_unreachable(cli, inventory):
    path = inventory(f'[devices.phone]\ntransport = "adb"\ntarget = "cpu"\nadb_server = "127.0.0.1:{free_port()}"\n')
    status, = json.loads(cli("devices", "-i", path, "--json").stdout)
    assert not status["reachable"] and "not reachable" in status["error"] and "adb start-server" in status["error"]
