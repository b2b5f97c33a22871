"""`edgekit doctor`: what this host can run, asked of the runtimes themselves.

Each runtime is queried for its own devices (OpenVINO's `available_devices`, ONNX
Runtime's providers, LiteRT's loadable delegates); every built-in target is then
marked `measure` (its runtime and device are here) or `verify only` (the artifact can
be checked on the CPU, but its latency is not measured on this host).
"""
from __future__ import annotations

from typing import Any

from edgekit._deps import require, version_of
from edgekit.errors import MissingDependency
from edgekit.targets.hardware import host_facts


def runtimes() -> dict[str, dict[str, Any]]:
    return {"tflite": _litert(), "onnxruntime": _onnxruntime(), "openvino": _openvino()}


def _litert() -> dict[str, Any]:
    from edgekit.benchmarks.tflite_backend import DELEGATES, delegate_loadable

    package = next((p for p in ("ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu") if version_of(p)), None)
    if package is None:
        return {"installed": False, "install": "pip install 'edgekit[tflite]'"}
    # XNNPACK is built into every interpreter; delegates are there when their library loads.
    devices = ["CPU"] + [device for device, library in DELEGATES.items() if delegate_loadable(library)]
    return {"installed": True, "package": f"{package} {version_of(package)}", "devices": devices,
            "probed": {d: lib for d, lib in DELEGATES.items()}}


def _onnxruntime() -> dict[str, Any]:
    try:
        ort = require("onnxruntime")
    except MissingDependency as exc:
        return {"installed": False, "install": str(exc)}
    return {"installed": True, "package": f"onnxruntime {ort.__version__}", "devices": ort.get_available_providers()}


def _openvino() -> dict[str, Any]:
    try:
        ov = require("openvino")
    except MissingDependency as exc:
        return {"installed": False, "install": str(exc)}
    core = ov.Core()
    names = {}
    for device in core.available_devices:
        try:
            names[device] = core.get_property(device, "FULL_DEVICE_NAME")
        except RuntimeError:
            names[device] = device
    return {"installed": True, "package": f"openvino {version_of('openvino')}", "devices": list(names), "names": names}


def target_support(found: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """For each built-in target and format: can it be measured here, or only verified?"""
    from edgekit.targets.loader import builtin_names, load_target

    rows = []
    for name in builtin_names():
        for fmt, recipe in load_target(name).recipes().items():
            runtime = found[recipe.runtime.value]
            wanted = recipe.providers[0] if recipe.runtime.value == "onnxruntime" else recipe.device
            if not runtime.get("installed"):
                status, why = "unavailable", runtime["install"]
            elif _present(wanted, runtime["devices"]):
                status, why = "measure", f"{wanted} present"
            else:
                status, why = "verify only", f"{wanted} not present; artifacts are checked on the CPU"
            rows.append({"target": name, "format": fmt.value, "runtime": recipe.runtime.value, "device": wanted,
                         "status": status, "why": why})
    return rows


def _present(device: str, devices: list[str]) -> bool:
    device = device.upper()
    return device.startswith(("AUTO", "MULTI", "HETERO")) or any(d.upper().split(".")[0] == device for d in devices)


def diagnose() -> dict[str, Any]:
    found = runtimes()
    return {"host": host_facts(), "runtimes": found, "targets": target_support(found)}
