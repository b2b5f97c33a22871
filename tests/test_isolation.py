"""One artifact is one unit of failure, and the tools' own output goes to log files.

Faults are forced inside the real conversion children (tests/faults.py): a Python
exception, a native crash (SIGSEGV, SIGABRT), a file the runtime cannot load, a hang.
The real converters run for every other (target, format), as a user's command would.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import faults

# edgekit's own lines on stderr; anything else on the terminal is a tool talking.
OWN_PREFIXES = ("source: ", "calibration: ", "skipped ", "ok ", "FAIL ", "FAILED ", "    ", "wrote ", "edgekit: error: ")


def _run(args, env, timeout=400):
    command = [sys.executable, "-m", "edgekit", "convert", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


# What the tools print from C++ on their own: TensorFlow's banners where oneDNN is on (AVX-512 hosts),
# and LiteRT's delegate line everywhere (an AVX2-only host prints no TensorFlow banner at all).
TOOL_BANNERS = ("absl", "oneDNN", "XNNPACK delegate", "Fatal Python error")  # the last: the segv child's fd 2


def _loud_env(**extra):
    """The environment a user has: TensorFlow's C++ banners on (conftest turns them off for speed of reading)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, **extra}


@pytest.fixture(scope="module")
def faulty_run(tiny_keras_path, tmp_path_factory):
    """cpu-fp32 and gpu in every format (6 artifacts), four of them forced to fail four ways."""
    folder = tmp_path_factory.mktemp("faults")
    env = faults.environment(folder / "site", ",".join([
        "cpu-fp32/tflite=raise",   # Python exception in the converter
        "gpu/tflite=segv",         # native crash, last item of its group
        "cpu-fp32/onnx=abort",     # native crash, first item: the group goes on in a new child
        "cpu-fp32/openvino=corrupt",  # the runtime cannot load what the converter wrote
    ]), base=_loud_env())
    out = folder / "out"
    result = _run([tiny_keras_path, "-t", "cpu-fp32", "-t", "gpu", "-o", out], env)
    return result, out


def test_each_failure_costs_its_artifact_only(faulty_run):
    result, out = faulty_run
    assert result.returncode == 1, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    made = {(a["target"], a["format"]) for a in manifest["artifacts"]}
    assert made == {("gpu", "onnx"), ("gpu", "openvino")}, result.stderr
    assert all(a["verification"]["passed"] for a in manifest["artifacts"])
    assert all((out / a["path"]).is_file() for a in manifest["artifacts"])
    errors = {(e["target"], e["format"]): e for e in manifest["errors"]}
    assert set(errors) == {("cpu-fp32", "tflite"), ("gpu", "tflite"), ("cpu-fp32", "onnx"), ("cpu-fp32", "openvino")}
    raised = errors[("cpu-fp32", "tflite")]["error"]
    assert "TFLiteConverter raised RuntimeError" in raised and "tf.ForcedFault" in raised
    assert "TFLiteConverter crashed (SIGSEGV)" in errors[("gpu", "tflite")]["error"]
    assert "crashed (SIGABRT)" in errors[("cpu-fp32", "onnx")]["error"]
    assert "tf2onnx" in errors[("cpu-fp32", "onnx")]["error"]
    assert "OpenVINO" in errors[("cpu-fp32", "openvino")]["error"] and "tiny.xml" in errors[("cpu-fp32", "openvino")]["error"]
    for error in errors.values():
        assert "\n" not in error["error"]
        log = out / error["log"]
        assert log.is_file() and error["log"] == f"logs/{error['target']}-{error['format']}.log"
    # The crash's own words and Python stack are in its log, not on the terminal.
    assert "forced native crash (segv)" in (out / "logs" / "gpu-tflite.log").read_text()
    assert "Traceback" in (out / "logs" / "cpu-fp32-tflite.log").read_text()
    assert "Traceback" not in result.stderr
    for artifact in manifest["artifacts"]:
        assert artifact["log"] == f"logs/{artifact['target']}-{artifact['format']}.log"
    assert f"4 artifact(s) failed" in result.stderr.strip().splitlines()[-1]


def test_no_message_names_a_staging_path(faulty_run):
    result, out = faulty_run
    assert ".edgekit-staging-" not in result.stderr
    assert ".edgekit-staging-" not in (out / "manifest.json").read_text()
    assert not list(out.glob(".edgekit-staging-*"))


