"""`edgekit bench` on the digits artifacts: real runtimes, one worker process per artifact."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tests.conftest import CliResult

FAST = ["--warmup", "2", "--min-runs", "10", "--min-time", "0"]


@pytest.fixture(scope="module")
def bench_run(digits_dist, digits_example, tmp_path_factory):
    """`edgekit bench` as a CI job runs it: its own process, stderr going to a log file, NO_COLOR set."""
    out = tmp_path_factory.mktemp("reports")
    command = [sys.executable, "-m", "edgekit", "bench", digits_dist["dir"], "--data", digits_example["evaluation"], *FAST,
               "--report", out / "r.json", "--markdown", out / "r.md", "--junit", out / "j.xml", "--html", out / "r.html"]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")} | {"NO_COLOR": "1"}
    with open(out / "stderr.log", "w") as log:
        process = subprocess.run([str(c) for c in command], stdout=subprocess.PIPE, stderr=log, text=True, env=env, timeout=600)
    return CliResult(process.returncode, process.stdout, (out / "stderr.log").read_text()), out


def test_bench_table_in_a_log_file_keeps_one_line_per_artifact(bench_run):
    """Off a terminal the table is as wide as its content: no cell folds onto a second line."""
    result, _ = bench_run
    assert result.code == 0, result
    assert "\x1b[" not in result.stderr  # not a terminal, and NO_COLOR: plain text
    lines = result.stderr.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    rows = [line for line in lines if line.startswith("│")]
    seen = set()
    for row in rows:
        cells = [c.strip() for c in row.strip("│").split("│")]
        assert len(row) == len(header) and cells[0] and cells[-1], row  # a folded cell leaves blanks
        seen.add(f"{cells[0]}/{cells[1]}")
    names = {f"{t}/{f}" for t in ("cpu", "gpu", "npu", "cpu-fp32") for f in ("tflite", "onnx", "openvino")}
    assert len(rows) == len(names) and seen == names, "\n".join(rows)  # one line per artifact


def test_bench_reports_every_figure_for_every_artifact(bench_run):
    result, out = bench_run
    assert result.code == 0, result
    report = json.loads((out / "r.json").read_text())
    assert report["schema"] == "edgekit.report/1" and report["passed"]
    assert len(report["results"]) == 12
    assert report["host"]["cpu"]["logical_cores"] >= 1 and "onnxruntime" in report["host"]["runtimes"]
    for entry in report["results"]:
        m = entry["measurement"]
        assert m["error"] is None, m
        assert m["size_mb"] > 0
        assert m["metrics"]["accuracy"] > 0.9 and len(m["confusion_matrix"]) == 10
        assert m["fidelity"]["cosine"] > 0.95  # the manifest's source is the reference
        assert m["reference_metrics"]["accuracy"] > 0.9
        if m["target"] in ("gpu", "npu"):  # no GPU or NPU here: latency skipped, accuracy measured on CPU
            assert m["latency"] is None and "not present" in m["skipped"]["latency"]
        else:
            latency = m["latency"]
            assert latency["runs"] >= 10 and latency["min_ms"] <= latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
            assert m["load_ms"] > 0 and m["first_inference_ms"] > 0
            # the worker's own peak, not the parent's (this pytest process holds TensorFlow)
            assert 0 < m["peak_memory_mb"] < 400
        assert m["backend"]


def test_backend_reports_what_actually_ran(bench_run):
    _, out = bench_run
    report = json.loads((out / "r.json").read_text())
    by_name = {r["measurement"]["name"]: r["measurement"] for r in report["results"]}
    assert by_name["cpu/onnx"]["backend"]["providers_used"] == ["CPUExecutionProvider"]
    assert by_name["cpu-fp32/openvino"]["backend"]["inference_precision"] in ("f32", "<Type: 'float32'>")


def test_openvino_also_reports_the_latency_its_own_timer_read(bench_run):
    """benchmark_app reports InferRequest.latency; edgekit reports it beside its own clock, same runs."""
    _, out = bench_run
    report = json.loads((out / "r.json").read_text())
    by_name = {r["measurement"]["name"]: r["measurement"] for r in report["results"]}
    for name in ("cpu/openvino", "cpu-fp32/openvino"):
        m = by_name[name]
        wall, runtime = m["latency"], m["runtime_latency"]
        assert runtime["runs"] == wall["runs"] and "InferRequest.latency" in m["backend"]["runtime_timer"]
        # the runtime's timer sits inside the call the wall clock brackets
        assert 0 < runtime["min_ms"] <= wall["min_ms"] and runtime["p50_ms"] <= wall["p50_ms"], (wall, runtime)
    for name in ("cpu/tflite", "cpu/onnx", "cpu-fp32/tflite", "cpu-fp32/onnx"):  # no timer of their own
        assert by_name[name]["runtime_latency"] is None and "runtime_timer" not in by_name[name]["backend"]


def test_tight_budget_fails_with_junit(cli, digits_dist, digits_example, tmp_path):
    junit = tmp_path / "junit.xml"
    result = cli("bench", digits_dist["dir"] / "manifest.json", "--data", digits_example["evaluation"], *FAST,
                 "--budget", "latency_p90_ms=0.0001", "--junit", junit)
    assert result.code == 1, result
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    failures = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert {c.get("name") for c in failures} == {"latency_p90_ms"}
    assert len(failures) == 6  # cpu and cpu-fp32, three formats each; gpu/npu latency is not measured here
    skipped = [c for c in suite.iter("testcase") if c.find("skipped") is not None and c.get("name") == "latency_p90_ms"]
    assert len(skipped) == 6


def test_strict_fails_not_measured(cli, digits_dist, tmp_path):
    result = cli("bench", digits_dist["dir"] / "npu" / "digits.tflite", "-t", "npu", *FAST, "--budget", "latency_p50_ms=1000", "--strict")
    assert result.code == 1, result


def test_raw_samples_keeps_every_timing(cli, digits_dist, tmp_path):
    """By default report.json keeps the first 200 timings; --raw-samples keeps all of them."""
    file = digits_dist["dir"] / "cpu-fp32" / "digits.tflite"
    for flags, path in (([], tmp_path / "bounded.json"), (["--raw-samples"], tmp_path / "raw.json")):
        result = cli("bench", file, "--warmup", "2", "--min-runs", "400", "--min-time", "0", *flags, "--report", path, "-q")
        assert result.code == 0, result
    bounded, raw = (json.loads((tmp_path / n).read_text())["results"][0]["measurement"]["latency"] for n in ("bounded.json", "raw.json"))
    assert bounded["runs"] >= 400 and len(bounded["samples_ms"]) == 200 and sum(bounded["histogram"]["counts"]) == bounded["runs"]
    assert len(raw["samples_ms"]) == raw["runs"] >= 400


def test_bare_files_and_budget_pass(cli, digits_dist, digits_example):
    files = [digits_dist["dir"] / "cpu-fp32" / f"digits.{ext}" for ext in ("tflite", "onnx", "xml")]
    result = cli("bench", *files, "--data", digits_example["evaluation"], *FAST, "--budget", "min_accuracy=0.5", "--json")
    assert result.code == 0, result
    report = json.loads(result.stdout)
    assert [r["verdicts"][0]["status"] for r in report["results"]] == ["pass"] * 3


def test_missing_and_changed_files_error_only_that_artifact(cli, digits_dist, tmp_path):
    copy = tmp_path / "dist"
    shutil.copytree(digits_dist["dir"], copy)
    (copy / "cpu" / "digits.onnx").unlink()
    with open(copy / "cpu-fp32" / "digits.tflite", "ab") as handle:
        handle.write(b"tampered")
    result = cli("bench", copy, *FAST, "--json")
    assert result.code == 1
    report = json.loads(result.stdout)
    errors = {r["measurement"]["name"]: r["measurement"]["error"] for r in report["results"] if r["measurement"]["error"]}
    assert set(errors) == {"cpu/onnx", "cpu-fp32/tflite"}
    assert "file missing" in errors["cpu/onnx"] and "sha256" in errors["cpu-fp32/tflite"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--budget", "latency_p90=3"], "did you mean 'latency_p90_ms'"),
        (["--budget", "latency_p90_ms=fast"], "must be a number"),
        (["--backend", "tensorrt"], "unknown backend 'tensorrt'"),
        (["--min-runs", "0"], "--min-runs must be at least 1"),
    ],
)
def test_bad_options_exit_2(cli, digits_dist, args, fragment):
    result = cli("bench", digits_dist["dir"], *args)
    assert result.code == 2 and fragment in result.stderr, result
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_data_exit_2(cli, digits_dist, tmp_path):
    data = tmp_path / "eval.npz"
    np.savez(data, image=np.zeros((4, 8, 8, 1), np.float32), labels=np.arange(3))
    result = cli("bench", digits_dist["dir"], "--data", data)
    assert result.code == 2 and "'labels' has 3 entries" in result.stderr


def test_unknown_device_is_an_artifact_error(cli, digits_dist):
    result = cli("bench", digits_dist["dir"] / "cpu-fp32" / "digits.xml", "--device", "TPU9", *FAST, "--json")
    report = json.loads(result.stdout)
    m = report["results"][0]["measurement"]
    assert "TPU9 not present" in m["skipped"]["latency"]


def test_inputs_outside_the_calibrated_range_are_warned(cli, digits_dist, digits_example, tmp_path):
    evaluation = dict(np.load(digits_example["evaluation"]))
    evaluation["image"] = evaluation["image"] * 3.0  # brighter than anything seen in calibration
    data = tmp_path / "bright.npz"
    np.savez(data, **evaluation)
    result = cli("bench", digits_dist["dir"] / "manifest.json", "--data", data, *FAST, "--json")
    report = json.loads(result.stdout)
    notes = {r["measurement"]["name"]: " ".join(r["measurement"]["notes"]) for r in report["results"]}
    assert "outside the calibrated range" in notes["npu/tflite"]
    assert "outside the calibrated range" not in notes["cpu-fp32/onnx"]  # float artifacts do not clip
    # and the clipping shows: the int8 artifacts miss their profile's max_accuracy_drop
    failed = {r["measurement"]["name"] for r in report["results"] if any(v["status"] == "fail" for v in r["verdicts"])}
    assert {"npu/tflite", "cpu/onnx"} <= failed and "cpu-fp32/onnx" not in failed
