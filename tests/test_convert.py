"""`edgekit convert` end to end on the digits example, checked with each runtime's own API."""
from __future__ import annotations

import json

import numpy as np
import pytest

GENERIC = ["cpu", "gpu", "npu", "cpu-fp32"]


@pytest.fixture(scope="module")
def converted(digits_dist):
    return digits_dist["manifest"], json.loads((digits_dist["dir"] / "manifest.json").read_text()), digits_dist["dir"]


@pytest.fixture(scope="module")
def keras_accuracy(digits_example):
    import keras

    data = np.load(digits_example["evaluation"])
    model = keras.models.load_model(digits_example["model"])
    return float(np.mean(model.predict(data["image"], verbose=0).argmax(1) == data["labels"]))


def test_every_target_and_format_is_produced_and_verified(converted):
    manifest, data, out = converted
    produced = {(a["target"], a["format"]) for a in data["artifacts"]}
    assert produced == {(t, f) for t in GENERIC for f in ("tflite", "onnx", "openvino")}
    assert data["errors"] == [] and data["skipped"] == []
    for entry in data["artifacts"]:
        check = entry["verification"]
        assert check["passed"], entry
        assert check["samples"] == 100
        assert (out / entry["path"]).is_file()
        assert entry["sha256"] and entry["bytes"] > 0 and entry["tools"]
    assert manifest.passed


def test_manifest_schema(converted, digits_example):
    _, data, _ = converted
    assert data["schema"] == "edgekit.manifest/1"
    assert data["source"]["format"] == "keras" and data["source"]["sha256"]
    assert data["source"]["inputs"] == [{"name": "image", "shape": [None, 8, 8, 1], "dtype": "float32", "quantization": None}]
    assert data["calibration"]["samples"] == 200
    entry = data["artifacts"][0]
    for key in ("target", "format", "precision", "path", "sha256", "bytes", "runtime", "device", "inputs", "outputs",
                "verification", "tools", "seconds"):
        assert key in entry
    for key in ("passed", "samples", "max_abs_error", "mean_abs_error", "cosine", "top1_agreement"):
        assert key in entry["verification"]


def test_npu_artifacts_have_int8_io_with_quantization(converted):
    _, data, _ = converted
    npu = [a for a in data["artifacts"] if a["target"] == "npu"]
    assert len(npu) == 3
    for entry in npu:
        for spec in entry["inputs"] + entry["outputs"]:
            assert spec["dtype"] == "int8", entry["format"]
            assert spec["quantization"]["scale"] > 0 and -128 <= spec["quantization"]["zero_point"] <= 127


def test_sizes_against_fp32(converted):
    _, data, _ = converted
    size = {(a["target"], a["format"]): a["bytes"] for a in data["artifacts"]}
    for fmt in ("tflite", "onnx", "openvino"):
        fp32 = size[("cpu-fp32", fmt)]
        assert size[("cpu", fmt)] <= 0.3 * fp32, fmt
        assert size[("npu", fmt)] <= 0.3 * fp32, fmt
        assert size[("gpu", fmt)] <= 0.55 * fp32, fmt


def _quantize(spec, x):
    q = spec["quantization"]
    if q is None:
        return x.astype(spec["dtype"])
    info = np.iinfo(spec["dtype"])
    return np.clip(np.round(x / q["scale"]) + q["zero_point"], info.min, info.max).astype(spec["dtype"])


def _dequantize(spec, y):
    q = spec["quantization"]
    return y.astype(np.float32) if q is None else (y.astype(np.float32) - q["zero_point"]) * q["scale"]


def _predict_independently(entry, path, images):
    """Run an artifact with its runtime's own API (not edgekit's backends), one image at a time."""
    inp, outp = entry["inputs"][0], entry["outputs"][0]
    logits = []
    if entry["format"] == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        i_index = interpreter.get_input_details()[0]["index"]
        o_index = interpreter.get_output_details()[0]["index"]
        for image in images:
            interpreter.set_tensor(i_index, _quantize(inp, image[None]))
            interpreter.invoke()
            logits.append(_dequantize(outp, interpreter.get_tensor(o_index)))
    elif entry["format"] == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for image in images:
            (result,) = session.run([outp["name"]], {inp["name"]: _quantize(inp, image[None])})
            logits.append(_dequantize(outp, result))
    else:
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        for image in images:
            result = compiled(_quantize(inp, image[None]))[0]
            logits.append(_dequantize(outp, result))
    return np.concatenate(logits).argmax(axis=1)


def test_accuracy_within_1_5_points_of_keras_on_each_runtime(converted, digits_example, keras_accuracy):
    _, data, out = converted
    evaluation = np.load(digits_example["evaluation"])
    for entry in data["artifacts"]:
        predictions = _predict_independently(entry, out / entry["path"], evaluation["image"])
        accuracy = float(np.mean(predictions == evaluation["labels"]))
        assert accuracy >= keras_accuracy - 0.015, (entry["target"], entry["format"], accuracy, keras_accuracy)


def test_cli_json_and_rerun_is_deterministic_where_converters_allow(cli, digits_example, tmp_path):
    args = ["convert", digits_example["model"], "-t", "cpu-fp32", "-t", "npu", "-c", digits_example["calibration"]]
    first = cli(*args, "-o", tmp_path / "a", "--json")
    assert first.code == 0, first
    manifest = json.loads(first.stdout)
    second = json.loads(cli(*args, "-o", tmp_path / "b", "--json").stdout)
    same = {(a["target"], a["format"]): a["sha256"] for a in manifest["artifacts"]}
    again = {(a["target"], a["format"]): a["sha256"] for a in second["artifacts"]}
    assert same[("cpu-fp32", "tflite")] == again[("cpu-fp32", "tflite")]
    assert same[("cpu-fp32", "onnx")] == again[("cpu-fp32", "onnx")]


def test_verification_failure_marks_artifact_and_exits_1(cli, digits_example, tmp_path):
    strict = tmp_path / "strict.toml"
    strict.write_text('extends = "cpu"\nrepair = false\n[formats.tflite]\ntolerance = { min_cosine = 0.999999999 }\n[formats.onnx]\nenabled = false\n[formats.openvino]\nenabled = false\n')
    result = cli("convert", digits_example["model"], "-t", strict, "-c", digits_example["calibration"], "-o", tmp_path / "o")
    assert result.code == 1, result
    data = json.loads((tmp_path / "o" / "manifest.json").read_text())
    check = data["artifacts"][0]["verification"]
    assert check["passed"] is False and "cosine" in check["failures"][0]
    assert "FAIL strict/tflite" in result.stderr


def test_in_memory_keras_model_and_samples_count(digits_example, tmp_path):
    import keras

    from edgekit import convert

    model = keras.models.load_model(digits_example["model"])
    calib = dict(np.load(digits_example["calibration"]))
    manifest = convert(model, "cpu", formats=["tflite"], calibration=calib, calibration_samples=50, output=tmp_path)
    assert manifest.calibration["samples"] == 50
    assert manifest.artifacts[0].path.name == "model.tflite" and manifest.passed
