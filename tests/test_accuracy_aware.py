"""Accuracy-aware int8: on a model that plain int8 breaks, the search meets a tight budget in every format.

The model is a digits CNN in which one channel of the first convolution is scaled up 1000x and
the next convolution reads it scaled down 1000x: the float function is unchanged, but a per-tensor
int8 range sized for that one channel rounds the 31 others to zero. No calibration method fixes
it (the outlier channel is real data, not a rare spike); keeping the two convolutions in float does.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from pydantic import ValidationError

from edgekit import iocast
from edgekit.converters.accuracy_aware import estimate_latency_ms, relative_error, search
from edgekit.converters.base import ConvertJob
from edgekit.converters.registry import converter_for
from edgekit.converters.verify import open_backend
from edgekit.dataset import Dataset
from edgekit.errors import ConversionError, DataError, InputError
from edgekit.targets.loader import load_target
from edgekit.targets.schema import AccuracyAware, Format, Recipe
from tests.int8_models import outlier_cnn

pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("nncf")

BUDGET = AccuracyAware(max_accuracy_drop=0.01)


@pytest.fixture(scope="module")
def digits():
    from edgekit.demo import digits_data

    x_train, x_test, y_train, y_test = digits_data()
    return {
        "calibration": Dataset({"image": x_train[:200]}, origin="digits train"),
        "evaluation": Dataset({"image": x_test}, y_test, origin="digits test"),
        "train": (x_train, y_train),
    }


@pytest.fixture(scope="module")
def outlier_source(digits, tmp_path_factory):
    """The trained digits CNN with one 1000x activation channel (tests/int8_models.py), saved as .keras and loaded."""
    from edgekit.converters.source import load_source

    return load_source(outlier_cnn(*digits["train"], tmp_path_factory.mktemp("outlier") / "outlier.keras"))


@pytest.fixture(scope="module")
def exports(outlier_source, tmp_path_factory):
    from edgekit.converters.exports import Exports

    return Exports(outlier_source, tmp_path_factory.mktemp("exports"))


@pytest.fixture(scope="module")
def cpu():
    return load_target("cpu")


def _search(fmt, outlier_source, digits, exports, cpu, workdir, goal=BUDGET):
    return search(
        outlier_source, "cpu", fmt, cpu.formats[fmt], digits["calibration"], digits["evaluation"],
        goal, exports, workdir,
    )


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_search_meets_a_budget_that_plain_int8_misses(fmt, outlier_source, digits, exports, cpu, tmp_path):
    result = _search(fmt, outlier_source, digits, exports, cpu, tmp_path)

    plain = result.trials[0]
    assert plain.changes == {} and plain.error is None
    assert plain.accuracy_drop > 0.2, "plain int8 should be broken by the outlier channel"
    assert result.met and result.trials[result.chosen].passed
    assert result.after["accuracy_drop"] <= BUDGET.max_accuracy_drop
    assert result.float_nodes, "only keeping layers in float can fix this model"
    assert result.trials[result.chosen].changes["float_nodes"] == list(result.float_nodes)
    assert all(t.accuracy is not None and t.latency_ms > 0 for t in result.trials)
    # Only the chosen artifact is left in the workdir, for the caller to move into place.
    assert result.path.is_file() and result.converted.outputs[0].name == "output_0"
    kept = [result.path, result.path.with_suffix(".bin")] if fmt is Format.OPENVINO else [result.path]
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    json.dumps(result.to_dict())
    if fmt is Format.OPENVINO:  # how much of NNCF's accuracy control it took is recorded
        assert any(re.match(r"NNCF quantize_with_accuracy_control: [1-9]\d* revert step\(s\), [1-9]\d* ranking", note)
                   for note in result.notes), result.notes

    before, after = result.before, result.after
    print(
        f"\n{fmt.value}: source accuracy {result.reference_accuracy:.4f}, fp32 artifact "
        f"~{_fp32_latency_ms(fmt, outlier_source, digits, exports, tmp_path / 'fp32'):.4f} ms"
        f"\n  before (cpu profile recipe): accuracy {before['accuracy']:.4f}, cosine {before['cosine']:.4f}, "
        f"~{before['latency_ms']:.4f} ms"
        f"\n  after ({result.trials[result.chosen].description}): accuracy {after['accuracy']:.4f}, "
        f"cosine {after['cosine']:.5f}, ~{after['latency_ms']:.4f} ms"
        f"\n  {len(result.trials)} trials: {[t.description for t in result.trials]}; float_nodes {list(result.float_nodes)}"
    )


def _fp32_latency_ms(fmt, source, digits, exports, folder) -> float:
    """The unquantized artifact's latency, measured like the search's candidates, for context."""
    recipe = load_target("cpu-fp32").formats[fmt]
    folder.mkdir()
    output = folder / {"tflite": "m.tflite", "onnx": "m.onnx", "openvino": "m.xml"}[fmt.value]
    converted = converter_for(fmt)(ConvertJob(source, "cpu-fp32", fmt, recipe, None, exports, output))
    backend = open_backend(output, recipe, [])
    try:
        image = digits["evaluation"].arrays["image"][:1]
        return estimate_latency_ms(backend, {converted.inputs[0].name: iocast.to_input(converted.inputs[0], image)})
    finally:
        backend.close()


def test_search_with_a_cosine_goal_needs_no_labels(outlier_source, digits, exports, cpu, tmp_path):
    """min_cosine judges outputs against the source's; NNCF's accuracy control gets cosine as its metric."""
    unlabelled = Dataset(digits["evaluation"].arrays, origin="digits test, no labels")
    goal = AccuracyAware(min_cosine=0.999)
    result = search(
        outlier_source, "cpu", Format.OPENVINO, cpu.formats[Format.OPENVINO], digits["calibration"], unlabelled,
        goal, exports, tmp_path,
    )
    assert result.trials[0].cosine < 0.9 and result.met and result.after["cosine"] >= 0.999
    assert result.reference_accuracy is None and result.after["accuracy"] is None and result.float_nodes


def test_nncf_accuracy_control_is_stopped_at_its_time_budget(outlier_source, digits, exports, cpu, tmp_path):
    """NNCF's accuracy control has no time limit of its own (the zoo's EfficientNetB0 ran past 900 s)."""
    goal = BUDGET.model_copy(update={"accuracy_control_seconds": 0.001})
    result = _search(Format.OPENVINO, outlier_source, digits, exports, cpu, tmp_path, goal)

    assert not result.met  # stopped before it reverted anything; the outlier needs a layer in float
    stopped = [note for note in result.notes if "stopped at its 0.001 s budget" in note]
    assert stopped and "accuracy_control_seconds" in stopped[0], result.notes
    assert sorted(path.suffix for path in tmp_path.iterdir()) == [".bin", ".xml"]  # the best candidate only


def test_when_nothing_meets_the_goal_the_search_says_so_and_keeps_the_best(outlier_source, digits, exports, tmp_path):
    """The npu profile's TFLite recipe has int8 I/O, where TFLite cannot keep layers in float."""
    recipe = load_target("npu").formats[Format.TFLITE]
    result = search(
        outlier_source, "npu", Format.TFLITE, recipe, digits["calibration"], digits["evaluation"],
        BUDGET, exports, tmp_path,
    )
    assert not result.met and len(result.trials) == 1 and result.chosen == 0
    assert result.float_nodes == () and result.path.is_file()
    assert any("float32 inputs and outputs" in note for note in result.notes)


