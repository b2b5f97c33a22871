"""`edgekit build` and `edgekit init` end to end on the digits example: incremental, gated, and strict on bad input."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import interrupt_after_first_artifact, one_line_exit_2

EDGEKIT = str(Path(sys.executable).parent / "edgekit")
PIXEL_NPU = 'extends = "npu"\ndescription = "A phone NPU: TFLite only."\n[formats.onnx]\nenabled = false\n[formats.openvino]\nenabled = false\n'
FAST_BENCH = "[bench]\nwarmup = 2\nmin_runs = 10\nmin_time = 0.05\n"


def make_project(folder: Path, digits: dict[str, Path], config: str = "") -> Path:
    """model.keras, data/calib.npz, data/eval.npz, profiles/pixel-npu.toml and edgekit.toml in `folder`."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "profiles").mkdir(exist_ok=True)
    shutil.copy(digits["model"], folder / "model.keras")
    shutil.copy(digits["calibration"], folder / "data" / "calib.npz")
    shutil.copy(digits["evaluation"], folder / "data" / "eval.npz")
    (folder / "profiles" / "pixel-npu.toml").write_text(PIXEL_NPU)
    if config:
        (folder / "edgekit.toml").write_text(config)
    return folder / "edgekit.toml"


def snapshot(folder: Path, logs: bool = True) -> dict[str, bytes]:
    """Every file's bytes; without logs/ (`logs=False`) where a run that was stopped may leave its tools' output."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and (logs or p.relative_to(folder).parts[0] != "logs")}


def states(result) -> dict[str, str]:
    """target -> its state word, from `--json` output."""
    return {name: state.split(" (")[0] for name, state in json.loads(result.stdout)["targets"].items()}


# ------------------------------------------------------------------ init, build, up to date, gate


@pytest.fixture(scope="module")
def initialized(digits_example, tmp_path_factory, cli):
    """`edgekit init` on the digits example (data found beside the model), then a first `edgekit build`."""
    folder = tmp_path_factory.mktemp("init")
    for key, name in (("model", "digits.keras"), ("calibration", "calib.npz"), ("evaluation", "eval.npz")):
        shutil.copy(digits_example[key], folder / name)
    config = folder / "edgekit.toml"
    init = cli("init", folder / "digits.keras", "-c", config)
    assert init.code == 0, init
    first = cli("build", "-c", config, "--json")
    return {"folder": folder, "config": config, "first": first}


def test_init_writes_a_commented_config_with_the_model_inputs(initialized, cli):
    text = initialized["config"].read_text()
    assert 'path = "digits.keras"' in text and 'calibration = "calib.npz"' in text and 'evaluation = "eval.npz"' in text
    assert "# inputs:  image [?, 8, 8, 1] float32" in text
    assert "[targets.cpu]" in text and "# [model.preprocess]" in text
    again = cli("init", initialized["folder"] / "digits.keras", "-c", initialized["config"])
    one_line_exit_2(again, "already exists", "--force")


def test_init_then_build_produces_every_artifact_and_report(initialized):
    first, dist = initialized["first"], initialized["folder"] / "dist"
    assert first.code == 0, first
    summary = json.loads(first.stdout)
    assert summary["passed"] and summary["targets"] == {"cpu": "built (no previous manifest)"}
    manifest = json.loads((dist / "manifest.json").read_text())
    assert {(a["target"], a["format"], a["path"]) for a in manifest["artifacts"]} == {
        ("cpu", "tflite", "cpu/digits.tflite"), ("cpu", "onnx", "cpu/digits.onnx"), ("cpu", "openvino", "cpu/digits.xml")}
    for entry in manifest["artifacts"]:
        assert entry["verification"]["passed"] and (dist / entry["path"]).is_file()
        for spec in entry["inputs"]:
            assert spec["name"] and spec["shape"] and spec["dtype"] and "quantization" in spec
    for name in ("report.json", "junit.xml", "report.md", "report.html"):
        assert (dist / "reports" / name).stat().st_size > 0, name
    report = json.loads((dist / "reports" / "report.json").read_text())
    assert [r["measurement"]["name"] for r in report["results"]] == ["cpu/tflite", "cpu/onnx", "cpu/openvino"]
    assert all(r["measurement"]["latency"]["p50_ms"] > 0 for r in report["results"])
    assert sorted(summary["benchmarked"]) == ["cpu/onnx", "cpu/openvino", "cpu/tflite"]


def test_second_build_is_up_to_date_and_writes_nothing(initialized):
    """How long the up-to-date rebuild takes is measured in tests/perf/test_rebuild.py, not here."""
    command = [EDGEKIT, "build", "-c", str(initialized["config"])]
    subprocess.run(command, capture_output=True, text=True)  # settles reports left by other tests
    before = snapshot(initialized["folder"] / "dist")
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "cpu: up to date" in again.stderr and "converting" not in again.stderr
    assert "benchmarks up to date" in again.stderr and "reports: up to date" in again.stderr
    assert snapshot(initialized["folder"] / "dist") == before  # not a byte written


def test_impossible_budget_exits_1_and_junit_names_it(initialized, cli):
    """Budgets are not part of the measurement's key: a new one re-judges the cached measurements."""
    text = initialized["config"].read_text().replace(
        "# budgets = { latency_p90_ms = 5.0, size_mb = 4, max_accuracy_drop = 0.01 }", "budgets = { latency_p90_ms = 0.000001 }")
    tight = initialized["folder"] / "tight.toml"
    tight.write_text(text)
    result = cli("build", "-c", tight, "--json")
    assert result.code == 1, result
    summary = json.loads(result.stdout)
    assert summary["benchmarked"] == [] and len(summary["bench_cached"]) == 3
    assert "latency_p90_ms" in result.stderr and result.stderr.strip().splitlines()[-1].startswith("edgekit: error: build failed")
    suite = ET.parse(initialized["folder"] / "dist" / "reports" / "junit.xml").getroot()
    failed = [(case.get("classname"), case.get("name")) for case in suite.iter("testcase") if case.find("failure") is not None]
    assert ("edgekit.cpu.tflite", "latency_p90_ms") in failed and {name for _, name in failed} == {"latency_p90_ms"}, failed


