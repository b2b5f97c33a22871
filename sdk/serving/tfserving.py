"""The TensorFlow Serving REST API: predict (row `instances` and columnar `inputs`), status, metadata.

https://www.tensorflow.org/tfx/serving/api_rest. Labels have no place in a predict
response; they are in the metadata, beside the signature.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.artifact import TensorSpec
from edgekit.serving.errors import RequestError
from edgekit.serving.tensors import check_names, same_batch, to_array

_TF_DTYPES = {"float32": "DT_FLOAT", "float16": "DT_HALF", "float64": "DT_DOUBLE", "int8": "DT_INT8",
              "uint8": "DT_UINT8", "int16": "DT_INT16", "int32": "DT_INT32", "int64": "DT_INT64", "bool": "DT_BOOL"}


def parse_predict(body: Any, inputs: list[TensorSpec]) -> tuple[dict[str, np.ndarray], bool]:
    """(arrays by input name, row format?) from a predict request body."""
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise RequestError(400, "bad_request", "body", "body: a JSON object with exactly one of 'instances' "
                           "(row format: a list, one entry per example) or 'inputs' (columnar format)")
    single = len(inputs) == 1
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError(400, "bad_request", "instances", "instances: a non-empty list, one entry per example")
        if all(isinstance(i, dict) for i in instances):
            for index, instance in enumerate(instances):
                check_names(instance, inputs, f"instances[{index}]")
            columns = {s.name: [i[s.name] for i in instances] for s in inputs}
        elif single and not any(isinstance(i, dict) for i in instances):
            columns = {inputs[0].name: instances}
        else:
            names = ", ".join(s.name for s in inputs)
            raise RequestError(400, "bad_request", "instances", f"instances: each entry an object keyed by input name ({names})")
        arrays = {}
        for spec in inputs:
            try:
                arrays[spec.name] = to_array(columns[spec.name], spec, "instances")
            except RequestError:
                for index, row in enumerate(columns[spec.name]):  # name the instance at fault
                    to_array(row, spec, f"instances[{index}]" + ("" if single else f".{spec.name}"), batched=False)
                raise
        return arrays, True
    value = body["inputs"]
    if isinstance(value, dict):
        check_names(value, inputs, "inputs")
        arrays = {s.name: to_array(value[s.name], s, f"inputs.{s.name}") for s in inputs}
    elif single:
        arrays = {inputs[0].name: to_array(value, inputs[0], "inputs")}
    else:
        raise RequestError(400, "bad_request", "inputs", f"inputs: an object keyed by input name ({', '.join(s.name for s in inputs)})")
    same_batch(arrays, "inputs")
    return arrays, False


def predict_response(outputs: dict[str, np.ndarray], row: bool) -> dict[str, Any]:
    names = list(outputs)
    if row:
        if len(names) == 1:
            return {"predictions": outputs[names[0]].tolist()}
        rows = len(outputs[names[0]])
        return {"predictions": [{n: outputs[n][i].tolist() for n in names} for i in range(rows)]}
    if len(names) == 1:
        return {"outputs": outputs[names[0]].tolist()}
    return {"outputs": {n: a.tolist() for n, a in outputs.items()}}


def version_status(records: list[dict]) -> dict[str, Any]:
    """GET /v1/models/NAME: one entry per version known, with its state and error."""
    return {"model_version_status": [
        {"version": str(r["version"]), "state": r["state"],
         "status": {"error_code": "UNKNOWN" if r["error"] else "OK", "error_message": r["error"] or ""}}
        for r in records]}


def metadata(name: str, version: int, inputs: list[TensorSpec], outputs: list[TensorSpec], extra: dict) -> dict[str, Any]:
    def tensor(spec: TensorSpec) -> dict[str, Any]:
        return {"dtype": _TF_DTYPES.get(spec.dtype, "DT_INVALID"), "name": spec.name,
                "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape],
                                 "unknown_rank": False}}

    signature = {"inputs": {s.name: tensor(s) for s in inputs}, "outputs": {s.name: tensor(s) for s in outputs},
                 "method_name": "tensorflow/serving/predict"}
    return {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}, "edgekit": extra}}
