"""The ONNX converter and the ONNX Runtime backend, on tiny real models built on the fly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.artifact import TensorSpec
from edgekit.benchmarks.base import ArtifactLoadError, DeviceUnavailable
from edgekit.benchmarks.onnxruntime_backend import OnnxRuntimeBackend
from edgekit.converters.base import ConvertJob, Converted
from edgekit.converters.onnx import convert, export_fp32
from edgekit.dataset import Dataset
from edgekit.errors import ConversionError, DataError
from edgekit.iocast import from_output, to_input
from edgekit.targets.schema import Format, Recipe

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def run(path: Path, converted: Converted, data: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Float outputs of an artifact, quantizing inputs and dequantizing outputs as an app would."""
    with OnnxRuntimeBackend(path, threads=1) as backend:
        feeds = {spec.name: to_input(spec, data[spec.name]) for spec in converted.inputs}
        result = backend.infer(feeds)
    return [from_output(spec, result[spec.name]) for spec in converted.outputs]


@pytest.fixture(scope="module")
def calibration(tiny_calibration) -> Dataset:
    return Dataset(dict(tiny_calibration))


@pytest.fixture(scope="module")
def reference(tiny_source, tiny_calibration) -> np.ndarray:
    return tiny_source.run(tiny_calibration)[0]


@pytest.fixture(scope="module")
def make(tiny_source, tiny_exports, calibration, tmp_path_factory):
    """make(precision, **recipe) -> (path, Converted); each recipe is converted once per module."""
    folder = tmp_path_factory.mktemp("onnx")
    made: dict[tuple, tuple[Path, Converted]] = {}

    def _make(precision: str, **options):
        key = (precision, *sorted(options.items()))
        if key not in made:
            recipe = Recipe(precision=precision, runtime="onnxruntime", **options)
            output = folder / f"model-{len(made)}.onnx"
            job = ConvertJob(tiny_source, "test", Format.ONNX, recipe, calibration, tiny_exports, output)
            made[key] = output, convert(job)
        return made[key]

    return _make


def initializers(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}


def nodes(path: Path, op_type: str) -> list:
    return [n for n in onnx.load(str(path)).graph.node if n.op_type == op_type]


# --- every precision converts, runs, and stays close to Keras -----------------------


@pytest.mark.parametrize(
    "precision, options, min_cosine",
    [
        ("fp32", {}, 0.9999),
        ("fp16", {}, 0.999),
        ("int8-dynamic", {"weight_type": "uint8"}, 0.97),
        ("int8-static", {"activation_type": "uint8"}, 0.97),
        ("int8-static", {"activation_type": "int8", "per_channel": False}, 0.97),
        ("int8-full", {}, 0.97),
        ("int8-full", {"input_dtype": "int8", "output_dtype": "int8"}, 0.97),
        ("int8-full", {"activation_type": "uint8", "weight_type": "uint8", "per_channel": False,
                       "input_dtype": "uint8", "output_dtype": "uint8"}, 0.97),
        ("int16x8", {}, 0.99),
    ],
)
def test_precision_matches_keras(make, tiny_calibration, reference, precision, options, min_cosine):
    path, converted = make(precision, **options)
    (output,) = run(path, converted, tiny_calibration)
    assert output.shape == reference.shape
    assert cosine(output, reference) > min_cosine
    assert converted.tools["onnx"] and converted.tools["tf2onnx"]
    if precision.startswith("int"):
        assert converted.tools["onnxruntime"]


def test_fp32_is_nearly_exact(make, tiny_calibration, reference):
    path, converted = make("fp32")
    np.testing.assert_allclose(run(path, converted, tiny_calibration)[0], reference, atol=1e-4)


