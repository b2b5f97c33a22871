"""The integration examples in examples/ run: the commands they call, end to end, on the digits example.

Gradle, Xcode and GitHub Actions are not here; the commands they run are. Each file is read
for its command lines and paths, which then run in a repository laid out as examples/README.md says.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BIN = str(Path(sys.executable).parent)  # where the `edgekit` command is installed


@pytest.fixture(scope="module")
def repo(digits_example, tmp_path_factory) -> Path:
    """<repo>/ml (the example config with the digits model and data), <repo>/app, <repo>/ios."""
    root = tmp_path_factory.mktemp("repo")
    ml = root / "ml"
    (ml / "data").mkdir(parents=True)
    shutil.copy(EXAMPLES / "ml" / "edgekit.toml", ml)
    shutil.copy(EXAMPLES / "ml" / "labels.txt", ml)
    shutil.copy(digits_example["model"], ml / "model.keras")
    shutil.copy(digits_example["calibration"], ml / "data" / "calib.npz")
    shutil.copy(digits_example["evaluation"], ml / "data" / "eval.npz")
    (root / "app").mkdir()
    shutil.copy(EXAMPLES / "android" / "build.gradle.kts", root / "app")
    (root / "ios").mkdir()
    return root


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], **extra}


def test_android_gradle_tasks(repo):
    app = repo / "app"
    script = (app / "build.gradle.kts").read_text()
    command = re.search(r"commandLine\((.*)\)", script).group(1)
    argv = re.findall(r'"([^"]*)"', command)
    assert argv[:2] == ["edgekit", "build"]
    # Gradle checks declared inputs exist before it runs the task.
    for declared in re.findall(r'inputs\.(?:file|dir)\("([^"]+)"\)', script):
        assert (app / declared).exists(), declared
    result = subprocess.run(argv, cwd=app, env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert re.search(r'outputs\.dir\("([^"]+)"\)', script) and (app / "../ml/dist/manifest.json").is_file()
    # The Copy task: from("<dist>/$edgekitTarget") { include("*.tflite") } into("src/main/assets").
    target = re.search(r'val edgekitTarget = "([^"]+)"', script).group(1)
    copies = re.findall(r'from\("([^"]+)"\) \{ include\("([^"]+)"\) \}', script)
    into = app / re.search(r'into\("([^"]+)"\)', script).group(1)
    into.mkdir(parents=True)
    for source, pattern in copies:
        matched = sorted((app / source.replace("$edgekitTarget", target)).glob(pattern))
        assert matched, (source, pattern)
        for file in matched:
            shutil.copy(file, into)
    assert sorted(p.name for p in into.iterdir()) == ["manifest.json", "model.tflite"]
    assert 'noCompress += "tflite"' in script
    assert re.search(r'tasks\.named\("preBuild"\) \{\s*dependsOn\(copyEdgekitModels\)', script)


def test_xcode_build_phase_script(repo, tmp_path):
    products = tmp_path / "Build" / "Products" / "Debug-iphonesimulator"
    env = _env(SRCROOT=str(repo / "ios"), BUILT_PRODUCTS_DIR=str(products), UNLOCALIZED_RESOURCES_FOLDER_PATH="Digits.app")
    script = EXAMPLES / "ios" / "edgekit-build-phase.sh"
    assert script.read_text().splitlines()[0] == "#!/bin/bash" and "set -euo pipefail" in script.read_text()
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    bundle = products / "Digits.app"
    assert sorted(p.name for p in bundle.iterdir()) == ["edgekit-manifest.json", "model.tflite"]
    assert (bundle / "model.tflite").read_bytes() == (repo / "ml" / "dist" / "cpu" / "model.tflite").read_bytes()


def test_xcode_build_phase_fails_the_build_on_bad_config(repo, tmp_path):
    bad = tmp_path / "edgekit.toml"
    bad.write_text((repo / "ml" / "edgekit.toml").read_text().replace("[output]", "[outptu]"))
    env = _env(SRCROOT=str(repo / "ios"), BUILT_PRODUCTS_DIR=str(tmp_path / "p"), UNLOCALIZED_RESOURCES_FOLDER_PATH="A.app",
               EDGEKIT_CONFIG=str(bad))
    result = subprocess.run(["bash", str(EXAMPLES / "ios" / "edgekit-build-phase.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "outptu: unknown key (did you mean 'output'?)" in result.stderr
    assert not (tmp_path / "p").exists()


def _workflow_steps(text: str) -> list[dict[str, str]]:
    """name / if / run / uses / report_paths of each step: enough of the YAML for this test, without a YAML library."""
    steps: list[dict[str, str]] = []
    for line in text.splitlines():
        match = re.match(r"\s*(-\s+)?(name|if|run|uses|report_paths):\s*(.*)$", line)
        if not match:
            continue
        if match.group(1):
            steps.append({})
        if steps:
            steps[-1][match.group(2)] = match.group(3).strip()
    return steps


def test_github_actions_workflow(repo, tmp_path):
    steps = _workflow_steps((EXAMPLES / "github-actions" / "edgekit.yml").read_text())
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert {"actions/checkout", "actions/setup-python", "mikepenz/action-junit-report", "actions/upload-artifact"} <= set(uses)
    runs = [s for s in steps if "run" in s and not s["run"].startswith("pip install")]
    assert any(s["run"].startswith("edgekit build") for s in runs)
    publishing = [s for s in steps if s.get("name", "").startswith(("Post", "Publish", "Upload"))]
    assert publishing and all(s.get("if", "").startswith("always()") for s in publishing)
    summary = tmp_path / "summary.md"
    for step in runs:  # in order, as the runner would, from the repository root
        result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=repo, env=_env(GITHUB_STEP_SUMMARY=str(summary)),
                                capture_output=True, text=True)
        assert result.returncode == 0, (step, result.stderr)
    assert "edgekit bench: ✅ passed" in summary.read_text()
    junit = next(s["report_paths"] for s in steps if "report_paths" in s)
    assert (repo / junit).is_file() and "<testsuite" in (repo / junit).read_text()
    assert shlex.split(runs[0]["run"])[:4] == ["edgekit", "build", "-c", "ml/edgekit.toml"]
