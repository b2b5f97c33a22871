"""Input layout of an artifact: NCHW (PyTorch's) kept by default, NHWC on request.

PyTorch image models take NCHW; TFLite and most mobile camera pipelines hand over NHWC.
With `layout = "NHWC"` in a profile's [preprocess] (or `--preprocess layout=NHWC`) the
4-D inputs of a PyTorch source's artifacts take NHWC, each format with its own tool:
litert-torch's channel-last I/O, OpenVINO's PrePostProcessor, an ONNX Transpose at the
input edge. The model inside stays NCHW; only the inputs move. Data given by the user
(calibration, evaluation) stays in the source's layout and is transposed here.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from edgekit.artifact import TensorSpec
from edgekit.dataset import Dataset
from edgekit.targets.schema import Preprocess

NCHW, NHWC = "NCHW", "NHWC"
TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)


def image_inputs(specs: list[TensorSpec]) -> list[int]:
    """Indices of the 4-D inputs: the ones a layout applies to."""
    return [i for i, spec in enumerate(specs) if len(spec.shape) == 4]


def artifact_layout(source: Any, preprocess: Preprocess | None) -> str | None:
    """The layout a source's artifacts take: None where edgekit does not change or know it
    (non-PyTorch sources), else NCHW, or NHWC when the preprocessing spec sets it explicitly."""
    if source.format != "torch" or not image_inputs(source.inputs):
        return None
    asked = preprocess is not None and "layout" in preprocess.model_fields_set and preprocess.layout == NHWC
    return NHWC if asked else NCHW


def source_preprocess(source: Any, preprocess: Preprocess | None) -> Preprocess | None:
    """The preprocessing spec for reading image folders into the source's own inputs (NCHW for torch)."""
    if preprocess is None or source.format != "torch":
        return preprocess
    return preprocess.model_copy(update={"layout": NCHW})


def nhwc_spec(spec: TensorSpec) -> TensorSpec:
    n, c, h, w = spec.shape
    return replace(spec, shape=(n, h, w, c))


def specs_in(specs: list[TensorSpec], layout: str | None) -> list[TensorSpec]:
    """The source's input specs as an artifact of `layout` takes them."""
    if layout != NHWC:
        return list(specs)
    images = set(image_inputs(specs))
    return [nhwc_spec(s) if i in images else s for i, s in enumerate(specs)]


def dataset_in(data: Dataset | None, layout: str | None) -> Dataset | None:
    """`data` (in the source's layout, bound to its inputs) as an artifact of `layout` takes it:
    the arrays of 4-D inputs are the 4-D arrays."""
    if data is None or layout != NHWC:
        return data
    arrays = {k: np.ascontiguousarray(v.transpose(TO_NHWC)) if v.ndim == 4 else v for k, v in data.arrays.items()}
    return Dataset(arrays, data.labels, data.origin)


# --- per format -------------------------------------------------------------------


def onnx_transpose_inputs(model: Any, names: list[str]) -> None:
    """Make each named NCHW graph input NHWC, with a Transpose to NCHW right after it."""
    from edgekit._deps import require

    onnx = require("onnx")
    graph = model.graph
    transposes = []
    for value in graph.input:
        if value.name not in names:
            continue
        inner = f"{value.name}__nchw"
        for node in graph.node:
            node.input[:] = [inner if n == value.name else n for n in node.input]
        transposes.append(onnx.helper.make_node("Transpose", [value.name], [inner], perm=list(TO_NCHW),
                                                name=f"{value.name}__to_nchw"))
        dims = value.type.tensor_type.shape.dim
        copies = [onnx.TensorShapeProto.Dimension() for _ in dims]
        for copy, dim in zip(copies, dims):
            copy.CopyFrom(dim)
        for dim, source in zip(dims, [copies[i] for i in TO_NHWC]):
            dim.CopyFrom(source)
    for node in reversed(transposes):
        graph.node.insert(0, node)


def openvino_nhwc_inputs(ov: Any, model: Any, names: list[str]) -> Any:
    """The OpenVINO model with each named NCHW input taking NHWC (PrePostProcessor inserts the Transpose)."""
    ppp = ov.preprocess.PrePostProcessor(model)
    for name in names:
        ppp.input(name).tensor().set_layout(ov.Layout(NHWC))
        ppp.input(name).model().set_layout(ov.Layout(NCHW))
    return ppp.build()
