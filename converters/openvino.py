"""Source model -> OpenVINO IR (.xml + .bin), quantized with NNCF per the recipe.

Keras and SavedModel sources convert from the SavedModel export, ONNX and TFLite
sources from their own file; OpenVINO keeps the source's layout, input names and
dynamic batch, unless the recipe sets static_batch (model.reshape fixes it).
Integer inputs/outputs (int8-full) are added with PrePostProcessor,
so the IR itself does real = (q - zero_point) * scale on the way in and the
inverse on the way out, with the numbers returned in the TensorSpecs.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit._deps import require, version_of
from edgekit.artifact import Quantization, TensorSpec
from edgekit.converters.base import ConvertJob, Converted
from edgekit.dataset import Dataset
from edgekit.errors import ConversionError, DataError
from edgekit.iocast import INT_RANGES, quantization_from_range
from edgekit.targets.schema import (
    BiasCorrection, Calibration, Format, IODtype, NNCFModelType, Precision, QuantDtype, Recipe,
)

_INT_IO = (IODtype.INT8, IODtype.UINT8)
# Ops that move or relabel values without changing them: an input's FakeQuantize may sit
# behind them, and a Softmax may sit before an output through them.
_PASSTHROUGH = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Convert", "FakeQuantize"}
# OpenVINO names an unnamed node <OpType>_<n> from a process-wide counter (and passes copy such names).
_AUTO_NAME = re.compile(r"\b([A-Z][A-Za-z0-9]*)_(\d+)\b")


def convert(job: ConvertJob) -> Converted:
    ov = require("openvino")
    recipe, precision = job.recipe, job.recipe.precision
    _check_recipe(recipe)
    notes: list[str] = []
    choice: dict | None = None  # traits and chosen settings of a static int8 recipe
    tools = {"openvino": version_of("openvino") or ov.get_version()}

    model = _read_source(ov, job)
    inputs = _match_ports(job.source.inputs, model.inputs, "input", notes)
    outputs = _match_ports(job.source.outputs, model.outputs, "output", notes)
    if recipe.static_batch is not None:
        _fix_batch(ov, model, recipe.static_batch)
    # Calibration samples, batch 1, as lists in the model's own input order.
    samples = _samples(job.calibration, job, inputs, model) if precision.needs_calibration else []

    quantization: dict[str, Quantization] = {}  # artifact tensor name -> int I/O mapping
    if precision is Precision.INT8_DYNAMIC:
        tools["nncf"] = version_of("nncf") or ""
        model = _compress_weights(model, notes)
    elif precision in (Precision.INT8_STATIC, Precision.INT8_FULL):
        tools["nncf"] = version_of("nncf") or ""
        recipe, choice = _from_model(model, recipe)
        # Output ranges come from the float model, before quantization touches it.
        out_ranges = _output_ranges(ov, model, samples) if recipe.output_dtype in _INT_IO else {}
        model = _quantize(model, recipe, samples, notes)
        if recipe.static_batch is None:
            model = _check_dynamic_batch(ov, model, recipe, samples, notes)
        if recipe.input_dtype in _INT_IO or recipe.output_dtype in _INT_IO:
            model, quantization = _integer_io(ov, model, recipe, job, inputs, outputs, out_ranges, notes)
    if IODtype.FLOAT16 in (recipe.input_dtype, recipe.output_dtype):
        model = _float16_io(ov, model, recipe)

    _renumber_auto_names(model)
    try:
        # save_model compresses to fp16 by default; only the fp16 recipe wants that. int8 models
        # keep f32 constants so that the FakeQuantize ranges match the I/O scales exactly.
        ov.save_model(model, str(job.output), compress_to_fp16=precision is Precision.FP16)
    except Exception as exc:
        raise ConversionError(f"OpenVINO could not save {job.output}: {_reason(exc)}") from None
    if precision is Precision.FP16:
        notes.append("fp16: weights stored as float16 and decompressed at load; compute runs in the device's precision")

    by_name = {port.get_any_name(): port for port in (*model.inputs, *model.outputs)}
    return Converted(
        inputs=[_spec(by_name[name], quantization.get(name)) for name in inputs],
        outputs=[_spec(by_name[name], quantization.get(name)) for name in outputs],
        tools=tools,
        notes=notes,
        traits=choice,
    )


def _from_model(model: Any, recipe: Recipe) -> tuple[Recipe, dict]:
    """The recipe with the settings chosen from the graph's traits (converters/traits.py)."""
    from edgekit.converters import traits

    chosen = traits.choose(traits.find(traits.openvino_nodes(model)), Format.OPENVINO, recipe,
                           float_ops_allowed=recipe.precision is Precision.INT8_STATIC)
    return traits.apply(recipe, chosen), {**chosen.to_dict(), "line": chosen.line()}


