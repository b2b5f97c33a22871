"""TFLite converter and LiteRT backend, on real tiny models converted and run here."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.benchmarks.base import ArtifactLoadError, DeviceUnavailable
from edgekit.benchmarks.tflite_backend import TFLiteBackend
from edgekit.converters.base import ConvertJob
from edgekit.converters.tflite import convert
from edgekit.dataset import Dataset
from edgekit.errors import ConversionError, InputError
from edgekit.iocast import from_output, to_input
from edgekit.targets.schema import Format, Precision, Recipe

# case -> (precision, recipe options, minimum cosine against Keras)
CASES = {
    "fp32": (Precision.FP32, {}, 0.9999),
    "fp16": (Precision.FP16, {}, 0.999),
    "int8-dynamic": (Precision.INT8_DYNAMIC, {}, 0.97),
    "int8-static": (Precision.INT8_STATIC, {}, 0.97),
    "int8-full": (Precision.INT8_FULL, {}, 0.97),
    "int8-full-int8-io": (Precision.INT8_FULL, {"input_dtype": "int8", "output_dtype": "int8"}, 0.97),
    "int8-full-uint8-io": (Precision.INT8_FULL, {"input_dtype": "uint8", "output_dtype": "uint8"}, 0.97),
    "int16x8": (Precision.INT16X8, {}, 0.99),
}


def _convert(source, exports, output: Path, precision: Precision, data=None, **options):
    recipe = Recipe(precision=precision, runtime="tflite", **options)
    return convert(ConvertJob(source, "test", Format.TFLITE, recipe, data, exports, output))


def _run(path: Path, converted, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Float feeds keyed by source input names -> float outputs in source order."""
    with TFLiteBackend(path) as backend:
        raw = backend.infer({spec.name: to_input(spec, feeds[spec.name]) for spec in converted.inputs})
    return [from_output(spec, raw[spec.name]) for spec in converted.outputs]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _keras_to_source(model, tmp: Path):
    from edgekit.converters.exports import Exports
    from edgekit.converters.source import load_source

    source = load_source(model)
    return source, Exports(source, tmp)


@pytest.fixture(scope="module")
def calibration(tiny_calibration) -> Dataset:
    return Dataset(tiny_calibration)


@pytest.fixture(scope="module")
def artifacts(tiny_source, tiny_exports, calibration, tmp_path_factory):
    """case -> (path, Converted) for every precision of the tiny CNN."""
    folder = tmp_path_factory.mktemp("tflite")
    made = {}
    for case, (precision, options, _) in CASES.items():
        path = folder / f"{case}.tflite"
        made[case] = (path, _convert(tiny_source, tiny_exports, path, precision, calibration, **options))
    return made


@pytest.fixture(scope="module")
def two_io(tmp_path_factory):
    """A Keras model whose TFLite tensor order differs from its own: 2 inputs, 2 outputs (one a softmax)."""
    import keras

    keras.utils.set_random_seed(1)
    second, first = keras.Input((8,), name="b_second"), keras.Input((4,), name="a_first")
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([second, first]))
    logits = keras.layers.Dense(3, name="zz")(hidden)
    probabilities = keras.layers.Dense(5, activation="softmax", name="aa")(hidden)
    model = keras.Model([second, first], [logits, probabilities])
    source, exports = _keras_to_source(model, tmp_path_factory.mktemp("two"))
    rng = np.random.default_rng(2)
    data = Dataset({"b_second": rng.random((32, 8), np.float32), "a_first": rng.random((32, 4), np.float32)})
    return source, exports, data


@pytest.mark.parametrize("case", CASES)
def test_every_precision_runs_close_to_keras(case, artifacts, tiny_source):
    path, converted = artifacts[case]
    _, options, min_cosine = CASES[case]
    images = np.random.default_rng(7).random((16, 8, 8, 1), dtype=np.float32)
    [expected] = tiny_source.run({"image": images})
    [actual] = _run(path, converted, {"image": images})
    assert actual.shape == expected.shape == (16, 10)
    assert _cosine(actual, expected) > min_cosine
    assert list(converted.tools) == ["tensorflow"]
    assert [s.name for s in converted.inputs] == ["image"] and converted.inputs[0].shape == (None, 8, 8, 1)
    assert converted.inputs[0].dtype == options.get("input_dtype", "float32")
    assert converted.outputs[0].dtype == options.get("output_dtype", "float32")


