"""PyTorch sources (.pt2, nn.Module, ExportedProgram) to ONNX, OpenVINO and TFLite, verified against PyTorch."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgekit  # noqa: E402
from tests.conftest import one_line_exit_2  # noqa: E402
from tests.torch_models import SmallCNN, TwoInputs  # noqa: E402

TARGETS = ["cpu", "cpu-fp32", "gpu", "npu"]


@pytest.fixture(scope="module")
def two_inputs():
    torch.manual_seed(0)
    return TwoInputs().eval(), (torch.rand(1, 3, 16, 16), torch.rand(1, 5))


@pytest.fixture(scope="module")
def two_calibration():
    rng = np.random.default_rng(0)
    return {"image": rng.random((32, 3, 16, 16), dtype=np.float32), "features": rng.random((32, 5), dtype=np.float32)}


@pytest.fixture(scope="module")
def cnn_pt2(tmp_path_factory):
    """SmallCNN exported with a dynamic batch and saved with torch.export.save."""
    torch.manual_seed(0)
    batch = torch.export.Dim("batch", max=64)
    program = torch.export.export(SmallCNN().eval(), (torch.rand(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    path = tmp_path_factory.mktemp("torch") / "cnn.pt2"
    torch.export.save(program, path)
    return path


@pytest.fixture(scope="module")
def cnn_calibration(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "calib.npz"
    np.savez(path, image=np.random.default_rng(1).random((32, 3, 32, 32), dtype=np.float32))
    return path


def _by_key(manifest):
    return {(a.target, a.format): a for a in manifest.artifacts}


def test_two_input_module_converts_for_every_target(two_inputs, two_calibration, tmp_path):
    module, example = two_inputs
    manifest = edgekit.convert(module, TARGETS, example_inputs=example, formats=["tflite", "onnx", "openvino"],
                               calibration=two_calibration, output=tmp_path)
    assert manifest.passed and not manifest.errors
    artifacts = _by_key(manifest)
    assert set(artifacts) == {(t, f) for t in TARGETS for f in ("tflite", "onnx", "openvino")}
    for artifact in artifacts.values():
        assert [s.name for s in artifact.inputs] == ["image", "features"]
        assert artifact.layout == "NCHW" and artifact.inputs[0].shape[1:] == (3, 16, 16)
        assert artifact.verification.cosine > 0.99, artifact
        assert "torch" in artifact.tools
    assert artifacts[("npu", "onnx")].inputs[0].dtype == "int8"
    assert artifacts[("npu", "tflite")].inputs[0].dtype == "int8"
    assert artifacts[("gpu", "tflite")].inputs[0].dtype == "float32"
    # ai-edge-quantizer's ranges are the min/max over all calibration samples (its default, a moving
    # average of batch-1 ranges, would stop short of the largest feature value and clip it).
    features = artifacts[("npu", "tflite")].inputs[1].quantization
    assert (127 - features.zero_point) * features.scale >= two_calibration["features"].max() - features.scale
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["source"]["format"] == "torch"
    assert {a["layout"] for a in saved["artifacts"]} == {"NCHW"}


def test_pt2_file_from_the_cli_keeps_names_and_dynamic_batch(cli, cnn_pt2, cnn_calibration, tmp_path):
    result = cli("convert", cnn_pt2, "-t", "cpu", "-t", "cpu-fp32", "-f", "onnx,openvino", "-c", cnn_calibration,
                 "-o", tmp_path, "-q")
    assert result.code == 0, result
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["source"]["inputs"][0]["name"] == "image"
    assert saved["source"]["inputs"][0]["shape"] == [None, 3, 32, 32]
    for artifact in saved["artifacts"]:
        assert artifact["verification"]["passed"], artifact
        assert (tmp_path / artifact["path"]).is_file()


def test_input_names_rename_the_program_inputs(two_inputs, tmp_path):
    module, example = two_inputs
    program = torch.export.export(module, example)
    manifest = edgekit.convert(program, "cpu-fp32", formats=["onnx", "openvino"], input_names=["pixels", "meta"],
                               output=tmp_path)
    assert manifest.passed
    assert {tuple(s.name for s in a.inputs) for a in manifest.artifacts} == {("pixels", "meta")}


def test_nhwc_layout_from_an_nchw_model_verifies(cli, cnn_pt2, cnn_calibration, tmp_path):
    result = cli("convert", cnn_pt2, "-t", "cpu", "-t", "cpu-fp32", "-f", "tflite,onnx,openvino", "-c", cnn_calibration,
                 "--preprocess", "layout=NHWC", "-o", tmp_path, "-q")
    assert result.code == 0, result
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert {a["format"] for a in saved["artifacts"]} == {"tflite", "onnx", "openvino"}
    for artifact in saved["artifacts"]:
        assert artifact["layout"] == "NHWC"
        assert artifact["inputs"][0]["shape"][1:] == [32, 32, 3]
        assert artifact["verification"]["passed"] and artifact["verification"]["cosine"] > 0.99, artifact


# --- bad input --------------------------------------------------------------------


@pytest.mark.parametrize("what", ["state_dict", "module"])
def test_a_pickled_checkpoint_is_refused_with_how_to_export(cli, tmp_path, what):
    model = SmallCNN()
    path = tmp_path / ("weights.pth" if what == "state_dict" else "model.pt")
    torch.save(model.state_dict() if what == "state_dict" else model, path)
    result = cli("convert", path, "-t", "cpu-fp32", "-o", tmp_path / "out")
    one_line_exit_2(result, path.name, "torch.export.save")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_file_that_is_not_a_program_is_refused(cli, tmp_path):
    path = tmp_path / "broken.pt2"
    path.write_bytes(b"not a zip archive")
    one_line_exit_2(cli("convert", path, "-t", "cpu-fp32", "-o", tmp_path / "out"), "broken.pt2", "torch.export")


@pytest.mark.parametrize("bad, fragment", [
    ({"image": np.zeros((8, 3, 16, 16), np.float32)}, "no array for model input 'features'"),
    ({"image": np.zeros((8, 16, 16, 3), np.float32), "features": np.zeros((8, 5), np.float32)},
     "input 'image' has shape (8, 16, 16, 3)"),
    ({"image": np.zeros((8, 3, 16, 16), np.int64), "features": np.zeros((8, 5), np.float32)}, "input 'image' is int64"),
])
def test_calibration_not_matching_the_example_inputs_names_the_input(cli, two_inputs, tmp_path, bad, fragment):
    module, example = two_inputs
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(module, example), path)
    data = tmp_path / "calib.npz"
    np.savez(data, **bad)
    one_line_exit_2(cli("convert", path, "-t", "cpu", "-c", data, "-o", tmp_path / "out"), fragment)


class _Inverse(torch.nn.Module):
    """torch.linalg.inv: no ONNX translation in torch.onnx, no OpenVINO conversion rule."""

    def forward(self, x):
        return torch.linalg.inv(x).sum(-1)


class _Spectrum(torch.nn.Module):
    """torch.fft.rfft: litert-torch and torch.onnx lower it, OpenVINO's PyTorch frontend has no rule."""

    def forward(self, x):
        return torch.fft.rfft(x).abs()


