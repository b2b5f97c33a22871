"""Automatic int8 repair: a collapse is repaired without labels in every format; --no-repair leaves it failed.

The model is the trained digits CNN with one 1000x activation channel (tests/int8_models.py):
plain per-tensor int8 rounds every other channel of that activation to zero, in every format,
and only keeping the layers around it in float fixes it. No evaluation data or labels are
given: the repair holds out part of the calibration samples and judges candidates on them
against the source model's outputs.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgekit
from edgekit.targets.schema import Format

pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("nncf")


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    from edgekit.demo import digits_data
    from tests.int8_models import outlier_cnn

    x_train, _, y_train, _ = digits_data()
    folder = tmp_path_factory.mktemp("repair")
    path = outlier_cnn(x_train, y_train, folder / "outlier.keras")
    np.savez(folder / "calib.npz", image=x_train[:200])
    return {"model": path, "calibration": folder / "calib.npz", "folder": folder}


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_a_collapse_is_repaired_without_labels(fmt, outlier, tmp_path):
    plain = edgekit.convert(outlier["model"], "cpu", formats=[fmt.value], calibration=outlier["calibration"],
                            output=tmp_path / "plain", repair=False)
    broken = plain.artifacts[0]
    assert not plain.passed and not broken.verification.passed and broken.repair is None

    manifest = edgekit.convert(outlier["model"], "cpu", formats=[fmt.value], calibration=outlier["calibration"],
                               output=tmp_path / "repaired")
    artifact = manifest.artifacts[0]
    assert manifest.passed and artifact.verification.passed, artifact.notes
    repair = artifact.repair
    assert repair["met"] and repair["float_nodes"], "only float layers fix this model"
    assert "no labels" in repair["judged_by"]
    assert repair["held_out_samples"] == 50 and repair["calibration_samples"] == 150
    assert len(repair["trials"]) >= 2 and repair["trials"][0]["passed"] is False
    assert repair["seconds"] > 0 and repair["line"].startswith("repaired: kept")
    assert repair["before"] == broken.verification.failures
    assert repair["fp32_latency_ms"] > 0 and "of fp32" in repair["line"]
    if fmt is Format.TFLITE:  # the ranking's calibrated model served the float-layer candidate too
        assert any("calibration reused from the repair's earlier candidates" in note for note in artifact.notes)
        # and its float graph, the fp32 conversion op for op, is the latency reference
        assert any(note.startswith("fp32 reference: the float graph") for note in repair["repair_notes"])
    # The manifest on disk says the same, and only the repaired artifact was published.
    entry = json.loads((tmp_path / "repaired" / "manifest.json").read_text())["artifacts"][0]
    assert entry["repair"]["float_nodes"] == repair["float_nodes"]
    published = sorted(p.name for p in (tmp_path / "repaired" / "cpu").iterdir())
    assert published == (["outlier.bin", "outlier.xml"] if fmt is Format.OPENVINO else [f"outlier.{fmt.value}"])


def test_no_repair_flag_and_profile_key_leave_it_failed(cli, outlier, tmp_path):
    args = ["convert", outlier["model"], "-t", "cpu", "-f", "onnx", "-c", outlier["calibration"]]
    result = cli(*args, "-o", tmp_path / "flag", "--no-repair")
    assert result.code == 1 and "FAILED verification" in result.stderr and "repairing" not in result.stderr

    profile = tmp_path / "no-repair.toml"
    profile.write_text('extends = "cpu"\nrepair = false\n')
    manifest = edgekit.convert(outlier["model"], profile, formats=["onnx"], calibration=outlier["calibration"],
                               output=tmp_path / "profile")
    assert not manifest.passed and manifest.artifacts[0].repair is None


def test_a_full_integer_npu_recipe_keeps_no_layer_in_float_and_names_the_op(cli, outlier, tmp_path):
    result = cli("convert", outlier["model"], "-t", "npu", "-f", "onnx", "-c", outlier["calibration"],
                 "-o", tmp_path, "--json")
    assert result.code == 1, result
    repair = json.loads(result.stdout)["artifacts"][0]["repair"]
    assert not repair["met"] and repair["float_nodes"] == []
    assert all("float_nodes" not in trial["changes"] for trial in repair["trials"])
    assert "integer ops only" in repair["fault"] and "most damaged activation" in repair["fault"]
    assert "not repaired" in result.stderr


def test_with_more_data_than_it_calibrates_on_verification_and_repair_judge_unseen_samples(outlier, tmp_path):
    # 200 samples, 120 calibrated on: the other 80 are what the artifact is verified and repaired on.
    manifest = edgekit.convert(outlier["model"], "cpu", formats=["onnx"], calibration=outlier["calibration"],
                               calibration_samples=120, output=tmp_path)
    artifact = manifest.artifacts[0]
    assert manifest.calibration["samples"] == 120
    assert manifest.calibration["verified_on"] == "unseen samples" and manifest.calibration["verification_samples"] == 80
    assert artifact.verification.samples == 80 and artifact.verification.passed
    repair = artifact.repair
    assert repair["met"] and repair["calibration_samples"] == 120 and repair["held_out_samples"] == 80
    assert "unseen samples" in repair["judged_by"]


def test_the_accuracy_budget_is_judged_without_labels_beyond_sampling_error():
    from edgekit.converters.verify import allowed_disagreements, judge
    from edgekit.targets.loader import load_target
    from edgekit.targets.schema import Tolerance

    assert allowed_disagreements(100, 0.01) == 3 and allowed_disagreements(50, 0.01) == 2
    assert allowed_disagreements(100, 0.0) == 0
    cpu = load_target("cpu")
    assert cpu.tolerance_for(Format.ONNX).max_accuracy_drop == cpu.budgets["max_accuracy_drop"] == 0.01
    explicit = cpu.model_copy(update={"tolerances": {**cpu.tolerances, cpu.formats[Format.ONNX].precision:
                                                     Tolerance(min_cosine=0.9, max_accuracy_drop=0.05)}})
    assert explicit.tolerance_for(Format.ONNX).max_accuracy_drop == 0.05  # the tolerance's own value wins

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(100, 10)).astype(np.float32)
    labels = reference.argmax(axis=1)

    def with_flips(count: int) -> np.ndarray:  # near-identical logits, `count` samples' top-1 moved
        actual = reference.copy()
        for row in range(count):
            actual[row, (labels[row] + 1) % 10] = actual[row, labels[row]] + 1.0
        return actual

    tolerance = cpu.tolerance_for(Format.ONNX)
    assert judge([with_flips(3)], [reference], tolerance, 100).passed  # within chance at a 1 pt budget
    failed = judge([with_flips(5)], [reference], tolerance, 100)
    assert not failed.passed and failed.top1_agreement == 0.95
    assert failed.failures == ["top-1 disagrees with the source on 5 of 100 samples: more than the 1.0 pt "
                               "accuracy budget allows (3 of 100, 95 % binomial bound)"]


def test_labelled_evaluation_data_checks_the_accuracy_budget_and_the_repair_judges_on_it(cli, outlier, tmp_path):
    from edgekit.demo import digits_data

    _, x_test, _, y_test = digits_data()
    evaluation = tmp_path / "eval.npz"
    np.savez(evaluation, image=x_test, labels=y_test)
    args = ["convert", outlier["model"], "-t", "cpu", "-f", "onnx", "-c", outlier["calibration"],
            "--evaluation", evaluation]
    result = cli(*args, "-o", tmp_path / "plain", "--no-repair")
    assert result.code == 1
    check = json.loads((tmp_path / "plain" / "manifest.json").read_text())["artifacts"][0]["verification"]
    assert check["accuracy_samples"] == len(y_test) and check["source_accuracy"] - check["accuracy"] > 0.01
    assert any(f.startswith("accuracy ") and "labelled evaluation samples" in f and "1.0 pt max_accuracy_drop" in f
               for f in check["failures"]), check["failures"]

    result = cli(*args, "-o", tmp_path / "repaired")
    assert result.code == 0, result.stderr
    artifact = json.loads((tmp_path / "repaired" / "manifest.json").read_text())["artifacts"][0]
    assert artifact["repair"]["judged_by"] == "labelled evaluation data" and artifact["repair"]["met"]
    check = artifact["verification"]
    assert check["passed"] and check["source_accuracy"] - check["accuracy"] <= 0.01 + 1e-9
    assert f"on {len(y_test)} labelled samples" in result.stderr


def test_labels_the_budget_cannot_use_are_said_not_silently_ignored(cli, outlier, tmp_path):
    from edgekit.demo import digits_data

    _, x_test, _, y_test = digits_data()
    evaluation = tmp_path / "eval.npz"
    np.savez(evaluation, image=x_test, labels=y_test.astype(np.float32))  # regression-style labels
    result = cli("convert", outlier["model"], "-t", "cpu", "-f", "tflite", "-c", outlier["calibration"],
                 "--evaluation", evaluation, "-o", tmp_path / "out", "--no-repair")
    assert "max_accuracy_drop not checked on" in result.stderr and "integer class labels" in result.stderr
    check = json.loads((tmp_path / "out" / "manifest.json").read_text())["artifacts"][0]["verification"]
    assert check["accuracy"] is None
