"""Accuracy-aware int8: the fastest quantized recipe whose accuracy stays within a goal.

For one (target, format), candidates are made by the format's real converter, run in their own
runtime on the evaluation data, and judged against the goal, stage by stage:

1. the profile's recipe;
2. the other calibration methods the format's quantizer offers;
3. per-channel weights, when the recipe has them off;
4. the most sensitive layers kept in float (`Recipe.float_nodes`), one group more at a time,
   ranked by the format's own debugging tool: TFLite's QuantizationDebugger, onnxruntime's
   qdq_loss_debug. On OpenVINO, NNCF's quantize_with_accuracy_control ranks and reverts layers
   itself against the goal; its choice is then converted like any other candidate.

The search stops after the first stage that has a candidate meeting the goal and picks the fastest
such candidate by its own latency estimate; when none meets it, it keeps the most accurate one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import iocast
from edgekit.benchmarks.base import Backend
from edgekit.benchmarks.metrics import fidelity, task_metrics
from edgekit.console import SILENT, Progress
from edgekit.converters.base import Converted, ConvertJob, LayerError
from edgekit.converters.exports import Exports
from edgekit.converters.registry import converter_for
from edgekit.converters.source import SourceModel
from edgekit.converters.verify import artifact_outputs, open_backend, reference_outputs
from edgekit.dataset import Dataset
from edgekit.errors import ConversionError, DataError, InputError
from edgekit.targets.schema import (
    AccuracyAware, BiasCorrection, Calibration, Format, IODtype, Precision, QuantDtype, Recipe,
)

# Calibration methods each format's quantizer offers (TFLiteConverter calibrates with min/max only).
CALIBRATIONS: dict[Format, tuple[Calibration, ...]] = {
    Format.TFLITE: (Calibration.MINMAX,),
    Format.ONNX: tuple(Calibration),
    Format.OPENVINO: tuple(Calibration),
}
EXTENSIONS = {Format.TFLITE: ".tflite", Format.ONNX: ".onnx", Format.OPENVINO: ".xml"}
# At least this many timed runs for at least this long: 50 runs of a tiny model last a few ms,
# too short to stand out from scheduler noise on a shared machine.
LATENCY_RUNS, LATENCY_SECONDS = 50, 0.25
LATENCY_NOTE = (
    f"latency_ms is the search's estimate for ranking candidates: the median of at least {LATENCY_RUNS} batch-1 "
    f"runs over at least {LATENCY_SECONDS} s in the converting process, after 5 warm-up runs; "
    "`edgekit bench` measures it properly"
)
_TOOLS = {Format.TFLITE: "TFLite's QuantizationDebugger", Format.ONNX: "onnxruntime's qdq_loss_debug"}


@dataclass(eq=False)
class Trial:
    """One candidate recipe and what it measured."""

    description: str
    changes: dict[str, Any]  # recipe fields that differ from the profile's recipe
    accuracy: float | None = None  # on the evaluation labels, when there are labels
    accuracy_drop: float | None = None  # the source's accuracy minus this one's
    cosine: float | None = None  # all outputs against the source's, on the evaluation inputs
    latency_ms: float | None = None  # the search's estimate (LATENCY_NOTE)
    passed: bool = False
    error: str | None = None  # the converter's message when it could not make this candidate
    recipe: Recipe | None = field(default=None, repr=False)
    path: Path | None = field(default=None, repr=False)
    converted: Converted | None = field(default=None, repr=False)

    def figures(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "accuracy_drop": self.accuracy_drop,
            "cosine": self.cosine,
            "latency_ms": self.latency_ms,
        }

    def to_dict(self) -> dict[str, Any]:
        result = {"description": self.description, "changes": self.changes, **self.figures(), "passed": self.passed}
        if self.error:
            result["error"] = self.error
        return result


@dataclass
class SearchResult:
    format: Format
    goal: dict[str, float]
    reference_accuracy: float | None  # the source model's, on the evaluation labels
    trials: list[Trial]
    chosen: int  # index into trials: the fastest that met the goal, else the most accurate
    met: bool
    ranking: list[LayerError] = field(default_factory=list)  # most sensitive first; empty if not reached
    notes: list[str] = field(default_factory=list)

    @property
    def recipe(self) -> Recipe:
        return self.trials[self.chosen].recipe  # type: ignore[return-value]

    @property
    def float_nodes(self) -> tuple[str, ...]:
        return self.recipe.float_nodes

    @property
    def path(self) -> Path:
        """The chosen artifact, in the search's workdir (an OpenVINO .xml has its .bin beside it)."""
        return self.trials[self.chosen].path  # type: ignore[return-value]

    @property
    def converted(self) -> Converted:
        return self.trials[self.chosen].converted  # type: ignore[return-value]

    @property
    def before(self) -> dict[str, Any]:
        """The profile's own recipe."""
        return self.trials[0].figures()

    @property
    def after(self) -> dict[str, Any]:
        """The chosen recipe."""
        return self.trials[self.chosen].figures()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format.value,
            "goal": self.goal,
            "met": self.met,
            "reference_accuracy": self.reference_accuracy,
            "before": self.before,
            "after": self.after,
            "chosen": self.chosen,
            "float_nodes": list(self.float_nodes),
            "trials": [trial.to_dict() for trial in self.trials],
            "ranking": [  # the ten most sensitive: enough to see why those nodes were kept in float
                {"tensor": layer.tensor, "error": layer.error, "nodes": list(layer.nodes)}
                for layer in self.ranking[:10]
            ],
            "notes": self.notes,
        }


