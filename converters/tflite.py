"""Keras / SavedModel -> .tflite with TFLiteConverter, quantized as the recipe says.

Conversion goes through the SavedModel (`job.exports.saved_model()`): its
serving_default signature keeps the source's input and output names in the .tflite
file, and converting the same SavedModel twice gives byte-identical files. With
static_batch the signature is traced at that batch size and converted as a
concrete function, under the same names.
"""
from __future__ import annotations

import csv
import io
import itertools
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._deps import require
from edgekit.artifact import TensorSpec
from edgekit.benchmarks.tflite_backend import TFLiteBackend
from edgekit.converters.base import Converted, ConvertJob, LayerError
from edgekit.errors import ConversionError, DataError, InputError, did_you_mean
from edgekit.targets.schema import Calibration, Format, IODtype, Precision, QuantDtype, Recipe

# Precisions whose I/O can be integer: TFLite only allows it when activations are quantized.
_INTEGER_IO = (Precision.INT8_STATIC, Precision.INT8_FULL)


def convert(job: ConvertJob) -> Converted:
    recipe = job.recipe
    _check_io_dtypes(recipe)
    if job.source.format == "tflite":
        if recipe.static_batch is not None:
            raise ConversionError(
                f"static_batch {recipe.static_batch}: a .tflite source is copied unchanged and cannot be re-batched; "
                "convert from the Keras, SavedModel or ONNX model instead, or remove static_batch"
            )
        shutil.copyfile(job.source.path, job.output)  # registry allows fp32 passthrough only
        tools: dict[str, str] = {}
        notes = ["The .tflite source was copied unchanged (fp32 passthrough)."]
    else:
        tf = require("tensorflow")
        try:
            converter = (_cached_converter(job) if _via_debugger(job) else None) or _converter(tf, job)
            flatbuffer, notes = _run_converter(tf, converter, job)
        except _TensorListError as exc:
            flatbuffer, notes = _run_converter(tf, _recurrent_converter(tf, job, exc), job)
            notes.insert(0, _RECURRENT_NOTE)
            if recipe.precision.needs_calibration:
                notes.insert(1, _UNROLLED_NOTE)
        job.output.write_bytes(flatbuffer)
        tools = {"tensorflow": tf.__version__}

    choice = None
    with TFLiteBackend(job.output) as backend:
        inputs = _in_source_order(backend.inputs(), job.source.inputs, "input")
        outputs = _in_source_order(backend.outputs(), job.source.outputs, "output")
        if recipe.precision.needs_calibration:
            choice = _traits(backend.interpreter, recipe)
        for name in backend.quantized_softmax_outputs():
            notes.append(
                f"Output '{name}' is a softmax computed in 8 bits (scale 1/256): probabilities below about 0.004 "
                "become 0, so verify on logits or a task metric rather than on these values."
            )
    return Converted(inputs, outputs, tools=tools, notes=notes, traits=choice)


def _traits(interpreter: Any, recipe: Recipe) -> dict:
    """The converted graph's traits; TFLiteConverter has no setting to choose for them (see traits.choose)."""
    from edgekit.converters import traits

    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    found = traits.find(traits.tflite_nodes(interpreter._get_ops_details(), names))
    chosen = traits.choose(found, Format.TFLITE, recipe, float_ops_allowed=False)
    return {**chosen.to_dict(), "line": chosen.line()}


_UNROLLED_NOTE = (
    "recurrent layers unrolled over their time steps for int8 (unroll=True, same weights): TF's int8 calibrator "
    "crashes on the While loop they otherwise lower to"
)


class _TensorListError(ConversionError):
    """TFLiteConverter could not lower TensorList ops (Keras 3 recurrent layers at a dynamic batch)."""


_RECURRENT_NOTE = (
    "fixed batch of 1: TFLite lowers the recurrent layers' TensorList ops only at a static batch, so the "
    "Keras model was traced at batch 1 (inputs and outputs have batch 1; run one sample per call)"
)


def _run_converter(tf: Any, converter: Any, job: ConvertJob) -> tuple[bytes, list[str]]:
    """Configure `converter` for the recipe and convert; returns the flatbuffer and notes."""
    recipe = job.recipe
    notes = _configure(tf, converter, job)
    float_nodes = _float_nodes(recipe)
    try:
        with warnings.catch_warnings():
            # TF's calibrator builds a tf.lite.Interpreter; its deprecation warning is not the user's concern.
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")
            if float_nodes or _via_debugger(job):
                return _with_float_nodes(tf, converter, job, float_nodes, notes), notes
            from edgekit.converters.tflite_calibration import reused_calibration

            data = job.calibration if recipe.precision.needs_calibration else None
            with reused_calibration(data, notes, f"{job.target}/tflite"):
                return converter.convert(), notes
    except ConversionError:
        raise
    except Exception as exc:  # TF raises ConverterError, ValueError, RuntimeError... for a model it cannot convert
        reason = _reason(exc)
        message = f"TFLiteConverter could not convert {job.source.label} to {recipe.precision.value}: {reason}"
        if "TensorList" in str(exc):
            raise _TensorListError(message) from None
        if "flex op" in str(exc).lower() or "select tf ops" in str(exc).lower():
            message += (" (the model needs Select TF ops / Flex, which edgekit does not enable: the LiteRT and "
                        "tf.lite Python interpreters cannot run Flex ops, so the artifact could not be verified)")
        raise ConversionError(message) from None