@pytest.mark.parametrize("case, dtype", [("int8-full-int8-io", "int8"), ("int8-full-uint8-io", "uint8")])
def test_integer_io_carries_quantization(case, dtype, artifacts):
    path, converted = artifacts[case]
    for spec in converted.inputs + converted.outputs:
        assert spec.dtype == dtype
        assert spec.quantization is not None and spec.quantization.scale > 0
    # The backend reads the same numbers back from the file.
    with TFLiteBackend(path) as backend:
        assert backend.inputs() == converted.inputs and backend.outputs() == converted.outputs
    assert all(spec.quantization is None for spec in artifacts["int8-full"][1].inputs)


def test_conversion_is_byte_identical_when_repeated(artifacts, tiny_source, tiny_exports, calibration, tmp_path):
    for case in ("fp32", "int8-full-int8-io"):
        precision, options, _ = CASES[case]
        again = tmp_path / f"{case}.tflite"
        _convert(tiny_source, tiny_exports, again, precision, calibration, **options)
        assert again.read_bytes() == artifacts[case][0].read_bytes(), case


def test_fp16_is_about_half_the_size_of_fp32(tmp_path):
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((256,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Dense(256, activation="relu")(inputs)))
    source, exports = _keras_to_source(model, tmp_path)
    _convert(source, exports, tmp_path / "fp32.tflite", Precision.FP32)
    _convert(source, exports, tmp_path / "fp16.tflite", Precision.FP16)
    ratio = (tmp_path / "fp16.tflite").stat().st_size / (tmp_path / "fp32.tflite").stat().st_size
    assert 0.45 < ratio < 0.6


def test_two_inputs_two_outputs_keep_the_source_order(two_io, tmp_path):
    source, exports, data = two_io
    expected = source.run(data.arrays)
    for precision, options, min_cosine in [
        (Precision.FP32, {}, 0.9999),
        (Precision.INT8_FULL, {"input_dtype": "int8", "output_dtype": "int8"}, 0.97),
    ]:
        path = tmp_path / f"{precision.value}.tflite"
        converted = _convert(source, exports, path, precision, data, **options)
        assert [(s.name, s.shape) for s in converted.inputs] == [("b_second", (None, 8)), ("a_first", (None, 4))]
        assert [(s.name, s.shape) for s in converted.outputs] == [("output_0", (None, 3)), ("output_1", (None, 5))]
        integer = precision is Precision.INT8_FULL
        assert all((s.quantization is not None) == integer for s in converted.inputs + converted.outputs)
        for name, (want, got) in zip(("logits", "softmax"), zip(expected, _run(path, converted, data.arrays))):
            assert _cosine(got, want) > min_cosine, (precision, name)


@pytest.mark.parametrize("io", ["int8", "float32"])
def test_quantized_softmax_output_is_noted(two_io, tmp_path, io):
    source, exports, data = two_io
    path = tmp_path / "m.tflite"
    converted = _convert(source, exports, path, Precision.INT8_FULL, data, input_dtype=io, output_dtype=io)
    softmax_notes = [note for note in converted.notes if "softmax" in note]
    assert len(softmax_notes) == 1 and "'output_1'" in softmax_notes[0]


def test_unsupported_calibration_and_per_tensor_weights(tiny_source, tiny_exports, calibration, tmp_path):
    path = tmp_path / "m.tflite"
    converted = _convert(
        tiny_source, tiny_exports, path, Precision.INT8_FULL, calibration, calibration="entropy", per_channel=False
    )
    assert any("entropy" in note and "min/max" in note for note in converted.notes)
    with TFLiteBackend(path) as backend:
        tensors = backend._interpreter.get_tensor_details()
    conv_weights = [t for t in tensors if t["dtype"] == np.int8 and len(t["shape"]) == 4]
    weight_scales = [len(t["quantization_parameters"]["scales"]) for t in conv_weights]
    assert weight_scales and all(count == 1 for count in weight_scales)


def test_tflite_source_is_copied(artifacts, tmp_path):
    from edgekit.converters.exports import Exports
    from edgekit.converters.source import load_source

    original = artifacts["fp32"][0]
    source = load_source(original)
    output = tmp_path / "copy.tflite"
    converted = _convert(source, Exports(source, tmp_path), output, Precision.FP32)
    assert output.read_bytes() == original.read_bytes()
    assert converted.inputs == artifacts["fp32"][1].inputs and converted.outputs == artifacts["fp32"][1].outputs
    assert converted.notes