def search(
    source: SourceModel,
    target_name: str,
    fmt: Format,
    recipe: Recipe,
    calibration: Dataset,
    evaluation: Dataset,
    goal: AccuracyAware,
    exports: Exports,
    workdir: Path,
    progress: Progress = SILENT,
    float_layers: bool = True,
) -> SearchResult:
    """Search for the fastest int8 recipe derived from `recipe` that meets `goal` on `evaluation`.

    `goal.max_accuracy_drop` needs `evaluation.labels`; `goal.min_cosine` compares with the source's
    outputs; with both, a candidate must meet both (`goal.enabled` is not read here). Candidates
    are written into `workdir`; only the chosen one is left there (`result.path`) for the caller
    to move into place. `float_layers=False` (a full-integer NPU recipe) tries calibration and
    recipe changes only; when they miss, the format's per-layer ranking is still recorded.
    """
    _check(fmt, recipe, goal, evaluation)
    judge = _Judge(goal, evaluation, reference_outputs(source.run, evaluation))
    workdir.mkdir(parents=True, exist_ok=True)
    run = _Search(source, target_name, fmt, recipe, calibration, evaluation, exports, workdir, judge, progress,
                  goal.accuracy_control_seconds)

    granularity = "per-channel" if recipe.per_channel else "per-tensor"
    run.attempt(f"profile recipe ({recipe.calibration.value}, {granularity})", recipe)
    if not run.met():
        run.saturation_fixes()
    if not run.met() and fmt is Format.OPENVINO and not _full_bias_correction(run.trials[0], recipe):
        # NNCF's full bias correction changes only the biases: the graph, and its speed, stay the
        # same. On the zoo's MobileNetV2 (ReLU6) it lifted cosine 0.944 -> 0.980 where fast bias
        # correction and either preset stayed at 0.94-0.95.
        base = run.best().recipe
        run.attempt("NNCF full bias correction", base.model_copy(update={"bias_correction": BiasCorrection.FULL}))
    if not run.met():
        base = run.best().recipe
        others = [method for method in CALIBRATIONS[fmt] if method is not recipe.calibration]
        for method in others:
            run.attempt(f"calibration {method.value}", base.model_copy(update={"calibration": method}))
        if not others:
            run.notes.append(f"{fmt.value} calibrates with {recipe.calibration.value} only: no other calibration tried")
    if not run.met() and not recipe.per_channel:
        run.attempt("per-channel weights", run.best().recipe.model_copy(update={"per_channel": True}))
    if not run.met() and float_layers:
        run.float_layers()
    elif not run.met():
        run.rank_only()
    return run.result()


