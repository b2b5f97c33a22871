"""`edgekit.convert`: a source model -> one verified artifact per (target, format), and a manifest."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.artifact import Artifact, Verification
from edgekit.console import SILENT, Progress
from edgekit.converters import layout as layouts
from edgekit.converters.base import ConvertJob
from edgekit.converters.exports import Exports
from edgekit.converters.registry import check_supported, converter_for
from edgekit.converters.source import SourceModel, load_source
from edgekit.converters.verify import generated_samples, open_backend, reference_outputs, verify
from edgekit.data import load_dataset
from edgekit.dataset import Dataset
from edgekit.errors import ConversionError, DataError, EdgekitError, InputError
from edgekit.manifest import Manifest
from edgekit.targets.loader import load_target
from edgekit.targets.schema import AccuracyAware, Format, Precision, Preprocess, Recipe, Target

DEFAULT_CALIBRATION_SAMPLES = 200
VERIFY_SAMPLES = 100  # enough for stable cosine/top-1 figures, cheap on every runtime
# Fewer unseen samples than this and verification falls back to calibration samples: a 1-point
# agreement floor (converters' tolerance from the accuracy budget) needs tens of samples to mean anything.
MIN_UNSEEN_SAMPLES = 50
EXTENSIONS = {Format.TFLITE: ".tflite", Format.ONNX: ".onnx", Format.OPENVINO: ".xml"}


@dataclass
class _Plan:
    target: Target
    format: Format
    recipe: Recipe
    goal: AccuracyAware | None = None  # set when the int8 recipe is searched for (accuracy-aware)
    layout: str | None = None  # the artifact's input layout (converters/layout.py); None: the source's


def convert(
    model: Any,
    targets: list[str | Path | Target] | str | Target = "cpu",
    *,
    formats: list[str] | None = None,
    calibration: Any = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    precision: str | None = None,
    output: str | Path = "edgekit-out",
    verify_artifacts: bool = True,
    preprocess: Preprocess | None = None,
    evaluation: Any = None,
    accuracy_aware: bool = False,
    max_accuracy_drop: float | None = None,
    min_cosine: float | None = None,
    repair: bool = True,
    progress: Progress = SILENT,
    logs: str | Path | None = None,
    timeout: float | None = None,
    jobs: int | None = None,
    cluster: Any = None,
    example_inputs: Any = None,
    input_names: list[str] | None = None,
) -> Manifest:
    """Convert `model` for each target into each of its formats, verify, and write `output/manifest.json`.

    `model`: a .keras/.h5 file, a SavedModel directory, an .onnx or .tflite file, a keras.Model,
    a PyTorch .pt2 program, an nn.Module (with `example_inputs=(x,)`) or an ExportedProgram,
    or a SourceModel already loaded (`edgekit build` loads it once to check data first).
    `input_names` renames a PyTorch program's inputs (default: the names in its signature).
    `targets`: built-in profile names, profile .toml paths, or loaded Targets.
    `calibration`: an .npz/.npy file, an image folder, a dict of arrays or a Dataset; required
    by int8-static/int8-full/int16x8 recipes, never replaced by random data.
    `accuracy_aware` (or a profile's `[accuracy_aware] enabled`): for int8-static/int8-full
    recipes, search for the fastest recipe whose accuracy on `evaluation` stays within
    `max_accuracy_drop` (needs labels) or `min_cosine`; what was tried is in the manifest.
    `repair` (and a profile's `repair`, default true): an int8 artifact that misses its tolerance
    is searched for again by itself, judged on held-out calibration samples against the source
    (or on labelled `evaluation` with the profile's max_accuracy_drop); see converters/repair.py.
    Returns the manifest; `manifest.passed` is False when any artifact failed verification
    or its accuracy-aware search (or repair) found nothing meeting the goal, or could not be produced
    (`manifest.errors`: a converter's exception or crash, a hang past `timeout` seconds, a
    runtime that cannot load the file; each costs that (target, format) only).
    `logs`: where the tools' own output goes (default `output/logs`): `<target>-<format>.log`
    per artifact, `source.log` for loading and exporting the source; `progress.verbose`
    streams it to the terminal too. `jobs`: format groups converted at once (default 2, or
    EDGEKIT_JOBS).
    `cluster`: a Ray cluster address (HOST:PORT) or a connected edgekit.cluster.Cluster: each
    (target, format) group is then converted and verified as one job on the cluster's CPU nodes
    (same bytes as here); an address that does not answer is an InputError before anything runs.
    """
    from edgekit import isolation, toollog

    if calibration_samples < 1:
        raise InputError(f"--calibration-samples must be at least 1, got {calibration_samples}")
    output = Path(output)
    logs_dir = Path(logs) if logs is not None else output / "logs"
    settings = isolation.settings(timeout, jobs)
    # TensorFlow's import and load noise lands in a scratch log until the output is known good.
    with tempfile.TemporaryDirectory(prefix="edgekit-log-") as scratch:
        early_log = Path(scratch) / "source.log"
        with toollog.capture(early_log, tee=progress.verbose):
            resolved = _load_targets(targets, precision)
            source = model if isinstance(model, SourceModel) else load_source(
                model, example_inputs=example_inputs, input_names=input_names)
            plans, skipped = _plan(source, resolved, formats)
            for plan in plans:  # travels with the plan into the format group's child
                plan.layout = layouts.artifact_layout(source, preprocess or plan.target.preprocess)
            calib, unseen = _load_calibration(calibration, source, plans, calibration_samples,
                                              layouts.source_preprocess(source, preprocess or resolved[0].preprocess))
            evaluation_data = _attach_goals(plans, source, evaluation, accuracy_aware, max_accuracy_drop, min_cosine)
            _prepare_output(output)
        source_log = _start_logs(logs_dir, early_log)
    if cluster is not None:
        from edgekit.cluster import connect

        cluster = connect(cluster)
    # Everything is validated before the first line is printed: bad input gets one line.
    progress.info(f"source: {source.label} ({source.format}, {_io_summary(source)})")
    if calib is not None:
        progress.info(f"calibration: {calib.samples} samples from {calib.origin}; {_verified_on(calib, unseen)}")
    for skip in skipped:
        progress.info(f"skipped {skip['target']}/{skip['format']}: {skip['reason']}")

    staging = Path(tempfile.mkdtemp(prefix=".edgekit-staging-", dir=output))
    try:
        with toollog.capture(source_log, tee=progress.verbose):
            if cluster is not None:
                manifest = _run_on_cluster(cluster, source, plans, calib, unseen, evaluation_data, staging,
                                           verify_artifacts, progress, repair)
            else:
                manifest = _run(source, plans, calib, unseen, evaluation_data, staging, output, verify_artifacts,
                                progress, logs_dir, settings, repair)
            manifest.skipped = skipped
            _publish(staging, output, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _start_logs(logs_dir: Path, early_log: Path) -> Path:
    """logs/source.log, opened with what loading the source printed; this run's logs replace the last run's."""
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
        source_log = logs_dir / "source.log"
        source_log.write_bytes(early_log.read_bytes() if early_log.exists() else b"")
    except OSError as exc:
        raise InputError(f"log directory {logs_dir} is not writable: {exc.strerror}") from None
    return source_log


def _load_targets(targets: Any, precision: str | None) -> list[Target]:
    items = [targets] if isinstance(targets, (str, Path, Target)) else list(targets)
    if not items:
        raise InputError("no target given; pass at least one -t NAME or -t PROFILE.toml")
    resolved = [t if isinstance(t, Target) else load_target(t) for t in items]
    names = [t.name for t in resolved]
    if len(set(names)) != len(names):
        raise InputError(f"target names must be unique in one run, got {', '.join(names)}")
    if precision is not None:
        try:
            wanted = Precision(precision)
        except ValueError:
            from edgekit.errors import did_you_mean

            raise InputError(f"--precision {precision!r} is not accepted{did_you_mean(precision, [p.value for p in Precision])}") from None
        resolved = [t.with_precision(wanted) for t in resolved]
    return resolved


def _plan(source: SourceModel, targets: list[Target], formats: list[str] | None) -> tuple[list[_Plan], list[dict[str, str]]]:
    wanted = _parse_formats(formats)
    plans, skipped = [], []
    for target in targets:
        recipes = target.recipes()
        for fmt in wanted or list(recipes):
            if fmt not in recipes:
                defined = ", ".join(f.value for f in recipes) or "none"
                raise InputError(f"target '{target.name}' defines no {fmt.value} recipe (it defines: {defined})")
            reason = check_supported(source.format, fmt, recipes[fmt].precision)
            if reason is None:
                plans.append(_Plan(target, fmt, recipes[fmt]))
            elif wanted:
                raise InputError(f"target '{target.name}', format {fmt.value}: {reason}")
            else:
                skipped.append({"target": target.name, "format": fmt.value, "reason": reason})
    if not plans:
        raise InputError("nothing to convert: " + "; ".join(f"{s['target']}/{s['format']}: {s['reason']}" for s in skipped))
    return plans, skipped


def _parse_formats(formats: list[str] | None) -> list[Format]:
    if not formats:
        return []
    from edgekit.errors import did_you_mean

    parsed = []
    for item in formats:
        for name in filter(None, (part.strip() for part in str(item).split(","))):
            try:
                parsed.append(Format(name))
            except ValueError:
                raise InputError(f"unknown format '{name}'{did_you_mean(name, [f.value for f in Format])}") from None
    return list(dict.fromkeys(parsed))


def _load_calibration(data, source, plans, samples, preprocess) -> tuple[Dataset | None, Dataset | None]:
    """(the calibration samples, up to VERIFY_SAMPLES further samples of the same data to verify on).

    Verifying on samples the calibration saw flatters an int8 artifact: its activation ranges were
    fitted to exactly those inputs. The second part is None where the data holds fewer than
    MIN_UNSEEN_SAMPLES beyond `samples`; verification then uses the calibration samples and says so.
    """
    needs = [p for p in plans if p.recipe.precision.needs_calibration]
    if data is None:
        if needs:
            first = needs[0]
            names = ", ".join(spec.name for spec in source.inputs)
            raise DataError(
                f"target '{first.target.name}' format {first.format.value} ({first.recipe.precision.value}) needs "
                f"calibration data: pass -c data.npz (arrays named {names}), an .npy, or a folder of images"
                + (f" ({len(needs)} artifacts need it)" if len(needs) > 1 else "")
            )
        return None, None
    loaded = load_dataset(data, source.inputs, limit=samples + VERIFY_SAMPLES, preprocess=preprocess)
    return split_unseen(loaded, samples)


def split_unseen(loaded: Dataset, samples: int) -> tuple[Dataset, Dataset | None]:
    """`loaded` cut into its first `samples` (calibration) and the rest (verification), when the rest
    is at least MIN_UNSEEN_SAMPLES."""
    if loaded.samples - samples < MIN_UNSEEN_SAMPLES:
        return loaded.head(samples), None
    return loaded.head(samples), loaded.rows(samples, samples + VERIFY_SAMPLES)


def _verified_on(calib: Dataset, unseen: Dataset | None) -> str:
    if unseen is not None:
        return f"verification on {unseen.samples} further samples the calibration did not see"
    return (f"verification on the first {min(calib.samples, VERIFY_SAMPLES)} of them (the data holds fewer than "
            f"{MIN_UNSEEN_SAMPLES} more; with more samples than --calibration-samples, verification uses unseen ones)")


def _prepare_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise InputError(f"output {output} exists and is not a directory")
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=output, prefix=".edgekit-probe-")
        probe.close()
    except OSError as exc:
        raise InputError(f"output directory {output} is not writable: {exc.strerror}") from None


def _run(source, plans, calib, unseen, evaluation, staging, output, verify_artifacts, progress, logs_dir, settings,
         repair: bool = True) -> Manifest:
    from edgekit import isolation

    started = time.perf_counter()
    samples = verification_samples(source, calib, unseen)
    reference = reference_outputs(source.run, samples) if verify_artifacts else []
    manifest = Manifest(source=_source_dict(source), calibration=_calibration_dict(calib, unseen))
    exports = Exports(source, staging / ".exports")
    exports.workdir.mkdir()
    referenced = time.perf_counter()
    shared = isolation.shared_exports(exports, plans)  # the SavedModel, made once for every child
    exported = time.perf_counter()
    stem = source.path.stem if source.path else "model"
    work = [
        isolation.Work(index, plan, staging / plan.target.name / f"{stem}{EXTENSIONS[plan.format]}",
                       logs_dir / f"{plan.target.name}-{plan.format.value}.log")
        for index, plan in enumerate(plans)
    ]
    context = isolation.Context(source=source, calibration=calib, evaluation=evaluation, samples=samples,
                                reference=reference, verify=verify_artifacts, staging=staging, shared=shared,
                                verbose=progress.verbose, repair=repair, unseen_samples=unseen is not None,
                                labelled=labelled_check(source, plans, evaluation, progress) if verify_artifacts else None)

    def report(item: isolation.Work, outcome: isolation.Outcome) -> None:
        plan = item.plan
        label = f"{plan.target.name}/{plan.format.value} ({plan.recipe.precision.value})"
        if outcome.artifact is not None:
            outcome.artifact.log = item.log
            progress.info(_outcome_line(label, outcome.artifact))
        else:
            progress.info(f"FAILED {label}: {outcome.error} (log: {_log_name(item.log, output)})")

    with progress.step(f"converting {len(plans)} artifact(s)"):
        outcomes = isolation.run(work, context, settings, report)
    manifest.timings = {"reference": referenced - started, "export": exported - referenced,
                        "artifacts": time.perf_counter() - exported}
    for item in work:  # manifest order is plan order, whatever order the children finished in
        outcome = outcomes[item.index]
        if outcome.artifact is not None:
            manifest.artifacts.append(outcome.artifact)
        else:
            manifest.errors.append({"target": item.plan.target.name, "format": item.plan.format.value,
                                    "error": outcome.error, "log": _log_name(item.log, output)})
    return manifest


def verification_samples(source, calib: Dataset | None, unseen: Dataset | None) -> Dataset:
    """What every artifact is verified on: unseen samples, else the first calibration samples, else
    seeded generated inputs."""
    if unseen is not None:
        return unseen
    return calib.head(VERIFY_SAMPLES) if calib is not None else generated_samples(source.inputs)


def _run_on_cluster(cluster, source, plans, calib, unseen, evaluation, staging, verify_artifacts, progress,
                    repair: bool = True) -> Manifest:
    from edgekit.cluster.convert import run_plans

    manifest = Manifest(source=_source_dict(source), calibration=_calibration_dict(calib, unseen))
    # A job gets the calibration and unseen samples as one dataset and cuts it the same way.
    data = calib if unseen is None else calib.joined(unseen)
    manifest.artifacts, manifest.errors = run_plans(cluster, source, plans, data, calib.samples if calib else 1,
                                                    evaluation, staging, verify_artifacts, progress, repair)
    return manifest


def _log_name(log: Path, output: Path) -> str:
    """A log's path as the manifest names it: relative to the output directory when inside it."""
    try:
        return log.resolve().relative_to(output.resolve()).as_posix()
    except ValueError:
        return str(log.resolve())


def produce(source, plan: _Plan, staged: Path, calib, evaluation, exports, samples, reference,
            verify_artifacts: bool, progress: Progress = SILENT, phase=lambda name: None,
            repair: bool = True, checkpoint=lambda artifact: None, unseen_samples: bool = False,
            labelled: LabelledCheck | None = None) -> Artifact:
    """One artifact: convert (or search) `plan` into `staged`, verify it, check its op placement.

    The single place one (target, format) is produced; it runs inside that format group's
    child process (edgekit.conversion_worker). `phase("verifying")` tells the parent which
    tool was running should the process die; `checkpoint(artifact)` keeps the verified,
    unrepaired artifact so that a repair that crashes costs the repair, not the artifact.
    `unseen_samples`: `samples` are not calibration samples, so a repair may judge on them.
    `labelled`: where given, the target's accuracy budget is checked on labelled evaluation data too.
    """
    from edgekit import timings

    staged.parent.mkdir(parents=True, exist_ok=True)
    with timings.stopwatch() as steps:
        if plan.goal is not None:
            artifact = _search_one(source, plan, staged, calib, evaluation, exports, progress)
        else:
            artifact = _convert_one(source, plan, staged, calib, exports)
        if verify_artifacts:
            phase("verifying")
            with timings.timed("verify"):
                _verify_one(artifact, plan, samples, reference, labelled)
            checkpoint(artifact)
            phase("repairing")
            artifact = _repair_if_needed(source, plan, artifact, calib, evaluation, exports, staged.parent.parent,
                                         samples, reference, repair, progress, unseen_samples, labelled)
    phase("checking placement")
    _check_placement(artifact, plan)
    # What the converter spent beyond exporting and calibrating is its conversion and quantization.
    quantize = max(0.0, artifact.seconds - steps.get("export", 0.0) - steps.get("calibrate", 0.0))
    artifact.timings = {step: steps.get(step, 0.0) for step in timings.STEPS} | {"quantize": quantize}
    return artifact


def _convert_one(source, plan: _Plan, staged: Path, calib, exports) -> Artifact:
    calib = layouts.dataset_in(calib, plan.layout)
    job = ConvertJob(source, plan.target.name, plan.format, plan.recipe, calib, exports, staged, plan.layout)
    started = time.perf_counter()
    converted = converter_for(plan.format, source.format)(job)
    return _artifact(plan, staged, converted, time.perf_counter() - started)


def _artifact(plan: _Plan, path: Path, converted, seconds: float, **extra: Any) -> Artifact:
    """The Artifact for a file a converter (or the accuracy-aware search) wrote for `plan`."""
    recipe = plan.recipe
    extra.setdefault("traits", converted.traits)
    artifact = Artifact(
        target=plan.target.name,
        format=plan.format.value,
        precision=recipe.precision.value,
        path=path,
        runtime=recipe.runtime.value,
        device=recipe.device if recipe.runtime.value != "onnxruntime" else ",".join(recipe.providers),
        inputs=converted.inputs,
        outputs=converted.outputs,
        tools=converted.tools,
        seconds=seconds,
        notes=list(converted.notes),
        profile=plan.target.source,
        layout=plan.layout,
        **extra,
    )
    artifact.fingerprint()
    return artifact


def _attach_goals(plans, source, evaluation, flag: bool, max_drop: float | None, min_cosine: float | None):
    """Give each int8 plan that is searched its goal; load the evaluation data the search needs."""
    if (max_drop is not None or min_cosine is not None) and not flag:
        raise InputError("--max-accuracy-drop and --min-cosine set the goal of --accuracy-aware; add --accuracy-aware")
    searched = []
    for plan in plans:
        switch = plan.target.accuracy_aware
        if not (flag or (switch is not None and switch.enabled)):
            continue
        if plan.recipe.precision not in (Precision.INT8_STATIC, Precision.INT8_FULL):
            continue  # fp32/fp16/dynamic recipes have nothing to search
        profile_goal = switch or AccuracyAware()
        drop = max_drop if max_drop is not None else profile_goal.max_accuracy_drop
        cosine = min_cosine if min_cosine is not None else profile_goal.min_cosine
        if drop is None and cosine is None:
            drop = plan.target.budgets.get("max_accuracy_drop")
        if drop is None and cosine is None:
            raise InputError(
                f"target '{plan.target.name}': accuracy-aware quantization needs a goal: pass --max-accuracy-drop "
                "or --min-cosine, or set [accuracy_aware] max_accuracy_drop in the profile"
            )
        plan.goal = AccuracyAware(enabled=True, max_accuracy_drop=drop, min_cosine=cosine,
                                  accuracy_control_seconds=profile_goal.accuracy_control_seconds)
        searched.append(plan)
    if not searched:
        if flag:
            raise InputError("--accuracy-aware: no int8-static or int8-full recipe among the targets to search")
        # Labelled evaluation data still serves the automatic repair (accuracy instead of agreement).
        return load_dataset(evaluation, source.inputs) if evaluation is not None else None
    if evaluation is None:
        first = searched[0]
        raise DataError(
            f"target '{first.target.name}' format {first.format.value}: accuracy-aware quantization needs evaluation "
            "data: pass --evaluation eval.npz (inputs, plus 'labels' for --max-accuracy-drop)"
        )
    data = load_dataset(evaluation, source.inputs)
    if data.labels is None and any(p.goal.max_accuracy_drop is not None for p in searched):
        raise DataError(f"{data.origin}: max_accuracy_drop needs 'labels' in the evaluation data; or use --min-cosine")
    return data


def _search_one(source, plan: _Plan, staged: Path, calib, evaluation, exports, progress) -> Artifact:
    """The accuracy-aware search's chosen candidate, as the artifact of this (target, format)."""
    from edgekit.converters.accuracy_aware import search

    started = time.perf_counter()
    workdir = staged.parent.parent / ".search" / plan.target.name / plan.format.value
    result = search(source, plan.target.name, plan.format, plan.recipe, calib, evaluation, plan.goal, exports,
                    workdir, progress)
    os.replace(result.path, staged)
    if plan.format is Format.OPENVINO:
        os.replace(result.path.with_suffix(".bin"), staged.with_suffix(".bin"))
    plan.recipe = result.recipe  # verification and the manifest describe what was chosen
    artifact = _artifact(plan, staged, result.converted, time.perf_counter() - started, accuracy_aware=result.to_dict())
    artifact.notes += result.notes
    return artifact


def _repair_if_needed(source, plan: _Plan, artifact: Artifact, calib, evaluation, exports, staging: Path,
                      samples, reference, enabled: bool, progress, unseen_samples: bool = False,
                      labelled: LabelledCheck | None = None) -> Artifact:
    """The artifact, or its repair when it missed its tolerance (converters/repair.py)."""
    from edgekit.converters.repair import needs_repair, repair

    check = artifact.verification
    if calib is None or plan.goal is not None or check is None:
        return artifact
    if not needs_repair(plan.target, plan.format, plan.recipe, check.passed, enabled):
        return artifact
    if plan.layout == layouts.NHWC:  # the search feeds data in the source's layout (converters/layout.py)
        artifact.notes.append("automatic repair not run: it does not handle an NHWC layout change yet")
        return artifact
    label = f"{plan.target.name}/{plan.format.value}"
    progress.info(f"repairing {label}: {'; '.join(check.failures)}")
    workdir = staging / ".repair" / plan.target.name / plan.format.value
    try:
        outcome = repair(source, plan.target, plan.format, plan.recipe, calib, evaluation, exports, workdir, progress,
                         judge=samples if unseen_samples else None)
    except ConversionError as exc:
        artifact.notes.append(f"automatic repair could not run: {exc}")
        return artifact
    progress.info(f"{label}: {outcome.line()}")
    if not outcome.met:
        artifact.repair = {**outcome.to_dict(), "line": outcome.line()}
        return artifact
    for part in artifact.files():
        part.unlink(missing_ok=True)
    os.replace(outcome.result.path, artifact.path)
    if plan.format is Format.OPENVINO:
        os.replace(outcome.result.path.with_suffix(".bin"), artifact.path.with_suffix(".bin"))
    plan.recipe = outcome.result.recipe  # verification and the manifest describe what was kept
    repaired = _artifact(plan, artifact.path, outcome.result.converted, artifact.seconds + outcome.seconds,
                         repair={**outcome.to_dict(), "line": outcome.line(), "before": check.failures})
    repaired.notes += outcome.result.notes + outcome.notes
    _verify_one(repaired, plan, samples, reference, labelled)
    if repaired.verification is not None and not repaired.verification.passed:
        # The search judged on a held-out share of the calibration samples; verification uses all
        # of them. A model at the edge of its tolerance can pass one and miss the other.
        repaired.repair["confirmed"] = False
        repaired.notes.append(
            f"the repair met its goal on {outcome.held_out} held-out samples but verification on {samples.samples} "
            f"samples still misses ({'; '.join(repaired.verification.failures)}): the model sits at the tolerance's "
            "edge; more calibration samples make the held-out judgement firmer")
    return repaired


def _verify_one(artifact: Artifact, plan: _Plan, samples: Dataset, reference,
                labelled: LabelledCheck | None = None) -> None:
    notes: list[str] = []
    backend = open_backend(artifact.path, plan.recipe, notes)
    samples = layouts.dataset_in(samples, plan.layout)  # the reference outputs stay as they are
    try:
        result = verify(backend, artifact.inputs, artifact.outputs, samples, reference, plan.target.tolerance_for(plan.format))
        if labelled is not None:
            labelled.judge(result, backend, artifact, plan)
        described = backend.describe()
    finally:
        backend.close()
    result.warnings = [n for n in artifact.notes if "softmax" in n.lower()]
    artifact.notes.extend(notes)
    artifact.tools.update({k: str(v) for k, v in described.items() if k in ("interpreter", "version") and v})
    artifact.verification = result


@dataclass
class LabelledCheck:
    """The target's `[budgets] max_accuracy_drop` judged on the user's labelled evaluation data.

    Without labels, verification can only bound the drop by top-1 agreement on the held-out
    samples (a 95 % binomial bound: 3 of 100 disagreements pass a 1.0 pt budget), which let a
    MobileNetV2 TFLite int8 artifact lose 1.7 pt on 300 labelled images and exit 0. With labels
    the budget is the user's number on the user's data, and a miss starts the repair, judged on
    the same data (converters/repair.py).
    """

    data: Dataset
    source_accuracy: float

    def judge(self, result: Verification, backend, artifact: Artifact, plan: _Plan) -> None:
        from edgekit.benchmarks.metrics import task_metrics
        from edgekit.converters.verify import artifact_outputs

        budget = plan.target.budgets.get("max_accuracy_drop")
        if budget is None:
            return
        data = layouts.dataset_in(self.data, plan.layout)
        outputs = artifact_outputs(backend, artifact.inputs, artifact.outputs, data)
        accuracy = task_metrics(outputs[0], self.data.labels)[0]["accuracy"]
        result.accuracy, result.source_accuracy, result.accuracy_samples = accuracy, self.source_accuracy, data.samples
        drop = self.source_accuracy - accuracy
        if drop > budget + 1e-9:  # 1e-9: counts over samples, compared in floats
            result.passed = False
            result.failures.append(
                f"accuracy {accuracy:.4f} on {data.samples} labelled evaluation samples ({self.data.origin}) is "
                f"{drop * 100:.1f} pt below the source's {self.source_accuracy:.4f}: more than the target's "
                f"{budget * 100:.1f} pt max_accuracy_drop")


def labelled_check(source, plans, evaluation: Dataset | None, progress: Progress = SILENT) -> LabelledCheck | None:
    """The check when the evaluation data has class labels for a classifier output and some target has
    an accuracy budget; the source's accuracy is measured once, here. Labelled data it cannot use is said."""
    import numpy as np

    from edgekit.benchmarks.metrics import task_metrics

    if evaluation is None or evaluation.labels is None:
        return None
    if not any(plan.target.budgets.get("max_accuracy_drop") is not None for plan in plans):
        return None
    outputs = reference_outputs(source.run, evaluation)
    if np.asarray(evaluation.labels).dtype.kind not in "iub" or outputs[0].ndim != 2 or outputs[0].shape[1] < 2:
        progress.info(f"note: max_accuracy_drop not checked on {evaluation.origin}: it needs integer class labels "
                      f"and a (N, classes) first output (got labels of dtype {np.asarray(evaluation.labels).dtype}, "
                      f"output shape {list(outputs[0].shape)})")
        return None
    return LabelledCheck(evaluation, task_metrics(outputs[0], evaluation.labels)[0]["accuracy"])


def _check_placement(artifact: Artifact, plan: _Plan) -> None:
    """Pre-flight: which ops the target's accelerator runs and which fall back to the CPU."""
    from edgekit.converters.compat import check_artifact

    try:
        result = check_artifact(artifact.path, plan.format.value, plan.recipe, plan.target.device_class.value)
    except EdgekitError as exc:
        artifact.notes.append(f"op placement not checked: {exc}")
        return
    artifact.compatibility = result.to_dict()


def _publish(staging: Path, output: Path, manifest: Manifest) -> None:
    """Move verified artifacts into place, then replace the manifest last."""
    for artifact in manifest.artifacts:
        final = output / artifact.path.relative_to(staging)
        final.parent.mkdir(parents=True, exist_ok=True)
        for part in artifact.files():
            os.replace(part, final.parent / part.name)
        artifact.path = final.resolve()
    manifest.write(output / "manifest.json")


def _search_line(search: dict | None) -> str:
    if not search:
        return ""
    before, after = search.get("before") or {}, search.get("after") or {}
    verdict = "met the goal" if search.get("met") else "FOUND NOTHING meeting the goal; kept the best candidate"
    kept = f", {len(search.get('float_nodes') or [])} node(s) kept in float" if search.get("float_nodes") else ""
    return (f"accuracy-aware search {verdict} after {len(search.get('trials', []))} trial(s){kept}: "
            f"accuracy {_pct(before.get('accuracy'))} -> {_pct(after.get('accuracy'))}, "
            f"cosine {_num(before.get('cosine'))} -> {_num(after.get('cosine'))}")


def _traits_line(traits: dict | None) -> str:
    return (traits or {}).get("line", "")


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.5f}"


def _placement_line(compatibility: dict | None) -> str:
    if not compatibility or compatibility.get("method", "").startswith("cpu target"):
        return ""
    fraction = compatibility.get("fraction")
    if fraction is None:
        return f"ops on {compatibility['accelerator']}: not checked"
    fallbacks = ", ".join(f"{g['op']} x{g['count']} ({g['reason']})" for g in compatibility.get("fallback_counts", [])[:4])
    return (f"ops on {compatibility['accelerator']}: {compatibility['accelerated_ops']}/{compatibility['total_ops']} "
            f"({compatibility['method']})" + (f"; CPU fallback: {fallbacks}" if fallbacks else ""))


def _source_dict(source: SourceModel) -> dict[str, Any]:
    return {
        "path": str(source.path) if source.path else None,
        "format": source.format,
        "sha256": source.sha256,
        "inputs": [t.to_dict() for t in source.inputs],
        "outputs": [t.to_dict() for t in source.outputs],
    }


def _calibration_dict(calib: Dataset | None, unseen: Dataset | None = None) -> dict[str, Any] | None:
    if calib is None:
        return None
    return {"origin": calib.origin, "samples": calib.samples, "ranges": {k: list(v) for k, v in calib.ranges().items()},
            "verification_samples": unseen.samples if unseen is not None else min(calib.samples, VERIFY_SAMPLES),
            "verified_on": "unseen samples" if unseen is not None else "calibration samples"}


def _io_summary(source: SourceModel) -> str:
    def fmt(specs):
        return ", ".join(f"{s.name} {list(s.shape)} {s.dtype}" for s in specs)

    return f"inputs: {fmt(source.inputs)}; outputs: {fmt(source.outputs)}"


def _outcome_line(label: str, artifact: Artifact) -> str:
    size = f"{artifact.bytes / 1e6:.3f} MB"
    check = artifact.verification
    if check is None:
        verdict = "not verified (--no-verify)"
    else:
        top1 = f", top-1 {check.top1_agreement:.3f}" if check.top1_agreement is not None else ""
        accuracy = ""
        if check.accuracy is not None:
            accuracy = (f"; accuracy {check.accuracy:.4f} vs the source's {check.source_accuracy:.4f} on "
                        f"{check.accuracy_samples} labelled samples")
        status = "verified" if check.passed else "FAILED verification: " + "; ".join(check.failures)
        verdict = (f"{status} (cosine {check.cosine:.5f}, max abs err {check.max_abs_error:.3g}{top1}, "
                   f"{check.samples} samples{accuracy})")
    notes = "".join(f"\n    note: {n}" for n in artifact.notes)
    lines = (_traits_line(artifact.traits), _search_line(artifact.accuracy_aware),
             (artifact.repair or {}).get("line", ""), _placement_line(artifact.compatibility))
    extra = [line for line in lines if line]
    notes = "".join(f"\n    {line}" for line in extra) + notes
    return f"{'ok' if artifact.passed else 'FAIL'} {label}: {size} in {artifact.seconds:.1f}s, {verdict}{notes}"


__all__ = ["convert", "EdgekitError"]
