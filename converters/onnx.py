"""ONNX artifacts: an fp32 export by tf2onnx, quantized by ONNX Runtime's own tools.

tf2onnx makes the fp32 graph (from a SavedModel, or from a .tflite file);
`onnxruntime.quantization` makes int8 and int16 (QDQ format) and dynamic int8;
`onnxconverter_common.float16` makes fp16. The only edits made here by hand are
renames (stable names, stable bytes) and, for integer I/O, removing the
QuantizeLinear after each input and the DequantizeLinear before each output.
"""
from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import iocast
from edgekit._deps import require, version_of
from edgekit.artifact import Quantization, TensorSpec
from edgekit.converters.base import ConvertJob, Converted, LayerError
from edgekit.converters.exports import Exports
from edgekit.converters.source import SourceModel
from edgekit.errors import ConversionError, DataError, did_you_mean
from edgekit.targets.schema import Calibration, Format, IODtype, Precision, QuantDtype, Recipe

# Opset 17: tf2onnx 1.17 writes it for every op we meet, and onnxruntime and OpenVINO
# read it. quantize_static raises a model to opset 21 itself for int16 Q/DQ nodes.
OPSET = 17

_INTEGER_IO = (IODtype.INT8, IODtype.UINT8)
# Ops whose bodies are subgraphs: float16 conversion keeps them in fp32 (see _to_fp16).
_CONTROL_FLOW = frozenset({"Loop", "Scan", "If"})
# tf2onnx's generated names end in a counter: `Transpose__35`, `const_fold_opt__43`, `unk__44`.
_GENERATED = re.compile(r"__(\d+)")


def export_fp32(exports: Exports, dest: Path) -> None:
    """Write the source as fp32 ONNX, with its input and output names and layout (NHWC stays NHWC)."""
    source = exports.source
    if source.format not in ("keras", "saved_model", "tflite"):
        raise ConversionError(f"no ONNX export from a {source.format} source")
    onnx = require("onnx")
    tf2onnx = require("tf2onnx")
    # A Keras model goes through its SavedModel: tf2onnx.convert.from_keras fails on
    # Keras 3 models loaded from .keras files (STACK.md), and other converters share it.
    saved_model = exports.saved_model() if source.format != "tflite" else None
    if source.format == "keras" and _grouped_convolutions(source.handle):
        saved_model = exports.depthwise_saved_model()
    try:
        if saved_model is None:
            with warnings.catch_warnings():  # tf2onnx reads shapes with it; not the user's to migrate
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
                model, _ = tf2onnx.convert.from_tflite(str(source.path), opset=OPSET)
        else:
            model = _from_saved_model(saved_model, tf2onnx)
    except Exception as exc:  # TensorFlow and tf2onnx raise many types
        raise ConversionError(f"tf2onnx could not convert {source.label}: {_first_line(exc)}") from None
    _stable_names(model, source)
    _check(model, f"tf2onnx's output for {source.label}")
    onnx.save(model, str(dest))


def convert(job: ConvertJob) -> Converted:
    """Write job.output as ONNX in job.recipe's precision, starting from the fp32 export."""
    onnx = require("onnx")
    recipe = job.recipe
    _check_io_dtypes(recipe)
    fp32 = job.exports.onnx_fp32()
    tools = {"onnx": version_of("onnx") or ""}
    if job.source.format != "onnx":
        tools["tf2onnx"] = version_of("tf2onnx") or ""
    if job.source.format in ("keras", "saved_model"):  # tf2onnx traced it with TensorFlow
        tools["tensorflow"] = version_of("tensorflow") or version_of("tensorflow-cpu") or ""
    notes: list[str] = []
    choice: dict = {}  # traits and chosen settings of a static int8 recipe
    quantization: dict[str, Quantization] = {}
    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-") as scratch:
        if recipe.static_batch is not None:  # the shared fp32 export stays as it is; this copy is the recipe's
            fp32 = _fixed_batch(fp32, recipe.static_batch, Path(scratch) / "fixed.onnx")
            tools["onnxruntime"] = version_of("onnxruntime") or ""
        if recipe.precision is Precision.FP32:
            model = onnx.load(str(fp32))  # also pulls in external data, so the artifact is one file
        elif recipe.precision is Precision.FP16:
            tools["onnxconverter-common"] = version_of("onnxconverter-common") or ""
            model = _to_fp16(onnx.load(str(fp32)), recipe, notes)
        else:
            tools["onnxruntime"] = version_of("onnxruntime") or ""
            model = _quantize(job, fp32, Path(scratch), notes, choice)
            if recipe.input_dtype in _INTEGER_IO or recipe.output_dtype in _INTEGER_IO:
                quantization = _integer_io(model, recipe)
            if recipe.precision in (Precision.INT8_FULL, Precision.INT16X8) and (ops := _float_ops(model)):
                notes.append(f"left in float by onnxruntime's quantizer: {', '.join(ops)}")
            notes += _softmax_notes(model)
        _check(model, f"the {recipe.precision.value} ONNX model")
        _save(model, job.output)
    return Converted(
        inputs=_specs(model.graph.input, job.source.inputs, quantization),
        outputs=_specs(model.graph.output, job.source.outputs, quantization),
        tools=tools,
        notes=notes,
        traits=choice or None,
    )