def test_the_search_needs_a_goal_labels_and_a_static_int8_recipe(outlier_source, digits, exports, cpu, tmp_path):
    def run(recipe, evaluation, goal):
        search(outlier_source, "cpu", Format.ONNX, recipe, digits["calibration"], evaluation, goal, exports, tmp_path)

    unlabelled = Dataset(digits["evaluation"].arrays)
    with pytest.raises(DataError, match="no labels"):
        run(cpu.formats[Format.ONNX], unlabelled, BUDGET)
    with pytest.raises(InputError, match="needs a goal"):
        run(cpu.formats[Format.ONNX], unlabelled, AccuracyAware())
    with pytest.raises(InputError, match="static int8"):
        run(Recipe(precision="fp16", runtime="onnxruntime"), digits["evaluation"], BUDGET)


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_an_unknown_float_node_is_an_error_naming_it(fmt, outlier_source, digits, exports, cpu, tmp_path):
    recipe = cpu.formats[fmt].model_copy(update={"float_nodes": ("no_such_node",)})
    output = tmp_path / {"tflite": "m.tflite", "onnx": "m.onnx", "openvino": "m.xml"}[fmt.value]
    job = ConvertJob(outlier_source, "cpu", fmt, recipe, digits["calibration"], exports, output)
    with pytest.raises(ConversionError, match="no_such_node"):
        converter_for(fmt)(job)


