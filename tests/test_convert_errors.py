"""Bad input to `edgekit convert`: one line on stderr, exit 2, no traceback, nothing half-written."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import interrupt_after_first_artifact, one_line_exit_2


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(path, image=np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32))
    return path


def _corrupt_files(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "random.onnx").write_bytes(rng.bytes(4096))
    (tmp_path / "random.tflite").write_bytes(rng.bytes(4096))
    (tmp_path / "random.keras").write_bytes(rng.bytes(4096))
    (tmp_path / "empty.tflite").write_bytes(b"")
    (tmp_path / "not_saved_model").mkdir()


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("missing.keras", "model not found"),
        ("random.onnx", "random.onnx"),
        ("random.tflite", "random.tflite"),
        ("random.keras", "not a loadable Keras model"),
        ("empty.tflite", "file is empty"),
        ("not_saved_model", "no saved_model.pb"),
        ("model.pt", "a PyTorch checkpoint (.pt"),
    ],
)
def test_bad_model_files(cli, tmp_path, tiny_keras_path, name, fragment):
    _corrupt_files(tmp_path)
    if name == "model.pt":
        (tmp_path / name).write_bytes(b"x")
    out = tmp_path / "out"
    result = cli("convert", tmp_path / name, "-t", "cpu-fp32", "-o", out)
    one_line_exit_2(result, fragment)
    assert not (out / "manifest.json").exists()


def test_truncated_tflite_and_onnx(cli, tmp_path, tiny_keras_path):
    out = tmp_path / "good"
    assert cli("convert", tiny_keras_path, "-t", "cpu-fp32", "-f", "tflite,onnx", "-o", out, "-q").code == 0
    for fmt in ("tflite", "onnx"):
        whole = (out / "cpu-fp32" / f"tiny.{fmt}").read_bytes()
        truncated = tmp_path / f"truncated.{fmt}"
        truncated.write_bytes(whole[: len(whole) // 2])
        result = cli("convert", truncated, "-t", "cpu-fp32", "-f", "onnx", "-o", tmp_path / "o2")
        one_line_exit_2(result, f"truncated.{fmt}")


def test_unknown_target_suggests(cli, tmp_path, tiny_keras_path):
    one_line_exit_2(cli("convert", tiny_keras_path, "-t", "npuu", "-o", tmp_path), "did you mean 'npu'")


def test_invalid_profile_file(cli, tmp_path, tiny_keras_path):
    profile = tmp_path / "board.toml"
    profile.write_text('extends = "cpu"\n[formats.onnx]\nactivation_typ = "uint8"\n')
    one_line_exit_2(cli("convert", tiny_keras_path, "-t", profile, "-o", tmp_path / "o"),
                     str(profile), "formats.onnx.activation_typ", "did you mean 'activation_type'")


def test_missing_calibration_names_target_and_format(cli, tmp_path, tiny_keras_path):
    one_line_exit_2(cli("convert", tiny_keras_path, "-t", "cpu", "-o", tmp_path / "o"),
                     "target 'cpu' format tflite (int8-full) needs calibration data", "-c data.npz")


@pytest.mark.parametrize(
    "arrays, fragment",
    [
        ({"img": np.zeros((4, 8, 8, 1), np.float32), "x": np.zeros(1)}, "matches no model input"),
        ({"image": np.zeros((4, 9, 9, 1), np.float32)}, "expects (N, 8, 8, 1)"),
        ({"image": np.zeros((4, 8, 8, 1), np.int32)}, "is int32 but the model takes float32"),
        ({"image": np.full((4, 8, 8, 1), np.inf, np.float32)}, "NaN or Inf"),
        ({"image": np.zeros((0, 8, 8, 1), np.float32)}, "zero samples"),
    ],
)
def test_bad_calibration_data(cli, tmp_path, tiny_keras_path, arrays, fragment):
    path = tmp_path / "calib.npz"
    np.savez(path, **arrays)
    one_line_exit_2(cli("convert", tiny_keras_path, "-t", "cpu", "-c", path, "-o", tmp_path / "o"), fragment, "calib.npz")


def test_unwritable_output(cli, tmp_path, tiny_keras_path, calib):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_exit_2(cli("convert", tiny_keras_path, "-t", "cpu-fp32", "-o", blocker), "exists and is not a directory")
    one_line_exit_2(cli("convert", tiny_keras_path, "-t", "cpu-fp32", "-o", blocker / "sub"), "not writable")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["-t", "coral-edgetpu", "-f", "onnx"], "target 'coral-edgetpu' defines no onnx recipe (it defines: tflite)"),
        (["-t", "cpu-fp32", "-f", "openvino", "--precision", "int16x8"], "openvino does not support precision int16x8"),
        (["-t", "cpu", "--precision", "int8-ful"], "did you mean 'int8-full'"),
        (["-t", "cpu", "-f", "tflite,caffe"], "unknown format 'caffe'"),
        (["-t", "cpu", "--calibration-samples", "0"], "at least 1"),
        (["-t", "cpu", "-t", "cpu"], "unique"),
        (["-t", "cpu", "--preprocess", "layout=CHW"], "layout must be NHWC or NCHW"),
    ],
)
def test_conflicting_or_invalid_options(cli, tmp_path, tiny_keras_path, calib, args, fragment):
    one_line_exit_2(cli("convert", tiny_keras_path, "-c", calib, "-o", tmp_path / "o", *args), fragment)


def test_failure_leaves_previous_manifest_and_no_partial_files(cli, tmp_path, tiny_keras_path, calib):
    out = tmp_path / "out"
    assert cli("convert", tiny_keras_path, "-t", "cpu-fp32", "-f", "onnx", "-o", out, "-q").code == 0
    before = (out / "manifest.json").read_bytes()
    listing = sorted(p.relative_to(out) for p in out.rglob("*"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, image=np.full((4, 8, 8, 1), np.nan, np.float32))
    assert cli("convert", tiny_keras_path, "-t", "cpu", "-c", bad, "-o", out).code == 2
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == listing


def test_interrupted_run_keeps_previous_manifest(tmp_path, tiny_keras_path, calib):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "edgekit", "convert", str(tiny_keras_path), "-c", str(calib), "-o", str(out)]
    first = subprocess.run([*command, "-t", "cpu-fp32", "-f", "onnx", "-q"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    before = json.loads((out / "manifest.json").read_text())
    interrupt_after_first_artifact([*command, "-t", "cpu", "-t", "gpu", "-t", "npu"])
    assert json.loads((out / "manifest.json").read_text()) == before
    assert not list(out.glob(".edgekit-staging-*")), "staging directory left behind"
    assert not (out / "cpu").exists()
