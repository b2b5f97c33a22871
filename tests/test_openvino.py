"""OpenVINO converter and backend on the tiny CNN: every precision, int I/O, other sources, bad files."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.artifact import TensorSpec
from edgekit.benchmarks.base import ArtifactLoadError, DeviceUnavailable
from edgekit.benchmarks.openvino_backend import OpenVINOBackend
from edgekit.converters.base import ConvertJob
from edgekit.converters.openvino import convert
from edgekit.converters.source import SourceModel
from edgekit.dataset import Dataset
from edgekit.errors import ConversionError
from edgekit.iocast import from_output, to_input
from edgekit.targets.schema import Format, Recipe

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _job(source, exports, calibration, output: Path, **recipe) -> ConvertJob:
    return ConvertJob(
        source=source,
        target="test",
        format=Format.OPENVINO,
        recipe=Recipe(runtime="openvino", **recipe),
        calibration=Dataset(calibration),
        exports=exports,
        output=output,
    )


@pytest.fixture(scope="module")
def eval_data() -> np.ndarray:
    return np.random.default_rng(1).random((16, 8, 8, 1), dtype=np.float32)


@pytest.fixture(scope="module")
def reference(tiny_source, eval_data) -> np.ndarray:
    return tiny_source.run({"image": eval_data})[0]


@pytest.fixture(scope="module")
def make(tiny_source, tiny_exports, tiny_calibration, tmp_path_factory):
    """Converts the tiny Keras model once per recipe: make(name, **recipe) -> (xml path, Converted)."""
    cache: dict[str, tuple[Path, object]] = {}
    folder = tmp_path_factory.mktemp("openvino")

    def _make(name: str, **recipe):
        if name not in cache:
            output = folder / name / "model.xml"
            output.parent.mkdir()
            cache[name] = (output, convert(_job(tiny_source, tiny_exports, tiny_calibration, output, **recipe)))
        return cache[name]

    return _make


def _run(path: Path, precision: str, inputs: list[TensorSpec], data: np.ndarray, outputs: list[TensorSpec]):
    with OpenVINOBackend(path, precision=precision, threads=1) as backend:
        name = backend.inputs()[0].name
        result = backend.infer({name: to_input(inputs[0], data)})
        raw = result[backend.outputs()[0].name]
        return from_output(outputs[0], raw), raw, backend.describe()


@pytest.mark.parametrize(
    "precision, min_cosine",
    [("fp32", 0.9999), ("fp16", 0.999), ("int8-dynamic", 0.97), ("int8-static", 0.97), ("int8-full", 0.97)],
)
def test_each_precision_converts_and_runs(make, reference, eval_data, precision, min_cosine):
    path, converted = make(precision, precision=precision)
    assert path.is_file() and path.with_suffix(".bin").is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.bin", "model.xml"]  # nothing else written
    assert [s.name for s in converted.inputs] == ["image"]
    assert converted.inputs[0].shape == (None, 8, 8, 1)  # source layout and dynamic batch kept
    assert converted.inputs[0].dtype == converted.outputs[0].dtype == "float32"
    assert "openvino" in converted.tools

    got, _, described = _run(path, precision, converted.inputs, eval_data, converted.outputs)
    assert got.shape == reference.shape
    assert _cosine(got, reference) > min_cosine
    assert described["runtime"] == "openvino" and described["execution_devices"] == ["CPU"]
    if precision in ("fp32", "fp16"):
        assert described["inference_precision"] == "f32"  # not this CPU's bf16 default
    if precision == "fp32":
        np.testing.assert_allclose(got, reference, atol=1e-4)
    if precision.startswith("int8"):
        assert "nncf" in converted.tools and converted.notes


def test_fp16_weights_are_half_the_size(make):
    fp32, _ = make("fp32", precision="fp32")
    fp16, _ = make("fp16", precision="fp16")
    ratio = fp16.with_suffix(".bin").stat().st_size / fp32.with_suffix(".bin").stat().st_size
    assert 0.4 < ratio < 0.6


def test_int8_dynamic_says_what_it_is(make):
    _, converted = make("int8-dynamic", precision="int8-dynamic")
    assert any("weight compression" in note and "float activations" in note for note in converted.notes)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_int8_full_with_integer_io(make, reference, eval_data, dtype):
    activations = "int8" if dtype == "int8" else "uint8"
    path, converted = make(
        f"int8-full-{dtype}", precision="int8-full", input_dtype=dtype, output_dtype=dtype, activation_type=activations
    )
    (spec_in,), (spec_out,) = converted.inputs, converted.outputs
    assert spec_in.dtype == spec_out.dtype == dtype
    assert spec_in.quantization is not None and spec_out.quantization is not None
    # The input scale comes from NNCF's FakeQuantize, not the calibration-range fallback.
    assert not any("no NNCF FakeQuantize" in note for note in converted.notes)

    got, raw, _ = _run(path, "int8-full", converted.inputs, eval_data, converted.outputs)
    assert raw.dtype == np.dtype(dtype)
    with OpenVINOBackend(path) as backend:
        assert [s.dtype for s in backend.inputs()] == [dtype]
        assert [s.dtype for s in backend.outputs()] == [dtype]
    assert _cosine(got, reference) > 0.97


def test_integer_io_adds_no_error_of_its_own(make, eval_data):
    """The int8 input lands on NNCF's FakeQuantize grid and the output is quantized with the recorded
    numbers: the same int8 model with float I/O, fed the dequantized input, gives the same integers."""
    int_path, int_io = make("int8-full-int8", precision="int8-full", input_dtype="int8", output_dtype="int8")
    float_path, float_io = make("int8-full", precision="int8-full")
    (spec_in,), (spec_out,) = int_io.inputs, int_io.outputs
    dequantized = from_output(spec_in, to_input(spec_in, eval_data))
    _, raw_int, _ = _run(int_path, "int8-full", int_io.inputs, eval_data, int_io.outputs)
    from_float, _, _ = _run(float_path, "int8-full", float_io.inputs, dequantized, float_io.outputs)
    expected = to_input(spec_out, from_float)  # quantized (and clamped) the way an app would
    assert np.abs(raw_int.astype(np.int32) - expected).max() <= 1  # 1: a tie may round either way


def test_integer_io_needs_int8_full(tiny_source, tiny_exports, tiny_calibration, tmp_path):
    recipe = {"precision": "int8-static", "input_dtype": "int8"}
    job = _job(tiny_source, tiny_exports, tiny_calibration, tmp_path / "m.xml", **recipe)
    with pytest.raises(ConversionError, match="int8-full"):
        convert(job)


def test_softmax_output_quantized_to_int8_is_warned(tiny_calibration, tmp_path):
    import keras

    from edgekit.converters.exports import Exports
    from edgekit.converters.source import load_source

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    source = load_source(keras.Model(inputs, outputs))
    recipe = {"precision": "int8-full", "output_dtype": "int8"}
    job = _job(source, Exports(source, tmp_path), tiny_calibration, tmp_path / "m.xml", **recipe)
    converted = convert(job)
    assert any("Softmax" in note for note in converted.notes)


# --- other source formats -------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_model(tiny_source):
    return tiny_source.handle


@pytest.fixture(scope="module")
def onnx_source(keras_model, tmp_path_factory) -> SourceModel:
    import onnx

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    keras_model.export(str(path), format="onnx", verbose=False)
    graph = onnx.load(str(path)).graph
    specs = [TensorSpec(t.name, (None, 8, 8, 1), "float32") for t in graph.input]
    outs = [TensorSpec(t.name, (None, 10), "float32") for t in graph.output]
    return SourceModel("onnx", path, specs, outs, sha256="")


@pytest.fixture(scope="module")
def tflite_source(keras_model, tmp_path_factory) -> SourceModel:
    import tensorflow as tf

    path = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras_model).convert())
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    specs = [TensorSpec(d["name"], (None, 8, 8, 1), "float32") for d in interpreter.get_input_details()]
    outs = [TensorSpec(d["name"], (None, 10), "float32") for d in interpreter.get_output_details()]
    return SourceModel("tflite", path, specs, outs, sha256="")


@pytest.mark.parametrize("kind, precision", [("onnx", "fp32"), ("onnx", "int8-static"), ("tflite", "fp32")])
def test_onnx_and_tflite_sources_convert(
    request, kind, precision, tiny_exports, tiny_calibration, reference, eval_data, tmp_path
):
    source = request.getfixturevalue(f"{kind}_source")
    calibration = {source.inputs[0].name: tiny_calibration["image"]}
    output = tmp_path / "model.xml"
    converted = convert(_job(source, tiny_exports, calibration, output, precision=precision))
    assert [s.name for s in converted.inputs] == [source.inputs[0].name]
    got, _, _ = _run(output, precision, converted.inputs, eval_data, converted.outputs)
    assert _cosine(got, reference) > (0.9999 if precision == "fp32" else 0.97)


# --- determinism ----------------------------------------------------------------------


def test_converting_again_in_the_same_process_is_byte_identical(
    make, tiny_source, tiny_exports, tiny_calibration, tmp_path
):
    """OpenVINO numbers unnamed nodes from a process-wide counter; the converter renumbers them."""
    first, _ = make("int8-full", precision="int8-full")
    again = tmp_path / "model.xml"
    convert(_job(tiny_source, tiny_exports, tiny_calibration, again, precision="int8-full"))
    assert first.with_suffix(".bin").read_bytes() == again.with_suffix(".bin").read_bytes()
    assert first.read_bytes() == again.read_bytes()


_CONVERT_IN_A_FRESH_PROCESS = """
import sys
from pathlib import Path
import numpy as np
from edgekit.artifact import TensorSpec
from edgekit.converters.base import ConvertJob
from edgekit.converters.exports import Exports
from edgekit.converters.openvino import convert
from edgekit.converters.source import SourceModel
from edgekit.dataset import Dataset
from edgekit.targets.schema import Format, Recipe
onnx_path, name, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
inputs, outputs = [TensorSpec(name, (None, 8, 8, 1), "float32")], [TensorSpec("o", (None, 10), "float32")]
source = SourceModel("onnx", onnx_path, inputs, outputs, "")
data = Dataset({name: np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)})
for precision, io in [("fp32", "float32"), ("int8-full", "int8")]:
    recipe = Recipe(runtime="openvino", precision=precision, input_dtype=io, output_dtype=io)
    job = ConvertJob(source, "t", Format.OPENVINO, recipe, data, Exports(source, out), out / f"{precision}.xml")
    convert(job)
