"""The issue-12 figure: `edgekit convert` MobileNetV2 for cpu, gpu, npu, cpu-fp32 x 3 formats, whole command.

Prints the wall time and where it went: the manifest's run-level `timings` (reference outputs,
shared SavedModel export, the artifacts' phase) and the sum over artifacts of each step
(export, calibrate, quantize, verify; steps of different format groups overlap in time).
EDGEKIT_BASELINE=/path/to/other/edgekit runs that build first, for a before/after in one run.
Goal: <= 40 s. Nothing is asserted about time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

TARGETS = ["-t", "cpu", "-t", "gpu", "-t", "npu", "-t", "cpu-fp32"]


def _convert(executable: list[str], mobilenet, out) -> tuple[float, dict]:
    # The conversion's time, without repairs (random weights would start them); a baseline older than
    # automatic repair has no such flag.
    knows_repair = "--no-repair" in subprocess.run([*executable, "convert", "--help"], capture_output=True, text=True).stdout
    command = [*executable, "convert", str(mobilenet["model"]), *TARGETS, "-c", str(mobilenet["calibration"]),
               "-o", str(out), "--json", *(["--no-repair"] if knows_repair else [])]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    manifest = json.loads(result.stdout)  # random weights miss top-1 tolerances (exit 1): every artifact is made
    assert len(manifest["artifacts"]) == 12 and not manifest["errors"], result.stderr[-2000:]
    return seconds, manifest


def test_mobilenet_whole_convert(mobilenet, tmp_path):
    runs = []
    if os.environ.get("EDGEKIT_BASELINE"):
        runs.append(("baseline", [os.environ["EDGEKIT_BASELINE"]]))
    runs.append(("this build", [sys.executable, "-m", "edgekit"]))
    for name, executable in runs:
        seconds, manifest = _convert(executable, mobilenet, tmp_path / name.replace(" ", "-"))
        steps: dict[str, float] = {}
        for artifact in manifest["artifacts"]:
            for step, value in (artifact.get("timings") or {}).items():
                steps[step] = steps.get(step, 0.0) + value
        per_artifact = ", ".join(f"{a['target']}/{a['format']} {a['seconds']:.1f}" for a in manifest["artifacts"])
        print(f"\n{name}: {seconds:.1f} s whole command; run {manifest.get('timings')}; "
              f"artifact steps summed {({k: round(v, 1) for k, v in steps.items()})}; converters: {per_artifact}")
