"""Runs a .tflite file with LiteRT (ai-edge-litert), or tflite-runtime / tf.lite where only those exist.

Inputs and outputs are named by the model's signature when it has one (the names a
SavedModel or Keras model had), else by tensor name, and listed in signature order.
"""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._deps import require, version_of
from edgekit.artifact import Quantization, TensorSpec
from edgekit.benchmarks.base import ArtifactLoadError, Backend, DeviceUnavailable
from edgekit.errors import MissingDependency

# Delegate library per device (upper case). "CPU" needs none: XNNPACK is built in.
# A device given as a library file name (ending in .so, .so.N, .dylib or .dll) is loaded as is.
DELEGATES = {
    "GPU": "libtensorflowlite_gpu_delegate.so",
    "EDGETPU": "libedgetpu.so.1",
    "QNN": "libQnnTFLiteDelegate.so",
}

_QUANTIZED_DTYPES = {"int8", "uint8", "int16"}
_IDENTIFIER = b"TFL3"  # flatbuffer file identifier of the TFLite schema, at bytes 4..8


class TFLiteBackend(Backend):
    runtime = "tflite"
    _interpreter: Any = None
    _package = ""
    _delegate_library: str | None = None
    _threads: int | None = None

    def load(self) -> None:
        check_tflite_file(self.path)
        interpreter_class, load_delegate, self._package = _interpreter_api()
        delegates = None
        if self.device.upper() != "CPU":
            self._delegate_library = _delegate_library(self.device)
            delegates = [_load_delegate(load_delegate, self.device, self._delegate_library)]
        # LiteRT runs on 1 thread when not told otherwise; pass it explicitly so describe() is true.
        self._threads = self.threads or 1
        try:
            self._interpreter = interpreter_class(
                model_path=str(self.path), num_threads=self._threads, experimental_delegates=delegates
            )
            self._interpreter.allocate_tensors()
            # Inside the try: a corrupt name in the file surfaces here as UnicodeDecodeError (a ValueError).
            self._inputs = _io(self._interpreter, "inputs")
            self._outputs = _io(self._interpreter, "outputs")
        except (ValueError, RuntimeError) as exc:
            by = f"{self._package} with the {self._delegate_library} delegate" if delegates else self._package
            raise ArtifactLoadError(f"{self.path}: {by} cannot load it: {_first_line(exc)}") from None
        self._input_indices = [(spec.name, index) for spec, index in self._inputs]
        self._output_indices = [(spec.name, index) for spec, index in self._outputs]
        self._shapes = {int(d["index"]): tuple(d["shape"].tolist()) for d in self._interpreter.get_input_details()}

    def inputs(self) -> list[TensorSpec]:
        return [spec for spec, _ in self._inputs]

    def outputs(self) -> list[TensorSpec]:
        return [spec for spec, _ in self._outputs]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        interpreter = self._interpreter
        resized = False
        for name, index in self._input_indices:
            shape = feeds[name].shape
            if shape != self._shapes[index]:
                interpreter.resize_tensor_input(index, shape)
                self._shapes[index] = shape
                resized = True
        if resized:
            interpreter.allocate_tensors()
        for name, index in self._input_indices:
            interpreter.set_tensor(index, feeds[name])
        interpreter.invoke()
        return {name: interpreter.get_tensor(index) for name, index in self._output_indices}  # get_tensor copies

    @property
    def interpreter(self):
        """The underlying LiteRT interpreter, for tools that read the graph (edgekit inspect)."""
        return self._interpreter

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "interpreter": self._package,
            "device": self.device,
            "delegate": self._delegate_library,  # None: LiteRT's CPU kernels (XNNPACK where it applies)
            "threads": self._threads,
            "precision": self.precision,
        }

    def close(self) -> None:
        self._interpreter = None

    def quantized_softmax_outputs(self) -> list[str]:
        """Outputs computed by an int8/uint8 SOFTMAX, directly or through a DEQUANTIZE.

        Such outputs have a fixed scale of 1/256: small probabilities round to zero.
        """
        ops = self._interpreter._get_ops_details()
        producers = {int(t): op for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
        names = []
        for spec, index in self._outputs:
            op = producers.get(index)
            if op is not None and op["op_name"] == "DEQUANTIZE":
                op = producers.get(int(op["inputs"][0]))
            if op is not None and op["op_name"] == "SOFTMAX":
                if np.dtype(op["result_types"][0]).name in ("int8", "uint8"):
                    names.append(spec.name)
        return names


def check_tflite_file(path: Path) -> None:
    """Raise ArtifactLoadError, in one line, for a file that is plainly not a TFLite model.

    LiteRT verifies the flatbuffer itself when loading (truncated, random and bit-flipped
    files raise ValueError, no crash); this check only gives a clearer message first.
    """
    if not path.is_file():
        raise ArtifactLoadError(f"{path}: TFLite model file not found")
    size = path.stat().st_size
    if size == 0:
        raise ArtifactLoadError(f"{path}: TFLite model file is empty")
    with path.open("rb") as handle:
        header = handle.read(8)
    if len(header) < 8 or header[4:8] != _IDENTIFIER:
        raise ArtifactLoadError(
            f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier at bytes 4-8; {size} bytes)"
        )
    root = int.from_bytes(header[:4], "little")
    if root >= size:
        raise ArtifactLoadError(f"{path}: truncated TFLite model (root table at byte {root}, file has {size} bytes)")