def _recurrent_converter(tf: Any, job: ConvertJob, failure: ConversionError) -> Any:
    """A converter for the Keras model traced at batch 1, where TensorList ops have static shapes.

    int8 calibration of these models crashed TF's calibrator (a segfault, not an exception), so
    calibrated precisions are refused here with the reason rather than tried.
    """
    op = "TensorListReserve/While (recurrent layers)"
    if job.source.format != "keras":
        raise ConversionError(
            f"{failure}; a {job.source.format} source cannot be re-traced at a static batch: convert from the "
            "Keras model (edgekit traces it at batch 1)"
        )
    batch = job.recipe.static_batch or 1
    if batch != 1:
        raise ConversionError(f"{failure}; recurrent layers convert at batch 1 only, not static_batch {batch}")
    if job.recipe.precision.needs_calibration:
        # TF's int8 calibrator crashes (segfault) on the While loop of the batch-1 graph; the same
        # layers unrolled over their time steps are plain ops it calibrates like any other.
        try:
            saved_model = job.exports.unrolled_saved_model(batch=1)
        except ConversionError as exc:
            raise ConversionError(
                f"TFLiteConverter: {job.recipe.precision.value} of {op} is not supported: TF's int8 calibrator crashes "
                f"(segfault) on the recurrent loop, and {exc}; use fp32, fp16 or int8-dynamic for TFLite, or "
                "ONNX/OpenVINO int8"
            ) from None
        return tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    saved_model = job.exports.saved_model(batch=1)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    return converter


def _converter(tf: Any, job: ConvertJob) -> Any:
    """A TFLiteConverter for the source's SavedModel; with static_batch, for its serving signature
    traced at that batch size (NPUs compile static shapes). Both keep the signature's names."""
    saved_model = str(job.exports.saved_model())
    batch = job.recipe.static_batch
    if batch is None:
        return tf.lite.TFLiteConverter.from_saved_model(saved_model)
    loaded = tf.saved_model.load(saved_model)  # the converter keeps it alive as the trackable
    if "serving_default" not in loaded.signatures:
        raise ConversionError(f"{job.source.label} has no serving_default signature to fix the batch of")
    signature = loaded.signatures["serving_default"]
    _, kwargs = signature.structured_input_signature
    names = sorted(kwargs)  # the order load_source gives a SavedModel's inputs
    specs = []
    for name in names:
        shape = kwargs[name].shape
        if shape.rank is None or shape.rank == 0:
            raise ConversionError(f"input '{name}' has no batch dimension to fix at {batch}")
        if shape[0] is not None and shape[0] != batch:
            raise ConversionError(
                f"input '{name}' has a fixed batch of {shape[0]}; static_batch {batch} cannot change it"
            )
        specs.append(tf.TensorSpec([batch, *shape[1:]], kwargs[name].dtype, name=name))
    # A signature takes keywords only; input_signature needs positions. The function returns the
    # signature's dict, so the .tflite signature keeps the output names (output_0, ...).
    function = tf.function(lambda *args: signature(**dict(zip(names, args))), input_signature=specs)
    try:
        concrete = function.get_concrete_function()
    except Exception as exc:  # TF raises ValueError, InvalidArgumentError... for a graph it cannot trace
        reason = _reason(exc)
        raise ConversionError(f"TensorFlow could not trace {job.source.label} at batch {batch}: {reason}") from None
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], loaded)


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
    if recipe.reduce_range:
        notes.append("reduce_range not applied: the TFLite converter has no 7-bit weight option")
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


def _float_nodes(recipe: Recipe) -> list[str]:
    """The recipe's float_nodes where they apply: fp32/fp16/int8-dynamic have no quantized activations."""
    if not recipe.float_nodes or not recipe.precision.needs_calibration:
        return []
    if recipe.precision is Precision.INT16X8:
        raise ConversionError("TFLite keeps float_nodes in int8 models only; int16x8 goes through another quantizer")
    if recipe.input_dtype is not IODtype.FLOAT32 or recipe.output_dtype is not IODtype.FLOAT32:
        raise ConversionError(
            f"TFLite keeps float_nodes only with float32 inputs and outputs (QuantizationDebugger's models), "
            f"not input_dtype {recipe.input_dtype.value} / output_dtype {recipe.output_dtype.value}"
        )
    return list(recipe.float_nodes)