def _full_bias_correction(trial: Trial, recipe: Recipe) -> bool:
    """Whether the profile's candidate already ran NNCF's full bias correction (asked, or chosen from the traits)."""
    chosen = ((trial.converted.traits or {}).get("settings") or {}) if trial.converted else {}
    return recipe.bias_correction is BiasCorrection.FULL or chosen.get("bias_correction") == "full"


def relative_error(float_values: np.ndarray, quantized: np.ndarray) -> float:
    """The mean share of each non-zero float value that quantization lost: |q - f| / |f|, capped at 1.

    Unlike SQNR or RMSE/scale, it sees small channels crushed to zero by a tensor-wide range
    that a few large channels dominate: their error is small next to the tensor's total power
    or its step, but they lose all of their own value.
    """
    f = np.ravel(float_values).astype(np.float64)
    q = np.ravel(quantized).astype(np.float64)
    nonzero = f != 0
    if not nonzero.any():
        return 0.0
    return float(np.mean(np.minimum(1.0, np.abs(q[nonzero] - f[nonzero]) / np.abs(f[nonzero]))))


# --- the search ----------------------------------------------------------------------------


@dataclass
class _Search:
    """One search's context and its trials so far."""

    source: SourceModel
    target_name: str
    fmt: Format
    profile: Recipe  # the profile's own recipe, where the search starts
    calibration: Dataset
    evaluation: Dataset
    exports: Exports
    workdir: Path
    judge: _Judge
    progress: Progress
    control_seconds: float  # NNCF accuracy control's budget (OpenVINO)
    trials: list[Trial] = field(default_factory=list)
    ranking: list[LayerError] = field(default_factory=list)
    notes: list[str] = field(default_factory=lambda: [LATENCY_NOTE])

    def job(self, recipe: Recipe, output: Path) -> ConvertJob:
        return ConvertJob(self.source, self.target_name, self.fmt, recipe, self.calibration, self.exports, output,
                          candidate=True)

    def say(self, message: str) -> None:
        self.progress.info(f"search {self.target_name}/{self.fmt.value}: {message}")

    def attempt(self, description: str, recipe: Recipe) -> Trial:
        """Convert, evaluate and time one candidate."""
        path = self.workdir / f"{self.fmt.value}-{len(self.trials)}{EXTENSIONS[self.fmt]}"
        trial = Trial(description, _changes(recipe, self.profile), recipe=recipe, path=path)
        self.trials.append(trial)
        try:
            trial.converted = converter_for(self.fmt, self.source.format)(self.job(recipe, path))
        except ConversionError as exc:
            trial.error = str(exc)
            self.say(f"{description}: could not convert: {exc}")
            return trial
        _measure(trial, self.source, self.evaluation, self.judge)
        self.say(f"{description}: {self.judge.describe(trial)}")
        return trial

    def met(self) -> bool:
        return any(trial.passed for trial in self.trials)

    def best(self) -> Trial:
        """The most accurate candidate that converted."""
        converted = [trial for trial in self.trials if trial.error is None]
        if not converted:
            raise ConversionError(f"no candidate could be converted: {self.trials[0].error}")
        return max(converted, key=self.judge.quality)

    def saturation_fixes(self) -> None:
        """On an x86 host without VNNI, the int8 kernels that verify the artifact sum uint8 x int8
        products in pairs into int16 and saturate (onnxruntime's and NNCF's documented overflow):
        try 7-bit weights, then (ONNX) uint8 weights, whose kernels do not saturate.

        On the random-weight MobileNetV2 of tests/test_sources.py, on an AVX2 host: ONNX cosine
        0.939 -> 0.968 (7-bit) and 0.970 (uint8 weights); OpenVINO 0.940 -> 0.971 (7-bit).
        """
        from edgekit.targets.hardware import int8_pairs_saturate

        if self.fmt not in (Format.ONNX, Format.OPENVINO) or self.profile.weight_type is not QuantDtype.INT8:
            return
        if self.profile.reduce_range or not int8_pairs_saturate():
            return
        why = "this host's CPU has no VNNI, so its int8 kernels can saturate"
        self.attempt(f"7-bit weights ({why})", self.profile.model_copy(update={"reduce_range": True}))
        if not self.met() and self.fmt is Format.ONNX and self.profile.activation_type is QuantDtype.UINT8:
            self.attempt(f"uint8 weights ({why}; onnxruntime's uint8 x uint8 kernels do not)",
                         self.profile.model_copy(update={"weight_type": QuantDtype.UINT8}))

    def float_layers(self) -> None:
        """Keep the most sensitive layers in float, on top of the most accurate candidate so far."""
        base = self.best()
        float_io = base.recipe.input_dtype is IODtype.FLOAT32 and base.recipe.output_dtype is IODtype.FLOAT32
        if self.fmt is Format.TFLITE and not float_io:
            self.notes.append("TFLite keeps layers in float only with float32 inputs and outputs: none tried")
            return
        try:
            groups = self._accuracy_control(base) if self.fmt is Format.OPENVINO else self._ranked(base)
        except ConversionError as exc:
            self.notes.append(f"could not rank layers, so none were kept in float: {exc}")
            return
        for description, nodes in groups:
            kept = tuple(dict.fromkeys((*base.recipe.float_nodes, *nodes)))  # on top of any the profile keeps
            if self.attempt(description, base.recipe.model_copy(update={"float_nodes": kept})).passed:
                return

    def rank_only(self) -> None:
        """The per-layer ranking of the most accurate candidate, to name what no recipe change fixed."""
        if self.fmt is Format.OPENVINO:
            self.notes.append("OpenVINO: NNCF ranks layers only by reverting them to float; no ranking without float layers")
            return
        base = self.best()
        try:
            self.ranking = _rank(self.fmt, self.job(base.recipe, base.path), base.converted)  # type: ignore[arg-type]
        except ConversionError as exc:
            self.notes.append(f"could not rank layers: {exc}")

    def _ranked(self, base: Trial) -> list[tuple[str, tuple[str, ...]]]:
        """TFLite and ONNX: the tool's per-layer errors, tried as growing groups of float layers."""
        self.ranking = _rank(self.fmt, self.job(base.recipe, base.path), base.converted)  # type: ignore[arg-type]
        self.notes.append(f"layers ranked by {_TOOLS[self.fmt]}: the share of each value lost to int8 (relative_error)")
        return [
            (f"{layers} most sensitive activation(s) kept in float ({len(nodes)} nodes)", nodes)
            for layers, nodes in _groups(self.ranking)
        ]

    def _accuracy_control(self, base: Trial) -> list[tuple[str, tuple[str, ...]]]:
        """OpenVINO: NNCF's quantize_with_accuracy_control ranks and picks the ops itself, against the goal."""
        from edgekit.converters.openvino import accuracy_control

        job = self.job(base.recipe, base.path)  # type: ignore[arg-type]
        started = time.perf_counter()
        control = accuracy_control(job, self.evaluation, self.judge.score, self.judge.max_drop, self.control_seconds)
        names = tuple(control.reverted)
        how = (f"{control.iterations} revert step(s), {control.rankings} ranking(s) of every quantized op group, "
               f"{time.perf_counter() - started:.1f} s")
        if control.stopped:
            self.notes.append(
                f"NNCF quantize_with_accuracy_control {control.stopped} ({how}; raise "
                "[accuracy_aware] accuracy_control_seconds to give it longer): the ops it had reverted by then "
                "were tried"
            )
            self.say(f"NNCF accuracy control {control.stopped} after {how}")
        else:
            self.notes.append(f"NNCF quantize_with_accuracy_control: {how}")
        if not names:
            self.notes.append("NNCF quantize_with_accuracy_control kept no op in float")
            return []
        stopped = f", {control.stopped}" if control.stopped else ""
        return [(f"{len(names)} op(s) kept in float by NNCF quantize_with_accuracy_control{stopped}", names)]

    def result(self) -> SearchResult:
        passed = [trial for trial in self.trials if trial.passed]
        chosen = min(passed, key=lambda trial: trial.latency_ms) if passed else self.best()
        for trial in self.trials:
            if trial is not chosen:
                _remove(trial.path)
                trial.path = None
        met = bool(passed)
        self.say(f"goal {'met' if met else 'NOT met, kept the most accurate candidate'}: {chosen.description}")
        index = next(i for i, trial in enumerate(self.trials) if trial is chosen)
        return SearchResult(
            self.fmt, self.judge.goal, self.judge.reference_accuracy, self.trials, index, met, self.ranking, self.notes
        )