# --- fp32 export -------------------------------------------------------------


def _grouped_convolutions(model: Any) -> bool:
    """Whether a Keras model has Conv layers with groups > 1 (ConvNeXt's 7x7 depthwise convs).

    Keras's TensorFlow backend runs those through a tf.function with jit_compile=True ("grouped
    convolutions are broken on CPU without XLA"); tf2onnx cannot inline an XLA function and
    leaves a StatefulPartitionedCall node no ONNX runtime knows. Exports.depthwise_saved_model
    writes the same model with each such layer as a DepthwiseConv2D instead.
    """
    from edgekit.converters.exports import walk_layers

    return any(getattr(layer, "groups", 1) > 1 for layer in walk_layers(model))


def _from_saved_model(path: Path, tf2onnx: Any) -> Any:
    tf = require("tensorflow")
    loaded = tf.saved_model.load(str(path))  # keeps the signature's variables alive
    signature = loaded.signatures["serving_default"]
    _, kwargs = signature.structured_input_signature
    names = sorted(kwargs)  # the order load_source gives a SavedModel's inputs
    specs = [tf.TensorSpec(kwargs[n].shape, kwargs[n].dtype, name=n) for n in names]
    # tf2onnx traces a function of positional tensors; a signature takes keywords only.
    # The function returns the signature's dict, so outputs keep the signature's names.
    function = tf.function(lambda *args: signature(**dict(zip(names, args))), input_signature=specs)
    model, _ = tf2onnx.convert.from_function(
        function, specs, opset=OPSET, custom_op_handlers={"Erfc": (_erfc_as_one_minus_erf, [])}
    )
    _captures_to_initializers(model, function.get_concrete_function(*specs))
    return model


def _captures_to_initializers(model: Any, concrete: Any) -> None:
    """Turn the tensors a traced function captured into constants of the graph.

    Keras layers that hold plain tensors rather than variables (Normalization's mean and
    variance, a positional `keras.ops.arange`) are captured by the traced function, and
    tf2onnx's from_function lists every captured placeholder as a graph input: EfficientNet
    got 3 inputs for 1. Their values are known, so they become initializers.
    """
    numpy_helper = require("onnx").numpy_helper
    captured = {
        placeholder.name: value
        for value, placeholder in zip(concrete.captured_inputs, concrete.graph.internal_captures)
        if value.dtype != require("tensorflow").resource
    }
    graph = model.graph
    for value in list(graph.input):
        if value.name in captured:
            graph.input.remove(value)
            graph.initializer.append(numpy_helper.from_array(np.asarray(captured[value.name]), value.name))


def _erfc_as_one_minus_erf(ctx: Any, node: Any, name: str, args: Any) -> None:
    """tf2onnx handler for TF's Erfc (Keras 3's exact GELU), which tf2onnx 1.17 has no handler
    for: erfc(x) = 1 - erf(x) with ONNX's Erf and Sub."""
    helper = require("onnx").helper
    node.type = "Erf"
    dtype = ctx.get_dtype(node.output[0])
    one = ctx.make_const(f"{node.name}__one", np.array(1, dtype=helper.tensor_dtype_to_np_dtype(dtype)))
    sub = ctx.insert_new_node_on_output("Sub", node.output[0], name=f"{node.name}__erfc",
                                        inputs=[one.output[0], node.output[0]])
    ctx.set_dtype(sub.output[0], dtype)
    ctx.copy_shape(node.output[0], sub.output[0])


def _stable_names(model: Any, source: SourceModel) -> None:
    """Name graph inputs and outputs as the source does, and rename tf2onnx's generated names.

    tf2onnx numbers generated names (`Transpose__35`, `const_starts__9`) from a
    process-wide counter, and which of two merged duplicates keeps its name depends
    on those numbers, so the same model converted twice in one process gave different
    bytes. Generated names become `<op type>__<n>` in node order, which depends on the
    model only; names from the source (layer scopes) stay.
    """
    graph = model.graph
    renames: dict[str, str] = {}
    for values, specs in ((graph.input, source.inputs), (graph.output, source.outputs)):
        names = [v.name for v in values]
        if len(names) != len(specs):
            raise ConversionError(f"tf2onnx made {len(names)} inputs or outputs where the source has {len(specs)}")
        if set(names) != {s.name for s in specs}:  # e.g. TFLite tensor names: match by position
            renames.update({name: spec.name for name, spec in zip(names, specs)})
    counter = itertools.count(1)

    def rename(name: str, stem: str) -> str:
        if name not in renames and _GENERATED.search(name):
            renames[name] = f"{stem}__{next(counter)}"
        return renames.get(name, name)

    _rename_graph(graph, rename)
    graph.doc_string = f"converted from {source.format} by tf2onnx"  # was a TF function name with a counter


