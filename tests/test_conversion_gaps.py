"""The conversion gaps met on real architectures (issue 8), one small model each.

Each fix goes through the tool's own switches; see STACK.md "Conversion traps".
"""
from __future__ import annotations

import numpy as np
import pytest

from edgekit import convert


def _calibration(model, count: int = 24) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {t.name: rng.random((count, *t.shape[1:]), dtype=np.float32) for t in model.inputs}


def _by_cell(manifest) -> dict[tuple[str, str], object]:
    return {(a.target, a.format): a for a in manifest.artifacts}


def _errors(manifest) -> dict[tuple[str, str], str]:
    return {(e["target"], e["format"]): e["error"] for e in manifest.errors}


@pytest.fixture(scope="module")
def gru_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8), name="seq")
    x = keras.layers.Bidirectional(keras.layers.GRU(8, return_sequences=True))(inputs)
    x = keras.layers.GRU(8)(x)  # stacked: a bidirectional GRU feeding a GRU
    return keras.Model(inputs, keras.layers.Dense(10)(x))


@pytest.fixture(scope="module")
def gru_manifest(gru_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("gru")
    return convert(gru_model, ["cpu-fp32", "cpu", "gpu", "npu"], calibration=_calibration(gru_model), output=out,
                   formats=["tflite", "onnx"])


def test_recurrent_tflite_converts_at_batch_one(gru_manifest):
    artifact = _by_cell(gru_manifest)[("cpu-fp32", "tflite")]
    assert artifact.passed, artifact.verification
    assert artifact.inputs[0].shape[0] == 1 and artifact.outputs[0].shape[0] == 1
    assert any("fixed batch of 1" in note for note in artifact.notes)
    assert _by_cell(gru_manifest)[("gpu", "tflite")].passed


def test_recurrent_tflite_int8_is_unrolled_and_verified(gru_manifest):
    # TF's calibrator segfaults on the recurrent While loop: the layers are unrolled for int8.
    assert not _errors(gru_manifest), gru_manifest.errors
    for target in ("cpu", "npu"):
        artifact = _by_cell(gru_manifest)[(target, "tflite")]
        assert artifact.passed, (target, artifact.verification)
        assert artifact.precision == "int8-full" and artifact.inputs[0].shape[0] == 1
        assert any("unrolled over their time steps" in note for note in artifact.notes), artifact.notes


def test_recurrent_tflite_int8_without_a_static_length_is_refused_with_the_reason(tmp_path):
    import keras

    inputs = keras.Input((None, 8), name="seq")  # any number of time steps: nothing to unroll over
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GRU(8)(inputs)))
    calibration = {"seq": np.random.default_rng(0).random((24, 8, 8), dtype=np.float32)}
    manifest = convert(model, ["cpu"], calibration=calibration, output=tmp_path, formats=["tflite"])
    error = _errors(manifest)[("cpu", "tflite")]
    assert "TFLiteConverter" in error and "TensorListReserve" in error and "\n" not in error
    assert "time dimension is undefined" in error and "\x1b" not in error


def test_onnx_fp16_keeps_loops_in_fp32(gru_manifest):
    artifact = _by_cell(gru_manifest)[("gpu", "onnx")]
    assert artifact.passed, artifact.verification
    assert any(note.startswith("Loop (") and "fp32" in note for note in artifact.notes)


def test_onnx_int8_counts_its_quantized_ops(gru_manifest):
    artifact = _by_cell(gru_manifest)[("cpu", "onnx")]
    assert artifact.passed, artifact.verification
    assert any(note.startswith("quantized ops: ") and "QuantizeLinear" in note for note in artifact.notes)


def test_onnx_int8_full_of_a_loop_is_ordered_by_what_its_body_reads(gru_manifest):
    # onnxruntime's quantizer sorted the Loop before a Transpose its body reads (invalid graph).
    artifact = _by_cell(gru_manifest)[("npu", "onnx")]
    assert artifact.passed, (gru_manifest.errors, artifact.verification)