def test_float_nodes_need_a_precision_with_static_quantization():
    with pytest.raises(ValidationError, match="float_nodes"):
        Recipe(precision="fp16", runtime="onnxruntime", float_nodes=("conv",))
    assert Recipe(precision="int8-static", runtime="onnxruntime", float_nodes=("conv",)).float_nodes == ("conv",)


def test_a_profile_can_switch_the_search_on(tmp_path):
    profile = tmp_path / "board.toml"
    profile.write_text('extends = "cpu"\n[accuracy_aware]\nenabled = true\nmax_accuracy_drop = 0.01\n')
    target = load_target(profile)
    assert target.accuracy_aware == AccuracyAware(enabled=True, max_accuracy_drop=0.01)
    assert load_target("cpu").accuracy_aware is None
    profile.write_text('extends = "cpu"\n[accuracy_aware]\nenabled = true\nmax_acuracy_drop = 0.01\n')
    with pytest.raises(InputError, match="did you mean 'max_accuracy_drop'"):
        load_target(profile)


def test_relative_error_sees_crushed_small_values():
    small = np.full(1000, 0.5)
    assert relative_error(small, small) == 0.0
    assert relative_error(small, np.zeros(1000)) == 1.0  # every value rounded away
    assert relative_error(np.zeros(4), np.ones(4)) == 0.0  # exact zeros are not counted
    # One large channel beside many small ones: the small ones crushed, the large one kept.
    values = np.concatenate([np.full(31, 0.5), [700.0]])
    crushed = np.concatenate([np.zeros(31), [700.0]])
    assert relative_error(values, crushed) == pytest.approx(31 / 32)


def test_layers_the_tool_could_not_measure_go_last_without_scrambling_the_ranking():
    from edgekit.converters.accuracy_aware import most_damaged_first
    from edgekit.converters.base import LayerError

    errors = [0.2, float("nan"), 0.9, 0.5, float("nan"), 0.1]
    layers = [LayerError(f"t{i}", e, (f"n{i}",)) for i, e in enumerate(errors)]
    assert [layer.tensor for layer in most_damaged_first(layers)] == ["t2", "t3", "t0", "t5", "t1", "t4"]

def test_a_drop_of_exactly_the_allowed_count_meets_the_goal():
    from edgekit.converters.accuracy_aware import Trial, _Judge

    reference = np.tile(np.eye(10, dtype=np.float32), (10, 1))  # 100 samples, top-1 = i % 10
    data = Dataset({"x": np.zeros((100, 1), np.float32)}, labels=reference.argmax(axis=1), origin="held-out")
    judge = _Judge(AccuracyAware(enabled=True, max_accuracy_drop=0.03), data, [reference])
    for wrong, passed in ((3, True), (4, False)):  # 1.0 - 0.97 is 0.030000000000000027 in floats
        output = reference.copy()
        output[:wrong] = np.roll(output[:wrong], 1, axis=1)
        trial = Trial("candidate", {})
        judge.measure(trial, [output])
        assert (trial.accuracy, trial.passed) == (pytest.approx(1 - wrong / 100), passed)

def test_nncf_score_holds_every_criterion_of_the_goal():
    """NNCF's accuracy control sees one score: a perfect top-1 must not hide a cosine below the goal."""
    from edgekit.converters.accuracy_aware import _Judge

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(40, 10)).astype(np.float32)
    reference[np.arange(40), np.arange(40) % 10] += 6.0  # a clear top-1 per sample
    labels = reference.argmax(axis=1)
    data = Dataset({"x": np.zeros((40, 1), np.float32)}, labels=labels, origin="held-out")
    judge = _Judge(AccuracyAware(enabled=True, min_cosine=0.97, max_accuracy_drop=0.03), data, [reference])
    everything = np.arange(40)
    assert judge.score(reference, everything) == pytest.approx(1.0)
    # Same top-1 everywhere, but the other logits scrambled: cosine well under 0.97.
    noisy = reference + rng.normal(scale=1.5, size=reference.shape).astype(np.float32)
    noisy[everything, labels] += 20.0
    assert (noisy.argmax(axis=1) == labels).all()
    assert judge.score(reference, everything) - judge.score(noisy, everything) > judge.max_drop
    # Close outputs pass both criteria: within the allowed drop.
    close = reference + rng.normal(scale=0.05, size=reference.shape).astype(np.float32)
    assert judge.score(reference, everything) - judge.score(close, everything) <= judge.max_drop
    # Only the cosine goal: the score is its headroom alone.
    cosine_only = _Judge(AccuracyAware(enabled=True, min_cosine=0.97), data, [reference])
    assert cosine_only.score(reference, everything) - cosine_only.score(noisy, everything) > cosine_only.max_drop