def test_rebench_measures_again(initialized, cli):
    result = cli("build", "-c", initialized["config"], "--rebench", "--json")
    assert result.code == 0, result
    summary = json.loads(result.stdout)
    assert summary["targets"] == {"cpu": "up to date"} and len(summary["benchmarked"]) == 3


# ------------------------------------------------------------------ incremental and deterministic

INCREMENTAL = """
[model]
path = "model.keras"
labels = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
[model.preprocess]
size = [8, 8]
color = "L"
scale = 0.0625
[data]
calibration = "data/calib.npz"
[targets.cpu-fp32]
formats = ["tflite"]
[targets.cpu]
formats = ["tflite"]
[targets.pixel-npu]
profile = "profiles/pixel-npu.toml"
"""


def test_incremental_rebuilds_only_what_changed(digits_example, tmp_path, cli):
    config = make_project(tmp_path, digits_example, INCREMENTAL)
    dist = tmp_path / "dist"
    first = cli("build", "-c", config, "--no-bench", "--json")
    assert first.code == 0, first
    assert states(first) == {"cpu-fp32": "built", "cpu": "built", "pixel-npu": "built"}
    manifest = json.loads((dist / "manifest.json").read_text())
    assert [(a["target"], a["path"]) for a in manifest["artifacts"]] == [
        ("cpu-fp32", "cpu-fp32/model.tflite"), ("cpu", "cpu/model.tflite"), ("pixel-npu", "pixel-npu/model.tflite")]
    assert manifest["labels"][:2] == ["zero", "one"] and manifest["preprocess"]["size"] == [8, 8]
    assert manifest["preprocess"]["color"] == "L" and manifest["preprocess"]["scale"] == 0.0625
    npu = manifest["artifacts"][2]
    assert npu["inputs"][0]["dtype"] == "int8" and npu["inputs"][0]["quantization"]["scale"] > 0
    hashes = {a["target"]: a["sha256"] for a in manifest["artifacts"]}

    before = snapshot(dist)
    second = cli("build", "-c", config, "--no-bench", "--json")
    assert set(states(second).values()) == {"up to date"}
    assert snapshot(dist) == before

    # New calibration bytes: the int8 targets use them, cpu-fp32 does not.
    data = np.load(tmp_path / "data" / "calib.npz")
    np.savez(tmp_path / "data" / "calib.npz", image=data["image"][::-1][:150])
    fp32_file = dist / "cpu-fp32" / "model.tflite"
    stamp = fp32_file.stat().st_mtime_ns
    third = cli("build", "-c", config, "--no-bench", "--json")
    assert third.code == 0, third
    assert states(third) == {"cpu-fp32": "up to date", "cpu": "built", "pixel-npu": "built"}
    assert "calibration changed" in json.loads(third.stdout)["targets"]["cpu"]
    assert fp32_file.stat().st_mtime_ns == stamp

    # A changed profile rebuilds its target only.
    (tmp_path / "profiles" / "pixel-npu.toml").write_text(PIXEL_NPU + "[formats.tflite]\nper_channel = false\n")
    fourth = cli("build", "-c", config, "--no-bench", "--json")
    assert states(fourth) == {"cpu-fp32": "up to date", "cpu": "up to date", "pixel-npu": "built"}
    assert "profile changed" in json.loads(fourth.stdout)["targets"]["pixel-npu"]

    # --only builds just that target; --force converts even when up to date.
    only = cli("build", "-c", config, "--no-bench", "--only", "cpu-fp32", "--force", "--json")
    assert states(only) == {"cpu-fp32": "built", "cpu": "not selected", "pixel-npu": "not selected"}
    # Deterministic: the same inputs give byte-identical artifacts.
    again = json.loads((dist / "manifest.json").read_text())
    assert {a["target"]: a["sha256"] for a in again["artifacts"]}["cpu-fp32"] == hashes["cpu-fp32"]
    assert len(again["artifacts"]) == 3
    assert not any("not reproducible" in note for a in again["artifacts"] for note in a["notes"])
    # Should a converter stop being byte-stable, the manifest says which artifact.
    cache = json.loads((dist / ".edgekit-cache.json").read_text())
    cache["artifacts"]["cpu-fp32"]["tflite"] = "0" * 64
    (dist / ".edgekit-cache.json").write_text(json.dumps(cache))
    assert cli("build", "-c", config, "--no-bench", "--only", "cpu-fp32", "--force").code == 0
    notes = json.loads((dist / "manifest.json").read_text())["artifacts"][0]["notes"]
    assert any(note.startswith("not reproducible: converting the same inputs again gave different bytes") for note in notes)

    # A target dropped from the config leaves the manifest and dist/.
    config.write_text(INCREMENTAL.split("[targets.pixel-npu]")[0])
    dropped = cli("build", "-c", config, "--no-bench", "--json")
    assert set(states(dropped)) == {"cpu-fp32", "cpu"} and set(states(dropped).values()) == {"up to date"}
    assert [a["target"] for a in json.loads((dist / "manifest.json").read_text())["artifacts"]] == ["cpu-fp32", "cpu"]
    assert not (dist / "pixel-npu").exists()


