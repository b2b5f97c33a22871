"""The CLI's cheap paths start fast: no TensorFlow, ONNX Runtime or OpenVINO imported."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "onnxruntime", "openvino", "onnx", "nncf", "keras", "ai_edge_litert", "torch", "litert_torch", "ray")

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


# What the fast paths may import beyond the standard library (`python -X importtime` showed
# typer's rich help formatting, markdown-it and pygments as most of the start-up): a new
# top-level import in the CLI or in a module it registers shows up here, not as a timing.
CLI_PACKAGES = {"edgekit", "typer", "annotated_doc", "shellingham"}
PROFILE_PACKAGES = CLI_PACKAGES | {"pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection", "rich"}
COMPLETE_TA = {"_EDGEKIT_COMPLETE": "complete_bash", "COMP_WORDS": "edgekit ta", "COMP_CWORD": "1"}

_PACKAGES_PROBE = """
import sys
sys.argv = ["edgekit", *sys.argv[1:]]
try:
    from edgekit.cli import main
    main()
except SystemExit:
    pass
print("PACKAGES=" + ",".join(sorted({m.split(".")[0] for m in sys.modules if not m.startswith("_")}
                                    - set(sys.stdlib_module_names))), file=sys.stderr)
"""


def _packages(args, env=None):
    result = subprocess.run([sys.executable, "-c", _PACKAGES_PROBE, *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(env or {})})
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("PACKAGES="), result.stderr
    return result.stdout, set(line.removeprefix("PACKAGES=").split(","))


@pytest.mark.parametrize("args, env", [(["--help"], None), (["doctor", "--help"], None), (["bench", "--help"], None),
                                       ([], COMPLETE_TA)], ids=["help", "doctor-help", "bench-help", "completion"])
def test_help_and_completion_import_only_the_cli(args, env):
    stdout, packages = _packages(args, env)
    assert packages == CLI_PACKAGES, f"beyond the CLI: {sorted(packages - CLI_PACKAGES)}"
    assert ("targets" in stdout.split()) if env else ("Usage: edgekit" in stdout)


def test_targets_imports_only_what_profiles_and_tables_need():
    stdout, packages = _packages(["targets"])
    assert packages <= PROFILE_PACKAGES, f"beyond profiles and tables: {sorted(packages - PROFILE_PACKAGES)}"
    assert "cpu-fp32" in stdout


def test_a_closed_pipe_ends_quietly():
    """`edgekit targets --json | head -1`: the reader leaving is not an internal error."""
    read, write = os.pipe()
    os.close(read)
    result = subprocess.run([sys.executable, "-m", "edgekit", "targets", "--json"], stdout=write, stderr=subprocess.PIPE,
                            text=True, timeout=120)
    os.close(write)
    assert result.returncode == 141 and result.stderr == "", result.stderr


def test_targets_table_is_rendered_once_per_terminal_setting(tmp_path):
    """The second `edgekit targets` prints the same bytes from the cache, without importing rich;
    another width renders afresh (sdk/rendercache.py)."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "COLUMNS": "120"}
    first, packages = _packages(["targets"], env)
    assert "rich" in packages
    second, packages = _packages(["targets"], env)
    assert second == first and "rich" not in packages, sorted(packages)
    narrow, _ = _packages(["targets"], {**env, "COLUMNS": "70"})
    assert max(map(len, narrow.splitlines())) <= 70 < max(map(len, first.splitlines()))
    assert len(list((tmp_path / "edgekit").glob("targets-table-*.txt"))) == 2