@pytest.fixture(scope="module")
def outlier_files(digits, outlier_source, tmp_path_factory):
    folder = tmp_path_factory.mktemp("outlier-data")
    np.savez(folder / "calib.npz", **digits["calibration"].arrays)
    np.savez(folder / "eval.npz", labels=digits["evaluation"].labels, **digits["evaluation"].arrays)
    return {"model": outlier_source.path, "calibration": folder / "calib.npz", "evaluation": folder / "eval.npz"}


def test_convert_cli_accuracy_aware_end_to_end(cli, outlier_files, tmp_path):
    args = ["convert", outlier_files["model"], "-t", "cpu", "-f", "tflite", "-c", outlier_files["calibration"]]
    plain = cli(*args, "-o", tmp_path / "plain", "--no-repair")
    assert plain.code == 1 and "FAILED verification" in plain.stderr  # plain int8 collapses, and says so
    searched = cli(*args, "-o", tmp_path / "aa", "--accuracy-aware", "--evaluation", outlier_files["evaluation"],
                   "--max-accuracy-drop", "0.01", "--json")
    assert searched.code == 0, searched
    artifact = json.loads(searched.stdout)["artifacts"][0]
    search = artifact["accuracy_aware"]
    assert search["met"] and search["float_nodes"] and len(search["trials"]) >= 2
    assert search["after"]["accuracy"] >= search["before"]["accuracy"] + 0.5
    assert artifact["verification"]["passed"]


def test_convert_cli_accuracy_aware_bad_input(cli, outlier_files, tmp_path):
    from tests.conftest import one_line_exit_2

    base = ["convert", outlier_files["model"], "-t", "cpu", "-f", "onnx", "-c", outlier_files["calibration"], "-o", tmp_path]
    one_line_exit_2(cli(*base, "--max-accuracy-drop", "0.01"), "add --accuracy-aware")
    one_line_exit_2(cli(*base, "--accuracy-aware", "--max-accuracy-drop", "0.01"), "needs evaluation data", "--evaluation")
    fp32 = ["convert", outlier_files["model"], "-t", "cpu-fp32", "-f", "onnx", "-o", tmp_path]
    one_line_exit_2(cli(*fp32, "--accuracy-aware", "--evaluation", outlier_files["evaluation"]), "no int8-static or int8-full recipe")


@pytest.mark.parametrize("fmt", [Format.ONNX, Format.OPENVINO], ids=lambda f: f.value)
def test_reduce_range_keeps_int8_weights_within_64(fmt, outlier_source, digits, exports, cpu, tmp_path):
    """reduce_range -> onnxruntime's reduce_range and NNCF's OverflowFix.ENABLE: no weight beyond +-64, so a
    pair of uint8 x int8 products (2 x 255 x 64 = 32640) fits the int16 that non-VNNI kernels sum it in."""
    recipe = cpu.formats[fmt]
    widths = {}
    for seven_bit in (False, True):
        output = tmp_path / f"{seven_bit}{'.onnx' if fmt is Format.ONNX else '.xml'}"
        job = ConvertJob(outlier_source, "cpu", fmt, recipe.model_copy(update={"reduce_range": seven_bit}),
                         digits["calibration"], exports, output)
        converter_for(fmt, outlier_source.format)(job)
        widths[seven_bit] = _int8_weight_extremes(fmt, output)
    assert widths[False][0] < -64 or widths[False][1] > 64  # 8-bit weights use the full range
    assert widths[True][0] >= -64 and widths[True][1] <= 64, widths