def test_default_terminal_shows_edgekit_lines_only(faulty_run):
    result, out = faulty_run
    strangers = [line for line in result.stderr.splitlines() if line and not line.startswith(OWN_PREFIXES)]
    assert not strangers, strangers
    assert result.stdout == ""
    tool_lines = "".join(log.read_text() for log in (out / "logs").glob("*.log"))
    assert any(marker in tool_lines for marker in TOOL_BANNERS)  # the tools' C++ prints were captured, not lost


def test_verbose_streams_the_tools_output(tiny_keras_path, tmp_path):
    out = tmp_path / "out"
    result = _run([tiny_keras_path, "-t", "cpu-fp32", "-f", "tflite", "-o", out, "-v"], _loud_env())
    assert result.returncode == 0, result.stderr
    log = (out / "logs" / "cpu-fp32-tflite.log").read_text() + (out / "logs" / "source.log").read_text()
    banner = next(line for line in log.splitlines() if any(marker in line for marker in TOOL_BANNERS))
    assert banner in result.stderr  # streamed as well as logged
    # ... and logged once: the child's tee must not reach the log a second time through the parent
    assert log.count(banner) == result.stderr.count(banner)
    assert any(line.startswith("ok cpu-fp32/tflite") for line in result.stderr.splitlines())


def test_a_hung_converter_is_stopped_and_reported(tiny_keras_path, tmp_path):
    env = faults.environment(tmp_path / "site", "cpu-fp32/onnx=hang")
    out = tmp_path / "out"
    # One artifact: a short limit must not catch real conversions on a loaded host (the other
    # artifacts completing is test_each_failure_costs_its_artifact_only's job).
    result = _run([tiny_keras_path, "-t", "cpu-fp32", "-f", "onnx", "-o", out, "--timeout", "10"], env)
    assert result.returncode == 1, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"] == []
    (error,) = manifest["errors"]
    assert "hung: no result after 10 s" in error["error"] and "cpu-fp32/onnx" in error["error"]


def test_a_repair_that_crashes_keeps_the_unrepaired_artifact(tiny_keras_path, tiny_calibration, tmp_path):
    # A tolerance no int8 artifact meets starts the repair; its first trial crashes the child.
    profile = tmp_path / "strict.toml"
    profile.write_text('extends = "cpu"\n[tolerances.int8-full]\nmin_cosine = 0.999999\n')
    calibration = tmp_path / "calib.npz"
    np.savez(calibration, **tiny_calibration)
    env = faults.environment(tmp_path / "site", "strict/tflite=segv-on-repair")
    out = tmp_path / "out"
    result = _run([tiny_keras_path, "-t", profile, "-f", "tflite", "-c", calibration, "-o", out], env)
    assert result.returncode == 1, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["errors"] == []
    (artifact,) = manifest["artifacts"]
    assert (out / artifact["path"]).is_file()  # a relative path joins `out`; an absolute one replaces it
    assert artifact["verification"]["passed"] is False and artifact["repair"]["met"] is False
    assert "crashed (SIGSEGV) while repairing strict/tflite" in artifact["repair"]["fault"]
    assert any("unrepaired artifact" in note for note in artifact["notes"])
    assert "not repaired" in result.stderr


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_side_by_side_children_split_the_cpus_and_keep_to_their_share(monkeypatch):
    from edgekit import isolation

    cpus = sorted(os.sched_getaffinity(0))
    shares = isolation.cpu_shares(2)
    if len(cpus) >= 2:
        assert shares[0] and shares[1] and not shares[0] & shares[1] and shares[0] | shares[1] == set(cpus)
    else:
        assert shares == [None, None]
    assert isolation.cpu_shares(1) == [None]
    monkeypatch.setenv("EDGEKIT_WORKER_AFFINITY", "0")
    assert isolation.cpu_shares(2) == [None, None]

    # The worker takes its share before anything else runs (so runtimes size their pools to it).
    script = "import os; from edgekit.conversion_worker import _take_cpu_share; _take_cpu_share(); print(sorted(os.sched_getaffinity(0)))"
    env = {**os.environ, "EDGEKIT_WORKER_CPUS": str(cpus[0])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"[{cpus[0]}]"