"""


def test_conversion_in_fresh_processes_is_byte_identical(onnx_source, tmp_path):
    runs = []
    for run in ("a", "b"):
        out = tmp_path / run
        out.mkdir()
        args = [str(onnx_source.path), onnx_source.inputs[0].name, str(out)]
        subprocess.run([sys.executable, "-c", _CONVERT_IN_A_FRESH_PROCESS, *args], check=True, capture_output=True)
        runs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert sorted(runs[0]) == ["fp32.bin", "fp32.xml", "int8-full.bin", "int8-full.xml"]
    assert runs[0] == runs[1]
    assert str(tmp_path).encode() not in runs[0]["fp32.xml"]  # no scratch or source paths recorded


# --- backend --------------------------------------------------------------------------


def test_backend_reshapes_a_static_batch_only_when_needed(make, reference, eval_data, tmp_path):
    import openvino as ov

    path, _ = make("fp32", precision="fp32")
    model = ov.Core().read_model(path)
    model.reshape([1, 8, 8, 1])
    static = tmp_path / "static.xml"
    ov.save_model(model, static, compress_to_fp16=False)
    with OpenVINOBackend(static, precision="fp32") as backend:
        assert backend.inputs()[0].shape == (1, 8, 8, 1)
        one = backend.infer({"image": eval_data[:1]})["output_0"]
        compiled = backend._compiled
        assert backend.infer({"image": eval_data[1:2]})["output_0"].shape == (1, 10)
        assert backend._compiled is compiled  # same batch: no recompiling
        many = backend.infer({"image": eval_data})["output_0"]
    np.testing.assert_allclose(one, reference[:1], atol=1e-4)
    np.testing.assert_allclose(many, reference, atol=1e-4)


def _corrupt(kind: str, good: Path, folder: Path) -> Path:
    xml, weights = folder / "model.xml", folder / "model.bin"
    xml.write_bytes(good.read_bytes())
    weights.write_bytes(good.with_suffix(".bin").read_bytes())
    if kind == "missing-bin":
        weights.unlink()
    elif kind == "missing-xml":
        xml.unlink()
    elif kind == "empty-xml":
        xml.write_bytes(b"")
    elif kind == "truncated-xml":
        xml.write_bytes(good.read_bytes()[:400])
    elif kind == "random-xml":
        xml.write_bytes(np.random.default_rng(0).bytes(2000))
    elif kind == "truncated-bin":
        weights.write_bytes(weights.read_bytes()[:100])
    elif kind == "empty-bin":
        weights.write_bytes(b"")
    return xml


@pytest.mark.parametrize(
    "kind", ["missing-bin", "missing-xml", "empty-xml", "truncated-xml", "random-xml", "truncated-bin", "empty-bin"]
)
def test_bad_files_raise_artifact_load_error(make, tmp_path, kind):
    good, _ = make("fp32", precision="fp32")
    xml = _corrupt(kind, good, tmp_path)
    with pytest.raises(ArtifactLoadError) as raised:
        OpenVINOBackend(xml).load()
    message = str(raised.value)
    assert "\n" not in message and "model." in message and str(tmp_path) in message


@pytest.mark.parametrize("device", ["GPU", "NPU"])
def test_absent_device_is_reported(make, device):
    path, _ = make("fp32", precision="fp32")
    with pytest.raises(DeviceUnavailable) as raised:
        OpenVINOBackend(path, device=device).load()
    assert raised.value.requested == device and "CPU" in raised.value.available


def test_auto_device_loads(make, eval_data):
    path, _ = make("fp32", precision="fp32")
    with OpenVINOBackend(path, device="AUTO", precision="fp32") as backend:
        assert backend.infer({"image": eval_data})["output_0"].shape == (16, 10)
        assert backend.describe()["execution_devices"]


def test_importing_the_modules_does_not_import_openvino():
    code = (
        "import sys, edgekit.converters.openvino, edgekit.benchmarks.openvino_backend\n"
        "print(sorted(m for m in ('openvino', 'nncf') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