def _rename_graph(graph: Any, rename: Callable[[str, str], str]) -> None:
    constants = {t.name for t in graph.initializer}
    for node in graph.node:  # first: node order is stable, so the numbers are too
        _replace(node.input, [rename(n, "const" if n in constants else "tensor") for n in node.input])
        node.name = rename(node.name, node.op_type)
        _replace(node.output, [rename(n, node.op_type) for n in node.output])
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.HasField("g") else attribute.graphs:
                _rename_graph(subgraph, rename)
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        value.name = rename(value.name, "const")
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.dim_param = rename(dim.dim_param, "dim")
    graph.initializer.sort(key=lambda tensor: tensor.name)
    graph.value_info.sort(key=lambda value: value.name)


def _fixed_batch(fp32: Path, batch: int, dest: Path) -> Path:
    """A copy of the fp32 model at `dest` whose inputs have batch size `batch` (NPUs compile static
    shapes), with onnxruntime's make_dim_param_fixed and fix_output_shapes; shapes inferred again."""
    onnx = require("onnx")
    utils = require("onnxruntime.tools.onnx_model_utils")
    model = onnx.load(str(fp32))
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    for value in graph.input:
        if value.name in weights:
            continue
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise ConversionError(f"input '{value.name}' has no batch dimension to fix at {batch}")
        first = dims[0]
        if first.HasField("dim_param"):
            utils.make_dim_param_fixed(graph, first.dim_param, batch)
        elif not first.HasField("dim_value"):
            first.dim_value = batch
        elif first.dim_value != batch:
            raise ConversionError(
                f"input '{value.name}' has a fixed batch of {first.dim_value}; static_batch {batch} cannot change it"
            )
    del graph.value_info[:]  # tf2onnx's intermediate shapes still say dynamic; inference redoes them
    try:
        model = onnx.shape_inference.infer_shapes(model)
        utils.fix_output_shapes(model)
    except Exception as exc:
        raise ConversionError(f"ONNX shape inference failed with batch {batch}: {_first_line(exc)}") from None
    onnx.save(model, str(dest))
    return dest


# --- fp16 --------------------------------------------------------------------


def _to_fp16(model: Any, recipe: Recipe, notes: list[str]) -> Any:
    float16 = require("onnxconverter_common.float16")
    # keep_io_types leaves float32 inputs and outputs with Casts inside the graph.
    keep_io_types = recipe.input_dtype is IODtype.FLOAT32
    # The tool converts a Loop's body like the main graph and leaves the Loop's carried values
    # mistyped (onnxruntime: "Graph attribute inferencing failed"); blocked ops keep their
    # bodies in fp32, with Casts around them.
    control_flow = sorted({node.op_type for node in model.graph.node} & _CONTROL_FLOW)
    block = [*float16.DEFAULT_OP_BLOCK_LIST, *control_flow]
    original = model
    if control_flow:
        model = type(model)()
        model.CopyFrom(original)  # the tool converts in place; the fp32 weights are needed after
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # The tool clamps constants to +-1e4 by default; 65504 is float16's real limit.
            model = float16.convert_float_to_float16(
                model, max_finite_val=65504.0, keep_io_types=keep_io_types, op_block_list=block
            )
    except Exception as exc:
        raise ConversionError(f"onnxconverter-common could not convert to float16: {_first_line(exc)}") from None
    if control_flow:
        _fp32_bodies(original, model)
        count = sum(node.op_type in _CONTROL_FLOW for node in model.graph.node)
        notes.append(
            f"{', '.join(control_flow)} ({count} node(s), e.g. a recurrent layer's loop) kept in fp32 with their "
            "bodies (onnxconverter-common op_block_list): the rest of the graph is fp16"
        )
    clamped = [str(w.message) for w in caught if "truncated" in str(w.message)]
    if clamped:  # one warning per clamped tensor and direction
        notes.append(f"float16 clamped constants outside its range {len(clamped)} time(s), e.g. {clamped[0]}")
    return model