def _renumber_auto_names(model: Any) -> None:
    """Renumber counter-made node names in graph order, so that the .xml is the same bytes
    however many models this process converted before (names are labels only)."""
    numbers: dict[str, str] = {}

    def renumber(match: re.Match[str]) -> str:
        return f"{match[1]}_{numbers.setdefault(match[2], str(len(numbers)))}"

    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        new_name = _AUTO_NAME.sub(renumber, name)
        if new_name != name:
            op.set_friendly_name(new_name)


def _check_recipe(recipe: Recipe) -> None:
    """Options OpenVINO cannot honour are errors, not silent changes."""
    if recipe.precision is Precision.INT16X8:
        raise ConversionError("OpenVINO (NNCF) has no int16x8 quantization; use int8-static or int8-full")
    if recipe.activation_type is QuantDtype.INT16:
        raise ConversionError("OpenVINO (NNCF) quantizes activations to 8 bits; activation_type int16 is not supported")
    wants_int_io = recipe.input_dtype in _INT_IO or recipe.output_dtype in _INT_IO
    if wants_int_io and recipe.precision is not Precision.INT8_FULL:
        raise ConversionError(
            f"integer inputs/outputs ({recipe.input_dtype.value}/{recipe.output_dtype.value}) "
            f"need precision int8-full, not {recipe.precision.value}"
        )


def _read_source(ov: Any, job: ConvertJob) -> Any:
    fmt = job.source.format
    if fmt == "torch":  # the ExportedProgram itself, not a file (converters/torch_openvino.py)
        from edgekit.converters.torch_openvino import read_program

        return read_program(ov, job)
    path = job.exports.saved_model() if fmt in ("keras", "saved_model") else job.source.path
    try:
        model = ov.convert_model(str(path))
    except Exception as exc:
        raise ConversionError(f"OpenVINO could not convert the {fmt} model {path}: {_reason(exc)}") from None
    # Unnamed ops (a TF Conv2D becomes `Convolution_<n>`) are renumbered before NNCF sees them,
    # so that float_nodes names the same ops in every conversion.
    _renumber_auto_names(model)
    # convert_model records the absolute input path in the IR; for a Keras source that is a
    # scratch directory. The source's file name keeps the .xml reproducible and leaks no paths.
    if model.has_rt_info(["conversion_parameters", "input_model"]):
        name = job.source.path.name if job.source.path else job.source.label
        model.set_rt_info(name, ["conversion_parameters", "input_model"])
    return model


def _fix_batch(ov: Any, model: Any, batch: int) -> None:
    """Give every input the batch size `batch` (NPUs compile static shapes) with model.reshape."""
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        name = port.get_any_name()
        if shape.rank.is_dynamic or shape.rank.get_length() == 0:
            raise ConversionError(f"input '{name}' has no batch dimension to fix at {batch} (shape {shape})")
        first = shape[0]
        if first.is_static and first.get_length() != batch:
            raise ConversionError(
                f"input '{name}' has a fixed batch of {first.get_length()}; static_batch {batch} cannot change it"
            )
        shapes[name] = ov.PartialShape([ov.Dimension(batch), *list(shape)[1:]])
    try:
        model.reshape(shapes)
    except Exception as exc:
        raise ConversionError(f"OpenVINO could not reshape the model to batch {batch}: {_reason(exc)}") from None


# Two executions of one IR on one device differ by rounding only; below this cosine they disagree.
_SAME_EXECUTION_COSINE = 0.999
_DYNAMIC_BATCH_CHECK_SAMPLES = 16


