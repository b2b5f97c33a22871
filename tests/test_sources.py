"""Every source format converts: Keras MobileNetV2, SavedModel, ONNX and TFLite files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def digits_fp32(digits_example, tmp_path_factory):
    """fp32 .onnx and .tflite files of the digits model, as a user would bring them."""
    from edgekit import convert

    out = tmp_path_factory.mktemp("fp32")
    manifest = convert(digits_example["model"], "cpu-fp32", formats=["tflite", "onnx"], output=out)
    return {a.format: a.path for a in manifest.artifacts}


def test_onnx_source_converts_and_skips_tflite_saying_why(cli, digits_example, digits_fp32, tmp_path):
    result = cli("convert", digits_fp32["onnx"], "-t", "cpu", "-t", "npu", "-c", digits_example["calibration"], "-o", tmp_path)
    assert result.code == 0, result
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["source"]["format"] == "onnx"
    assert {(a["target"], a["format"]) for a in data["artifacts"]} == {
        ("cpu", "onnx"), ("cpu", "openvino"), ("npu", "onnx"), ("npu", "openvino")}
    assert all(a["verification"]["passed"] for a in data["artifacts"])
    assert {s["format"] for s in data["skipped"]} == {"tflite"}
    assert "skipped cpu/tflite: no converter from a onnx model to tflite" in result.stderr


def test_tflite_source_converts(cli, digits_example, digits_fp32, tmp_path):
    result = cli("convert", digits_fp32["tflite"], "-t", "cpu-fp32", "-t", "cpu", "-c", digits_example["calibration"], "-o", tmp_path)
    assert result.code == 0, result
    data = json.loads((tmp_path / "manifest.json").read_text())
    produced = {(a["target"], a["format"]) for a in data["artifacts"]}
    assert produced == {("cpu-fp32", f) for f in ("tflite", "onnx", "openvino")} | {("cpu", "onnx"), ("cpu", "openvino")}
    assert data["skipped"][0]["reason"].startswith("a .tflite source cannot be re-quantized")
    assert all(a["verification"]["passed"] for a in data["artifacts"])


def test_tflite_source_requantize_asked_explicitly_is_an_error(cli, digits_example, digits_fp32, tmp_path):
    result = cli("convert", digits_fp32["tflite"], "-t", "cpu", "-f", "tflite", "-c", digits_example["calibration"], "-o", tmp_path)
    assert result.code == 2 and "cannot be re-quantized" in result.stderr


def test_saved_model_source_converts_for_npu(digits_example, tmp_path):
    import keras

    from edgekit import convert

    saved = tmp_path / "saved"
    keras.models.load_model(digits_example["model"]).export(str(saved), format="tf_saved_model", verbose=False)
    manifest = convert(saved, "npu", calibration=digits_example["calibration"], output=tmp_path / "out")
    assert manifest.passed and len(manifest.artifacts) == 3
    assert all(spec.dtype == "int8" for a in manifest.artifacts for spec in a.inputs + a.outputs)


@pytest.mark.slow  # 3-6 min on a 2-core host: `make test-slow`; the zoo's fast subset keeps trained models in `make test`
def test_mobilenet_v2_converts_for_cpu_in_every_format(tmp_path):
    """Keras MobileNetV2 (224x224, weights=None) -> static int8 TFLite, ONNX and OpenVINO, verified."""
    script = "from pathlib import Path; from tests.models import build_mobilenet; import sys; build_mobilenet(Path(sys.argv[1]), calibration=32)"
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, cwd=Path(__file__).parents[1])
    from tests.models import random_weights_profile

    result = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(tmp_path / "mobilenet_v2.keras"), "-t", str(random_weights_profile(tmp_path)),
         "-c", str(tmp_path / "calib.npz"), "-o", str(tmp_path / "dist"), "--json"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    artifacts = json.loads(result.stdout)["artifacts"]
    assert {a["format"] for a in artifacts} == {"tflite", "onnx", "openvino"}
    for artifact in artifacts:
        assert artifact["verification"]["passed"], artifact
        assert artifact["bytes"] < 5e6  # int8 weights: ~3.5 M parameters