# The last QuantizationDebugger this process built, by what its calibrated model depends on. A
# repair asks for the per-layer ranking and then for several sets of float layers over one recipe
# and one calibration set: TF's documented route is one debugger whose options change, not a new
# float conversion and calibration per candidate. Same calibrated model, same mlir_quantize call:
# the same bytes. The recipe's static_batch tells the traced exports apart; a recurrent model's
# batch-1 export is the one its job always falls back to.
_DEBUGGER: dict[tuple, tuple[Any, "_Graph"]] = {}
_FLOAT_GRAPH: dict[tuple, bytes] = {}  # the float graph the cached debugger calibrated, by (source, static_batch)


def _debugger_key(job: ConvertJob, samples: int) -> tuple:
    from edgekit.converters.tflite_calibration import data_digest

    recipe = job.recipe.model_copy(update={"float_nodes": ()}).model_dump_json()
    return job.source.sha256, recipe, data_digest(job.calibration), samples


def _via_debugger(job: ConvertJob) -> bool:
    """Whether the job quantizes through the QuantizationDebugger: it keeps float nodes, or it is a
    search candidate of a float-I/O int8 recipe. The debugger's mlir_quantize is the converter's own
    quantization step without its post-processing: on EfficientNetB0 the same outputs to the bit
    and the same signature, 2.9 kB less metadata. Every candidate of one search then shares one
    calibrated model, and the per-layer ranking reuses it."""
    recipe = job.recipe
    if recipe.float_nodes:
        return recipe.precision.needs_calibration
    # TF 2.21's converter calls mlir_quantize with fully_quantize off for int8-full too (the
    # debugger's default): with float I/O the two routes differ only in post-processing.
    return (job.candidate and recipe.precision in (Precision.INT8_STATIC, Precision.INT8_FULL)
            and recipe.input_dtype is IODtype.FLOAT32 and recipe.output_dtype is IODtype.FLOAT32)


def _cached_converter(job: ConvertJob, samples: int = 32) -> Any | None:
    """The converter of this process's debugger for the job's source, recipe and data: a candidate
    or the ranking then skips loading the SavedModel again (~3-4 s on EfficientNetB0)."""
    if job.calibration is None:
        return None
    cached = _DEBUGGER.get(_debugger_key(job, samples))
    return cached[0].converter if cached else None


def _debugger(tf: Any, converter: Any, job: ConvertJob, options: Any, samples: int = 32,
              notes: list[str] | None = None, instrumented: bool = True) -> tuple[Any, _Graph]:
    """TFLite's QuantizationDebugger over a configured converter, and the calibrated model's graph.

    The debugger calibrates once (reusing this process's calibration of the same float graph on the
    same data, tflite_calibration.py), then measures each op's quantization error or quantizes with
    some nodes left in float; a later call for the same source, recipe and data sets its options.
    `instrumented=False`: the caller wants only get_nondebug_quantized_model().
    """
    from edgekit.converters.tflite_calibration import last_float_model, reused_calibration

    key = _debugger_key(job, samples)
    if key in _DEBUGGER:
        debugger, graph = _DEBUGGER[key]
        if instrumented:
            debugger.options = options
        else:
            # The public setter also rebuilds the instrumented (NumericVerify) model and its
            # interpreter, ~1 s on EfficientNetB0 that a candidate never uses;
            # get_nondebug_quantized_model reads only these options and the calibrated model.
            debugger._debug_options = options
        if notes is not None:
            notes.append("calibration reused from the repair's earlier candidates (one QuantizationDebugger, "
                         "options set again); only the quantization step ran")
        return debugger, graph
    representative = _representative(job)
    order: list[str] = []  # source input names in the interpreter's input order, known after calibration

    def debug_dataset() -> Iterator[list[np.ndarray]]:  # the debugger feeds lists, not names
        for sample in itertools.islice(representative(), samples):
            yield [sample[name] for name in order]

    with reused_calibration(job.calibration, notes if notes is not None else [], f"{job.target}/tflite"):
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=debug_dataset, debug_options=options
        )
    graph = _graph(debugger.calibrated_model)
    order += graph.inputs
    _DEBUGGER.clear()  # one source and recipe at a time: the last one is the one a repair reuses
    _DEBUGGER[key] = (debugger, graph)
    _FLOAT_GRAPH.clear()
    float_graph = last_float_model()
    if float_graph is not None:
        _FLOAT_GRAPH[(job.source.sha256, job.recipe.static_batch)] = float_graph
    return debugger, graph