def test_force_rebuild_is_byte_identical_in_every_format(initialized, cli):
    dist = initialized["folder"] / "dist"
    before = {a["format"]: a["sha256"] for a in json.loads((dist / "manifest.json").read_text())["artifacts"]}
    result = cli("build", "-c", initialized["config"], "--force", "--no-bench", "--json")
    assert result.code == 0 and states(result) == {"cpu": "built"}, result
    manifest = json.loads((dist / "manifest.json").read_text())
    after = {a["format"]: a["sha256"] for a in manifest["artifacts"]}
    assert after == before, "a converter is not byte-stable: record it in the manifest's determinism notes"


# ------------------------------------------------------------------ bad input: one line, exit 2, dist untouched

BASE = """
[model]
path = "model.keras"
[data]
calibration = "data/calib.npz"
evaluation = "data/eval.npz"
[targets.cpu-fp32]
formats = ["tflite"]
"""


@pytest.fixture(scope="module")
def base_project(digits_example, tmp_path_factory, cli):
    folder = tmp_path_factory.mktemp("base")
    config = make_project(folder, digits_example, BASE)
    assert cli("build", "-c", config, "--no-bench").code == 0
    wrong = folder / "data" / "wrong.npz"
    np.savez(wrong, image=np.zeros((5, 4, 4, 1), np.float32), labels=np.zeros(5))
    (folder / "folder.keras").mkdir()
    (folder / "random.keras").write_bytes(np.random.default_rng(0).bytes(2048))
    return folder


