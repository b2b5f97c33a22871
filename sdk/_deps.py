"""Late imports of heavy or optional packages.

`edgekit --help` must not pay for TensorFlow, ONNX Runtime or OpenVINO, so every
module imports them through `require` inside the function that needs them.
"""
from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from edgekit.errors import MissingDependency

# module -> extra that installs it
_EXTRAS = {
    "tensorflow": "tensorflow",
    "keras": "tensorflow",
    "tf2onnx": "tensorflow",
    "onnxconverter_common": "tensorflow",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxruntime.quantization": "onnx",
    "openvino": "openvino",
    "nncf": "openvino",
    "ai_edge_litert": "tflite",
    "torch": "torch",
    "onnxscript": "torch",
    "litert_torch": "torch",
    "ai_edge_quantizer": "torch",
    "starlette": "serve",
    "uvicorn": "serve",
    "prometheus_client": "serve",
    "asyncssh": "devices",
    "adbutils": "devices",
}


def disable_telemetry() -> None:
    """edgekit does not phone home on its users' behalf, nor lets its tools do so.

    OpenVINO's converter and NNCF both fall back to their own no-op telemetry stub
    when `openvino_telemetry` cannot be imported; blocking that import is the one
    switch that covers both without writing a consent file into the user's home.
    ONNX Runtime is switched off after import (see `require`).
    """
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ banners drown our output


def require(module: str) -> ModuleType:
    """Import `module` or raise MissingDependency naming the extra to install."""
    disable_telemetry()
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRAS.get(module, _EXTRAS.get(module.split(".")[0], "all"))
        raise MissingDependency(
            f"{module} is not installed ({exc}); install it with: pip install 'edgekit[{extra}]'"
        ) from exc
    if module == "onnxruntime":
        imported.disable_telemetry_events()  # otherwise each session queues an event
    return imported


def version_of(distribution: str) -> str | None:
    """Installed version of a distribution, without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
