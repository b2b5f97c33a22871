"""Automatic repair of an int8 artifact that missed its profile's tolerance.

The accuracy-aware search (edgekit.converters.accuracy_aware) runs by itself, with the
tolerance as its goal and no labels: the calibration data is split, the search calibrates
on one part and judges candidates on the held-out part against the source model's own
outputs (cosine, and top-1 agreement as an accuracy whose labels are the source's argmax).
With labelled evaluation data and a `max_accuracy_drop` budget it judges accuracy instead.

A target that runs float ops (a CPU or GPU int8-static or float-I/O recipe) may keep layers in
float. A full-integer NPU recipe cannot (an Edge TPU or Hexagon runs integer ops only): its
repair tries calibration and recipe changes only, and when they are not enough it names the
most damaged op from the format's own debugging tool.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.console import SILENT, Progress
from edgekit.converters.accuracy_aware import SearchResult, estimate_latency_ms, search
from edgekit.converters.base import ConvertJob
from edgekit.converters.exports import Exports
from edgekit.converters.registry import converter_for
from edgekit.converters.source import SourceModel
from edgekit.converters.verify import open_backend, reference_outputs
from edgekit.dataset import Dataset
from edgekit.errors import ConversionError
from edgekit.targets.schema import AccuracyAware, DeviceClass, Format, IODtype, Precision, Recipe, Target

HELD_OUT_SHARE = 0.25  # of the calibration samples, kept out of calibration to judge candidates
MIN_HELD_OUT = 8
REPAIRABLE = (Precision.INT8_STATIC, Precision.INT8_FULL)


@dataclass
class Repair:
    """What the repair did, for the manifest entry (`to_dict`) and the console (`line`)."""

    result: SearchResult
    seconds: float
    held_out: int
    calibrated_on: int
    judged_by: str  # "source outputs (no labels)" or "labelled evaluation data"
    fp32_latency_ms: float | None = None
    fault: str | None = None  # when nothing met the goal: the op at fault and why
    notes: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return self.result.met

    def line(self) -> str:
        chosen = self.result.trials[self.result.chosen]
        if not self.met:
            return f"NOT repaired after {len(self.result.trials)} trial(s) in {self.seconds:.1f}s: {self.fault or 'no candidate met the goal'}"
        kept = self.result.float_nodes
        what = f"kept {len(kept)} layer(s) in float ({_short(kept)})" if kept else f"{chosen.description}"
        ratio = ""
        if self.fp32_latency_ms and chosen.latency_ms:
            ratio = f", latency x{chosen.latency_ms / self.fp32_latency_ms:.2f} of fp32"
        return (f"repaired: {what}, cosine {chosen.cosine:.4f}{ratio} "
                f"({len(self.result.trials)} trial(s), {self.seconds:.1f}s search, judged on {self.held_out} held-out samples)")

    def to_dict(self) -> dict[str, Any]:
        chosen = self.result.trials[self.result.chosen]
        return {
            **self.result.to_dict(),
            "seconds": round(self.seconds, 2),
            "held_out_samples": self.held_out,
            "calibration_samples": self.calibrated_on,
            "judged_by": self.judged_by,
            "fp32_latency_ms": self.fp32_latency_ms,
            "latency_vs_fp32": (chosen.latency_ms / self.fp32_latency_ms
                                if self.fp32_latency_ms and chosen.latency_ms else None),
            "fault": self.fault,
            "repair_notes": self.notes,
        }


def needs_repair(target: Target, fmt: Format, recipe: Recipe, passed: bool, enabled: bool) -> bool:
    return enabled and target.repair and not passed and recipe.precision in REPAIRABLE


def float_layers_allowed(target: Target, recipe: Recipe) -> bool:
    """Only targets that run float ops may keep layers in float: not full-integer NPU recipes."""
    if target.device_class is DeviceClass.NPU:
        return False
    return recipe.input_dtype is IODtype.FLOAT32 and recipe.output_dtype is IODtype.FLOAT32


def split(calibration: Dataset) -> tuple[Dataset, Dataset]:
    """(calibrate on, judge on): the last HELD_OUT_SHARE of the samples are held out."""
    count = calibration.samples
    held = max(MIN_HELD_OUT, int(round(count * HELD_OUT_SHARE)))
    if count - held < MIN_HELD_OUT:
        raise ConversionError(
            f"repair needs at least {2 * MIN_HELD_OUT} calibration samples to hold some out, got {count}"
        )
    keep = count - held

    def part(start: int, stop: int, label: str) -> Dataset:
        arrays = {name: array[start:stop] for name, array in calibration.arrays.items()}
        labels = calibration.labels[start:stop] if calibration.labels is not None else None
        return Dataset(arrays, labels=labels, origin=f"{calibration.origin} ({label})")

    return part(0, keep, f"samples 0-{keep - 1}"), part(keep, count, f"held-out samples {keep}-{count - 1}")


def repair(
    source: SourceModel,
    target: Target,
    fmt: Format,
    recipe: Recipe,
    calibration: Dataset,
    evaluation: Dataset | None,
    exports: Exports,
    workdir: Path,
    progress: Progress = SILENT,
    judge: Dataset | None = None,
) -> Repair:
    """Search for the fastest candidate meeting the tolerance (or the accuracy budget); the chosen
    file is left at `result.path` for the caller to put in place.

    `judge`: samples of the same data that calibration never saw (the ones verification used). With
    them the search calibrates on every calibration sample and judges on those; without, it holds
    back a share of the calibration samples to judge on.
    """
    started = time.perf_counter()
    tolerance = target.tolerance_for(fmt)
    if judge is not None:
        calibrate_on, held_out = calibration, judge
        unseen = "unseen samples"
    else:
        calibrate_on, held_out = split(calibration)
        unseen = "held-out calibration samples"
    budget = target.budgets.get("max_accuracy_drop")
    if evaluation is not None and evaluation.labels is not None and budget is not None:
        judge_on, judged_by = evaluation, "labelled evaluation data"
        goal = AccuracyAware(enabled=True, max_accuracy_drop=budget, min_cosine=tolerance.min_cosine)
    else:
        judge_on, judged_by = held_out, f"the source model's outputs on {unseen} (no labels)"
        goal = _agreement_goal(source, held_out, tolerance)
        judge_on = _with_source_labels(source, held_out) if goal.max_accuracy_drop is not None else held_out
    if target.accuracy_aware is not None:  # the profile's own search settings hold for the repair too
        goal = goal.model_copy(update={"accuracy_control_seconds": target.accuracy_aware.accuracy_control_seconds})
    allowed = float_layers_allowed(target, recipe)
    result = search(source, target.name, fmt, recipe, calibrate_on, judge_on, goal, exports, workdir, progress,
                    float_layers=allowed)
    outcome = Repair(result, 0.0, judge_on.samples, calibrate_on.samples, judged_by)
    if goal.max_accuracy_drop is not None and judged_by.startswith("the source"):
        outcome.notes.append("top-1 agreement with the source is judged as accuracy against the source's argmax")
    if not result.met and not allowed:
        outcome.fault = _fault(result, target, fmt)
    outcome.fp32_latency_ms = _fp32_latency(source, target.name, fmt, recipe, exports, workdir, held_out, outcome.notes)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _agreement_goal(source: SourceModel, held_out: Dataset, tolerance: Any) -> AccuracyAware:
    """The tolerance as an accuracy goal on `held_out` labelled with the source's own top-1: the
    stricter of the agreement floor and the accuracy budget's allowed disagreements there."""
    from edgekit.converters.verify import allowed_disagreements

    drop = None
    if _is_classifier(source):
        drops = []
        if tolerance.min_top1_agreement is not None:
            drops.append(1.0 - tolerance.min_top1_agreement)
        if tolerance.max_accuracy_drop is not None:
            drops.append(allowed_disagreements(held_out.samples, tolerance.max_accuracy_drop) / held_out.samples)
        drop = min(drops) if drops else None
    return AccuracyAware(enabled=True, min_cosine=tolerance.min_cosine, max_accuracy_drop=drop)


