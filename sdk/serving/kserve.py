"""The Open Inference Protocol (KServe v2) over HTTP/JSON: health, model metadata, infer.

https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol.
Labels are returned through the classification extension that Triton defined for this
protocol: an output requested with `"parameters": {"classification": K}` comes back as
the top K entries per row, as BYTES strings "score:index:label".
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgekit.artifact import TensorSpec
from edgekit.serving.errors import RequestError
from edgekit.serving.tensors import check_names, same_batch, shape_text, to_array

DATATYPES = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int8": "INT8", "uint8": "UINT8",
             "int16": "INT16", "int32": "INT32", "int64": "INT64", "bool": "BOOL"}
_FLOAT_TYPES = ("FP32", "FP16", "FP64")


def accepted_datatypes(spec: TensorSpec) -> tuple[str, ...]:
    """A float input takes any float datatype (values are the source model's floats); others their own."""
    own = DATATYPES.get(spec.dtype, spec.dtype.upper())
    return _FLOAT_TYPES if own in _FLOAT_TYPES else (own,)


def tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": DATATYPES.get(spec.dtype, spec.dtype.upper()),
            "shape": [-1 if d is None else d for d in spec.shape]}


def parse_infer(body: Any, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> tuple[dict[str, np.ndarray], dict[str, int] | None]:
    """(arrays by input name, {output: K} of the classification extension, or None for all outputs as tensors)."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise RequestError(400, "bad_request", "inputs", "inputs: a non-empty list of tensors "
                           "{name, shape, datatype, data}")
    by_name = {}
    for index, tensor in enumerate(body["inputs"]):
        field = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise RequestError(400, "bad_request", field, f"{field}: an object {{name, shape, datatype, data}}")
        missing = [k for k in ("name", "shape", "datatype", "data") if k not in tensor]
        if missing:
            raise RequestError(400, "bad_request", field, f"{field}: missing {', '.join(missing)} "
                               "(each input needs name, shape, datatype and data)")
        if tensor["name"] in by_name:
            raise RequestError(400, "bad_request", f"{field}.name", f"{field}.name: input '{tensor['name']}' given twice")
        by_name[tensor["name"]] = (index, tensor)
    check_names(by_name, inputs, "inputs")
    arrays = {}
    for spec in inputs:
        index, tensor = by_name[spec.name]
        field = f"inputs[{index}]"
        accepted = accepted_datatypes(spec)
        if tensor["datatype"] not in accepted:
            raise RequestError(400, "bad_dtype", f"{field}.datatype", f"{field}.datatype: {tensor['datatype']!r} for "
                               f"input '{spec.name}'; accepted: {', '.join(accepted)}")
        shape = tensor["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise RequestError(400, "bad_shape", f"{field}.shape", f"{field}.shape: a list of non-negative integers, "
                               f"e.g. {shape_text([d or 1 for d in spec.shape])}")
        data = to_array(tensor["data"], TensorSpec(spec.name, (None,) * np.ndim(tensor["data"]), spec.dtype), f"{field}.data")
        if data.size != math.prod(shape):
            raise RequestError(400, "bad_shape", f"{field}.data", f"{field}.data: {data.size} values for shape "
                               f"{shape_text(shape)} ({math.prod(shape)} values)")
        arrays[spec.name] = to_array(data.reshape(shape), spec, f"{field}.shape")
    same_batch(arrays, "inputs")
    return arrays, _requested_outputs(body.get("outputs"), outputs)


def _requested_outputs(requested: Any, outputs: list[TensorSpec]) -> dict[str, int] | None:
    if requested is None:
        return None
    names = [s.name for s in outputs]
    if not isinstance(requested, list):
        raise RequestError(400, "bad_request", "outputs", f"outputs: a list of {{name, parameters}}; outputs: {', '.join(names)}")
    wanted = {}
    for index, entry in enumerate(requested):
        field = f"outputs[{index}]"
        if not isinstance(entry, dict) or entry.get("name") not in names:
            raise RequestError(400, "bad_request", f"{field}.name", f"{field}.name: {entry.get('name') if isinstance(entry, dict) else entry!r} "
                               f"is not an output of the model ({', '.join(names)})")
        k = (entry.get("parameters") or {}).get("classification", 0)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise RequestError(400, "bad_request", f"{field}.parameters.classification",
                               f"{field}.parameters.classification: a non-negative integer (top K classes)")
        wanted[entry["name"]] = k
    return wanted


def infer_response(name: str, version: int, request_id: Any, outputs: dict[str, np.ndarray],
                   wanted: dict[str, int] | None, labels: list[str] | None) -> dict[str, Any]:
    tensors = []
    for output, array in outputs.items():
        if wanted is not None and output not in wanted:
            continue
        k = wanted.get(output, 0) if wanted else 0
        if k:
            tensors.append(_classification(output, array, k, labels))
        else:
            tensors.append({"name": output, "datatype": "FP32", "shape": list(array.shape),
                            "data": array.reshape(-1).tolist()})
    response = {"model_name": name, "model_version": str(version), "outputs": tensors}
    if request_id is not None:
        response["id"] = request_id
    return response


def _classification(output: str, array: np.ndarray, k: int, labels: list[str] | None) -> dict[str, Any]:
    """Top-k per row as "score:index[:label]" strings (Triton's classification extension)."""
    rows = array.reshape(len(array), -1)
    k = min(k, rows.shape[1])
    order = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    data = []
    for row, indices in zip(rows, order):
        for i in indices:
            label = f":{labels[i]}" if labels and i < len(labels) else ""
            data.append(f"{float(row[i])}:{int(i)}{label}")
    return {"name": output, "datatype": "BYTES", "shape": [len(rows), k], "data": data}