def _fp32_bodies(original: Any, model: Any) -> None:
    """Give the fp32 bodies of blocked control-flow nodes fp32 copies of the outer tensors they read.

    A Loop body may read tensors of the main graph by name (outer scope), not through the
    Loop's inputs; float16 conversion turned those into fp16 while the body still expects
    fp32. Each such weight gets an fp32 copy from the original model, each activation a
    Cast to float before the Loop, and the body reads those.
    """
    onnx = require("onnx")
    float32, float16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    graph = model.graph
    weights32 = {t.name: t for t in original.graph.initializer if t.data_type == float32}
    weights = {t.name: t for t in graph.initializer}
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]}
    made: dict[str, str] = {}
    for node in [n for n in graph.node if n.op_type in _CONTROL_FLOW]:
        for body in _subgraphs(node):
            renames = {}
            for name in _outer_names(body):
                fp32_name = made.get(name) or f"{name}__fp32"
                if name not in made:
                    if name in weights and weights[name].data_type == float16 and name in weights32:
                        copy = type(weights32[name])()
                        copy.CopyFrom(weights32[name])
                        copy.name = fp32_name
                        graph.initializer.append(copy)
                    elif name not in weights and types.get(name) == float16:
                        cast = onnx.helper.make_node("Cast", [name], [fp32_name], name=f"{fp32_name}_cast", to=float32)
                        graph.node.insert(list(graph.node).index(node), cast)
                    else:
                        continue
                    made[name] = fp32_name
                renames[name] = fp32_name
            _rename_uses(body, renames)


def _sort_with_subgraph_reads(graph: Any) -> None:
    """Order nodes so that each comes after the producers of what it reads, its subgraphs' outer
    reads included. onnxruntime's quantizer sorts by explicit inputs only, and put a Loop before
    the Transpose its body reads (onnx.checker: "Nodes in a graph must be topologically sorted")."""
    nodes = list(graph.node)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output}
    needs = []
    for node in nodes:
        reads = set(node.input) | {name for sub in _subgraphs(node) for name in _outer_names(sub)}
        needs.append({producer[name] for name in reads if name in producer})
    waiting = [len(n) for n in needs]
    users: dict[int, list[int]] = {}
    for index, dependencies in enumerate(needs):
        for dependency in dependencies:
            users.setdefault(dependency, []).append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)  # smallest index first: the original order wherever it is already valid
    placed: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        placed.append(index)
        for user in users.get(index, []):
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    if len(placed) != len(nodes):
        return  # a cycle: left for onnx.checker to report
    if placed != list(range(len(nodes))):
        del graph.node[:]
        graph.node.extend(nodes[i] for i in placed)


def _subgraphs(node: Any) -> list[Any]:
    return [g for a in node.attribute for g in ([a.g] if a.HasField("g") else list(a.graphs))]


def _outer_names(body: Any) -> set[str]:
    """Names a subgraph (and the subgraphs in it) reads but does not define."""
    defined = {v.name for v in body.input} | {t.name for t in body.initializer}
    used: set[str] = set()
    for node in body.node:
        used.update(n for n in node.input if n)
        defined.update(node.output)
        for inner in _subgraphs(node):
            used |= _outer_names(inner)
    return used - defined


def _rename_uses(body: Any, renames: dict[str, str]) -> None:
    for node in body.node:
        _replace(node.input, [renames.get(n, n) for n in node.input])
        for inner in _subgraphs(node):
            _rename_uses(inner, renames)
    for value in body.output:  # a body may pass an outer tensor straight through
        value.name = renames.get(value.name, value.name)


# --- int8 / int16 --------------------------------------------------------------


def _quant_type(q: Any, dtype: QuantDtype) -> Any:
    return {QuantDtype.INT8: q.QuantType.QInt8, QuantDtype.UINT8: q.QuantType.QUInt8,
            QuantDtype.INT16: q.QuantType.QInt16}[dtype]


def _from_model(model: Any, recipe: Recipe, choice: dict) -> Recipe:
    """The recipe with the settings chosen from the graph's traits (converters/traits.py), recorded in `choice`."""
    from edgekit.converters import traits

    chosen = traits.choose(traits.find(traits.onnx_nodes(model)), Format.ONNX, recipe,
                           float_ops_allowed=recipe.precision is Precision.INT8_STATIC)
    choice.update(chosen.to_dict(), line=chosen.line())
    return traits.apply(recipe, chosen)