def float_reference(job: ConvertJob) -> Converted | None:
    """The float graph this process's QuantizationDebugger calibrated for job's source, written to
    job.output: the fp32 conversion op for op (tflite_calibration.last_float_model), so a repair
    times it as its fp32 reference without converting again. None when no debugger ran."""
    float_graph = _FLOAT_GRAPH.get((job.source.sha256, job.recipe.static_batch))
    if float_graph is None:
        return None
    job.output.write_bytes(float_graph)
    with TFLiteBackend(job.output) as backend:
        inputs = _in_source_order(backend.inputs(), job.source.inputs, "input")
        outputs = _in_source_order(backend.outputs(), job.source.outputs, "output")
    return Converted(inputs, outputs, notes=[
        "fp32 reference: the float graph TFLiteConverter calibrated for the repair (the fp32 conversion op for op), "
        "not converted again"])


def _with_float_nodes(tf: Any, converter: Any, job: ConvertJob, names: list[str], notes: list[str]) -> bytes:
    """The quantized model with `names` (op output tensors) left in float, via QuantizationDebugger's
    denylisted_nodes: TFLiteConverter itself has no switch for it."""
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names)
    debugger, graph = _debugger(tf, converter, job, options, notes=notes, instrumented=False)
    unknown = [name for name in names if name not in graph.consumers]
    if unknown:
        raise ConversionError(
            f"float_nodes {', '.join(map(repr, unknown))} are not op outputs of the TFLite model"
            f"{did_you_mean(unknown[0], graph.consumers)}"
        )
    if names:
        notes.append(f"kept in float ({len(names)} op(s), QuantizationDebugger denylisted_nodes): {', '.join(names)}")
    else:
        notes.append("quantized through TFLite's QuantizationDebugger (the search's shared calibrated model)")
    return debugger.get_nondebug_quantized_model()


def layer_errors(job: ConvertJob, error: Callable[[np.ndarray, np.ndarray], float]) -> list[LayerError]:
    """Each quantized op's output error, measured by TFLite's QuantizationDebugger on calibration samples.

    The debugger runs every quantized op next to its float version on the same input and hands
    both outputs to `error(float, dequantized)`. Keeping an activation in float means its producer
    and its consumers run in float: a float op's output is otherwise quantized again for the next op.
    """
    tf = require("tensorflow")
    converter = _cached_converter(job) or _converter(tf, job)
    _configure(tf, converter, job)

    def compare(float_values: np.ndarray, quantized: np.ndarray, scale: float, zero_point: int) -> float:
        return error(float_values, (quantized.astype(np.float32) - zero_point) * np.float32(scale))

    options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={"error": compare})
    dump = io.StringIO()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")
            debugger, graph = _debugger(tf, converter, job, options)
            debugger.run()
        debugger.layer_statistics_dump(dump)  # the documented way to name each op's output tensor
    except DataError:
        raise
    except Exception as exc:  # TF raises many types
        reason = _reason(exc)
        raise ConversionError(f"TFLite's QuantizationDebugger could not measure {job.source.label}: {reason}") from None
    dump.seek(0)
    result = []
    for row in csv.DictReader(dump):
        tensor = row["tensor_name"]
        result.append(LayerError(tensor, float(row["error"]), (tensor, *graph.consumers.get(tensor, []))))
    return result


@dataclass
class _Graph:
    inputs: list[str]  # source input names, in the interpreter's input order
    consumers: dict[str, list[str]]  # op output tensor -> output tensors of the ops that read it


def _graph(model: bytes) -> _Graph:
    """The op graph of a .tflite model, as far as float_nodes and the debugger need it."""
    with tempfile.TemporaryDirectory(prefix="edgekit-tflite-") as scratch:
        path = Path(scratch) / "model.tflite"
        path.write_bytes(model)
        with TFLiteBackend(path) as backend:
            interpreter = backend.interpreter
            names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
            ops = interpreter._get_ops_details()  # no public graph API; edgekit inspect reads it too
            runner = interpreter.get_signature_runner()  # the SavedModel's serving_default
            by_index = {d["index"]: name for name, d in runner.get_input_details().items()}
            inputs = [by_index[d["index"]] for d in interpreter.get_input_details()]
    consumers: dict[str, list[str]] = {}
    for op in ops:
        produced = [names[i] for i in op["outputs"] if i >= 0]
        for name in produced:
            consumers.setdefault(name, [])
        for index in op["inputs"]:
            if index in names and names[index] in consumers:
                consumers[names[index]].extend(produced)
    return _Graph(inputs, consumers)


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
