"""`edgekit doctor` reports this host as the OS and the runtimes see it."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest


@pytest.fixture(scope="module")
def facts(cli):
    result = cli("doctor", "--json")
    assert result.code == 0, result
    return json.loads(result.stdout)


@pytest.mark.skipif(shutil.which("lscpu") is None, reason="lscpu is not installed")
def test_cpu_matches_lscpu(facts):
    lscpu = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines())
    )
    cpu = facts["host"]["cpu"]
    assert cpu["model"] == lscpu["Model name"]
    assert cpu["logical_cores"] == int(lscpu["CPU(s)"])
    flags = set(lscpu.get("Flags", "").split())
    expected = {"avx2": "AVX2", "avx512f": "AVX-512F", "avx512_vnni": "AVX-512 VNNI", "avx512_bf16": "AVX-512 BF16",
                "amx_tile": "AMX", "asimd": "NEON", "asimddp": "dot-product", "i8mm": "i8mm", "sve": "SVE"}
    for flag, name in expected.items():
        assert (name in cpu["features"]) == (flag in flags), name


def test_runtimes_and_their_devices(facts):
    import onnxruntime
    import openvino

    found = facts["runtimes"]
    assert found["onnxruntime"]["devices"] == onnxruntime.get_available_providers()
    assert found["openvino"]["devices"] == openvino.Core().available_devices
    assert found["tflite"]["package"].startswith("ai-edge-litert") and "CPU" in found["tflite"]["devices"]


def test_every_builtin_target_is_marked(facts):
    rows = {(r["target"], r["format"]): r["status"] for r in facts["targets"]}
    assert rows[("cpu", "onnx")] == "measure" and rows[("cpu-fp32", "openvino")] == "measure"
    if "CUDAExecutionProvider" not in facts["runtimes"]["onnxruntime"]["devices"]:
        assert rows[("gpu", "onnx")] == "verify only"
    assert set(rows.values()) <= {"measure", "verify only", "unavailable"}


def test_doctor_table(cli):
    result = cli("doctor")
    assert result.code == 0 and "ISA" in result.stdout and "verify only" in result.stdout