def _quantize(job: ConvertJob, fp32: Path, scratch: Path, notes: list[str], choice: dict) -> Any:
    """The quantized model, made by onnxruntime.quantization in `scratch`."""
    onnx = require("onnx")
    q = require("onnxruntime.quantization")
    recipe = job.recipe
    prepared, quantized = scratch / "prepared.onnx", scratch / "quantized.onnx"
    try:
        _pre_process(q, fp32, prepared, notes)
        _name_unnamed_nodes(onnx, prepared)
        if recipe.precision is Precision.INT8_DYNAMIC:
            weight_type = _quant_type(q, recipe.weight_type)
            if recipe.weight_type is QuantDtype.INT8:
                notes.append("dynamic int8 with signed weights ran 4x slower than uint8 weights on ORT's x86 CPU kernels")
            q.quantize_dynamic(str(prepared), str(quantized), per_channel=recipe.per_channel, weight_type=weight_type)
        else:
            recipe = _from_model(onnx.load(str(prepared), load_external_data=False), recipe, choice)
            _quantize_static(q, job, recipe, prepared, quantized, notes)
            if recipe.float_nodes:
                kept = ", ".join(recipe.float_nodes)
                notes.append(f"kept in float ({len(recipe.float_nodes)} node(s), nodes_to_exclude): {kept}")
    except (ConversionError, DataError):
        raise
    except Exception as exc:  # the quantization tools raise many types
        raise ConversionError(f"onnxruntime could not quantize to {recipe.precision.value}: {_first_line(exc)}") from None
    model = onnx.load(str(quantized))
    if any(node.op_type in _CONTROL_FLOW for node in model.graph.node):
        _sort_with_subgraph_reads(model.graph)
    counts = quantized_ops(model)
    if not any(counts.values()):
        raise ConversionError(
            f"onnxruntime's quantizer produced no quantized op for {recipe.precision.value} "
            "(no QuantizeLinear/DequantizeLinear pair, QLinear*/Integer op or int8 weight): the model stayed float"
        )
    notes.append("quantized ops: " + ", ".join(f"{count} {what}" for what, count in counts.items() if count))
    before, after = _opset(onnx.load(str(fp32), load_external_data=False)), _opset(model)
    if before != after:  # int16 Q/DQ needs opset 21
        notes.append(f"onnxruntime's quantizer raised the opset from {before} to {after}")
    return model


def _pre_process(q: Any, fp32: Path, prepared: Path, notes: list[str]) -> None:
    """onnxruntime's quant_pre_process (symbolic shape inference, optimization, ONNX shape inference).

    Symbolic shape inference gives up on some graphs ("Incomplete symbolic shape inference",
    e.g. a multi-input model); the tool's own switch then skips it and keeps ONNX shape
    inference, and quantize_static works on the result. The notes say which ran.
    """
    # Failed symbolic shape inference dumps sym_shape_infer_temp.onnx (+ .data) into the current
    # directory: the user's. It runs in the scratch directory instead.
    fp32 = fp32.resolve()
    try:
        with _logged_errors("onnxruntime.quantization") as errors, _working_directory(prepared.parent):
            q.quant_pre_process(str(fp32), str(prepared.resolve()))
    except Exception as exc:
        first = _first_line(exc)
        with _logged_errors("onnxruntime.quantization") as errors, _working_directory(prepared.parent):
            q.quant_pre_process(str(fp32), str(prepared.resolve()), skip_symbolic_shape=True)
        notes.append(
            f"onnxruntime's quant_pre_process: symbolic shape inference failed ({first}); "
            "ran it with skip_symbolic_shape=True (ONNX shape inference and optimization only)"
        )
    if errors:  # it logs a failed optimization (message, then traceback) and goes on without it
        reason = errors[-1].strip().splitlines()[-1][:300]
        notes.append(f"onnxruntime's pre-quantization optimization failed ({reason}); quantized the unoptimized graph")


def quantized_ops(model: Any) -> dict[str, int]:
    """What quantization put in an ONNX model: Q/DQ pairs, integer ops, int8/uint8 weights."""
    onnx = require("onnx")
    nodes = list(model.graph.node)
    integer_types = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16)
    return {
        "QuantizeLinear": sum(n.op_type == "QuantizeLinear" for n in nodes),
        "DequantizeLinear": sum(n.op_type == "DequantizeLinear" for n in nodes),
        "integer ops (QLinear*, *Integer)": sum(
            n.op_type.startswith("QLinear") or n.op_type.endswith("Integer") or n.op_type == "DynamicQuantizeLinear"
            for n in nodes
        ),
        "integer weights": sum(t.data_type in integer_types for t in model.graph.initializer),
    }


def _name_unnamed_nodes(onnx: Any, prepared: Path) -> None:
    """Give nodes without a name one (`<op_type>_<index>`): onnxruntime's nodes_to_exclude matches by
    name, so excluding one unnamed node (a hand-built graph's Softmax) would exclude every unnamed node."""
    model = onnx.load(str(prepared), load_external_data=False)
    unnamed = [(i, node) for i, node in enumerate(model.graph.node) if not node.name]
    if not unnamed:
        return
    taken = {node.name for node in model.graph.node}
    for index, node in unnamed:
        name = f"{node.op_type}_{index}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
    # Loaded without external data: the references to prepared's .data file stay as they are.
    onnx.save(model, str(prepared))