# --- integer inputs and outputs ------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_integer_io_has_integer_graph_io_and_recorded_quantization(make, dtype):
    options = {"activation_type": dtype, "input_dtype": dtype, "output_dtype": dtype}
    if dtype == "uint8":
        options.update(weight_type="uint8", per_channel=False)
    path, converted = make("int8-full", **options)
    (spec_in,), (spec_out,) = converted.inputs, converted.outputs
    assert (spec_in.name, spec_in.dtype, spec_in.shape) == ("image", dtype, (None, 8, 8, 1))
    assert (spec_out.name, spec_out.dtype) == ("output_0", dtype)
    assert spec_in.quantization is not None and spec_out.quantization is not None
    assert spec_in.quantization.scale > 0 and spec_out.quantization.scale > 0
    with OnnxRuntimeBackend(path) as backend:  # the runtime sees the same integer I/O
        assert [(s.name, s.dtype) for s in backend.inputs()] == [("image", dtype)]
        assert [(s.name, s.dtype) for s in backend.outputs()] == [("output_0", dtype)]
        assert backend.inputs()[0].quantization is None  # ONNX does not store it; the converter reports it
    graph = onnx.load(str(path)).graph
    first = [n for n in graph.node if "image" in n.input]
    last = [n for n in graph.node if "output_0" in n.output]
    assert [n.op_type for n in first] == ["DequantizeLinear"] and [n.op_type for n in last] == ["QuantizeLinear"]


def test_integer_io_numbers_are_exactly_the_graphs(make, tiny_calibration):
    """Quantizing with the recorded numbers gives what the float-I/O model computes inside."""
    float_path, float_io = make("int8-full")
    int_path, int_io = make("int8-full", input_dtype="int8", output_dtype="int8")
    (expected,) = run(float_path, float_io, tiny_calibration)
    (got,) = run(int_path, int_io, tiny_calibration)
    # Within one step where the CPU has VNNI (or is not x86). Without it onnxruntime's int8 GEMM
    # saturates its 16-bit partial sums (vpmaddubsw), and the two graphs take different kernels
    # around the I/O: 3 steps seen on an AVX2-only host.
    from edgekit.targets.hardware import int8_pairs_saturate

    steps = 4 if int8_pairs_saturate() else 1
    assert np.abs(got - expected).max() <= int_io.outputs[0].quantization.scale * steps * 1.001


def test_integer_io_conflicts_are_errors(make):
    with pytest.raises(ConversionError, match="activation_type uint8"):
        make("int8-full", activation_type="uint8", input_dtype="int8")
    with pytest.raises(ConversionError, match="needs precision int8-static or int8-full"):
        make("fp32", input_dtype="int8")
    with pytest.raises(ConversionError, match="float16 needs precision fp16"):
        make("int8-static", input_dtype="float16")
    # int8-static leaves the input's first op (a Reshape) in float, so the input cannot be int8.
    with pytest.raises(ConversionError, match="input 'image' is not quantized.*int8-full"):
        make("int8-static", input_dtype="int8")


# --- graph structure of quantized models ---------------------------------------------------


def weight_scales(path: Path) -> list[np.ndarray]:
    """Scales of the DequantizeLinear nodes that read a constant int8/uint8 weight of a Conv or MatMul."""
    constants = initializers(path)
    return [
        constants[n.input[1]]
        for n in nodes(path, "DequantizeLinear")
        if n.input[0] in constants and constants[n.input[0]].ndim >= 2
    ]


def test_static_int8_is_qdq_with_per_channel_weights_when_asked(make):
    per_channel, _ = make("int8-static", activation_type="uint8")
    per_tensor, _ = make("int8-static", activation_type="int8", per_channel=False)
    for path in (per_channel, per_tensor):
        assert nodes(path, "QuantizeLinear") and nodes(path, "DequantizeLinear")
    assert any(scale.size > 1 for scale in weight_scales(per_channel))
    assert weight_scales(per_tensor) and all(scale.size == 1 for scale in weight_scales(per_tensor))


@pytest.mark.parametrize("activation, expected", [("uint8", np.uint8), ("int8", np.int8)])
def test_activation_type_is_the_recipes(make, activation, expected):
    path, _ = make("int8-static", activation_type=activation, **({} if activation == "uint8" else {"per_channel": False}))
    constants = initializers(path)
    zero_points = {constants[n.input[2]].dtype.type for n in nodes(path, "QuantizeLinear")}
    assert zero_points == {expected}
    weights = {constants[n.input[0]].dtype.type for n in nodes(path, "DequantizeLinear") if n.input[0] in constants}
    assert np.int8 in weights  # weights stay signed int8 (the fast combination with uint8 activations)


