"""A clean install prints nothing from the project itself: the wheel and the editable wheel build
through setuptools' own PEP 517 / 660 hooks (what pip calls) without a warning about our packaging."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGED = ("pyproject.toml", "README.md", "sdk", "converters", "targets", "benchmarks")

# Runs the hooks with every warning recorded, and prints what was warned as JSON on its last line.
BUILD = """
import json, sys, warnings
from setuptools import build_meta
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    wheel = build_meta.build_wheel(sys.argv[1])
    editable = build_meta.build_editable(sys.argv[1])
print(json.dumps({"wheel": wheel, "editable": editable,
                  "warnings": [[w.category.__name__, str(w.message).strip().splitlines()[0]] for w in caught]}))
"""


def test_wheel_and_editable_build_without_packaging_warnings(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    for name in PACKAGED:  # a copy: building writes build/ and egg-info beside the sources
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, project / name)
    dist = tmp_path / "dist"
    done = subprocess.run([sys.executable, "-c", BUILD, str(dist)], cwd=project, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # setuptools always notes that an editable install of a mapped layout uses a meta path finder
    # (the Makefile filters exactly that one); any other warning is about our packaging.
    others = [w for w in report["warnings"] if w != ["InformationOnly", "Editable installation."]]
    assert others == []
    with zipfile.ZipFile(dist / report["wheel"]) as wheel:
        names = set(wheel.namelist())
    assert "edgekit/targets/profiles/cpu.toml" in names  # the profiles are package data
    assert "edgekit/cli.py" in names and "edgekit/converters/tflite.py" in names