def _check_dynamic_batch(ov: Any, model: Any, recipe: Recipe, samples: list[list[np.ndarray]], notes: list[str]) -> Any:
    """The int8 model, with a static batch of 1 where OpenVINO's CPU plugin runs its dynamic batch wrongly.

    Measured on OpenVINO 2026.4.1: an NNCF int8 EfficientNetB0 trained on 32x32 digits gives
    top-1 agreement 0.925 with the float model when compiled at a static batch of 1 and 0.09 when
    compiled with its dynamic batch, same IR, same inputs, in bf16 or f32 alike
    (tests/perf/repro_openvino_dynamic_batch.py). Blocks on 1x1 feature maps trigger it, with
    swish or ReLU (tests/int8_models.py). Apps compile the IR as saved, so both executions are
    compared on calibration samples and the IR keeps its dynamic batch only when they agree.
    """
    if recipe.device != "CPU" or not _only_batch_dynamic(model) or not samples:
        return model
    checked = samples[:_DYNAMIC_BATCH_CHECK_SAMPLES]
    cosine, failure = _dynamic_vs_batch_1(ov, model, checked)
    if failure is None and cosine >= _SAME_EXECUTION_COSINE:
        return model
    static = model.clone()
    _fix_batch(ov, static, 1)
    how = failure or (f"cosine {cosine:.4f} between dynamic-batch and batch-1 executions of the same IR "
                      f"on {len(checked)} calibration samples")
    notes.append(
        f"OpenVINO {ov.get_version()} CPU runs this int8 IR wrongly with a dynamic batch ({how}); "
        "saved with a static batch of 1 (model.reshape), which runs as intended (an app needing another batch "
        "size reshapes it; verify that batch before relying on it)"
    )
    return static


