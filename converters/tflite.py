"""Keras / SavedModel -> .tflite with TFLiteConverter, quantized as the recipe says.

Conversion goes through the SavedModel (`job.exports.saved_model()`): its
serving_default signature keeps the source's input and output names in the .tflite
file, and converting the same SavedModel twice gives byte-identical files.
"""
from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgekit._deps import require
from edgekit.artifact import TensorSpec
from edgekit.benchmarks.tflite_backend import TFLiteBackend
from edgekit.converters.base import Converted, ConvertJob
from edgekit.errors import ConversionError, DataError, InputError
from edgekit.targets.schema import Calibration, IODtype, Precision, QuantDtype, Recipe

# Precisions whose I/O can be integer: TFLite only allows it when activations are quantized.
_INTEGER_IO = (Precision.INT8_STATIC, Precision.INT8_FULL)


def convert(job: ConvertJob) -> Converted:
    recipe = job.recipe
    _check_io_dtypes(recipe)
    if job.source.format == "tflite":
        shutil.copyfile(job.source.path, job.output)  # registry allows fp32 passthrough only
        tools: dict[str, str] = {}
        notes = ["The .tflite source was copied unchanged (fp32 passthrough)."]
    else:
        tf = require("tensorflow")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(job.exports.saved_model()))
        notes = _configure(tf, converter, job)
        try:
            with warnings.catch_warnings():
                # TF's calibrator builds a tf.lite.Interpreter; its deprecation warning is not the user's concern.
                warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")
                flatbuffer = converter.convert()
        except Exception as exc:  # TF raises ConverterError, ValueError, RuntimeError... for a model it cannot convert
            raise ConversionError(
                f"TFLiteConverter could not convert {job.source.label} to {recipe.precision.value}: {_reason(exc)}"
            ) from None
        job.output.write_bytes(flatbuffer)
        tools = {"tensorflow": tf.__version__}

    with TFLiteBackend(job.output) as backend:
        inputs = _in_source_order(backend.inputs(), job.source.inputs, "input")
        outputs = _in_source_order(backend.outputs(), job.source.outputs, "output")
        for name in backend.quantized_softmax_outputs():
            notes.append(
                f"Output '{name}' is a softmax computed in 8 bits (scale 1/256): probabilities below about 0.004 "
                "become 0, so verify on logits or a task metric rather than on these values."
            )
    return Converted(inputs, outputs, tools=tools, notes=notes)


def _configure(tf: Any, converter: Any, job: ConvertJob) -> list[str]:
    """Set the converter up for the recipe's precision; returns notes on what differs from the recipe."""
    recipe, precision = job.recipe, job.recipe.precision
    notes: list[str] = []
    if precision is Precision.FP32:
        return notes
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision is Precision.FP16:
        converter.target_spec.supported_types = [tf.float16]
        return notes
    if not recipe.per_channel:
        converter._experimental_disable_per_channel = True  # no public switch for per-tensor weights
    if recipe.weight_type is not QuantDtype.INT8:
        notes.append(
            f"TFLite quantizes weights to int8 only: int8 was used, not weight_type {recipe.weight_type.value}."
        )
    if precision is Precision.INT8_DYNAMIC:
        return notes

    converter.representative_dataset = _representative(job)
    if recipe.calibration is not Calibration.MINMAX:
        notes.append(
            f"Calibration '{recipe.calibration.value}' was requested, but TFLiteConverter calibrates with "
            "min/max ranges only, so min/max was used."
        )
    if precision is Precision.INT16X8:
        ops = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        converter.target_spec.supported_ops = [ops]
        return notes
    if recipe.activation_type is not QuantDtype.INT8:
        notes.append(
            "TFLite quantizes activations to int8 only: int8 was used, not activation_type "
            f"{recipe.activation_type.value}."
        )
    if precision is Precision.INT8_FULL:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_types = {IODtype.FLOAT32: tf.float32, IODtype.INT8: tf.int8, IODtype.UINT8: tf.uint8}
    converter.inference_input_type = io_types[recipe.input_dtype]
    converter.inference_output_type = io_types[recipe.output_dtype]
    return notes


def _check_io_dtypes(recipe: Recipe) -> None:
    for which, dtype in (("input_dtype", recipe.input_dtype), ("output_dtype", recipe.output_dtype)):
        if dtype is IODtype.FLOAT32:
            continue
        if dtype is IODtype.FLOAT16:
            raise InputError(f"tflite {which} float16 is not available (TFLite I/O is float32, int8 or uint8)")
        if recipe.precision not in _INTEGER_IO:
            raise InputError(
                f"tflite {which} {dtype.value} conflicts with precision {recipe.precision.value} "
                "(integer I/O needs int8-static or int8-full; other precisions keep float32 I/O)"
            )


def _representative(job: ConvertJob) -> Any:
    """A generator function of single samples (batch 1) keyed by the signature's input names."""
    dataset = job.calibration
    if dataset is None:
        raise DataError(f"{job.recipe.precision.value} needs calibration data for target '{job.target}'")
    missing = [spec.name for spec in job.source.inputs if spec.name not in dataset.arrays]
    if missing:
        raise DataError(
            f"{dataset.origin}: no calibration data for input(s) {', '.join(missing)} "
            f"(the data has: {', '.join(dataset.arrays)})"
        )
    names = [spec.name for spec in job.source.inputs]

    def samples() -> Iterator[dict[str, np.ndarray]]:
        for batch in dataset.batches(1):
            yield {name: np.asarray(batch[name], dtype=np.float32) for name in names}

    return samples


def _in_source_order(specs: list[TensorSpec], source: list[TensorSpec], kind: str) -> list[TensorSpec]:
    """The artifact's specs in the source's order, matched by name (the signature keeps them)."""
    by_name = {spec.name: spec for spec in specs}
    if all(s.name in by_name for s in source) and len(specs) == len(source):
        return [by_name[s.name] for s in source]
    if len(specs) == len(source) == 1:
        return specs  # one tensor: nothing to order
    raise ConversionError(
        f"cannot match the .tflite {kind}s ({', '.join(by_name)}) to the source's "
        f"({', '.join(s.name for s in source)}) by name"
    )


def _reason(exc: BaseException) -> str:
    """The first meaningful line of a TF error: the first MLIR 'error:', without its loc(...) prefix."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            return _strip_location(line.split("error:", 1)[1].strip())[:300]
    return lines[0][:300] if lines else type(exc).__name__


def _strip_location(text: str) -> str:
    """Drop an MLIR location prefix: `loc(callsite(...)): 'tf.Erf' op is ...` -> `'tf.Erf' op is ...`."""
    if not text.startswith("loc("):
        return text
    depth = 0
    for position, char in enumerate(text[3:], start=3):  # from the "(" of "loc("
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return text[position + 1 :].lstrip(": ")
    return text
