"""MobileNetV2 (224x224, weights=None) fixtures for the benchmark suite.

Random weights give degenerate activations, so BatchNorm statistics are re-estimated on
image-like data first (as a trained network would have them); int8 calibration then sees
realistic ranges. Artifacts are converted in a subprocess so that this pytest process
imports only the runtime a test measures (runtimes slow each other down in one process).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models import image_like  # noqa: F401  (used by the tests)


@pytest.fixture(scope="session")
def mobilenet(request) -> dict[str, Path]:
    # Kept in pytest's cache folder: `make perf` runs pytest once per runtime and builds it once.
    folder = request.config.cache.mkdir("edgekit-mobilenet-224")
    if not (folder / "calib.npz").exists():
        script = f"from pathlib import Path; from tests.models import build_mobilenet; build_mobilenet(Path({str(folder)!r}))"
        subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])
    return {"model": folder / "mobilenet_v2.keras", "calibration": folder / "calib.npz", "folder": folder}


@pytest.fixture(scope="session")
def mobilenet_artifacts(mobilenet) -> dict:
    """cpu and cpu-fp32 artifacts of MobileNetV2 in every format, with the manifest."""
    out = mobilenet["folder"] / "dist"
    if (out / "manifest.json").exists():
        manifest = json.loads((out / "manifest.json").read_text())
        return {(a["target"], a["format"]): {**a, "path": str(out / a["path"])} for a in manifest["artifacts"]}
    from tests.models import random_weights_profile

    profile = random_weights_profile(mobilenet["folder"])
    command = [sys.executable, "-m", "edgekit", "convert", str(mobilenet["model"]), "-t", str(profile), "-t", "cpu-fp32",
               "-c", str(mobilenet["calibration"]), "-o", str(out), "--json"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads(result.stdout)
    return {(a["target"], a["format"]): {**a, "path": str(out / a["path"])} for a in manifest["artifacts"]}