def _dynamic_vs_batch_1(ov: Any, model: Any, samples: list[list[np.ndarray]]) -> tuple[float, str | None]:
    """(cosine, None), or (0, what went wrong) when the check's child process failed or crashed."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="edgekit-ov-batch-") as scratch:
        folder = Path(scratch)
        ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)
        np.savez(folder / "samples.npz", **{f"i{k}": np.concatenate([s[k] for s in samples]) for k in range(len(samples[0]))})
        try:
            done = subprocess.run(
                [sys.executable, "-m", "edgekit.converters.openvino_batch_check", str(folder)],
                capture_output=True, text=True, timeout=600,
            )
        except subprocess.TimeoutExpired:
            return 0.0, "the dynamic-batch execution did not finish in 600 s"
    if done.returncode < 0:
        return 0.0, f"the dynamic-batch execution crashed (signal {-done.returncode})"
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1][:200]
        return 0.0, f"the dynamic-batch execution failed: {reason}"
    return float(json.loads(done.stdout.strip().splitlines()[-1])["cosine"]), None


def _only_batch_dynamic(model: Any) -> bool:
    shapes = [port.get_partial_shape() for port in model.inputs]
    return (
        all(shape.rank.is_static and shape.rank.get_length() > 0 for shape in shapes)
        and any(shape[0].is_dynamic for shape in shapes)
        and all(d.is_static for shape in shapes for d in list(shape)[1:])
    )


def _match_ports(specs: list[TensorSpec], ports: list[Any], kind: str, notes: list[str]) -> list[str]:
    """The model's tensor names in the source's order: by name, else by position (noted)."""
    names = [port.get_any_name() for port in ports]
    if len(specs) != len(ports):
        raise ConversionError(f"the source has {len(specs)} {kind}s but the OpenVINO model has {len(ports)}")
    found = []
    for spec in specs:
        match = [port.get_any_name() for port in ports if spec.name in port.get_names()]
        found.append(match[0] if match else None)
    if None in found:
        notes.append(f"{kind}s matched to the source by position ({names}), not by name")
        return names
    return found  # type: ignore[return-value]


def _samples(dataset: Dataset | None, job: ConvertJob, inputs: list[str], model: Any) -> list[list[np.ndarray]]:
    if dataset is None:
        raise DataError(f"{job.recipe.precision.value} needs calibration data")
    arrays = dataset.arrays
    missing = [spec.name for spec in job.source.inputs if spec.name not in arrays]
    if missing:
        raise DataError(f"{dataset.origin} has no input {missing} (it has: {', '.join(arrays)})")
    source_of = dict(zip(inputs, (spec.name for spec in job.source.inputs)))
    order = [source_of[port.get_any_name()] for port in model.inputs]
    return [
        [np.ascontiguousarray(arrays[name][i : i + 1], dtype=np.float32) for name in order]
        for i in range(dataset.samples)
    ]


def _output_ranges(ov: Any, model: Any, samples: list[list[np.ndarray]]) -> dict[str, tuple[float, float]]:
    """(min, max) of each output of the float model over the calibration samples, run in f32."""
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    lows = [np.inf] * len(compiled.outputs)
    highs = [-np.inf] * len(compiled.outputs)
    for sample in samples:
        result = request.infer(sample)
        for i in range(len(compiled.outputs)):
            lows[i] = min(lows[i], float(result[i].min()))
            highs[i] = max(highs[i], float(result[i].max()))
    names = [port.get_any_name() for port in compiled.outputs]
    return {name: (lo, hi) for name, lo, hi in zip(names, lows, highs)}


def _compress_weights(model: Any, notes: list[str]) -> Any:
    nncf = require("nncf")
    try:
        with _nncf_warnings_to(notes):
            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    except Exception as exc:
        raise ConversionError(f"NNCF weight compression failed: {_reason(exc)}") from None
    notes.append(
        "int8-dynamic on OpenVINO is NNCF weight compression (INT8_ASYM, per channel): int8 weights, "
        "float activations; weights are decompressed at run time, activations are not quantized"
    )
    return model


def _quantize(model: Any, recipe: Recipe, samples: list[list[np.ndarray]], notes: list[str]) -> Any:
    nncf = require("nncf")
    options = _nncf_options(recipe, notes)
    try:
        with _nncf_warnings_to(notes):
            quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples), **options)
    except Exception as exc:
        raise ConversionError(f"NNCF quantization failed: {_reason(exc)}") from None
    preset = options["preset"]
    granularity = "per-channel" if recipe.per_channel else "per-tensor"
    extra = "".join(
        f", {label}" for key, label in (("model_type", "model_type transformer"),
                                         ("fast_bias_correction", "full bias correction")) if key in options
    )
    notes.append(
        f"NNCF post-training quantization on {len(samples)} samples, preset {preset.value}, "
        f"activation ranges {recipe.calibration.value}, {granularity} int8 weights{extra}"
    )
    if recipe.float_nodes:
        kept = ", ".join(recipe.float_nodes)
        notes.append(f"kept in float ({len(recipe.float_nodes)} op(s), NNCF IgnoredScope): {kept}")
    if recipe.precision is Precision.INT8_FULL:
        notes.append(
            "int8-full on OpenVINO is NNCF static int8 plus the recipe's I/O dtypes; ops NNCF leaves "
            "unquantized (e.g. pooling, reshapes, the last layer's output) run in float"
        )
    return quantized


def _nncf_options(recipe: Recipe, notes: list[str]) -> dict[str, Any]:
    """nncf.quantize's keyword arguments for the recipe (quantize_with_accuracy_control takes the same)."""
    nncf = require("nncf")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    # Signed int8 activations -> symmetric (PERFORMANCE); uint8 -> asymmetric activations (MIXED),
    # unless the recipe (or the traits, converters/traits.py) names the preset. Weights are
    # symmetric int8 in both presets.
    preset = nncf.QuantizationPreset.PERFORMANCE
    if recipe.nncf_preset is not None:
        preset = nncf.QuantizationPreset(recipe.nncf_preset.value)
    elif recipe.activation_type is QuantDtype.UINT8:
        preset = nncf.QuantizationPreset.MIXED
    estimators = {
        # Global min and max, as the other converters do (NNCF's own default averages per-sample ranges).
        Calibration.MINMAX: RangeEstimatorParametersSet.MINMAX,
        Calibration.PERCENTILE: RangeEstimatorParametersSet.MEAN_QUANTILE,
        Calibration.ENTROPY: RangeEstimatorParametersSet.HISTOGRAM,
    }
    if recipe.calibration is Calibration.PERCENTILE:
        notes.append("calibration 'percentile' -> NNCF MEAN_QUANTILE (mean of per-sample 0.01%/99.99% quantiles)")
    if recipe.calibration is Calibration.ENTROPY:
        notes.append(
            "calibration 'entropy' -> NNCF HISTOGRAM (range minimizing quantization error on a histogram); "
            "NNCF has no KL-divergence calibration"
        )
    if recipe.weight_type is not QuantDtype.INT8:
        notes.append(
            f"weight_type {recipe.weight_type.value} not applied: NNCF quantizes OpenVINO weights to signed int8"
        )
    overflow = {}
    if recipe.reduce_range:
        from nncf.quantization.advanced_parameters import OverflowFix

        overflow["overflow_fix"] = OverflowFix.ENABLE  # 7-bit weights in every layer, not the first only
    advanced = AdvancedQuantizationParameters(
        activations_range_estimator_params=estimators[recipe.calibration],
        weights_quantization_params=QuantizationParameters(per_channel=recipe.per_channel),
        **overflow,
    )
    # IgnoredScope checks that every name exists, and says which do not.
    ignored = nncf.IgnoredScope(names=list(recipe.float_nodes)) if recipe.float_nodes else None
    options = {"preset": preset, "advanced_parameters": advanced, "ignored_scope": ignored}
    if recipe.nncf_model_type is NNCFModelType.TRANSFORMER:
        options["model_type"] = nncf.ModelType.TRANSFORMER
    if recipe.bias_correction is BiasCorrection.FULL:
        options["fast_bias_correction"] = False
    return options


