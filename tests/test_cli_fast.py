"""The CLI's cheap paths start fast: no TensorFlow, ONNX Runtime or OpenVINO imported."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "onnxruntime", "openvino", "onnx", "nncf", "keras", "ai_edge_litert")

_PROBE = """
import sys
from edgekit.cli import app
try:
    app(args={args!r}, prog_name="edgekit", standalone_mode=True)
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


def _run(args):
    code = _PROBE.format(args=args, heavy=HEAVY)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [["--help"], ["convert", "--help"], ["inspect", "--help"], ["build", "--help"], ["init", "--help"],
                                  ["targets"], ["targets", "npu"]])
def test_cheap_commands_import_no_runtime(args):
    result = _run(args)
    assert "HEAVY=\n" in result.stderr or result.stderr.rstrip().endswith("HEAVY="), result.stderr
    assert result.stdout.strip(), "the command printed nothing"


def test_python_dash_m_edgekit_lists_targets_as_json():
    result = subprocess.run([sys.executable, "-m", "edgekit", "targets", "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    names = {p["name"] for p in json.loads(result.stdout)}
    assert {"cpu", "gpu", "npu", "cpu-fp32"} <= names


def test_unknown_target_is_one_line_exit_2():
    result = subprocess.run([sys.executable, "-m", "edgekit", "targets", "nppu"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "edgekit: error: unknown target 'nppu' (did you mean 'npu'?); pass a built-in name (see `edgekit targets`) or a path to a .toml profile"
    ]
