"""OpenVINO backend: one compiled model and one infer request per artifact (.xml + .bin)."""
from __future__ import annotations

from typing import Any

import numpy as np

from edgekit._deps import require, version_of
from edgekit.artifact import TensorSpec
from edgekit.benchmarks.base import ArtifactLoadError, Backend, DeviceUnavailable
from edgekit.errors import InputError

# Devices that schedule onto real ones; OpenVINO itself reports a missing member device.
_VIRTUAL_DEVICES = {"AUTO", "MULTI", "HETERO", "BATCH"}


class OpenVINOBackend(Backend):
    runtime = "openvino"
    # benchmark_app's latency is this timer, not a clock around the Python call: the two differ
    # by the call's own cost (2-5 % of a 3-5 ms MobileNetV2 here, tests/perf/test_integrity.py).
    runtime_timer = "OpenVINO InferRequest.latency (the timer benchmark_app reports)"

    def load(self) -> None:
        ov = require("openvino")
        self._ov = ov
        xml, weights = self.path, self.path.with_suffix(".bin")
        for file in (xml, weights):
            if not file.is_file():
                raise ArtifactLoadError(f"{file}: file not found (OpenVINO IR needs both .xml and .bin)")
        if xml.stat().st_size == 0:  # an empty .bin is valid for a model without weights
            raise ArtifactLoadError(f"{xml}: file is empty")
        self._core = ov.Core()
        available = self._core.available_devices
        if not _present(self.device, available):
            raise DeviceUnavailable(self.device, available)
        try:
            # Naming the .bin keeps read_model on the IR frontend (no TF parser noise on bad files).
            self._model = self._core.read_model(str(xml), str(weights))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line text
            raise ArtifactLoadError(f"{xml}: not a loadable OpenVINO IR: {_reason(exc)}") from None
        if self.precision is None:  # a bare .xml: read it from the IR, so fp32 runs as f32 here too
            self.precision = ir_precision(self._model)
            self._precision_inferred = True
        # The IR's own I/O (a dynamic batch stays None), reported before the batch is fixed.
        self._io = ([_spec(port) for port in self._model.inputs], [_spec(port) for port in self._model.outputs])
        self._static_batch = _fix_dynamic_batch(self._model)
        self._compile()

    def _config(self) -> dict[str, Any]:
        # What `benchmark_app -hint none -nstreams 1 -nireq 1 -nthreads N` compiles with on a CPU
        # (its compiled properties read LATENCY, 1 stream, N threads, pinning on): describe()
        # reports the properties read back from the compiled model.
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        # This CPU runs fp32 models in bf16 by default (STACK.md); fp32 artifacts must run in f32.
        # An fp16 IR verified on a CPU stand-in is checked in f32 too: the CPU has no f16 compute
        # (asking for f16 gives bf16), and bf16 would blame the artifact for the CPU's rounding.
        # On a GPU, fp16 keeps the device default (f16), which is what the recipe is for.
        # int8 models keep the default: their float parts run as the device chooses.
        if self.precision == "fp32" or (self.precision == "fp16" and self.device == "CPU"):
            config["INFERENCE_PRECISION_HINT"] = "f32"
        return config

    def _compile(self) -> None:
        try:
            self._compiled = self._core.compile_model(self._model, self.device, self._config())
        except Exception as exc:
            reason = _reason(exc)
            raise ArtifactLoadError(f"{self.path}: OpenVINO cannot compile it for {self.device}: {reason}") from None
        self._request = self._compiled.create_infer_request()
        self._input_names = [port.get_any_name() for port in self._compiled.inputs]
        self._output_names = [port.get_any_name() for port in self._compiled.outputs]
        # Static input shapes, so that infer() can spot a different batch with one tuple compare.
        shapes = [port.get_partial_shape() for port in self._compiled.inputs]
        self._static = [tuple(s.to_shape()) if s.is_static else None for s in shapes]

    def inputs(self) -> list[TensorSpec]:
        return list(self._io[0])

    def outputs(self) -> list[TensorSpec]:
        return list(self._io[1])

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = [feeds[name] for name in self._input_names]
        if any(shape is not None and shape != a.shape for shape, a in zip(self._static, arrays)):
            self._reshape(arrays)
        request, tensor = self._request, self._ov.Tensor
        for index, array in enumerate(arrays):
            # Shares the caller's memory, no copy; shared memory needs C order (a no-op when it is).
            request.set_input_tensor(index, tensor(np.ascontiguousarray(array), shared_memory=True))
        # start_async + wait, as benchmark_app runs a request: the stream's own (pinned) threads
        # run the graph. A sync infer() runs part of it on the calling thread instead, which
        # measured slower at 2 threads on this CPU (see tests/perf/test_integrity.py).
        request.start_async()
        request.wait()
        # Copies: the request reuses its output memory on the next call.
        return {name: request.get_output_tensor(i).data.copy() for i, name in enumerate(self._output_names)}

    def runtime_latency_ns(self) -> int | None:
        return int(self._request.latency * 1e6)  # milliseconds, as a float

    def _reshape(self, arrays: list[np.ndarray]) -> None:
        """Recompile for a batch size other than the IR's static one (other dims must match)."""
        for name, shape, array in zip(self._input_names, self._static, arrays):
            if shape is not None and (len(shape) != array.ndim or shape[1:] != array.shape[1:]):
                raise InputError(f"input '{name}' expects shape {list(shape)} (any batch), got {list(array.shape)}")
        self._model.reshape({name: list(a.shape) for name, a in zip(self._input_names, arrays)})
        self._compile()

    def describe(self) -> dict[str, Any]:
        compiled = self._compiled
        try:
            precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32", "bf16"...
        except RuntimeError:
            precision = None  # AUTO does not expose it; its execution devices are listed instead
        try:
            threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        except RuntimeError:
            threads = self.threads
        properties = compiled_properties(compiled)
        return {
            "runtime": self.runtime,
            "version": version_of("openvino") or self._ov.get_version(),
            "build": self._ov.get_version(),
            "device": self.device,
            "inference_precision": precision,
            "artifact_precision": self.precision
            + (" (read from the IR)" if getattr(self, "_precision_inferred", False) else ""),
            "performance_hint": properties.get("PERFORMANCE_HINT", "LATENCY"),
            "threads": threads,
            "execution_devices": list(compiled.get_property("EXECUTION_DEVICES")),
            "compiled_properties": properties,
            "input_shapes": {name: list(shape) if shape else None for name, shape in zip(self._input_names, self._static)},
            **({"shape_note": "the IR's dynamic batch was compiled as a static batch of 1 (recompiled per batch size), "
                              "as benchmark_app -shape does"} if self._static_batch else {}),
        }

    def close(self) -> None:
        self._request = self._compiled = self._model = None  # type: ignore[assignment]


