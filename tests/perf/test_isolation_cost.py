"""What per-format-group child processes cost a convert (docs: README "Logs, fault isolation").

Prints the whole command's wall time on the digits CNN and on MobileNetV2 (cpu, gpu, npu,
cpu-fp32 x 3 formats) at EDGEKIT_JOBS=1, 2 and 3, and the fixed price of one child: a Python
start that imports edgekit's conversion code and TensorFlow, which an in-process run pays
once and an isolated run once per TensorFlow-using group (tflite, onnx). No timing is
asserted; the figures go into the report. Run: `pytest tests/perf/test_isolation_cost.py -s -o addopts=""`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

TARGETS = ["-t", "cpu", "-t", "gpu", "-t", "npu", "-t", "cpu-fp32"]


def _seconds(command: list[str], **env: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    seconds = time.perf_counter() - started
    # Random-weight MobileNetV2 misses top-1 tolerances (exit 1); what counts here is that every artifact was made.
    if "--json" in command:
        manifest = json.loads(result.stdout)
        assert len(manifest["artifacts"]) == 12 and not manifest["errors"], result.stderr[-2000:]
    else:
        assert result.returncode == 0, result.stderr[-2000:]
    return seconds


def test_one_child_start(tmp_path):
    code = "import edgekit.conversion_worker, edgekit.conversion, tensorflow"
    runs = [_seconds([sys.executable, "-c", code]) for _ in range(3)]
    print(f"\nchild start (python + edgekit + tensorflow import): {', '.join(f'{r:.2f}' for r in runs)} s")


@pytest.mark.parametrize("model", ["digits", "mobilenet"])
def test_whole_convert_by_jobs(model, digits_example, request, tmp_path):
    if model == "mobilenet":
        paths = request.getfixturevalue("mobilenet")
    else:
        paths = digits_example
    line = []
    for jobs in ("1", "2", "3"):
        command = [sys.executable, "-m", "edgekit", "convert", str(paths["model"]), *TARGETS,
                   "-c", str(paths["calibration"]), "-o", str(tmp_path / jobs), "--json"]
        line.append(f"jobs={jobs} {_seconds(command, EDGEKIT_JOBS=jobs):.1f} s")
    print(f"\n{model} 12 artifacts, whole command: {'; '.join(line)}")
