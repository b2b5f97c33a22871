"""`edgekit inspect` on every model and artifact format; telemetry stays off."""
from __future__ import annotations

import json
import sys

import pytest


@pytest.mark.parametrize("relative", ["cpu/digits.tflite", "npu/digits.onnx", "cpu-fp32/digits.xml", "npu/digits.xml"])
def test_inspect_artifacts(cli, digits_dist, relative):
    result = cli("inspect", digits_dist["dir"] / relative, "--json")
    assert result.code == 0, result
    info = json.loads(result.stdout)
    assert info["bytes"] > 0 and info["parameters"] > 200_000
    assert info["inputs"][0]["shape"][1:] == [8, 8, 1]
    assert sum(info["ops"].values()) > 3


def test_inspect_keras_source_table(cli, digits_example):
    result = cli("inspect", digits_example["model"])
    assert result.code == 0, result
    assert "Conv2D" in result.stdout and "image" in result.stdout and "parameters" in result.stdout


def test_inspect_tflite_reports_int8_quantization(cli, digits_dist):
    info = json.loads(cli("inspect", digits_dist["dir"] / "npu" / "digits.tflite", "--json").stdout)
    assert info["inputs"][0]["dtype"] == "int8" and info["inputs"][0]["quantization"]["scale"] > 0


def test_inspect_missing_file_is_one_line(cli, tmp_path):
    result = cli("inspect", tmp_path / "nope.onnx")
    assert result.code == 2 and result.stderr.strip() == f"edgekit: error: model not found: {tmp_path / 'nope.onnx'}"


def test_runtimes_load_without_their_telemetry_clients():
    """OpenVINO's converter and NNCF fall back to their no-op stubs; ORT's events are disabled (README, Privacy)."""
    import subprocess

    code = (
        "import sys\n"
        "from edgekit._deps import require\n"
        "require('openvino'); require('onnxruntime')\n"
        "wrapper = require('nncf.telemetry.wrapper')\n"
        "import openvino.tools.ovc.telemetry_utils as ovc\n"
        "print(sys.modules['openvino_telemetry'] is None, isinstance(wrapper.telemetry, wrapper.NNCFTelemetryStub), ovc.tm.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "openvino.tools.ovc.telemetry_stub"]
