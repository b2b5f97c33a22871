"""Op compatibility per target: real artifacts converted here, checked against real profiles."""
from __future__ import annotations

import json

import pytest

from edgekit.benchmarks.base import ArtifactLoadError
from edgekit.benchmarks.budgets import judge, make_budget
from edgekit.benchmarks.measurement import Measurement
from edgekit.converters import compat
from edgekit.converters.compat import (
    CPU_METHOD,
    FLOAT_OP,
    NOT_SUPPORTED,
    check_artifact,
    check_manifest,
)
from edgekit.errors import InputError
from edgekit.targets.loader import builtin_names, load_target
from edgekit.targets.schema import Format


def recipe(target: str, fmt: str, **changes):
    found = load_target(target).formats[Format(fmt)]
    return found.model_copy(update=changes) if changes else found


def artifact(digits_dist, target: str, fmt: str):
    return next(a for a in digits_dist["manifest"].artifacts if a.target == target and a.format == fmt)


@pytest.fixture(scope="module")
def gpu_models(tmp_path_factory):
    """A small CNN for the `gpu` profile's TFLite recipe (fp16), with and without a top-k the GPU delegate lacks.

    GlobalAveragePooling rather than Flatten: Flatten on a dynamic batch adds SHAPE/PACK int32
    arithmetic that stays on the CPU (see test_digits_gpu_tflite).
    """
    import keras

    from edgekit import convert

    class TopK(keras.layers.Layer):
        def call(self, x):
            return keras.ops.top_k(x, 3)[0]  # TFLite builtin TOPK_V2

    def cnn(top_k: bool):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 1), name="image")
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
        x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dense(10, name="logits")(x)
        return keras.Model(inputs, TopK()(x) if top_k else x)

    out = tmp_path_factory.mktemp("gpu-models")
    paths = {}
    for name, top_k in (("plain", False), ("topk", True)):
        manifest = convert(cnn(top_k), "gpu", formats=["tflite"], output=out / name)
        assert manifest.passed
        paths[name] = manifest.artifacts[0].path
    return paths


def test_gpu_delegate_unsupported_op_falls_back_and_fails_the_budget(gpu_models):
    result = check_artifact(gpu_models["topk"], "tflite", recipe("gpu", "tflite"), "gpu")
    assert result.accelerator == "LiteRT GPU delegate"
    assert [(f.op, f.reason) for f in result.fallbacks] == [("TOPK_V2", NOT_SUPPORTED)]
    assert result.total_ops == 6 and result.accelerated_ops == 5
    # TF 2.21's and LiteRT 2.3's analyzers print "compatible" without checking: the profile's list decides.
    assert result.method == "profile list"
    assert any("no longer checks GPU compatibility" in note for note in result.notes)

    measurement = Measurement(name="gpu/tflite", path=str(gpu_models["topk"]), format="tflite", runtime="tflite",
                              compatibility=result.to_dict())
    verdict = judge(make_budget("min_accelerated_ops", 1.0), measurement)
    assert verdict.status == "fail" and verdict.measured == pytest.approx(5 / 6)
    assert judge(make_budget("min_accelerated_ops", 0.8), measurement).passed


def test_plain_cnn_is_fully_gpu_compatible(gpu_models):
    result = check_artifact(gpu_models["plain"], "tflite", recipe("gpu", "tflite"), "gpu")
    assert result.fraction == 1.0 and result.fallbacks == []
    # CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, MEAN, FULLY_CONNECTED; the fp16 weights' DEQUANTIZE ops are folded.
    assert result.total_ops == 5