# Read back from the compiled model for the report: what the latency was measured with.
REPORTED_PROPERTIES = ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "ENABLE_CPU_PINNING",
                       "SCHEDULING_CORE_TYPE", "ENABLE_HYPER_THREADING", "INFERENCE_PRECISION_HINT", "EXECUTION_MODE_HINT")


def compiled_properties(compiled: Any) -> dict[str, Any]:
    """REPORTED_PROPERTIES as plain JSON values; a property the device lacks is left out."""
    supported = set(compiled.get_property("SUPPORTED_PROPERTIES"))
    values: dict[str, Any] = {}
    for name in REPORTED_PROPERTIES:
        if name not in supported:
            continue
        value = compiled.get_property(name)
        if hasattr(value, "get_type_name"):  # an element type: "f32", "bf16"
            value = value.get_type_name()
        elif not isinstance(value, (bool, int, float, str)):
            value = getattr(value, "name", str(value))  # enums: LATENCY, ANY_CORE, PERFORMANCE
        values[name] = value
    return values


def _fix_dynamic_batch(model: Any) -> bool:
    """Reshape a model whose only dynamic dimension is the batch to batch 1; True when it did.

    A dynamic shape costs OpenVINO's CPU plugin shape inference and memory planning on every
    call (measured 3-10 % on MobileNetV2), and benchmark_app compiles the static shape it is
    given; other batch sizes recompile in infer() (see _reshape).
    """
    shapes = [port.get_partial_shape() for port in model.inputs]
    if all(shape.is_static for shape in shapes):
        return False
    if any(shape.rank.is_dynamic or any(d.is_dynamic for d in list(shape)[1:]) for shape in shapes):
        return False  # other dynamic dimensions (a sequence length): leave the model as it is
    model.reshape({port.get_any_name(): [1, *(d.get_length() for d in list(shape)[1:])]
                   for port, shape in zip(model.inputs, shapes)})
    return True


def ir_precision(model: Any) -> str:
    """fp32, fp16 or int8-static, from what an IR contains (NNCF's FakeQuantize, f16 weights)."""
    ops = model.get_ops()
    if any(op.get_type_name() == "FakeQuantize" for op in ops):
        return "int8-static"
    if any(op.get_type_name() == "Constant" and op.get_element_type().get_type_name() == "f16" for op in ops):
        return "fp16"
    return "fp32"


def _present(device: str, available: list[str]) -> bool:
    """AUTO-like devices pick from what is there; "GPU" is present when "GPU.0" is."""
    if device.split(":")[0] in _VIRTUAL_DEVICES:
        return True
    return any(name == device or name.startswith(device + ".") for name in available)


def _spec(port: Any) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorSpec(name=port.get_any_name(), shape=shape, dtype=port.get_element_type().to_dtype().name)


def _reason(exc: BaseException) -> str:
    """The informative line of an OpenVINO error (it prefixes 'Exception from src/...' lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception from")]
    return (useful or lines or [type(exc).__name__])[-1][:300]