def test_an_op_an_exporter_cannot_lower_fails_that_artifact_naming_the_op(cli, tmp_path):
    path = tmp_path / "spectrum.pt2"
    torch.export.save(torch.export.export(_Spectrum(), (torch.rand(1, 16),)), path)
    result = cli("convert", path, "-t", "cpu-fp32", "-o", tmp_path / "out", "-q")
    assert result.code == 1, result
    saved = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(e["format"], "fft_r2c" in e["error"]) for e in saved["errors"]] == [("openvino", True)]
    assert sorted(a["format"] for a in saved["artifacts"]) == ["onnx", "tflite"]
    assert "Traceback" not in result.stderr


def test_the_onnx_exporter_names_the_op_it_cannot_translate(two_inputs, tmp_path):
    manifest = edgekit.convert(_Inverse(), "cpu-fp32", example_inputs=(torch.eye(4)[None] + 0.1,), formats=["onnx"],
                               output=tmp_path)
    assert not manifest.passed
    assert "linalg_inv" in manifest.errors[0]["error"] and "ONNX" in manifest.errors[0]["error"]


def test_an_onnx_artifact_with_external_data_is_two_files(tmp_path):
    from edgekit.artifact import Artifact

    model = tmp_path / "big.onnx"
    model.write_bytes(b"graph")
    artifact = Artifact("cpu", "onnx", "fp32", model, "onnxruntime", "CPU", [], [], {}, 0.0)
    assert artifact.files() == [model]
    (tmp_path / "big.onnx.data").write_bytes(b"weights")
    artifact.fingerprint()
    assert artifact.files() == [model, tmp_path / "big.onnx.data"] and artifact.bytes == len(b"graphweights")
