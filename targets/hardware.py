"""What this host is: CPU model, ISA features that matter for inference, cores, memory, runtimes.

Read from /proc/cpuinfo, platform and psutil without importing any runtime, so it is
cheap enough to stamp on every report.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# /proc/cpuinfo flag -> the name people know it by
X86_FEATURES = {
    "avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512F", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16", "avx512_fp16": "AVX-512 FP16", "amx_tile": "AMX", "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16", "f16c": "F16C",
}
ARM_FEATURES = {"asimd": "NEON", "asimddp": "dot-product", "i8mm": "i8mm", "sve": "SVE", "sve2": "SVE2",
                "bf16": "BF16", "fphp": "FP16"}
RUNTIME_DISTRIBUTIONS = ("ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu", "onnxruntime",
                         "onnxruntime-gpu", "openvino", "nncf", "onnx", "tf2onnx")


def int8_pairs_saturate() -> bool:
    """Whether this host's int8 CPU kernels can saturate: x86 without VNNI, where uint8 x int8
    products are summed in pairs into int16 (vpmaddubsw) before they reach int32."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    flags = set(_cpuinfo().get("flags", "").split())
    return not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def cpu_facts() -> dict[str, Any]:
    info = _cpuinfo()
    flags = set(info.get("flags", info.get("Features", "")).split())
    table = ARM_FEATURES if platform.machine().lower() in ("aarch64", "arm64") else X86_FEATURES
    import psutil

    return {
        "model": info.get("model name") or info.get("Model") or platform.processor() or platform.machine(),
        "architecture": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "features": [name for flag, name in table.items() if flag in flags],
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def host_facts() -> dict[str, Any]:
    """Facts a report needs to be read correctly: CPU, OS, Python, runtime versions."""
    from importlib.metadata import PackageNotFoundError, version

    runtimes = {}
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            runtimes[name] = version(name)
        except PackageNotFoundError:
            continue
    return {
        "cpu": cpu_facts(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "runtimes": runtimes,
    }


def _cpuinfo() -> dict[str, str]:
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return {}
    facts: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in facts:
            facts[key.strip()] = value.strip()
        if not line.strip() and facts:
            break  # the first processor block says it all
    return facts