def test_int16x8_has_int16_activations(make):
    path, converted = make("int16x8")
    constants = initializers(path)
    assert {constants[n.input[2]].dtype.type for n in nodes(path, "QuantizeLinear")} == {np.int16}
    assert any("opset" in note for note in converted.notes)  # ORT raised it to 21, and we say so


def test_fp16_halves_the_weights_and_keeps_float32_io(make, tiny_exports):
    fp32_path, _ = make("fp32")
    fp16_path, converted = make("fp16")

    def weight_bytes(path: Path) -> int:
        return sum(a.nbytes for a in initializers(path).values() if a.dtype.kind == "f")

    assert weight_bytes(fp16_path) / weight_bytes(fp32_path) == pytest.approx(0.5, abs=0.02)
    # On this tiny model tensor names are most of the file; weights halve, the file shrinks.
    assert fp16_path.stat().st_size < fp32_path.stat().st_size
    assert [s.dtype for s in converted.inputs + converted.outputs] == ["float32", "float32"]


def test_fp16_io_when_asked(make, tiny_calibration, reference):
    path, converted = make("fp16", input_dtype="float16", output_dtype="float16")
    assert [s.dtype for s in converted.inputs + converted.outputs] == ["float16", "float16"]
    assert cosine(run(path, converted, tiny_calibration)[0], reference) > 0.999


# --- the fp32 export ---------------------------------------------------------------------


def test_export_keeps_names_layout_and_opset(tiny_exports):
    model = onnx.load(str(tiny_exports.onnx_fp32()))
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    dims = [d.dim_value or None for d in graph_input.type.tensor_type.shape.dim]
    assert (graph_input.name, dims) == ("image", [None, 8, 8, 1])  # NHWC, as in Keras
    assert graph_output.name == "output_0"
    assert {o.domain: o.version for o in model.opset_import}[""] == 17


def test_export_is_deterministic(tiny_exports, tmp_path):
    export_fp32(tiny_exports, tmp_path / "a.onnx")
    export_fp32(tiny_exports, tmp_path / "b.onnx")
    first = (tmp_path / "a.onnx").read_bytes()
    assert first == (tmp_path / "b.onnx").read_bytes() == tiny_exports.onnx_fp32().read_bytes()


def test_quantization_is_deterministic(tiny_source, tiny_exports, calibration, tmp_path):
    recipe = Recipe(precision="int8-full", runtime="onnxruntime", input_dtype="int8", output_dtype="int8")
    for name in ("a.onnx", "b.onnx"):
        convert(ConvertJob(tiny_source, "test", Format.ONNX, recipe, calibration, tiny_exports, tmp_path / name))
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_saved_model_source_converts(tiny_exports, tiny_calibration, reference, tmp_path):
    from edgekit.converters.exports import Exports
    from edgekit.converters.source import load_source

    source = load_source(tiny_exports.saved_model())
    exports = Exports(source, tmp_path)
    with OnnxRuntimeBackend(exports.onnx_fp32()) as backend:
        assert [s.name for s in backend.inputs()] == ["image"] and [s.name for s in backend.outputs()] == ["output_0"]
        output = backend.infer({"image": tiny_calibration["image"]})["output_0"]
    np.testing.assert_allclose(output, reference, atol=1e-4)


def test_tflite_source_converts(tiny_keras_path, tiny_calibration, reference, tmp_path):
    """A .tflite made by TFLiteConverter goes to ONNX through tf2onnx's from_tflite."""
    import keras
    import tensorflow as tf

    from edgekit.converters.exports import Exports
    from edgekit.converters.source import SourceModel

    tflite_path = tmp_path / "tiny.tflite"
    model = keras.models.load_model(tiny_keras_path, compile=False)
    tflite_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    # Names as the TFLite runtime reports them (the TFLite backend is not this module's).
    interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter(str(tflite_path))
    inputs = [tflite_spec(d) for d in interpreter.get_input_details()]
    outputs = [tflite_spec(d) for d in interpreter.get_output_details()]
    source = SourceModel("tflite", tflite_path, inputs, outputs, sha256="")
    exports = Exports(source, tmp_path)
    onnx_path = exports.onnx_fp32()
    with OnnxRuntimeBackend(onnx_path) as backend:
        assert [s.name for s in backend.inputs()] == [s.name for s in source.inputs]
        assert backend.inputs()[0].shape[1:] == (8, 8, 1)  # NHWC kept
        (output,) = backend.infer({source.inputs[0].name: tiny_calibration["image"]}).values()
    assert cosine(output, reference) > 0.9999