@dataclass
class AccuracyControl:
    """What NNCF's accuracy control chose: the ops to keep in float, and whether it ran to its end."""

    reverted: list[str]
    stopped: str | None = None  # why it was stopped before it finished (the time budget), else None
    iterations: int = 0  # groups NNCF reverted one after another
    rankings: int = 0  # rankings of every remaining group it started (each one compile per group)


class _OutOfTime(Exception):
    pass


def accuracy_control(
    job: ConvertJob,
    evaluation: Dataset,
    score: Callable[[np.ndarray, np.ndarray], float],
    max_drop: float,
    seconds: float,
) -> AccuracyControl:
    """The ops NNCF's quantize_with_accuracy_control keeps in float so that `score` drops by at most
    `max_drop` (absolute) from the float model's: names for job.recipe's float_nodes.

    NNCF ranks groups of quantizers by their effect on each evaluation sample (one compile of the
    model per group), reverts the worst group, re-validates, and repeats; whenever a revert makes
    the drop worse it ranks every remaining group again. On a model whose drops are not monotonic
    that is a compile per group per step with no end in sight (the zoo's EfficientNetB0: 124
    groups, ~0.9 s per compile, no result in 900 s), so it runs for at most `seconds`: then it is
    stopped in the next validation and the ops it had reverted by then are returned, for the
    caller to judge like any other candidate. `score(first_output, sample_indices)` is the metric
    on the source's first output over those evaluation samples (NNCF validates subsets too).
    """
    nncf = require("nncf")
    ov = require("openvino")
    notes: list[str] = []
    model = _read_source(ov, job)
    inputs = _match_ports(job.source.inputs, model.inputs, "input", notes)
    outputs = _match_ports(job.source.outputs, model.outputs, "output", notes)
    if job.recipe.static_batch is not None:
        _fix_batch(ov, model, job.recipe.static_batch)
    elif any(port.get_partial_shape().rank.is_static and port.get_partial_shape().rank.get_length() > 0
             and port.get_partial_shape()[0].is_dynamic for port in model.inputs):
        # NNCF validates each candidate by compiling it as given; OpenVINO's CPU plugin crashes
        # (SIGSEGV) on some dynamic-batch int8 graphs (see _check_dynamic_batch), as it did here on
        # the zoo's EfficientNets. The samples are batch 1 anyway, and the ops it names to keep in
        # float are the same at any batch.
        _fix_batch(ov, model, 1)
    calibration = _samples(job.calibration, job, inputs, model)
    validation = list(enumerate(_samples(evaluation, job, inputs, model)))
    recipe, _ = _from_model(model, job.recipe)  # the settings convert() would choose for this graph

    deadline = time.monotonic() + seconds

    def validate(compiled: Any, items: Any) -> float:
        if time.monotonic() > deadline:
            raise _OutOfTime
        port = compiled.output(outputs[0])
        indices, values = [], []
        for index, sample in items:
            indices.append(index)
            values.append(compiled(sample)[port])
        return float(score(np.concatenate(values), np.asarray(indices)))

    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    options = _nncf_options(recipe, notes)
    advanced = options.pop("advanced_parameters")
    # NNCF ranks with one worker when a compile takes under 1 s, yet compiling is ~3/4 of its
    # ranking time (py-spy, EfficientNetB0 at 32x32: 0.9 s per compile); with two threads, two
    # compiles on 2 cores take 0.49 s each. Ranking scores do not depend on the worker count.
    restorer = AdvancedAccuracyRestorerParameters(num_ranking_workers=max(1, min(2, _cores())))
    stopped = None
    with _nncf_log(logging.INFO) as log:  # accuracy control reports what it reverted only there
        try:
            nncf.quantize_with_accuracy_control(
                model,
                nncf.Dataset(calibration),
                nncf.Dataset(validation, lambda item: item[1]),
                validate,
                max_drop=max_drop,
                drop_type=nncf.DropType.ABSOLUTE,
                subset_size=len(calibration),
                advanced_quantization_parameters=advanced,
                advanced_accuracy_restorer_parameters=restorer,
                **options,
            )
        except _OutOfTime:
            stopped = f"stopped at its {seconds:g} s budget"
        except Exception as exc:
            raise ConversionError(f"NNCF accuracy control failed: {_reason(exc)}") from None
    return AccuracyControl(
        _reverted(log),
        stopped,
        iterations=sum(1 for m in log if _is_revert_step(m)),
        rankings=sum(1 for m in log if m.startswith(("Number of parallel workers to rank", "Re-calculating ranking"))),
    )


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _is_revert_step(message: str) -> bool:
    return message.startswith("Reverted ") and "floating-point precision" in message


