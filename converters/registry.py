"""The conversion graph as data: which converter makes each format, from which sources.

Modules are named by path so that reading the registry imports no converter.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

from edgekit.errors import InputError
from edgekit.targets.schema import Format, Precision

CONVERTERS: dict[Format, str] = {
    Format.TFLITE: "edgekit.converters.tflite:convert",
    Format.ONNX: "edgekit.converters.onnx:convert",
    Format.OPENVINO: "edgekit.converters.openvino:convert",
}

# A PyTorch program is not a TensorFlow graph: each format has its own torch converter.
TORCH_CONVERTERS: dict[Format, str] = {
    Format.TFLITE: "edgekit.converters.torch_tflite:convert",
    Format.ONNX: "edgekit.converters.torch_onnx:convert",
    Format.OPENVINO: "edgekit.converters.torch_openvino:convert",
}

# Source formats each output format can be made from.
SOURCES: dict[Format, frozenset[str]] = {
    # TFLiteConverter takes Keras and SavedModel; a .tflite source passes through as fp32 only.
    Format.TFLITE: frozenset({"keras", "saved_model", "tflite", "torch"}),
    Format.ONNX: frozenset({"keras", "saved_model", "onnx", "tflite", "torch"}),
    Format.OPENVINO: frozenset({"keras", "saved_model", "onnx", "tflite", "torch"}),
}

PRECISIONS: dict[Format, frozenset[Precision]] = {
    Format.TFLITE: frozenset(Precision),
    Format.ONNX: frozenset(Precision),
    # OpenVINO's int8-dynamic is NNCF weight compression (int8 weights, float activations).
    Format.OPENVINO: frozenset(Precision) - {Precision.INT16X8},
}


def check_supported(source_format: str, fmt: Format, precision: Precision) -> str | None:
    """None when (source, format, precision) can be converted, else why not."""
    if source_format not in SOURCES[fmt]:
        accepted = ", ".join(sorted(SOURCES[fmt]))
        return f"no converter from a {source_format} model to {fmt.value} (it takes: {accepted})"
    if precision not in PRECISIONS[fmt]:
        accepted = ", ".join(sorted(p.value for p in PRECISIONS[fmt]))
        return f"{fmt.value} does not support precision {precision.value} (accepted: {accepted})"
    if fmt is Format.TFLITE and source_format == "tflite" and precision is not Precision.FP32:
        return "a .tflite source cannot be re-quantized to TFLite; convert from the Keras or SavedModel original"
    return None


def converter_for(fmt: Format, source_format: str | None = None) -> Callable:
    table = TORCH_CONVERTERS if source_format == "torch" else CONVERTERS
    module, _, name = table[fmt].partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except KeyError as exc:  # pragma: no cover - registry typo
        raise InputError(f"no converter for {fmt}") from exc