@pytest.mark.parametrize(
    "config, fragments",
    [
        (BASE + "[output]\ndirr = 'dist'\n", ["bad.toml: output.dirr: unknown key (did you mean 'dir'?)"]),
        (BASE + "[targetz.cpu]\n", ["bad.toml: targetz: unknown key (did you mean 'targets'?)"]),
        (BASE + "budgets = { latency_p90 = 5 }\n",
         ["bad.toml: targets.cpu-fp32.budgets.latency_p90: unknown budget", "(did you mean 'latency_p90_ms'?)"]),
        (BASE + "budgets = { size_mb = 'small' }\n", ["targets.cpu-fp32.budgets.size_mb", "must be a number"]),
        (BASE + "[targets.board]\nprofile = 'profiles/missing.toml'\n", ["bad.toml: targets.board.profile: profile file not found", "missing.toml"]),
        (BASE + "[targets.cpux]\n", ["bad.toml: targets.cpux: unknown target 'cpux' (did you mean 'cpu'?)"]),
        (BASE.replace('formats = ["tflite"]', 'formats = ["tflit"]'), ["targets.cpu-fp32.formats[0]: 'tflit' is not accepted (did you mean 'tflite'?)"]),
        (BASE.replace("data/calib.npz", "data/nope.npz"), ["bad.toml: data.calibration: file not found", "nope.npz"]),
        (BASE.replace("data/eval.npz", "data/wrong.npz"), ["bad.toml: data.evaluation:", "wrong.npz", "(N, 8, 8, 1)"]),
        (BASE.replace('path = "model.keras"', 'path = "folder.keras"'), ["bad.toml: model.path:", "is a directory but not a SavedModel"]),
        (BASE.replace('path = "model.keras"', 'path = "random.keras"'), ["bad.toml: model.path:", "not a loadable Keras model"]),
        (BASE.replace('path = "model.keras"', "path = 3"), ["bad.toml: model.path: Input should be a valid string"]),
        (BASE.replace('path = "model.keras"', 'path = "missing.keras"'), ["bad.toml: model.path: file not found"]),
        (BASE.replace('[targets.cpu-fp32]\nformats = ["tflite"]', "[targets.cpu]"), ["data.evaluation:", "wrong.npz"]),
        (BASE.replace("[model]\n", "[model]\nlabels = ['a', 'b']\n"), ["bad.toml: model.labels: 2 labels, but the model's output 'output_0' has 10 classes"]),
        (BASE.replace('calibration = "data/calib.npz"\n', "") + "[targets.npu]\n",
         ["bad.toml: data.calibration: target 'npu' makes tflite int8-full, which needs calibration data"]),
        ("[model\n", ["bad.toml: not valid TOML"]),
        (BASE + "[bench]\nmin_runs = 0\n", ["bad.toml: bench.min_runs:", "greater than or equal to 1"]),
    ],
    ids=["unknown-key", "unknown-table", "unknown-budget", "budget-not-number", "missing-profile-file", "unknown-target",
         "unknown-format", "missing-data", "mismatched-data", "model-now-a-directory", "model-not-loadable",
         "model-path-not-a-string", "missing-model", "mismatched-data-on-rebuild", "labels-mismatch",
         "calibration-needed", "not-toml", "bad-bench-setting"],
)
def test_bad_config_is_one_line_exit_2_and_dist_unchanged(base_project, cli, config, fragments):
    if "[targets.cpu]" in config:  # the same mismatch, found while a target is being rebuilt
        config = config.replace("data/eval.npz", "data/wrong.npz")
    before = snapshot(base_project / "dist")
    bad = base_project / "bad.toml"
    bad.write_text(config)
    one_line_exit_2(cli("build", "-c", bad), *fragments)
    assert snapshot(base_project / "dist") == before
    assert not list((base_project / "dist").glob(".edgekit-staging-*"))