def _quantize_static(q: Any, job: ConvertJob, recipe: Recipe, prepared: Path, quantized: Path,
                     notes: list[str]) -> None:
    activation_type = _quant_type(q, recipe.activation_type)
    weight_type = _quant_type(q, recipe.weight_type)
    if recipe.precision is Precision.INT16X8:
        activation_type, weight_type = q.QuantType.QInt16, q.QuantType.QInt8
    method = {
        Calibration.MINMAX: q.CalibrationMethod.MinMax,
        Calibration.ENTROPY: q.CalibrationMethod.Entropy,
        Calibration.PERCENTILE: q.CalibrationMethod.Percentile,
    }[recipe.calibration]
    # No CalibMaxIntermediateOutputs: in onnxruntime 1.32 it drops the data it batches
    # (microsoft/onnxruntime#18893). MinMax keeps only per-tensor min/max per sample anyway.
    reader = _calibration_reader(q, job, prepared)
    exclude = _float_nodes(recipe, prepared)
    if recipe.precision is Precision.INT8_STATIC:
        # ORT's default op list: the ops it has integer kernels for; the rest stay float.
        cache = _calibration_cache(job, prepared, method, None, notes)
        q.quantize_static(
            str(prepared), str(quantized), reader,
            quant_format=q.QuantFormat.QDQ, per_channel=recipe.per_channel,
            activation_type=activation_type, weight_type=weight_type,
            calibrate_method=method, nodes_to_exclude=exclude, calibration_cache_path=cache,
            reduce_range=recipe.reduce_range,
        )
        return
    # int8-full and int16x8: ORT's "quantize the entire model" config (every op type
    # present but Cast, forced even where an op's input is not quantized yet). quantize()
    # is quantize_static with the config's fields, without the calibration cache: called directly.
    config = q.get_qdq_config(
        str(prepared), reader, calibrate_method=method,
        activation_type=activation_type, weight_type=weight_type,
        per_channel=recipe.per_channel, nodes_to_exclude=exclude,
    )
    cache = _calibration_cache(job, prepared, method, config.op_types_to_quantize, notes)
    q.quantize_static(
        str(prepared), str(quantized), config.calibration_data_reader,
        calibrate_method=config.calibrate_method, quant_format=config.quant_format,
        activation_type=config.activation_type, weight_type=config.weight_type,
        op_types_to_quantize=config.op_types_to_quantize, nodes_to_quantize=config.nodes_to_quantize,
        nodes_to_exclude=config.nodes_to_exclude, per_channel=config.per_channel, reduce_range=recipe.reduce_range or config.reduce_range,
        use_external_data_format=config.use_external_data_format,
        calibration_providers=config.calibration_providers, extra_options=config.extra_options,
        calibration_cache_path=cache,
    )


def _calibration_cache(job: ConvertJob, prepared: Path, method: Any, op_types: Any, notes: list[str]) -> Path:
    """Where onnxruntime keeps this calibration's tensor ranges (quantize_static's calibration_cache_path).

    Calibration depends on the prepared graph, the data, the method and the op types it
    calibrates, and on nothing that follows it (nodes_to_exclude, I/O types, per-channel
    weights), so a repair trial that only keeps other layers in float, or a second target whose
    prepared graph is byte-identical, reads the ranges instead of running the data again. The
    key is exactly those inputs; the ranges round-trip exactly (float32 -> JSON -> float32).
    """
    from edgekit.converters.tflite_calibration import data_digest

    digest = hashlib.sha256()
    for part in sorted(prepared.parent.glob(prepared.name + "*")):  # the graph and any external data
        digest.update(part.name.encode() + b"\0" + part.read_bytes())
    digest.update(data_digest(job.calibration).encode())
    digest.update(f"{method}|{sorted(op_types) if op_types is not None else 'default'}".encode())
    path = job.exports.workdir / "ort-calibration" / f"{digest.hexdigest()[:24]}.json"
    if path.is_file():
        notes.append("onnxruntime calibration ranges reused (same prepared graph, data and method as an earlier "
                      "conversion of this run; calibration_cache_path)")
    return path


def _float_nodes(recipe: Recipe, prepared: Path) -> list[str]:
    """recipe.float_nodes, checked against the node names of the graph onnxruntime quantizes."""
    if not recipe.float_nodes:
        return []
    onnx = require("onnx")
    known = {node.name for node in onnx.load(str(prepared), load_external_data=False).graph.node}
    unknown = [name for name in recipe.float_nodes if name not in known]
    if unknown:
        raise ConversionError(
            f"float_nodes {', '.join(map(repr, unknown))} are not nodes of the ONNX graph being quantized"
            f"{did_you_mean(unknown[0], known)}"
        )
    return list(recipe.float_nodes)


# onnxruntime names the tensors around a Q/DQ pair after the activation they carry.
_QDQ_SUFFIX = re.compile(r"_(QuantizeLinear_Input|DequantizeLinear_Output(_\d+)?)$")