def tflite_spec(detail: dict) -> TensorSpec:
    shape = tuple(int(d) if d >= 0 else None for d in detail["shape_signature"])
    return TensorSpec(detail["name"], shape, np.dtype(detail["dtype"]).name)


# --- an ONNX source, calibration data, and the Softmax warning --------------------------------


@pytest.fixture(scope="module")
def softmax_onnx(tmp_path_factory) -> Path:
    """x[N,16] -> MatMul -> Softmax -> probs, built with onnx.helper."""
    helper = onnx.helper
    weights = np.random.default_rng(1).normal(size=(16, 10)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        "softmax",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["N", 10])],
        [onnx.numpy_helper.from_array(weights, "w")],
    )
    path = tmp_path_factory.mktemp("softmax") / "softmax.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def convert_onnx_source(path: Path, recipe: Recipe, data: Dataset | None, out: Path) -> Converted:
    from edgekit.converters.exports import Exports
    from edgekit.converters.source import load_source

    source = load_source(path)
    return convert(ConvertJob(source, "test", Format.ONNX, recipe, data, Exports(source, out.parent), out))


def test_quantized_softmax_output_is_warned_about(softmax_onnx, tmp_path):
    data = Dataset({"x": np.random.default_rng(2).normal(size=(32, 16)).astype(np.float32)})
    # Full integer (an NPU recipe) quantizes the softmax too: that is warned about.
    recipe = Recipe(precision="int8-full", runtime="onnxruntime", activation_type="int8")
    converted = convert_onnx_source(softmax_onnx, recipe, data, tmp_path / "q.onnx")
    assert any("Softmax" in note and "'probs'" in note for note in converted.notes)
    assert "tf2onnx" not in converted.tools
    # int8-static keeps the softmax in float (converters/traits.py) and quantizes the MatMul: nothing to warn about.
    recipe = Recipe(precision="int8-static", runtime="onnxruntime", activation_type="uint8")
    converted = convert_onnx_source(softmax_onnx, recipe, data, tmp_path / "s.onnx")
    assert any("kept in float" in note and "Softmax" in note for note in converted.notes), converted.notes
    assert not any("'probs'" in note and "quantized" in note.lower() and "kept" not in note for note in converted.notes)


def test_onnx_source_with_external_data_becomes_one_file(softmax_onnx, tmp_path):
    source_path = tmp_path / "src" / "model.onnx"
    source_path.parent.mkdir()
    onnx.save(onnx.load(str(softmax_onnx)), str(source_path), save_as_external_data=True,
              location="model.onnx.data", size_threshold=0)
    out = tmp_path / "out" / "fp32.onnx"
    out.parent.mkdir()
    recipe = Recipe(precision="fp32", runtime="onnxruntime")
    converted = convert_onnx_source(source_path, recipe, None, out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["fp32.onnx"]
    assert [s.name for s in converted.inputs] == ["x"] and "tf2onnx" not in converted.tools
    x = np.ones((1, 16), np.float32)
    with OnnxRuntimeBackend(out) as artifact, OnnxRuntimeBackend(softmax_onnx) as original:
        np.testing.assert_array_equal(artifact.infer({"x": x})["probs"], original.infer({"x": x})["probs"])


def test_fp16_clamping_is_a_note(tmp_path):
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "c"], ["y"])], "big",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])],
        [onnx.numpy_helper.from_array(np.array([1e5, 2.0], np.float32), "c")],
    )
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    recipe = Recipe(precision="fp16", runtime="onnxruntime")
    converted = convert_onnx_source(path, recipe, None, tmp_path / "fp16.onnx")
    assert any("clamped" in note and "65504" in note for note in converted.notes)