def test_missing_config_file(base_project, cli, tmp_path, monkeypatch):
    one_line_exit_2(cli("build", "-c", base_project / "nope.toml"), "nope.toml: config file not found")
    monkeypatch.chdir(tmp_path)
    one_line_exit_2(cli("build"), "edgekit.toml: not found in", "edgekit init")
    assert not (tmp_path / "dist").exists()


def test_only_names_a_configured_target(base_project, cli):
    one_line_exit_2(cli("build", "-c", base_project / "edgekit.toml", "--only", "cpu-fp23"),
                    "--only cpu-fp23:", "(did you mean 'cpu-fp32'?)")


def test_pyproject_tool_edgekit_table(base_project, cli):
    pyproject = base_project / "pyproject.toml"
    body = BASE.replace("[model]", "[tool.edgekit.model]").replace("[data]", "[tool.edgekit.data]")
    pyproject.write_text("[project]\nname = 'app'\n" + body.replace("[targets.", "[tool.edgekit.targets."))
    result = cli("build", "-c", pyproject, "--no-bench", "--json")
    assert result.code == 0 and states(result) == {"cpu-fp32": "up to date"}, result
    pyproject.write_text(pyproject.read_text() + "[tool.edgekit.output]\ndirr = 'x'\n")
    one_line_exit_2(cli("build", "-c", pyproject), "pyproject.toml: tool.edgekit.output.dirr: unknown key (did you mean 'dir'?)")


def test_a_second_build_on_the_same_dist_is_refused(base_project, cli):
    import fcntl

    with (base_project / "dist" / ".edgekit.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        one_line_exit_2(cli("build", "-c", base_project / "edgekit.toml"), ".edgekit.lock: another edgekit build is writing")
    assert cli("build", "-c", base_project / "edgekit.toml", "--no-bench").code == 0


def test_interrupted_build_leaves_previous_dist_valid(base_project):
    config = base_project / "interrupt.toml"
    config.write_text(BASE + "[targets.cpu]\nformats = ['tflite', 'onnx']\n")
    dist = base_project / "dist"
    before = snapshot(dist, logs=False)
    interrupt_after_first_artifact([EDGEKIT, "build", "-c", str(config), "--force", "--no-bench"])
    assert snapshot(dist, logs=False) == before
    manifest = json.loads((dist / "manifest.json").read_text())
    from edgekit.artifact import sha256_of

    assert all(sha256_of(dist / a["path"]) == a["sha256"] for a in manifest["artifacts"])


# ------------------------------------------------------------------ the Python API


def test_python_api_each_function(digits_example, base_project, tmp_path):
    import edgekit
    import keras

    target = edgekit.load_target("cpu-fp32")
    assert target.name == "cpu-fp32" and "tflite" in {f.value for f in target.recipes()}

    model = keras.models.load_model(digits_example["model"])  # in memory, with NumPy data
    calibration = {"image": np.load(digits_example["calibration"])["image"][:50]}
    manifest = edgekit.convert(model, [target], formats=["tflite"], calibration=calibration, output=tmp_path / "api")
    assert isinstance(manifest, edgekit.Manifest) and manifest.passed and manifest.artifacts[0].path.is_file()

    evaluation = dict(np.load(digits_example["evaluation"]))
    report = edgekit.benchmark(manifest.path, data=evaluation, reference=model, budgets={"size_mb": 2.0, "max_accuracy_drop": 0.01},
                               settings=edgekit.BenchSettings(warmup=1, min_runs=5, min_time=0.0))
    assert report.passed and [v.status for v in report.results[0].verdicts] == ["pass", "pass"]
    assert report.results[0].measurement.metrics["accuracy"] > 0.9

    result = edgekit.build(base_project / "edgekit.toml", bench=False)
    assert isinstance(result, edgekit.BuildResult)
    assert result.targets == {"cpu-fp32": "up to date"} and result.exit_code == 0 and result.report is None
    config = edgekit.load_config(base_project / "edgekit.toml")
    assert edgekit.build(config, bench=False).manifest.path == (base_project / "dist" / "manifest.json").resolve()
