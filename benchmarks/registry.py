"""Runtime name -> backend class. Adding a runtime is one module and one line here."""
from __future__ import annotations

import importlib

from edgekit.benchmarks.base import Backend
from edgekit.errors import InputError, did_you_mean

# Module paths, not classes, so that listing backends imports no runtime.
BACKENDS = {
    "tflite": "edgekit.benchmarks.tflite_backend:TFLiteBackend",
    "onnxruntime": "edgekit.benchmarks.onnxruntime_backend:OnnxRuntimeBackend",
    "openvino": "edgekit.benchmarks.openvino_backend:OpenVINOBackend",
}

# An artifact file's format, by suffix.
SUFFIX_FORMAT = {".tflite": "tflite", ".onnx": "onnx", ".xml": "openvino"}

# Which backend runs a file by default, by format.
FORMAT_RUNTIME = {"tflite": "tflite", "onnx": "onnxruntime", "openvino": "openvino"}


def backend_class(runtime: str) -> type[Backend]:
    if runtime not in BACKENDS:
        raise InputError(f"unknown backend '{runtime}'{did_you_mean(runtime, BACKENDS)}")
    module, _, name = BACKENDS[runtime].partition(":")
    return getattr(importlib.import_module(module), name)