def test_calibration_must_cover_the_inputs(softmax_onnx, tmp_path):
    data = Dataset({"y": np.zeros((4, 16), np.float32)}, origin="cal.npz")
    recipe = Recipe(precision="int8-static", runtime="onnxruntime")
    with pytest.raises(DataError, match="no calibration data for input.*x"):
        convert_onnx_source(softmax_onnx, recipe, data, tmp_path / "q.onnx")


# --- the backend -------------------------------------------------------------------------------


def test_backend_reports_io_and_what_ran(softmax_onnx):
    backend = OnnxRuntimeBackend(softmax_onnx, threads=2)
    backend.load()
    (x,), (probs,) = backend.inputs(), backend.outputs()
    assert (x.name, x.shape, x.dtype, x.quantization) == ("x", (None, 16), "float32", None)
    assert (probs.name, probs.shape, probs.dtype) == ("probs", (None, 10), "float32")
    result = backend.infer({"x": np.ones((3, 16), np.float32)})
    assert list(result) == ["probs"] and result["probs"].shape == (3, 10)
    info = backend.describe()
    assert info["runtime"] == "onnxruntime" and info["version"]
    assert info["providers_requested"] == ["CPUExecutionProvider"]
    assert info["providers_used"] == ["CPUExecutionProvider"] and info["threads"] == 2
    backend.close()


def test_external_data_loads(softmax_onnx, tmp_path):
    model = onnx.load(str(softmax_onnx))
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    assert (tmp_path / "model.onnx.data").is_file()
    feeds = {"x": np.random.default_rng(3).normal(size=(2, 16)).astype(np.float32)}
    with OnnxRuntimeBackend(path) as split, OnnxRuntimeBackend(softmax_onnx) as whole:
        np.testing.assert_array_equal(split.infer(feeds)["probs"], whole.infer(feeds)["probs"])


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "random"])
def test_bad_files_raise_one_line_artifact_load_error(softmax_onnx, tmp_path, damage):
    path = tmp_path / f"{damage}.onnx"
    data = softmax_onnx.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(4).bytes(4096))
    with pytest.raises(ArtifactLoadError) as caught:
        OnnxRuntimeBackend(path).load()
    message = str(caught.value)
    assert str(path) in message and "\n" not in message


def test_missing_execution_provider_is_device_unavailable(softmax_onnx):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this host has CUDA")
    backend = OnnxRuntimeBackend(softmax_onnx, providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    with pytest.raises(DeviceUnavailable) as caught:
        backend.load()
    assert caught.value.requested == "CUDAExecutionProvider"
    assert "CPUExecutionProvider" in caught.value.available


def test_importing_the_modules_imports_no_runtime():
    code = (
        "import sys, edgekit.converters.onnx, edgekit.benchmarks.onnxruntime_backend\n"
        "heavy = ['onnx', 'onnxruntime', 'tensorflow', 'tf2onnx', 'onnxconverter_common', 'keras']\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("precision, options", [
    ("int8-static", {}),
    ("int8-full", {"input_dtype": "int8", "output_dtype": "int8"}),
])
def test_calibration_ranges_are_reused_byte_identically(tiny_source, calibration, tmp_path, precision, options):
    from edgekit.converters.exports import Exports

    recipe = Recipe(precision=precision, runtime="onnxruntime", **options)
    shared, fresh = Exports(tiny_source, tmp_path / "shared"), Exports(tiny_source, tmp_path / "fresh")
    notes = {}
    for name, exports in (("first", shared), ("again", shared), ("fresh", fresh)):
        exports.workdir.mkdir(exist_ok=True)
        converted = convert(ConvertJob(tiny_source, "test", Format.ONNX, recipe, calibration, exports, tmp_path / f"{name}.onnx"))
        notes[name] = [n for n in converted.notes if "calibration ranges reused" in n]
    assert notes == {"first": [], "again": [notes["again"][0]], "fresh": []}
    assert (tmp_path / "first.onnx").read_bytes() == (tmp_path / "again.onnx").read_bytes() == (tmp_path / "fresh.onnx").read_bytes()
    other = Dataset({k: v[::-1].copy() for k, v in calibration.arrays.items()})  # other data: calibrated afresh
    converted = convert(ConvertJob(tiny_source, "test", Format.ONNX, recipe, other, shared, tmp_path / "other.onnx"))
    assert not any("calibration ranges reused" in n for n in converted.notes)