def _int8_weight_extremes(fmt: Format, path) -> tuple[int, int]:
    """(min, max) over the artifact's int8 weight constants."""
    if fmt is Format.ONNX:
        import onnx
        from onnx import numpy_helper

        arrays = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
                  if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1]
    else:
        import openvino as ov

        model = ov.Core().read_model(str(path))
        arrays = [op.get_data() for op in model.get_ops()
                  if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8 and op.get_data().ndim > 1]
    assert arrays, "no int8 weights found"
    return min(int(a.min()) for a in arrays), max(int(a.max()) for a in arrays)


@pytest.mark.parametrize("saturates", [True, False], ids=["without-vnni", "with-vnni"])
def test_seven_bit_and_uint8_weights_are_tried_only_where_int8_saturates(
    saturates, monkeypatch, outlier_source, digits, exports, cpu, tmp_path
):
    """x86 without VNNI sums uint8 x int8 pairs into int16: the search tries the two weight recipes that
    cannot saturate there, before calibration changes; elsewhere they would only cost precision."""
    monkeypatch.setattr("edgekit.targets.hardware.int8_pairs_saturate", lambda: saturates)
    unreachable = AccuracyAware(min_cosine=0.9999999)  # every recipe change is tried
    result = search(outlier_source, "cpu", Format.ONNX, cpu.formats[Format.ONNX], digits["calibration"],
                    digits["evaluation"], unreachable, exports, tmp_path, float_layers=False)
    changes = [trial.changes for trial in result.trials]
    fixes = [{"reduce_range": True}, {"weight_type": "uint8"}]
    if saturates:
        assert changes[1:3] == fixes, changes
        assert "no VNNI" in result.trials[1].description
    else:
        assert not any(change in changes for change in fixes), changes


def test_tflite_float_layer_candidates_reuse_one_calibration_and_match_a_fresh_one(outlier_source, digits, exports, cpu,
                                                                                   tmp_path, monkeypatch):
    """A repair ranks layers and then converts candidates over one QuantizationDebugger (its options set
    again, no new float conversion, calibration or SavedModel load): the bytes are those of a fresh debugger."""
    from edgekit.converters import tflite

    loaded = []
    load = tflite._converter
    monkeypatch.setattr(tflite, "_converter", lambda tf, job: loaded.append(job.output.name) or load(tf, job))

    base = cpu.formats[Format.TFLITE]

    def job(recipe, name):
        return ConvertJob(outlier_source, "cpu", Format.TFLITE, recipe, digits["calibration"], exports, tmp_path / name)

    tflite._DEBUGGER.clear()
    ranking = sorted(tflite.layer_errors(job(base, "rank.tflite"), relative_error), key=lambda layer: -layer.error)
    recipe = base.model_copy(update={"float_nodes": ranking[0].nodes})
    reused = converter_for(Format.TFLITE)(job(recipe, "reused.tflite"))
    assert any("calibration reused from the repair's earlier candidates" in note for note in reused.notes)
    assert loaded == ["rank.tflite"]  # the candidate used the debugger's converter
    tflite._DEBUGGER.clear()
    fresh = converter_for(Format.TFLITE)(job(recipe, "fresh.tflite"))
    assert not any("earlier candidates" in note for note in fresh.notes)
    assert (tmp_path / "reused.tflite").read_bytes() == (tmp_path / "fresh.tflite").read_bytes()


def test_tflite_search_candidate_of_the_profile_recipe_has_the_converters_numerics(outlier_source, digits, exports,
                                                                                   cpu, tmp_path):
    """A search quantizes even its first candidate through the shared QuantizationDebugger: the same
    outputs, to the bit, as TFLiteConverter.convert() of the same recipe on the same data."""
    from edgekit.converters import tflite
    from edgekit.converters.verify import artifact_outputs

    base = cpu.formats[Format.TFLITE]
    tflite._DEBUGGER.clear()
    outputs = {}
    for name, candidate in (("plain.tflite", False), ("candidate.tflite", True)):
        job = ConvertJob(outlier_source, "cpu", Format.TFLITE, base, digits["calibration"], exports, tmp_path / name,
                         candidate=candidate)
        converted = converter_for(Format.TFLITE)(job)
        assert any("QuantizationDebugger" in note for note in converted.notes) is candidate
        backend = open_backend(job.output, base, [])
        try:
            outputs[name] = artifact_outputs(backend, converted.inputs, converted.outputs, digits["evaluation"])
        finally:
            backend.close()
    for plain, candidate in zip(outputs["plain.tflite"], outputs["candidate.tflite"], strict=True):
        np.testing.assert_array_equal(plain, candidate)