def _rank(fmt: Format, job: ConvertJob, converted: Converted) -> list[LayerError]:
    """Activations, most damaged first, as the format's debugging tool measured them."""
    if fmt is Format.TFLITE:
        from edgekit.converters import tflite

        layers = tflite.layer_errors(job, relative_error)  # the debugger quantizes job's recipe itself
    else:
        from edgekit.converters import onnx

        layers = onnx.layer_errors(job, converted, relative_error)  # reads the QDQ model at job.output
    return most_damaged_first(layers)


def most_damaged_first(layers: list[LayerError]) -> list[LayerError]:
    """Highest error first. A layer the tool could not measure (NaN: TFLite's debugger gives it for
    some fused convolutions) goes last: as a sort key NaN compares false both ways and scrambles the rest."""
    return sorted(layers, key=lambda layer: (math.isnan(layer.error), -layer.error))


def _groups(ranking: list[LayerError]) -> list[tuple[int, tuple[str, ...]]]:
    """(activations, float_nodes) to try: the top 1, 2, 4, ... activations, up to all that lost anything.

    Doubling keeps the number of conversions logarithmic in the model's size.
    """
    layers = [layer for layer in ranking if layer.error > 0 and layer.nodes]
    groups: list[tuple[int, tuple[str, ...]]] = []
    count = 1
    while layers:
        count = min(count, len(layers))
        nodes = tuple(dict.fromkeys(node for layer in layers[:count] for node in layer.nodes))
        if not groups or nodes != groups[-1][1]:
            groups.append((count, nodes))
        if count == len(layers):
            break
        count *= 2
    return groups


