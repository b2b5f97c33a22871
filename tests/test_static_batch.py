"""static_batch: NPU recipes fix the batch dimension, so NPU compilers get static shapes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edgekit.converters.base import ConvertJob
from edgekit.converters.compat import DYNAMIC_SHAPE, check_artifact
from edgekit.converters.exports import Exports
from edgekit.converters.registry import converter_for
from edgekit.converters.source import SourceModel
from edgekit.converters.verify import open_backend, reference_outputs, verify
from edgekit.dataset import Dataset
from edgekit.errors import ConversionError
from edgekit.targets.loader import load_target
from edgekit.targets.schema import Format, Recipe

NPU = load_target("npu")
SUFFIX = {Format.TFLITE: ".tflite", Format.ONNX: ".onnx", Format.OPENVINO: ".xml"}


@pytest.fixture(scope="module")
def npu_artifacts(tiny_source, tiny_exports, tiny_calibration, tmp_path_factory):
    """format -> (path, Converted) for the tiny CNN under the npu profile's recipes."""
    folder = tmp_path_factory.mktemp("static-batch")
    made = {}
    for fmt, recipe in NPU.recipes().items():
        path = folder / f"model{SUFFIX[fmt]}"
        job = ConvertJob(tiny_source, "npu", fmt, recipe, Dataset(tiny_calibration), tiny_exports, path)
        made[fmt] = (path, converter_for(fmt)(job))
    return made


def _file_input_shape(fmt: Format, path: Path) -> list:
    """The input shape as the format's own library reads it from the file."""
    if fmt is Format.TFLITE:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=str(path)).get_input_details()[0]["shape_signature"].tolist()
    if fmt is Format.ONNX:
        import onnx

        (value,) = onnx.load(str(path)).graph.input
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]
    import openvino

    (port,) = openvino.Core().read_model(str(path)).inputs
    return [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]


def test_npu_profiles_fix_the_batch():
    assert {fmt: r.static_batch for fmt, r in NPU.formats.items()} == {f: 1 for f in Format}
    for name in ("coral-edgetpu", "qualcomm-hexagon", "intel-core-ultra-npu"):  # inherited via extends
        assert all(r.static_batch == 1 for r in load_target(name).recipes().values()), name
    assert all(r.static_batch is None for r in load_target("cpu").recipes().values())
    with pytest.raises(ValidationError, match="static_batch"):
        Recipe(precision="fp32", runtime="tflite", static_batch=4)  # verification feeds one sample per call


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_npu_artifacts_have_batch_one_run_and_verify(npu_artifacts, tiny_source, fmt):
    path, converted = npu_artifacts[fmt]
    assert [(s.name, s.shape) for s in converted.inputs] == [("image", (1, 8, 8, 1))]
    assert [s.shape for s in converted.outputs] == [(1, 10)]
    assert _file_input_shape(fmt, path) == [1, 8, 8, 1]
    samples = Dataset({"image": np.random.default_rng(1).random((8, 8, 8, 1), dtype=np.float32)})
    notes: list[str] = []
    backend = open_backend(path, NPU.formats[fmt], notes)
    # The tiny CNN has random weights: its logits are near-tied, and top-1 on 8 random inputs is
    # noise (an AVX2-only host's int8 kernels flipped 2 of 8 in ONNX Runtime); judged by cosine.
    tolerance = NPU.tolerance_for(fmt).model_copy(update={"min_top1_agreement": None, "max_accuracy_drop": None})
    try:
        result = verify(backend, converted.inputs, converted.outputs, samples,
                        reference_outputs(tiny_source.run, samples), tolerance)
    finally:
        backend.close()
    assert result.passed, result.failures


@pytest.mark.parametrize("fmt", [Format.TFLITE, Format.ONNX], ids=lambda f: f.value)
def test_npu_artifacts_have_no_dynamic_shape_fallbacks(npu_artifacts, fmt):
    path, _ = npu_artifacts[fmt]
    result = check_artifact(path, fmt.value, NPU.formats[fmt], "npu")
    assert result.total_ops > 0
    assert DYNAMIC_SHAPE not in {f.reason for f in result.fallbacks}, result.fallbacks
    assert not any("static shapes" in note for note in result.notes)


def test_a_dynamic_batch_is_still_reported(tiny_source, tiny_exports, tiny_calibration, tmp_path):
    recipe = NPU.formats[Format.TFLITE].model_copy(update={"static_batch": None})
    path = tmp_path / "dynamic.tflite"
    converted = converter_for(Format.TFLITE)(
        ConvertJob(tiny_source, "npu", Format.TFLITE, recipe, Dataset(tiny_calibration), tiny_exports, path)
    )
    assert converted.inputs[0].shape == (None, 8, 8, 1)
    result = check_artifact(path, "tflite", recipe, "npu")
    assert DYNAMIC_SHAPE in {f.reason for f in result.fallbacks}


def test_tflite_static_batch_is_deterministic(npu_artifacts, tiny_source, tiny_exports, tiny_calibration, tmp_path):
    path, _ = npu_artifacts[Format.TFLITE]
    again = tmp_path / "again.tflite"
    recipe = NPU.formats[Format.TFLITE]
    converter_for(Format.TFLITE)(
        ConvertJob(tiny_source, "npu", Format.TFLITE, recipe, Dataset(tiny_calibration), tiny_exports, again)
    )
    assert again.read_bytes() == path.read_bytes()


def test_tflite_source_cannot_be_rebatched(npu_artifacts, tmp_path):
    from edgekit.benchmarks.tflite_backend import TFLiteBackend

    path = npu_artifacts[Format.TFLITE][0]  # any .tflite file will do
    with TFLiteBackend(path) as backend:
        source = SourceModel("tflite", path, backend.inputs(), backend.outputs(), sha256="")
    recipe = Recipe(precision="fp32", runtime="tflite", static_batch=1)
    exports = Exports(source, tmp_path)
    job = ConvertJob(source, "npu", Format.TFLITE, recipe, None, exports, tmp_path / "out.tflite")
    with pytest.raises(ConversionError, match="cannot be re-batched"):
        converter_for(Format.TFLITE)(job)
