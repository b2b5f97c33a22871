"""JSON values -> NumPy arrays checked against a model input, with errors that name the field."""
from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.artifact import TensorSpec
from edgekit.serving.errors import RequestError


def shape_text(shape) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def to_array(value: Any, spec: TensorSpec, field: str, *, batched: bool = True) -> np.ndarray:
    """`value` (nested lists of numbers) as an array of `spec`'s dtype; `batched=False`: one row, no batch dim."""
    try:
        array = np.asarray(value)
    except ValueError:  # numpy 2: ragged nested lists
        raise RequestError(400, "bad_shape", field, f"{field}: nested lists of unequal lengths; input '{spec.name}' "
                           f"takes a tensor of shape {shape_text(spec.shape if batched else spec.shape[1:])}") from None
    if array.dtype.kind not in "iuf":
        got = {"b": "booleans", "U": "strings", "S": "bytes", "O": "mixed or nested objects"}.get(array.dtype.kind, str(array.dtype))
        raise RequestError(400, "bad_dtype", field, f"{field}: {got} given; input '{spec.name}' takes numbers ({spec.dtype})")
    expected = tuple(spec.shape) if batched else tuple(spec.shape[1:])
    if array.ndim != len(expected) or any(e is not None and e != g for e, g in zip(expected, array.shape)):
        hint = "" if batched else " per instance (the batch dimension is the list of instances)"
        raise RequestError(400, "bad_shape", field, f"{field}: shape {shape_text(array.shape)} does not fit input "
                           f"'{spec.name}' of shape {shape_text(expected)}{hint}")
    if batched and array.shape and array.shape[0] == 0:
        raise RequestError(400, "bad_shape", field, f"{field}: an empty batch; send at least one row")
    if spec.dtype.startswith(("int", "uint")) and array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
        raise RequestError(400, "bad_dtype", field, f"{field}: fractional values given; input '{spec.name}' takes {spec.dtype}")
    return array.astype("float32" if spec.dtype.startswith("float") else spec.dtype)


def check_names(given, inputs: list[TensorSpec], field: str) -> None:
    names = [s.name for s in inputs]
    unknown = [n for n in given if n not in names]
    missing = [n for n in names if n not in given]
    if unknown or missing:
        parts = ([f"unknown input(s) {', '.join(map(repr, unknown))}"] if unknown else []) + \
                ([f"missing input(s) {', '.join(map(repr, missing))}"] if missing else [])
        raise RequestError(400, "bad_input_name", field, f"{field}: {'; '.join(parts)}; the model's inputs: {', '.join(names)}")


def same_batch(arrays: dict[str, np.ndarray], field: str) -> None:
    sizes = {name: len(a) for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise RequestError(400, "bad_shape", field, f"{field}: inputs have different batch sizes {sizes}; send one per row")