# --- measuring -----------------------------------------------------------------------------


class _Judge:
    """The goal, the source's figures, and how a candidate's outputs are judged."""

    def __init__(self, goal: AccuracyAware, evaluation: Dataset, reference: list[np.ndarray]):
        limits = {"max_accuracy_drop": goal.max_accuracy_drop, "min_cosine": goal.min_cosine}
        self.goal = {key: value for key, value in limits.items() if value is not None}
        self.labels = evaluation.labels
        self.reference = reference
        self.reference_accuracy = self.accuracy(reference[0]) if self.labels is not None else None
        if "max_accuracy_drop" in self.goal and self.reference_accuracy is None:
            raise DataError(
                f"{evaluation.origin}: max_accuracy_drop needs integer class labels and (N, classes) outputs; "
                "use min_cosine for other models"
            )

    def accuracy(self, output: np.ndarray) -> float | None:
        return task_metrics(output, self.labels)[0].get("accuracy")  # type: ignore[arg-type]

    def measure(self, trial: Trial, outputs: list[np.ndarray]) -> None:
        trial.cosine = fidelity(outputs, self.reference)["cosine"]
        if self.reference_accuracy is not None:
            trial.accuracy = self.accuracy(outputs[0])
            trial.accuracy_drop = self.reference_accuracy - trial.accuracy  # type: ignore[operator]
        # Accuracies are counts over samples: 1.0 - 0.97 is 0.030000000000000027, which must not
        # miss a 0.03 goal (3 of 100 allowed); the slack is far below one sample in any data set.
        trial.passed = trial.cosine >= self.goal.get("min_cosine", -1.0) and (
            trial.accuracy_drop is None or trial.accuracy_drop <= self.goal.get("max_accuracy_drop", 1.0) + 1e-9
        )

    def quality(self, trial: Trial) -> float:
        """Higher is better: accuracy when the goal is about accuracy, else cosine."""
        return trial.accuracy if "max_accuracy_drop" in self.goal else trial.cosine  # type: ignore[return-value]

    # The same goal for NNCF's accuracy control, which takes one score and the drop it may lose from
    # the float model's score (absolute). The score is the least headroom over the goal's criteria,
    # each in units of its allowance: 1 where the candidate matches the source, 0 on the goal's edge.
    # A drop of at most 1 then means every criterion holds; a score on accuracy (or top-1 agreement)
    # alone let NNCF keep a candidate whose cosine missed the goal while its top-1 was perfect (the
    # zoo's trained EfficientNetB0: agreement 1.00, cosine 0.92, nothing reverted).
    max_drop = 1.0

    def score(self, output: np.ndarray, indices: np.ndarray) -> float:
        headroom = []
        if "min_cosine" in self.goal:
            cosine = fidelity([output], [self.reference[0][indices]])["cosine"]
            headroom.append(1.0 - (1.0 - cosine) / max(1.0 - self.goal["min_cosine"], 1e-9))
        if "max_accuracy_drop" in self.goal:
            accuracy = float(np.mean(output.argmax(axis=1) == self.labels[indices]))  # type: ignore[index]
            drop = self.reference_accuracy - accuracy  # type: ignore[operator]
            headroom.append(1.0 - drop / max(self.goal["max_accuracy_drop"], 1e-9))
        return min(headroom)

    def describe(self, trial: Trial) -> str:
        accuracy = ""
        if trial.accuracy is not None:
            accuracy = f"accuracy {trial.accuracy:.4f} (drop {trial.accuracy_drop:+.4f}), "
        verdict = "meets the goal" if trial.passed else "misses the goal"
        return f"{accuracy}cosine {trial.cosine:.5f}, ~{trial.latency_ms:.3f} ms: {verdict}"


