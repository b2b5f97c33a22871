"""`edgekit inspect`: signature, op counts, parameter count and size of a model or artifact."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._deps import require
from edgekit.artifact import TensorSpec
from edgekit.converters.source import SourceModel, load_source


# Graph plumbing that says nothing about the model's compute.
_TRIVIAL = {"Const", "Identity", "NoOp", "Placeholder", "ReadVariableOp", "VarHandleOp", "StatefulPartitionedCall",
            "PartitionedCall", "Parameter", "Result", "Constant"}


def inspect_model(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.suffix.lower() == ".xml":
        specs, ops, params = _openvino(path)
        fmt = "openvino"
    else:
        source = load_source(path)
        fmt = source.format
        specs = (source.inputs, source.outputs)
        ops, params = _COUNTERS[fmt](source)
    return {
        "path": str(path),
        "format": fmt,
        "bytes": _size(path),
        "parameters": int(params),
        "inputs": [s.to_dict() for s in specs[0]],
        "outputs": [s.to_dict() for s in specs[1]],
        "ops": dict(sorted(ops.items())),
    }


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    size = path.stat().st_size
    if path.suffix.lower() == ".xml" and path.with_suffix(".bin").exists():
        size += path.with_suffix(".bin").stat().st_size
    return size


def _keras(source: SourceModel) -> tuple[Counter, int]:
    model = source.handle
    ops = Counter(type(layer).__name__ for layer in model.layers if type(layer).__name__ != "InputLayer")
    return ops, model.count_params()


def _saved_model(source: SourceModel) -> tuple[Counter, int]:
    signature = source.handle.signatures["serving_default"]
    graph = signature.graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    ops = Counter(n.op for n in nodes if n.op not in _TRIVIAL)
    params = sum(int(np.prod(v.shape)) for v in source.handle.variables) if hasattr(source.handle, "variables") else 0
    return ops, params


def _onnx(source: SourceModel) -> tuple[Counter, int]:
    onnx = require("onnx")
    model = onnx.load(str(source.path))
    ops = Counter(node.op_type for node in model.graph.node)
    params = sum(int(np.prod(init.dims)) for init in model.graph.initializer)
    return ops, params


def _tflite(source: SourceModel) -> tuple[Counter, int]:
    interpreter = source.handle.interpreter
    details = interpreter._get_ops_details()
    ops = Counter(op["op_name"] for op in details)
    produced = {i for op in details for i in op["outputs"]}
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}
    consumed = {i for op in details for i in op["inputs"] if i >= 0}
    constants = consumed - produced - graph_inputs
    shapes = {t["index"]: t["shape"] for t in interpreter.get_tensor_details()}
    params = sum(int(np.prod(shapes[i])) for i in constants if i in shapes)
    return ops, params


def _openvino(path: Path) -> tuple[tuple[list[TensorSpec], list[TensorSpec]], Counter, int]:
    from edgekit.benchmarks.openvino_backend import OpenVINOBackend

    backend = OpenVINOBackend(path)
    backend.load()
    specs = (backend.inputs(), backend.outputs())
    model = require("openvino").Core().read_model(str(path))
    ops = Counter(op.get_type_name() for op in model.get_ops() if op.get_type_name() not in _TRIVIAL)
    params = sum(int(np.prod(list(op.get_output_shape(0)))) for op in model.get_ops() if op.get_type_name() == "Constant")
    return specs, ops, params


_COUNTERS = {"keras": _keras, "saved_model": _saved_model, "onnx": _onnx, "tflite": _tflite}


