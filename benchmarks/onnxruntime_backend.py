"""Runs .onnx files on ONNX Runtime, with the execution providers asked for, in order."""
from __future__ import annotations

from typing import Any

import numpy as np

from edgekit._deps import require
from edgekit.artifact import TensorSpec
from edgekit.benchmarks.base import ArtifactLoadError, Backend, DeviceUnavailable

# ONNX Runtime's type strings -> numpy dtype names.
_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(uint16)": "uint16",
    "tensor(int32)": "int32",
    "tensor(uint32)": "uint32",
    "tensor(int64)": "int64",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


class OnnxRuntimeBackend(Backend):
    runtime = "onnxruntime"

    _session: Any = None
    _output_names: list[str] = []  # replaced per instance by load()

    def load(self) -> None:
        if not self.path.is_file():
            raise ArtifactLoadError(f"{self.path}: ONNX file not found")
        if self.path.stat().st_size == 0:
            raise ArtifactLoadError(f"{self.path}: ONNX file is empty")
        ort = require("onnxruntime")
        available = ort.get_available_providers()
        wanted = [p for p in self.providers if p != "CPUExecutionProvider"]
        if wanted and wanted[0] not in available:
            raise DeviceUnavailable(wanted[0], available)
        if wanted and wanted[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            # onnxruntime-gpu finds CUDA/cuDNN installed as pip packages (nvidia-*) only when asked to.
            preload = getattr(ort, "preload_dlls", None)
            if preload is not None:
                preload()
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # A path, not bytes: ORT then finds external data (model.onnx.data) beside the file.
        providers = [p for p in self.providers if p in available]
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # ORT raises its own types (InvalidProtobuf, Fail, ...) for bad files
            lines = str(exc).strip().splitlines()
            reason = lines[0][:300] if lines else type(exc).__name__
            raise ArtifactLoadError(f"{self.path}: not a loadable ONNX model: {reason}") from None
        self._output_names = [o.name for o in self._session.get_outputs()]

    def inputs(self) -> list[TensorSpec]:
        return [_spec(arg) for arg in self._loaded().get_inputs()]

    def outputs(self) -> list[TensorSpec]:
        return [_spec(arg) for arg in self._loaded().get_outputs()]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._output_names, self._session.run(self._output_names, feeds), strict=True))

    def describe(self) -> dict[str, Any]:
        ort = require("onnxruntime")
        return {
            "runtime": self.runtime,
            "version": ort.__version__,
            "providers_requested": list(self.providers),
            "providers_used": self._session.get_providers() if self._session else [],
            "threads": self.threads,
            "inter_op_threads": 1,
            "graph_optimization": "all",
            "precision": self.precision,
        }

    def close(self) -> None:
        self._session = None

    def _loaded(self) -> Any:
        if self._session is None:
            raise RuntimeError("OnnxRuntimeBackend: call load() first")
        return self._session


def _spec(arg: Any) -> TensorSpec:
    # ONNX does not store I/O quantization on graph inputs; the converter reports it.
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape or ())
    return TensorSpec(name=arg.name, shape=shape, dtype=_DTYPES.get(arg.type, arg.type))