def _interpreter_api() -> tuple[Any, Any, str]:
    """(Interpreter class, load_delegate, 'package version'): LiteRT first, then its predecessors."""
    try:
        module = require("ai_edge_litert.interpreter")
        return module.Interpreter, module.load_delegate, f"ai-edge-litert {version_of('ai-edge-litert')}"
    except MissingDependency as litert_missing:
        try:
            module = require("tflite_runtime.interpreter")
            return module.Interpreter, module.load_delegate, f"tflite-runtime {version_of('tflite-runtime')}"
        except MissingDependency:
            pass
        try:
            tf = require("tensorflow")
        except MissingDependency:
            raise litert_missing from None
        return tf.lite.Interpreter, tf.lite.experimental.load_delegate, f"tensorflow (tf.lite) {tf.__version__}"


def _delegate_library(device: str) -> str:
    name = device.split("/")[-1]
    if name.endswith((".so", ".dylib", ".dll")) or ".so." in name:
        return device
    library = DELEGATES.get(device.upper())
    if library is None:
        # No generic delegate exists for this name (e.g. "NPU"): the vendor's library must be named.
        raise DeviceUnavailable(device, ["CPU"])
    return library


def delegate_loadable(library: str) -> bool:
    """Whether the dynamic loader finds a delegate library (LiteRT itself prints a traceback when not)."""
    try:
        ctypes.CDLL(library)
        return True
    except OSError:
        return False


def _load_delegate(load_delegate: Any, device: str, library: str) -> Any:
    if not delegate_loadable(library):
        raise DeviceUnavailable(device, ["CPU"])
    try:
        return load_delegate(library)
    except (ValueError, RuntimeError, OSError):
        raise DeviceUnavailable(device, ["CPU"]) from None


def _io(interpreter: Any, kind: str) -> list[tuple[TensorSpec, int]]:
    """(spec, tensor index) pairs, named and ordered by the model's signature when it has one."""
    details = interpreter.get_input_details() if kind == "inputs" else interpreter.get_output_details()
    by_index = {int(d["index"]): d for d in details}
    signature = _signature(interpreter)
    if signature is not None and set(signature[kind].values()) == set(by_index):
        named = [(name, by_index[int(index)]) for name, index in signature[kind].items()]
    else:
        named = [(d["name"], d) for d in details]
    return [(_spec(name, d), int(d["index"])) for name, d in named]


def _signature(interpreter: Any) -> dict[str, dict[str, int]] | None:
    signatures = interpreter._get_full_signature_list()
    if "serving_default" in signatures:
        return signatures["serving_default"]
    return next(iter(signatures.values())) if len(signatures) == 1 else None


def _spec(name: str, details: dict[str, Any]) -> TensorSpec:
    dtype = np.dtype(details["dtype"]).name
    shape = tuple(int(d) if d >= 0 else None for d in details["shape_signature"])
    scale, zero_point = details["quantization"]
    quantization = Quantization(float(scale), int(zero_point)) if dtype in _QUANTIZED_DTYPES and scale else None
    return TensorSpec(name=name, shape=shape, dtype=dtype, quantization=quantization)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__