@pytest.fixture(scope="module")
def attention_model():
    """Preprocessing layers (Rescaling, Normalization), a positional arange, attention, exact GELU."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8), name="tokens")
    x = keras.layers.Rescaling(1 / 16)(inputs)
    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(1).random((32, 8, 8), dtype=np.float32))
    x = keras.layers.Dense(16)(norm(x))
    x = x + keras.layers.Embedding(8, 16)(keras.ops.arange(8))  # a captured constant
    x = keras.layers.LayerNormalization()(x + keras.layers.MultiHeadAttention(2, 8)(x, x))
    x = keras.layers.Dense(16)(keras.layers.Dense(32, activation="gelu")(x))  # gelu: TF's Erfc
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


def test_attention_and_preprocessing_verify_in_every_format(attention_model, tmp_path):
    manifest = convert(attention_model, ["cpu-fp32", "cpu"], calibration=_calibration(attention_model),
                       output=tmp_path)
    assert not manifest.errors, manifest.errors
    assert len(manifest.artifacts) == 6 and all(a.passed for a in manifest.artifacts)
    onnx_artifact = _by_cell(manifest)[("cpu-fp32", "onnx")]
    # Normalization's mean/variance and the arange are constants, not extra graph inputs.
    assert [spec.name for spec in onnx_artifact.inputs] == ["tokens"]


def test_quant_pre_process_falls_back_and_writes_nothing_in_the_cwd(tmp_path, monkeypatch):
    import keras

    keras.utils.set_random_seed(0)
    image, meta = keras.Input((8, 8, 1), name="image"), keras.Input((4,), name="meta")
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(image))
    x = keras.layers.Concatenate()([x, meta])
    model = keras.Model([image, meta], [keras.layers.Dense(10)(x), keras.layers.Dense(1)(x)])
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    from tests.models import random_weights_profile

    # Random weights: top-1 on near-tied logits is noise (an AVX2 host's int8 kernels flip some), so
    # the `cpu` profile judged by cosine only; what is tested is the fallback.
    profile = random_weights_profile(tmp_path)
    manifest = convert(model, profile, calibration=_calibration(model), output=tmp_path / "out", formats=["onnx"])
    artifact = _by_cell(manifest)[("cpu", "onnx")]
    assert artifact.passed, (manifest.errors, artifact.verification)
    assert any("skip_symbolic_shape=True" in note for note in artifact.notes)
    assert list(cwd.iterdir()) == []


def test_int8_without_quantized_ops_is_an_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    # Sin has no integer kernel in onnxruntime: static quantization leaves the graph float.
    graph = helper.make_graph(
        [helper.make_node("Sin", ["x"], ["y"])], "sin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
    )
    path = tmp_path / "sin.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    calibration = {"x": np.random.default_rng(0).random((8, 4), dtype=np.float32)}
    manifest = convert(path, "cpu", calibration=calibration, output=tmp_path / "out", formats=["onnx"])
    assert "no quantized op" in _errors(manifest)[("cpu", "onnx")]


def test_a_model_that_needs_flex_is_reported_not_produced(tmp_path):
    import tensorflow as tf

    class Singular(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"s": tf.linalg.svd(x, compute_uv=False)}  # no TFLite builtin op

    module = Singular()
    tf.saved_model.save(module, str(tmp_path / "svd"), signatures={"serving_default": module.serve})
    manifest = convert(tmp_path / "svd", "cpu-fp32", output=tmp_path / "out", formats=["tflite"])
    assert not manifest.artifacts
    error = _errors(manifest)[("cpu-fp32", "tflite")]
    assert "tf.Svd" in error and "Flex" in error


def _grouped_model(groups: int):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", groups=groups, name="grouped")(inputs)  # ConvNeXt's depthwise form
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x)))


def test_depthwise_convolutions_written_as_grouped_conv2d_export_to_onnx(tmp_path):
    # Keras runs grouped convolutions through an XLA function tf2onnx leaves as a call node.
    model = _grouped_model(groups=4)
    manifest = convert(model, ["cpu-fp32"], calibration=_calibration(model), output=tmp_path, formats=["onnx"])
    assert not manifest.errors, manifest.errors
    assert manifest.artifacts[0].passed, manifest.artifacts[0].verification


def test_other_grouped_convolutions_name_the_layer(tmp_path):
    model = _grouped_model(groups=2)
    manifest = convert(model, ["cpu-fp32"], calibration=_calibration(model), output=tmp_path, formats=["onnx"])
    error = _errors(manifest)[("cpu-fp32", "onnx")]
    assert "layer 'grouped'" in error and "2 groups" in error and "\n" not in error