def layer_errors(
    job: ConvertJob, converted: Converted, error: Callable[[np.ndarray, np.ndarray], float]
) -> list[LayerError]:
    """Each quantized activation's error in the QDQ model at job.output, measured with onnxruntime's
    qdq_loss_debug on up to 32 calibration samples: `error(before QDQ, after QDQ)` per activation.

    Keeping an activation in float means its producer and its consumers are left out of
    quantization; a left-out node's output is otherwise quantized again for the next one.
    """
    onnx = require("onnx")
    debug = require("onnxruntime.quantization.qdq_loss_debug")
    if job.calibration is None:
        raise DataError(f"{job.target}: ranking layers needs calibration data")
    feeds = [
        {spec.name: iocast.to_input(spec, feed[spec.name]) for spec in converted.inputs}
        for feed in job.calibration.head(32).batches(1)
    ]
    try:
        with tempfile.TemporaryDirectory(prefix="edgekit-onnx-debug-") as scratch:
            augmented = str(Path(scratch) / "augmented.onnx")
            debug.modify_model_output_intermediate_tensors(str(job.output), augmented)
            activations = debug.collect_activations(augmented, feeds)
        matched = debug.create_activation_matching(activations)
    except Exception as exc:  # onnxruntime raises many types
        reason = _first_line(exc)
        raise ConversionError(f"onnxruntime's qdq_loss_debug could not measure {job.output.name}: {reason}") from None

    producers: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {}
    for node in onnx.load(str(job.output), load_external_data=False).graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for name in node.input:
            consumers.setdefault(_QDQ_SUFFIX.sub("", name), []).append(node.name)
        for name in node.output:
            producers.setdefault(_QDQ_SUFFIX.sub("", name), []).append(node.name)
    result = []
    for tensor, values in matched.items():
        before, after = (np.concatenate([np.ravel(v) for v in values[key]]) for key in ("pre_qdq", "post_qdq"))
        nodes = tuple(dict.fromkeys([*producers.get(tensor, []), *consumers.get(tensor, [])]))
        result.append(LayerError(tensor=tensor, error=error(before, after), nodes=nodes))
    return result


def _calibration_reader(q: Any, job: ConvertJob, model_path: Path) -> Any:
    """Batch-1 samples of job.calibration, keyed by the graph's input names."""
    onnx = require("onnx")
    if job.calibration is None:
        raise DataError(f"{job.target}: {job.recipe.precision.value} needs calibration data")
    graph = onnx.load(str(model_path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    inputs = [
        (v.name, onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))
        for v in graph.input
        if v.name not in weights
    ]
    # The graph's inputs carry the source's names (see _stable_names), in the graph's order.
    missing = [name for name, _ in inputs if name not in job.calibration.arrays]
    if missing:
        have = ", ".join(job.calibration.arrays) or "none"
        raise DataError(f"{job.calibration.origin}: no calibration data for input(s) {', '.join(missing)} (has: {have})")
    batches = job.calibration.batches(1)

    class Reader(q.CalibrationDataReader):
        def get_next(self) -> dict | None:
            batch = next(batches, None)
            return None if batch is None else {n: batch[n].astype(dtype, copy=False) for n, dtype in inputs}

    return Reader()


# --- integer inputs and outputs ------------------------------------------------------


def _integer_io(model: Any, recipe: Recipe) -> dict[str, Quantization]:
    """Make the QDQ graph's inputs and outputs integer where the recipe asks; return their mapping.

    In a QDQ graph an input `x` feeds QuantizeLinear(x, s, z) and an output `y` is
    DequantizeLinear(y_q, s, z). Dropping those two nodes makes `x` and `y` carry the
    integers themselves; (s, z) are what an app must quantize and dequantize with.
    """
    onnx = require("onnx")
    numpy_helper = onnx.numpy_helper
    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    result: dict[str, Quantization] = {}

    def mapping(node: Any) -> tuple[Quantization, int]:
        scale, zero_point = (constants.get(name) for name in node.input[1:3])
        if scale is None or zero_point is None or scale.size != 1:
            raise ConversionError(f"{node.op_type} '{node.name}' has no constant per-tensor scale and zero point")
        elem_type = onnx.helper.np_dtype_to_tensor_dtype(zero_point.dtype)
        return Quantization(float(scale.reshape(())), int(zero_point.reshape(()))), elem_type

    if recipe.input_dtype in _INTEGER_IO:
        for value in graph.input:
            if value.name in constants:
                continue
            # Shape and Size read only dimensions, so they may keep reading the integer input.
            consumers = [n for n in graph.node if value.name in n.input and n.op_type not in ("Shape", "Size")]
            if [n.op_type for n in consumers] != ["QuantizeLinear"]:
                raise ConversionError(
                    f"input '{value.name}' is not quantized by one QuantizeLinear, so it cannot be "
                    f"{recipe.input_dtype.value}: it feeds {', '.join(n.op_type for n in consumers) or 'nothing'} "
                    "(int8-full quantizes every op)"
                )
            quantize = consumers[0]
            result[value.name], value.type.tensor_type.elem_type = mapping(quantize)
            _bypass(graph, quantize, value.name)

    if recipe.output_dtype in _INTEGER_IO:
        for value in graph.output:
            producer = next((n for n in graph.node if value.name in n.output), None)
            if producer is None or producer.op_type != "DequantizeLinear":
                raise ConversionError(
                    f"output '{value.name}' is not made by a DequantizeLinear, so it cannot be "
                    f"{recipe.output_dtype.value}: it comes from {producer.op_type if producer else 'nothing'} "
                    "(int8-full quantizes every op)"
                )
            if any(value.name in n.input for n in graph.node):
                raise ConversionError(f"output '{value.name}' is also used inside the graph, so it cannot be integer")
            result[value.name], value.type.tensor_type.elem_type = mapping(producer)
            _bypass(graph, producer, value.name)
    return result


def _bypass(graph: Any, node: Any, keep: str) -> None:
    """Remove a one-in, one-out `node`, naming the tensor on both sides `keep`."""
    gone = node.output[0] if node.input[0] == keep else node.input[0]
    graph.node.remove(node)
    for other in graph.node:
        _replace(other.input, [keep if n == gone else n for n in other.input])
        _replace(other.output, [keep if n == gone else n for n in other.output])
    for value in list(graph.value_info):
        if value.name in (gone, keep):
            graph.value_info.remove(value)


def _float_ops(model: Any) -> list[str]:
    """Op types that still compute in float: a float activation reaches them not via DequantizeLinear."""
    onnx = require("onnx")
    graph = onnx.shape_inference.infer_shapes(model).graph
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)
    activations = {v.name for v in [*graph.input, *graph.value_info] if v.type.tensor_type.elem_type in floats}
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    skip = {"QuantizeLinear", "DequantizeLinear", "Shape", "Size"}  # Shape and Size only read dimensions
    return sorted({
        node.op_type
        for node in graph.node
        if node.op_type not in skip and any(i in activations and i not in dequantized for i in node.input)
    })