def _measure(trial: Trial, source: SourceModel, evaluation: Dataset, judge: _Judge) -> None:
    """Evaluation outputs and a quick latency, in the artifact's own runtime."""
    notes: list[str] = []
    backend = open_backend(trial.path, trial.recipe, notes)  # type: ignore[arg-type]
    converted: Converted = trial.converted  # type: ignore[assignment]
    try:
        judge.measure(trial, artifact_outputs(backend, converted.inputs, converted.outputs, evaluation))
        first = next(evaluation.batches(1))
        feeds = {
            spec.name: iocast.to_input(spec, first[source_spec.name])
            for spec, source_spec in zip(converted.inputs, source.inputs, strict=True)
        }
        trial.latency_ms = estimate_latency_ms(backend, feeds)
    finally:
        backend.close()


def estimate_latency_ms(backend: Backend, feeds: dict[str, np.ndarray]) -> float:
    """The search's quick latency figure (LATENCY_NOTE): enough to rank candidates of one format."""
    for _ in range(5):
        backend.infer(feeds)
    times: list[int] = []
    deadline = time.perf_counter_ns() + int(LATENCY_SECONDS * 1e9)
    while len(times) < LATENCY_RUNS or time.perf_counter_ns() < deadline:
        start = time.perf_counter_ns()
        backend.infer(feeds)
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1e6


# --- helpers -------------------------------------------------------------------------------


def _check(fmt: Format, recipe: Recipe, goal: AccuracyAware, evaluation: Dataset) -> None:
    if recipe.precision not in (Precision.INT8_STATIC, Precision.INT8_FULL):
        raise InputError(
            f"the accuracy-aware search starts from a static int8 recipe (int8-static or int8-full); "
            f"the {fmt.value} recipe is {recipe.precision.value}"
        )
    if goal.max_accuracy_drop is None and goal.min_cosine is None:
        raise InputError("the accuracy-aware search needs a goal: max_accuracy_drop (labelled data) or min_cosine")
    if goal.max_accuracy_drop is not None and evaluation.labels is None:
        raise DataError(
            f"{evaluation.origin} has no labels: max_accuracy_drop needs them (add 'labels' or use min_cosine)"
        )


def _changes(candidate: Recipe, profile: Recipe) -> dict[str, Any]:
    """The searched fields that differ from the profile's recipe, as JSON values."""
    searched = ("calibration", "per_channel", "float_nodes", "reduce_range", "weight_type", "bias_correction")
    changed = {name for name in searched if getattr(candidate, name) != getattr(profile, name)}
    return candidate.model_dump(mode="json", include=changed)


def _remove(path: Path | None) -> None:
    if path is None:
        return
    for part in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
        part.unlink(missing_ok=True)