def _reverted(log: list[str]) -> list[str]:
    """Op names NNCF reports as reverted to float: its closing report, else every revert step
    (it gives no report when it reverted everything and still missed, or was stopped): a superset
    of its last scope, as a step that made the drop worse is undone without a message."""

    def names(message: str) -> list[str]:
        return [line.strip() for line in message.splitlines()[1:] if line.strip()]

    final = [m for m in log if "were reverted back to the floating-point precision" in m]
    if final:
        return names(final[-1])
    steps = [m for m in log if _is_revert_step(m)]
    return list(dict.fromkeys(name for step in steps for name in names(step)))


@contextmanager
def _nncf_warnings_to(notes: list[str]) -> Iterator[None]:
    """NNCF logs its own fallbacks (e.g. a range estimator it cannot use somewhere) as warnings: keep them."""
    with _nncf_log(logging.WARNING) as messages:
        try:
            yield
        finally:
            # NNCF repeats a fallback once per tensor it applies to: one note each, with the count.
            counts = Counter(messages)
            notes.extend(f"NNCF: {message}" + (f" (x{counts[message]})" if counts[message] > 1 else "")
                         for message in counts)


@contextmanager
def _nncf_log(level: int) -> Iterator[list[str]]:
    """The messages NNCF logs at `level` or above meanwhile."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = _Collect(level)
    logger = logging.getLogger("nncf")
    previous = logger.level
    if logger.getEffectiveLevel() > level:  # a user who quietened NNCF still gets what we parse
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _integer_io(
    ov: Any,
    model: Any,
    recipe: Recipe,
    job: ConvertJob,
    inputs: list[str],
    outputs: list[str],
    out_ranges: dict[str, tuple[float, float]],
    notes: list[str],
) -> tuple[Any, dict[str, Quantization]]:
    """Give the quantized model int8/uint8 inputs and outputs with PrePostProcessor."""
    from openvino import opset13 as ops
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    quantization: dict[str, Quantization] = {}
    ports = {port.get_any_name(): port for port in (*model.inputs, *model.outputs)}

    if recipe.input_dtype in _INT_IO:
        dtype = recipe.input_dtype.value
        for name, spec in zip(inputs, job.source.inputs):
            q = _quantization_from_fq(ports[name], dtype)
            if q is None:
                data = job.calibration.arrays[spec.name]  # type: ignore[union-attr]
                q = quantization_from_range(float(data.min()), float(data.max()), dtype)
                notes.append(
                    f"input '{name}': no NNCF FakeQuantize follows it; {dtype} scale from the calibration range"
                )
            steps = ppp.input(name)
            steps.tensor().set_element_type(_ov_type(ov, dtype))
            # real = (q - zero_point) * scale
            steps.preprocess().convert_element_type(ov.Type.f32).mean(float(q.zero_point)).custom(
                lambda node, scale=q.scale: ops.multiply(node, np.float32(scale)).output(0)
            )
            quantization[name] = q

    if recipe.output_dtype in _INT_IO:
        dtype = recipe.output_dtype.value
        low, high = INT_RANGES[dtype]
        for name in outputs:
            if _after_softmax(ports[name]):
                notes.append(
                    f"WARNING: output '{name}' is a Softmax quantized to {dtype}: small probabilities become 0; "
                    "verify on logits or task metrics, or keep this output float"
                )
            low_seen, high_seen = out_ranges[name]
            q = quantization_from_range(low_seen, high_seen, dtype)
            notes.append(
                f"output '{name}': {dtype} scale covers [{low_seen:.4g}, {high_seen:.4g}], the float model's range "
                "on the calibration data; values beyond it saturate"
            )

            # q = clamp(round(real / scale) + zero_point), rounding half to even like numpy
            def quantize(node: Any, q: Quantization = q, dtype: str = dtype) -> Any:
                x = ops.round(ops.divide(node, np.float32(q.scale)), "half_to_even")
                x = ops.clamp(ops.add(x, np.float32(q.zero_point)), float(low), float(high))
                return ops.convert(x, _ov_type(ov, dtype)).output(0)

            ppp.output(name).postprocess().custom(quantize)
            quantization[name] = q
    try:
        return ppp.build(), quantization
    except Exception as exc:
        raise ConversionError(f"OpenVINO could not add integer inputs/outputs: {_reason(exc)}") from None


def _quantization_from_fq(port: Any, dtype: str) -> Quantization | None:
    """The input's scale/zero point on the grid of the NNCF FakeQuantize that follows it.

    Feeding exactly that grid makes the FakeQuantize a no-op, so integer input adds no error.
    """
    node = _single_consumer(port.get_node())
    while node is not None and node.get_type_name() in _PASSTHROUGH - {"FakeQuantize"}:
        node = _single_consumer(node)
    if node is None or node.get_type_name() != "FakeQuantize":
        return None
    limits = [node.input_value(i).get_node() for i in (1, 2)]
    if any(limit.get_type_name() != "Constant" for limit in limits):
        return None
    low_values, high_values = (limit.get_data() for limit in limits)
    if np.ptp(low_values) or np.ptp(high_values):  # per-channel: no single scale
        return None
    in_low, in_high = float(low_values.flat[0]), float(high_values.flat[0])
    qmin, qmax = INT_RANGES[dtype]
    scale = (in_high - in_low) / (int(node.get_levels()) - 1)
    steps = -in_low / scale
    zero_point = qmin + round(steps)
    if abs(steps - round(steps)) > 1e-3 or not qmin <= zero_point <= qmax or node.get_levels() > 256:
        return None
    return Quantization(scale=float(np.float32(scale)), zero_point=int(zero_point))


def _single_consumer(node: Any) -> Any:
    targets = [t for output in node.outputs() for t in output.get_target_inputs()]
    return targets[0].get_node() if len(targets) == 1 else None


def _after_softmax(port: Any) -> bool:
    node = port.get_node()  # the Result
    node = node.input_value(0).get_node()
    while node.get_type_name() in _PASSTHROUGH:
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Softmax"


def _float16_io(ov: Any, model: Any, recipe: Recipe) -> Any:
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    if recipe.input_dtype is IODtype.FLOAT16:
        for port in model.inputs:
            ppp.input(port.get_any_name()).tensor().set_element_type(ov.Type.f16)
    if recipe.output_dtype is IODtype.FLOAT16:
        for port in model.outputs:
            ppp.output(port.get_any_name()).tensor().set_element_type(ov.Type.f16)
    return ppp.build()


def _ov_type(ov: Any, dtype: str) -> Any:
    return {"int8": ov.Type.i8, "uint8": ov.Type.u8}[dtype]


def _spec(port: Any, quantization: Quantization | None) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    dtype = port.get_element_type().to_dtype().name
    return TensorSpec(name=port.get_any_name(), shape=shape, dtype=dtype, quantization=quantization)


def _reason(exc: BaseException) -> str:
    """The informative line of an OpenVINO/NNCF error (OpenVINO prefixes 'Exception from src/...')."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception from") and not line.startswith("Check '")]
    return (useful or lines or [type(exc).__name__])[-1][:300]