def test_integer_io_with_a_float_precision_is_rejected(tiny_source, tiny_exports, tmp_path):
    with pytest.raises(InputError, match="input_dtype int8 conflicts with precision fp16"):
        _convert(tiny_source, tiny_exports, tmp_path / "m.tflite", Precision.FP16, input_dtype="int8")


def test_unconvertible_model_raises_one_line(tmp_path):
    import keras

    inputs = keras.Input((6,), name="x")
    model = keras.Model(inputs, keras.layers.Lambda(keras.ops.erf)(inputs))  # tf.Erf has no TFLite builtin
    source, exports = _keras_to_source(model, tmp_path)
    with pytest.raises(ConversionError) as raised:
        _convert(source, exports, tmp_path / "m.tflite", Precision.FP32)
    message = str(raised.value)
    assert "\n" not in message and "loc(" not in message
    assert "to fp32: 'tf.Erf' op is neither a custom op nor a flex op (" in message
    assert "Flex" in message  # the only route would be Select TF ops, which edgekit does not produce


def test_infer_resizes_the_batch_and_describe_says_what_ran(artifacts):
    path, _ = artifacts["fp32"]
    with TFLiteBackend(path, threads=2) as backend:
        for batch in (1, 5, 2):
            outputs = backend.infer({"image": np.zeros((batch, 8, 8, 1), np.float32)})
            assert outputs["output_0"].shape == (batch, 10)
        info = backend.describe()
    assert info["runtime"] == "tflite" and info["interpreter"].startswith("ai-edge-litert ")
    assert info["device"] == "CPU" and info["threads"] == 2


def test_gpu_delegate_is_unavailable_here(artifacts):
    import ctypes

    from edgekit.benchmarks.tflite_backend import DELEGATES

    try:
        ctypes.CDLL(DELEGATES["GPU"])
        pytest.skip("this host has the LiteRT GPU delegate")
    except OSError:
        pass
    with pytest.raises(DeviceUnavailable) as raised:
        TFLiteBackend(artifacts["fp32"][0], device="GPU").load()
    assert raised.value.requested == "GPU" and raised.value.available == ["CPU"]


def _bad_files(good: bytes) -> dict[str, bytes | None]:
    rng = np.random.default_rng(0)
    flipped = bytearray(good)
    for position in rng.integers(8, len(good), 40):
        flipped[position] ^= 0xFF
    return {
        "missing": None,
        "empty": b"",
        "random": rng.bytes(4096),
        "onnx-like": b"\x08\x07\x12\x07pytorch" + rng.bytes(200),
        "header-only": good[:8],
        "truncated": good[: len(good) // 2],
        "identifier-then-random": good[:8] + rng.bytes(len(good) - 8),
        "bit-flipped": bytes(flipped),
    }


@pytest.mark.parametrize("kind", list(_bad_files(b"\0" * 64)))
def test_bad_files_raise_artifact_load_error(kind, artifacts, tmp_path):
    content = _bad_files(artifacts["fp32"][0].read_bytes())[kind]
    path = tmp_path / f"{kind}.tflite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ArtifactLoadError) as raised:
        TFLiteBackend(path).load()
    message = str(raised.value)
    assert str(path) in message and "\n" not in message


def test_no_truncation_crashes_the_process(artifacts, tmp_path):
    """LiteRT's own flatbuffer verifier must turn every truncated file into an error, never a segfault."""
    script = f"""
import pathlib
from edgekit.benchmarks.base import ArtifactLoadError
from edgekit.benchmarks.tflite_backend import TFLiteBackend
good = pathlib.Path({str(artifacts["int8-full"][0])!r}).read_bytes()
path = pathlib.Path({str(tmp_path / "cut.tflite")!r})
for length in range(0, len(good), 13):
    path.write_bytes(good[:length])
    try:
        TFLiteBackend(path).load()
    except ArtifactLoadError:
        continue
    raise SystemExit(f"loaded a file cut at {{length}} bytes")
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_importing_the_modules_loads_no_runtime():
    code = (
        "import sys, edgekit.converters.tflite, edgekit.benchmarks.tflite_backend\n"
        "print(sorted(m for m in ('tensorflow', 'ai_edge_litert', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