def _is_classifier(source: SourceModel) -> bool:
    shape = source.outputs[0].shape
    return len(shape) == 2 and (shape[1] or 0) > 1


def _with_source_labels(source: SourceModel, data: Dataset) -> Dataset:
    """The held-out samples labelled with the source's own top-1: accuracy becomes top-1 agreement."""
    labels = np.argmax(reference_outputs(source.run, data)[0], axis=1)
    return Dataset(dict(data.arrays), labels=labels, origin=data.origin)


def _fault(result: SearchResult, target: Target, fmt: Format) -> str:
    worst = result.ranking[0] if result.ranking else None
    limit = (f"target '{target.name}' runs integer ops only ({target.device_class.value}, "
             f"{fmt.value} full-integer recipe), so no layer can stay in float")
    if worst is None:
        return f"{limit}; calibration changes did not meet the goal, and no per-layer ranking was available"
    return (f"{limit}; the most damaged activation is '{worst.tensor}' (loses {worst.error:.0%} of its values to "
            f"int8; produced by {', '.join(worst.nodes[:1]) or 'an unknown op'})")


def _fp32_latency(source, target_name, fmt, recipe, exports, workdir: Path, data: Dataset, notes: list[str]) -> float | None:
    """The same format in fp32, timed like the candidates: the reference for 'latency xN of fp32'."""
    from edgekit import iocast
    from edgekit.converters.accuracy_aware import EXTENSIONS

    fp32 = recipe.model_copy(update={
        "precision": Precision.FP32, "float_nodes": (), "input_dtype": IODtype.FLOAT32,
        "output_dtype": IODtype.FLOAT32,
    })
    path = workdir / f"fp32{EXTENSIONS[fmt]}"
    job = ConvertJob(source, target_name, fmt, fp32, None, exports, path)
    try:
        converted = _reused_float_graph(job) or converter_for(fmt, source.format)(job)
        notes.extend(note for note in converted.notes if note.startswith("fp32 reference"))
        backend = open_backend(path, fp32, notes)
    except Exception as exc:  # the fp32 reference only serves the ratio; the repair stands without it
        notes.append(f"fp32 latency not measured: {exc}")
        return None
    try:
        first = next(data.batches(1))
        feeds = {spec.name: iocast.to_input(spec, first[s.name]) for spec, s in zip(converted.inputs, source.inputs)}
        return estimate_latency_ms(backend, feeds)
    finally:
        backend.close()
        for part in (path, path.with_suffix(".bin")):
            part.unlink(missing_ok=True)


def _reused_float_graph(job: ConvertJob):
    """TFLite: the float graph the search's QuantizationDebugger calibrated is the fp32 conversion op
    for op; timing it saves a conversion (~17 s of a 106 s EfficientNetB0 repair here)."""
    if job.format is not Format.TFLITE:
        return None
    from edgekit.converters import tflite

    return tflite.float_reference(job)


def _short(names: tuple[str, ...], shown: int = 3) -> str:
    head = ", ".join(names[:shown])
    return head + (f", +{len(names) - shown} more" if len(names) > shown else "")
