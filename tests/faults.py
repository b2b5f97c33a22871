"""Faults forced inside edgekit's conversion children, for tests/test_isolation.py.

Nothing in edgekit knows about this module. `environment(folder, faults)` writes a
`sitecustomize.py` into `folder` and returns an environment for `edgekit convert` in
which Python imports it at start-up: in every process of that run (the parent and each
format group's child) the converter registry then points at `convert` below, which
runs the real converter except for the (target, format) pairs named in
EDGEKIT_TEST_FAULTS, e.g. "cpu/tflite=raise,gpu/onnx=segv":

- raise:   a Python exception from inside the converter
- abort:   os.abort() (SIGABRT), as a C++ CHECK failure in TFLiteConverter does
- segv:    a NULL read (SIGSEGV), as tf2onnx/TF native code does on some graphs
- corrupt: the real converter runs, then its file is overwritten: the runtime cannot load it
- hang:    the converter never returns
- segv-on-repair: the first conversion runs for real, the next one in that process (a repair
           trial) crashes with SIGSEGV, as NNCF did in an accuracy-control run
"""
from __future__ import annotations

import ctypes
import importlib
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_REAL: dict = {}
_CALLS: dict[str, int] = {}


def environment(folder: Path, faults: str, base: dict[str, str] | None = None) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {str(REPO)!r})\nimport tests.faults\ntests.faults.install()\n"
    )
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    env["EDGEKIT_TEST_FAULTS"] = faults
    return env


def install() -> None:
    if not os.environ.get("EDGEKIT_TEST_FAULTS"):
        return
    from edgekit.converters import registry

    _REAL.update(registry.CONVERTERS)
    for fmt in list(registry.CONVERTERS):
        registry.CONVERTERS[fmt] = "tests.faults:convert"


def _faults() -> dict[str, str]:
    pairs = (item.split("=", 1) for item in os.environ.get("EDGEKIT_TEST_FAULTS", "").split(",") if "=" in item)
    return {key.strip(): value.strip() for key, value in pairs}


def convert(job):
    key = f"{job.target}/{job.format.value}"
    fault = _faults().get(key)
    _CALLS[key] = _CALLS.get(key, 0) + 1
    if fault == "segv-on-repair":
        fault = "segv" if _CALLS[key] > 1 else None
    module, _, name = _REAL[job.format].partition(":")
    real = getattr(importlib.import_module(module), name)
    if fault == "raise":
        raise RuntimeError("forced failure: 'tf.ForcedFault' op cannot be lowered")
    if fault in ("abort", "segv"):
        os.write(2, f"forced native crash ({fault}) in the converter\n".encode())
        sys.stderr.flush()
        if fault == "abort":
            os.abort()
        ctypes.string_at(0)  # SIGSEGV
    if fault == "hang":
        time.sleep(3600)
    converted = real(job)
    if fault == "corrupt":
        job.output.write_bytes(b"this is not a model file\n" * 8)
    return converted