def test_analyzer_reasons_are_used_where_the_analyzer_checks(gpu_models, monkeypatch):
    # The per-op report of an analyzer that still checks (TF <= 2.17, as printed then).
    topk = next(op for op in compat._tflite_ops(gpu_models["topk"]).ops if op.type == "TOPK_V2")
    report = (
        "Subgraph#0 main(T#0) -> [T#9]\n"
        f"  Op#{topk.key[1]} TOPK_V2(T#7, T#2[3]) -> [T#8, T#9]\n"
        "GPU COMPATIBILITY WARNING: Not supported op TOPK_V2\n\n"
        f"GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes {topk.key[1]} "
        "with TFLite runtime version 2.13.0\n\nTensors of Subgraph#0\n"
    )
    assert compat._analyzer_findings(report) == {(0, topk.key[1]): "Not supported op TOPK_V2"}
    monkeypatch.setattr(compat, "_analyzer_report", lambda path: (report, None))
    result = check_artifact(gpu_models["topk"], "tflite", recipe("gpu", "tflite"), "gpu")
    assert result.method == "analyzer"
    assert [(f.op, f.reason) for f in result.fallbacks] == [("TOPK_V2", "Not supported op TOPK_V2")]
    # A clean report from an old analyzer is trusted; the same from a hollow one is not.
    clean = "Your model looks compatibile with GPU delegate with TFLite runtime version 2.13.0.\n"
    monkeypatch.setattr(compat, "_analyzer_report", lambda path: (clean, None))
    assert check_artifact(gpu_models["topk"], "tflite", recipe("gpu", "tflite"), "gpu").fraction == 1.0
    hollow = clean.replace("2.13.0", "2.21.0")
    monkeypatch.setattr(compat, "_analyzer_report", lambda path: (hollow, None))
    assert check_artifact(gpu_models["topk"], "tflite", recipe("gpu", "tflite"), "gpu").method == "profile list"


def test_digits_gpu_tflite(digits_dist):
    """The digits CNN's Flatten on a dynamic batch: its int32 shape arithmetic cannot go to the GPU."""
    result = check_artifact(artifact(digits_dist, "gpu", "tflite").path, "tflite", recipe("gpu", "tflite"), "gpu")
    fallbacks = {f.op: f.reason for f in result.fallbacks}
    assert fallbacks == {"SHAPE": NOT_SUPPORTED, "STRIDED_SLICE": "unsupported dtype int32",
                         "PACK": "unsupported dtype int32", "RESHAPE": "unsupported dtype int32"}
    assert (result.accelerated_ops, result.total_ops) == (5, 9)  # 2 CONV_2D, MAX_POOL_2D, 2 FULLY_CONNECTED


def test_digits_int8_against_npu_and_edgetpu(digits_dist):
    path = artifact(digits_dist, "npu", "tflite").path
    npu = check_artifact(path, "tflite", recipe("npu", "tflite"), "npu")
    assert npu.method == "int8 and static-shape rules"
    # npu's static_batch = 1: every tensor is int8 and static, and Flatten is one RESHAPE with a
    # constant shape (a dynamic batch gave it int32 SHAPE/STRIDED_SLICE/PACK arithmetic).
    assert npu.fallbacks == [] and npu.fraction == 1.0
    assert not any("static shapes" in note for note in npu.notes)

    coral = check_artifact(path, "tflite", recipe("coral-edgetpu", "tflite"), "npu")
    assert coral.method == "profile list"
    assert coral.fallbacks == [] and coral.fraction == 1.0  # every op is on Coral's list


def test_float_artifacts_against_npu_are_float_ops(digits_dist):
    for fmt, compute in (("tflite", {"CONV_2D", "FULLY_CONNECTED"}), ("onnx", {"Conv", "MatMul"}),
                         ("openvino", {"Convolution", "MatMul"})):
        result = check_artifact(artifact(digits_dist, "cpu-fp32", fmt).path, fmt, recipe("npu", fmt), "npu")
        assert result.fraction == 0.0, fmt
        assert {f.reason for f in result.fallbacks} <= {FLOAT_OP, "unsupported dtype int32", "unsupported dtype int64"}
        assert compute <= {f.op for f in result.fallbacks if f.reason == FLOAT_OP}, fmt
        shape_ops = {"STRIDED_SLICE", "PACK", "Gather", "Slice", "Concat", "Cast"}  # int32/int64 only
        assert {f.op for f in result.fallbacks if f.reason != FLOAT_OP} <= shape_ops, fmt