def _softmax_notes(model: Any) -> list[str]:
    """A warning for each quantized output that comes from a Softmax (STACK.md)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    passthrough = {"QuantizeLinear", "DequantizeLinear", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"}
    notes = []
    for value in model.graph.output:
        node, quantized = producers.get(value.name), False
        while node is not None and node.op_type in passthrough:
            quantized |= node.op_type in ("QuantizeLinear", "DequantizeLinear")
            node = producers.get(node.input[0])
        if quantized and node is not None and node.op_type == "Softmax":
            notes.append(
                f"output '{value.name}' is a quantized Softmax: small probabilities round to 0 with many "
                "classes; judge this artifact on logits or task metrics, not on raw probabilities"
            )
    return notes


# --- shared helpers --------------------------------------------------------------------


def _check_io_dtypes(recipe: Recipe) -> None:
    """Refuse I/O dtypes the precision cannot give, naming the options that conflict."""
    precision = recipe.precision
    for which, dtype in (("input_dtype", recipe.input_dtype), ("output_dtype", recipe.output_dtype)):
        if dtype in _INTEGER_IO:
            if precision not in (Precision.INT8_STATIC, Precision.INT8_FULL):
                raise ConversionError(f"{which} {dtype.value} needs precision int8-static or int8-full, not {precision.value}")
            if dtype.value != recipe.activation_type.value:
                raise ConversionError(
                    f"{which} {dtype.value} differs from activation_type {recipe.activation_type.value}; "
                    "ONNX integer I/O carries the activations' type, so set them equal"
                )
        if dtype is IODtype.FLOAT16 and precision is not Precision.FP16:
            raise ConversionError(f"{which} float16 needs precision fp16, not {precision.value}")
    if precision is Precision.FP16 and recipe.input_dtype is not recipe.output_dtype:
        raise ConversionError(
            f"fp16 ONNX keeps inputs and outputs in one float type; input_dtype {recipe.input_dtype.value} "
            f"and output_dtype {recipe.output_dtype.value} differ"
        )


def _specs(values: Any, order: list[TensorSpec], quantization: dict[str, Quantization]) -> list[TensorSpec]:
    """The graph's inputs or outputs as TensorSpecs, in the source's order."""
    onnx = require("onnx")
    by_name = {v.name: v for v in values}
    specs = []
    for source_spec in order:
        tensor = by_name[source_spec.name].type.tensor_type
        specs.append(
            TensorSpec(
                name=source_spec.name,
                shape=tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim),
                dtype=onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                quantization=quantization.get(source_spec.name),
            )
        )
    return specs


def _save(model: Any, path: Path) -> None:
    """One file, or weights as external data `<name>.data` beside it past protobuf's 2 GB limit."""
    onnx = require("onnx")
    if model.ByteSize() < 2**31 - 2**24:
        onnx.save(model, str(path))
    else:
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data")


def _opset(model: Any) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _check(model: Any, what: str) -> None:
    onnx = require("onnx")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ConversionError(f"{what} is not a valid ONNX model: {_first_line(exc)}") from None


def _replace(field: Any, values: list[str]) -> None:
    del field[:]
    field.extend(values)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _logged_errors(logger_name: str) -> Iterator[list[str]]:
    """The ERROR records a library logs meanwhile (and otherwise ignores)."""
    handler = _Collect()
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


@contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _first_line(exc: BaseException | str) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