def test_openvino_query_model_on_a_present_device(digits_dist):
    path = artifact(digits_dist, "npu", "openvino").path
    on_cpu = check_artifact(path, "openvino", recipe("intel-core-ultra-npu", "openvino", device="CPU"), "npu")
    assert (on_cpu.method, on_cpu.fraction, on_cpu.fallbacks) == ("query_model", 1.0, [])
    absent = check_artifact(path, "openvino", recipe("intel-core-ultra-npu", "openvino"), "npu")
    assert absent.method == "int8 and static-shape rules"
    assert absent.notes[0].startswith("NPU not present (available: CPU")


def test_onnx_provider_not_present_uses_the_profile_list(digits_dist):
    path = artifact(digits_dist, "npu", "onnx").path
    result = check_artifact(path, "onnx", recipe("qualcomm-hexagon", "onnx"), "npu")
    assert result.accelerator == "ONNX Runtime QNNExecutionProvider" and result.method == "profile list"
    # static_batch = 1: no dynamic dimensions, so no Shape op (not on QNN's list) and no static-shape note.
    assert result.notes == ["provider not present: checked against the profile's op list"]
    assert result.fallbacks == [] and result.fraction == 1.0  # QDQ all the way


def test_onnx_provider_claims_where_the_provider_exists(digits_dist):
    import onnxruntime

    if "AzureExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build has no second provider to ask")
    # The Azure provider is present but runs remote endpoints only: it claims no node.
    azure = recipe("cpu-fp32", "onnx", providers=("AzureExecutionProvider", "CPUExecutionProvider"))
    result = check_artifact(artifact(digits_dist, "cpu-fp32", "onnx").path, "onnx", azure, "gpu")
    assert (result.method, result.accelerated_ops, result.fraction) == ("provider claims", 0, 0.0)
    assert result.total_ops > 0 and {f.reason for f in result.fallbacks} == {"not claimed by AzureExecutionProvider"}


def test_check_manifest_covers_every_artifact(digits_dist):
    results = check_manifest(digits_dist["manifest"])
    assert set(results) == {(t, f) for t in ("cpu", "gpu", "npu", "cpu-fp32") for f in ("tflite", "onnx", "openvino")}
    for (target, _), result in results.items():
        if target.startswith("cpu"):
            assert (result.method, result.fraction) == (CPU_METHOD, 1.0)
    # No op list and no device: said, not guessed; a budget on it is "not measured".
    assert results[("gpu", "onnx")].fraction is None
    assert results[("gpu", "onnx")].notes == [
        "provider not present: not checked (the profile has no op list for this format)"
    ]
    json.dumps([r.to_dict() for r in results.values()])


def test_bad_files_and_values(tmp_path):
    garbage = tmp_path / "model.tflite"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactLoadError, match="not a TFLite model"):
        check_artifact(garbage, "tflite", recipe("gpu", "tflite"), "gpu")
    bad_onnx = tmp_path / "model.onnx"
    bad_onnx.write_bytes(b"not a protobuf at all")
    with pytest.raises(ArtifactLoadError, match="not a readable ONNX model"):
        check_artifact(bad_onnx, "onnx", recipe("npu", "onnx"), "npu")
    (tmp_path / "model.xml").write_text("<net/>")
    with pytest.raises(ArtifactLoadError, match="needs both .xml and .bin"):
        check_artifact(tmp_path / "model.xml", "openvino", recipe("npu", "openvino"), "npu")
    with pytest.raises(InputError, match="unknown format 'tflte'.*tflite"):
        check_artifact(garbage, "tflte", recipe("gpu", "tflite"), "gpu")


def test_profile_op_lists_name_real_ops():
    """A misspelt op in a profile would silently count as a fallback."""
    import onnx
    from ai_edge_litert import schema_py_generated

    known = {
        Format.TFLITE: {name for name in vars(schema_py_generated.BuiltinOperator) if not name.startswith("_")},
        Format.ONNX: {schema.name for schema in onnx.defs.get_all_schemas_with_history()},
    }
    for name in builtin_names():
        for fmt, found in load_target(name).recipes().items():
            if found.supported_ops:
                assert set(found.supported_ops) <= known[fmt], (name, fmt, set(found.supported_ops) - known[fmt])
