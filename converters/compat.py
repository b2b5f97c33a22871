"""Pre-flight op compatibility: which ops of an artifact the target's accelerator runs, and why others fall back.

Each runtime is asked where it can be: ONNX Runtime says which nodes an execution provider
claims, OpenVINO's `query_model` which ops a device takes, and LiteRT's analyzer which ops
the GPU delegate rejects (where the installed analyzer still checks). Where the device is
not on this host, the artifact is checked against the profile's `supported_ops` list and,
for NPU targets, against the rules NPUs share: integer tensors only, static shapes.

Counts cover the ops that run per inference: ops whose inputs are all constants (weight
dequantization, folded shape arithmetic) are left out, as runtimes fold them at load time.
"""
from __future__ import annotations

import io
import re
from collections import Counter
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit._deps import require
from edgekit.benchmarks.base import ArtifactLoadError
from edgekit.benchmarks.tflite_backend import check_tflite_file
from edgekit.errors import InputError, MissingDependency, did_you_mean
from edgekit.targets.schema import (
    DeviceClass,
    Format,
    Precision,
    QuantDtype,
    Recipe,
    Runtime,
    Target,
)

if TYPE_CHECKING:
    from edgekit.manifest import Manifest

CPU_METHOD = "cpu target: everything runs on the CPU"

# Reasons, kept short and free of per-op detail so that fallbacks group and count well.
NOT_SUPPORTED = "not supported (not on the profile's op list)"
FLOAT_OP = "float op in an int8 model"
DYNAMIC_SHAPE = "dynamic shape"

_FLOATS = {"float32", "float16", "bfloat16", "float64"}
_QDQ = {"QuantizeLinear", "DequantizeLinear", "QUANTIZE", "DEQUANTIZE"}  # quantization boundaries
# TFLite's model_analyzer stopped checking GPU compatibility in the 2.18/2.19 cycle (tensorflow/tensorflow
# #74830, issue #77042) yet still prints "looks compatible": only an older analyzer's clean report is trusted.
_ANALYZER_CHECKS_BEFORE = (2, 18)


@dataclass(frozen=True)
class OpFallback:
    """One op that does not run on the accelerator."""

    op: str  # op type: CONV_2D, Conv, Convolution
    name: str  # the op's name in the model (TFLite: its first output tensor)
    reason: str


@dataclass
class Compatibility:
    """What part of one artifact a target's accelerator runs."""

    accelerator: str  # what was checked: "LiteRT GPU delegate", "ONNX Runtime QNNExecutionProvider", ...
    method: str  # how: analyzer, query_model, provider claims, profile list, ...
    total_ops: int
    accelerated_ops: int | None  # None when nothing could be checked
    fallbacks: list[OpFallback] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float | None:
        """Accelerated share of the ops, 0-1; None when not checked (a budget on it is 'not measured')."""
        if self.accelerated_ops is None:
            return None
        return self.accelerated_ops / self.total_ops if self.total_ops else 1.0

    def grouped(self) -> list[tuple[str, str, int]]:
        """(op, reason, count), most frequent first: what a report shows."""
        counts = Counter((f.op, f.reason) for f in self.fallbacks)
        return [(op, reason, n) for (op, reason), n in counts.most_common()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accelerator": self.accelerator,
            "method": self.method,
            "total_ops": self.total_ops,
            "accelerated_ops": self.accelerated_ops,
            "fraction": self.fraction,
            "fallbacks": [{"op": f.op, "name": f.name, "reason": f.reason} for f in self.fallbacks],
            "fallback_counts": [{"op": op, "reason": reason, "count": n} for op, reason, n in self.grouped()],
            "notes": self.notes,
        }


@dataclass
class _Op:
    """An op as the checks see it, whatever the format."""

    type: str
    name: str
    float_op: bool  # computes in float (for QDQ/FakeQuantize models: outside the quantized pattern)
    int_dtypes: set[str]  # dtypes of its non-float, non-constant tensors
    dynamic: bool  # some non-constant tensor has an unknown dimension
    key: tuple[int, int] = (0, -1)  # TFLite (subgraph, op index), to match analyzer lines


@dataclass
class _Graph:
    ops: list[_Op]
    folded: set[str] = field(default_factory=set)  # names of the constant-only ops left out of the counts
    notes: list[str] = field(default_factory=list)


def check_artifact(path: Path, fmt: str, recipe: Recipe, device_class: str) -> Compatibility:
    """Which ops of the artifact at `path` the recipe's accelerator runs, and why the others fall back.

    Raises ArtifactLoadError for a file that is not a readable model of `fmt`, InputError for an
    unknown format or device class; anything the checks cannot decide becomes a note.
    """
    path = Path(path)
    fmt_, device_class_ = _coerce(Format, fmt, "format"), _coerce(DeviceClass, device_class, "device class")
    graph = _READERS[fmt_](path)
    ops = graph.ops
    if device_class_ is DeviceClass.CPU:
        return Compatibility(f"{_runtime_name(recipe)} on the CPU", CPU_METHOD, len(ops), len(ops), [], graph.notes)
    npu = device_class_ is DeviceClass.NPU
    if recipe.runtime is Runtime.TFLITE:
        result = _tflite(path, ops, recipe, npu)
    elif recipe.runtime is Runtime.ONNXRUNTIME:
        result = _onnxruntime(path, graph, recipe, npu)
    else:
        result = _openvino(path, ops, recipe, npu)
    result.notes[:0] = graph.notes
    return result


def check_manifest(
    manifest: Manifest, targets: dict[str, Target] | None = None
) -> dict[tuple[str, str], Compatibility]:
    """check_artifact for every artifact of a Manifest, keyed by (target, format).

    `targets` maps target names to resolved profiles; a target not in it is loaded from the
    artifact's recorded profile (a built-in name or a .toml path).
    """
    from edgekit.targets.loader import load_target

    targets = dict(targets or {})
    results = {}
    for artifact in manifest.artifacts:
        if artifact.target not in targets:
            targets[artifact.target] = load_target(artifact.profile or artifact.target)
        target = targets[artifact.target]
        recipe = target.formats.get(_coerce(Format, artifact.format, "format"))
        key = (artifact.target, artifact.format)
        if recipe is None:
            results[key] = Compatibility(artifact.device, "not checked", 0, None,
                                         notes=[f"target '{target.name}' has no {artifact.format} recipe"])
            continue
        results[key] = check_artifact(artifact.path, artifact.format, recipe, target.device_class.value)
    return results


def check_path(path: Path, target: str | Path | None = None) -> dict[str, Compatibility]:
    """`edgekit check PATH`: a manifest, an output directory, or one artifact file (which needs `target`).

    Results are keyed by `target/format` for manifests and by file name for a bare artifact.
    """
    from edgekit.manifest import Manifest
    from edgekit.targets.loader import load_target

    path = Path(path)
    manifest_path = path / "manifest.json" if path.is_dir() else path
    if manifest_path.suffix == ".json":
        manifest = Manifest.read(manifest_path)
        profiles = {}
        if target is not None:
            profile = load_target(target)
            profiles = {a.target: profile for a in manifest.artifacts}
        return {f"{t}/{f}": c for (t, f), c in check_manifest(manifest, profiles).items()}
    from edgekit.benchmarks.registry import SUFFIX_FORMAT

    fmt = SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: not an artifact (accepted: .tflite, .onnx, .xml, manifest.json, an output directory)")
    if not path.exists():
        raise InputError(f"not found: {path}")
    if target is None:
        raise InputError(f"{path}: a bare artifact needs -t TARGET to know which accelerator to check against")
    profile = load_target(target)
    recipe = profile.formats.get(Format(fmt))
    if recipe is None or not recipe.enabled:
        raise InputError(f"target '{profile.name}' defines no {fmt} recipe")
    return {path.name: check_artifact(path, fmt, recipe, profile.device_class.value)}


# --- per runtime -------------------------------------------------------------------------------


def _tflite(path: Path, ops: list[_Op], recipe: Recipe, npu: bool) -> Compatibility:
    gpu = recipe.device.upper() == "GPU"
    accelerator = "LiteRT GPU delegate" if gpu else f"LiteRT {recipe.device} delegate"
    if gpu:
        report, why = _analyzer_report(path)
        findings = _analyzer_findings(report) if report else {}
        release = _analyzer_release(report) if report else None
        if findings or _analyzer_checks(release):
            fallbacks = [OpFallback(op.type, op.name, findings[op.key]) for op in ops if op.key in findings]
            return Compatibility(accelerator, "analyzer", len(ops), len(ops) - len(fallbacks), fallbacks)
        why = why or (f"the installed TFLite analyzer ({release or 'unknown version'}) no longer checks "
                      "GPU compatibility (tensorflow/tensorflow#77042)")
    else:
        why = "LiteRT delegates cannot be asked per op before they run"
    return _static(accelerator, ops, recipe, npu, why, gpu_rules=gpu)


def _onnxruntime(path: Path, graph: _Graph, recipe: Recipe, npu: bool) -> Compatibility:
    ops = graph.ops
    wanted = next((p for p in recipe.providers if p != "CPUExecutionProvider"), "CPUExecutionProvider")
    accelerator = f"ONNX Runtime {wanted}"
    try:
        ort = require("onnxruntime")
    except MissingDependency:
        return _static(accelerator, ops, recipe, npu, "onnxruntime not installed")
    if wanted not in ort.get_available_providers():
        return _static(accelerator, ops, recipe, npu, "provider not present")
    try:
        placed = _ort_placement(ort, path, wanted)
    except Exception as exc:  # a provider may refuse a model in its own ways; the static checks still speak
        return _static(accelerator, ops, recipe, npu, f"{wanted} could not place the model ({_first_line(exc)})")
    # ORT places the graph after its basic optimizations (fusions rename nodes): count what it placed,
    # minus the constant-only nodes (weight DequantizeLinear) that the static reader leaves out too.
    placed = [(name, op_type, ep) for name, op_type, ep in placed if name not in graph.folded]
    reason = f"not claimed by {wanted}"
    fallbacks = [OpFallback(op_type, name, reason) for name, op_type, ep in placed if ep != wanted]
    return Compatibility(accelerator, "provider claims", len(placed), len(placed) - len(fallbacks), fallbacks)


def _openvino(path: Path, ops: list[_Op], recipe: Recipe, npu: bool) -> Compatibility:
    device = recipe.device
    accelerator = f"OpenVINO {device}"
    try:
        core = require("openvino").Core()
    except MissingDependency:
        return _static(accelerator, ops, recipe, npu, "openvino not installed")
    available = list(core.available_devices)
    if not any(d == device or d.startswith(device + ".") for d in available):
        why = f"{device} not present (available: {', '.join(available) or 'none'})"
        return _static(accelerator, ops, recipe, npu, why)
    try:
        model = core.read_model(str(path))
        claimed = core.query_model(model, device)
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line text
        return _static(accelerator, ops, recipe, npu, f"query_model failed ({_first_line(exc)})")
    fallbacks = [OpFallback(op.type, op.name, f"not claimed by OpenVINO {device}")
                 for op in ops if claimed.get(op.name, "").split(".")[0] != device.split(".")[0]]
    return Compatibility(accelerator, "query_model", len(ops), len(ops) - len(fallbacks), fallbacks)


def _static(
    accelerator: str, ops: list[_Op], recipe: Recipe, npu: bool, why: str, *, gpu_rules: bool = False
) -> Compatibility:
    """The checks that need no device: the profile's op list, and the NPU (or GPU) dtype and shape rules.

    `why` says why the runtime itself was not asked; the note adds what was checked instead.
    """
    supported = set(recipe.supported_ops) if recipe.supported_ops else None
    if supported is None and not npu:
        return Compatibility(accelerator, "not checked", len(ops), None, [],
                             [f"{why}: not checked (the profile has no op list for this format)"])
    how = "checked against the profile's op list" if supported else "checked with the int8 and static-shape rules"
    notes = [f"{why}: {how}"]
    allowed = _npu_dtypes(recipe) if npu else {"int8", "uint8"}
    fallbacks = []
    for op in ops:
        reason = _static_reason(op, supported, npu, allowed, gpu_rules)
        if reason:
            fallbacks.append(OpFallback(op.type, op.name, reason))
    if npu and any(f.reason == DYNAMIC_SHAPE for f in fallbacks):
        notes.append("NPUs compile static shapes: fix the dynamic dimensions (often the batch) at conversion")
    method = "profile list" if supported is not None else "int8 and static-shape rules"
    return Compatibility(accelerator, method, len(ops), len(ops) - len(fallbacks), fallbacks, notes)


def _static_reason(op: _Op, supported: set[str] | None, npu: bool, allowed: set[str], gpu_rules: bool) -> str | None:
    if supported is not None and op.type not in supported:
        return NOT_SUPPORTED
    if npu and op.float_op:
        return FLOAT_OP
    if npu or gpu_rules:
        # The GPU delegate runs float (and int8-quantized) tensors; int32 shape arithmetic stays on the CPU.
        bad = sorted(op.int_dtypes - allowed)
        if bad:
            return f"unsupported dtype {bad[0]}"
    if npu and op.dynamic:
        return DYNAMIC_SHAPE
    return None


def _npu_dtypes(recipe: Recipe) -> set[str]:
    if recipe.precision is Precision.INT16X8 or recipe.activation_type is QuantDtype.INT16:
        return {"int8", "uint8", "int16", "uint16"}
    return {"int8", "uint8"}


# --- TFLite ------------------------------------------------------------------------------------


def _tflite_ops(path: Path) -> _Graph:
    check_tflite_file(path)
    schema = _tflite_schema()
    try:
        return _Graph(_read_tflite(schema, path.read_bytes()))
    except Exception as exc:  # a corrupt flatbuffer fails inside the generated accessors
        raise ArtifactLoadError(f"{path}: not a readable TFLite model: {_first_line(exc)}") from None


def _read_tflite(schema: Any, data: bytes) -> list[_Op]:
    model = schema.Model.GetRootAs(data, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    ops = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        constant = {t for t in range(graph.TensorsLength()) if _has_data(model, graph.Tensors(t))}
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # as schema_utils.GetBuiltinCode
            kind = code.CustomCode().decode() if names.get(builtin) == "CUSTOM" else names.get(builtin, str(builtin))
            inputs = [t for t in op.InputsAsNumpy().tolist() if t >= 0] if op.InputsLength() else []
            outputs = op.OutputsAsNumpy().tolist() if op.OutputsLength() else []
            if inputs and all(t in constant for t in inputs):
                constant.update(outputs)  # folded at load time (fp16 weights' DEQUANTIZE)
                continue
            live = [graph.Tensors(t) for t in inputs + outputs if t not in constant]
            dtypes = {types.get(t.Type(), str(t.Type())) for t in live}
            name = graph.Tensors(outputs[0]).Name().decode(errors="replace") if outputs else f"op{i}"
            ops.append(_Op(kind, name, float_op=kind not in _QDQ and bool(dtypes & _FLOATS),
                           int_dtypes=dtypes - _FLOATS, dynamic=any(_tflite_dynamic(t) for t in live), key=(s, i)))
    return ops


def _has_data(model: Any, tensor: Any) -> bool:
    index = tensor.Buffer()
    if index <= 0 or index >= model.BuffersLength() or tensor.IsVariable():
        return False
    buffer = model.Buffers(index)
    # Size(): data stored after the flatbuffer (models over 2 GB); older schema modules lack it.
    return buffer.DataLength() > 0 or getattr(buffer, "Size", lambda: 0)() > 0


def _tflite_dynamic(tensor: Any) -> bool:
    shape = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else tensor.ShapeAsNumpy()
    return not isinstance(shape, int) and bool((shape < 0).any())


def _tflite_schema() -> Any:
    """The TFLite flatbuffer schema module: LiteRT's, else TensorFlow's copy of it."""
    try:
        return require("ai_edge_litert.schema_py_generated")
    except MissingDependency as missing:
        try:
            return require("tensorflow.lite.python.schema_py_generated")
        except MissingDependency:
            raise missing from None


def _analyzer_report(path: Path) -> tuple[str | None, str | None]:
    """(report text, None) from the TFLite model analyzer with its GPU check, or (None, why not)."""
    try:
        # The binding tf.lite.experimental.Analyzer wraps, shipped by LiteRT without TensorFlow.
        wrapper = require("ai_edge_litert._pywrap_analyzer_wrapper")
        return wrapper.ModelAnalyzer(str(path), True, True), None
    except MissingDependency:
        pass
    except Exception as exc:
        return None, f"the TFLite analyzer failed ({_first_line(exc)})"
    try:
        tf = require("tensorflow")
    except MissingDependency:
        return None, "no TFLite analyzer installed (ai-edge-litert or tensorflow)"
    out = io.StringIO()
    try:
        with redirect_stdout(out):  # the public API prints its report
            tf.lite.experimental.Analyzer.analyze(model_path=str(path), gpu_compatibility=True)
    except Exception as exc:
        return None, f"the TFLite analyzer failed ({_first_line(exc)})"
    return out.getvalue(), None


_SUBGRAPH_LINE = re.compile(r"^Subgraph#(\d+)")
_OP_LINE = re.compile(r"^\s+Op#(\d+) ")
_WARNING = "GPU COMPATIBILITY WARNING: "


def _analyzer_findings(report: str) -> dict[tuple[int, int], str]:
    """{(subgraph, op index): the analyzer's reason} from its per-op 'GPU COMPATIBILITY WARNING' lines."""
    findings: dict[tuple[int, int], str] = {}
    subgraph, op = 0, None
    for line in report.splitlines():
        if match := _SUBGRAPH_LINE.match(line):
            subgraph, op = int(match[1]), None
        elif match := _OP_LINE.match(line):
            op = int(match[1])
        elif line.startswith("Tensors of "):
            op = None
        elif line.startswith(_WARNING) and op is not None:
            message = line[len(_WARNING):].strip()
            if not message.startswith("Subgraph#"):  # the per-subgraph summary line
                findings[(subgraph, op)] = message
    return findings


def _analyzer_release(report: str) -> str | None:
    """The TFLite runtime version the analyzer names in its GPU verdict, e.g. '2.13.0'."""
    match = re.search(r"runtime version (\S+?)\.?(?:\s|$)", report)
    return match[1] if match else None


def _analyzer_checks(release: str | None) -> bool:
    match = re.match(r"(\d+)\.(\d+)", release or "")
    return bool(match) and (int(match[1]), int(match[2])) < _ANALYZER_CHECKS_BEFORE


# --- ONNX --------------------------------------------------------------------------------------


def _onnx_ops(path: Path) -> _Graph:
    if not path.is_file():
        raise ArtifactLoadError(f"{path}: ONNX file not found")
    onnx = require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)  # the graph is enough; weights stay on disk
    except Exception as exc:  # DecodeError and friends for a file that is not an ONNX protobuf
        raise ArtifactLoadError(f"{path}: not a readable ONNX model: {_first_line(exc)}") from None
    notes = []
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # custom domains and broken value infos: shapes stay those the file declares
        notes.append(f"ONNX shape inference failed ({_first_line(exc)}): dynamic shapes judged on declared shapes only")
    graph = _read_onnx(onnx, model)
    graph.notes = notes
    return graph


def _read_onnx(onnx: Any, model: Any) -> _Graph:
    graph = model.graph
    infos = {v.name: v.type.tensor_type for v in [*graph.input, *graph.output, *graph.value_info]}
    constant = {init.name for init in graph.initializer} | {""}  # "" is an omitted optional input
    dtypes = {init.name: _onnx_dtype(onnx, init.data_type) for init in graph.initializer}
    produced_by = {out: node.op_type for node in graph.node for out in node.output}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    graph_outputs = {o.name for o in graph.output}
    ops, folded = [], set()
    for index, node in enumerate(graph.node):  # ONNX requires topological order
        if node.op_type == "Constant" or all(name in constant for name in node.input):
            constant.update(node.output)
            folded.add(node.name)
            continue
        live_in = [n for n in node.input if n not in constant]
        live = live_in + list(node.output)
        types = {n: dtypes.get(n) or (_onnx_dtype(onnx, infos[n].elem_type) if n in infos else None) for n in live}
        known = {t for t in types.values() if t}
        # In a QDQ model an op runs in int8 when its float inputs come from DequantizeLinear
        # and its float outputs go only to QuantizeLinear; anything else computes in float.
        float_in = [n for n in live_in if types[n] in _FLOATS]
        float_out = [n for n in node.output if types[n] in _FLOATS]
        quantized = all(produced_by.get(n) == "DequantizeLinear" for n in float_in) and all(
            n not in graph_outputs and set(consumers.get(n, [])) <= {"QuantizeLinear"} and consumers.get(n)
            for n in float_out
        )
        float_op = node.op_type not in _QDQ and bool(float_in or float_out) and not quantized
        dynamic = any(_onnx_dynamic(infos.get(n)) for n in live)
        ops.append(_Op(node.op_type, node.name or f"{node.op_type}_{index}", float_op, known - _FLOATS, dynamic))
    return _Graph(ops, folded)


def _onnx_dtype(onnx: Any, elem_type: int) -> str | None:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except Exception:  # UNDEFINED, string, or a type numpy lacks
        return None


def _onnx_dynamic(info: Any) -> bool:
    if info is None or not info.HasField("shape"):
        return False  # unknown rank or unseen tensor: not claimed dynamic without evidence
    return any(not dim.HasField("dim_value") for dim in info.shape.dim)


def _ort_placement(ort: Any, path: Path, provider: str) -> list[tuple[str, str, str]]:
    """(node name, op type, execution provider) for every node ORT placed, from ORT's own record."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    session = ort.InferenceSession(str(path), options, providers=[provider, "CPUExecutionProvider"])
    return [(node.name, node.op_type, sub.ep_name)
            for sub in session.get_provider_graph_assignment_info() for node in sub.get_nodes()]


# --- OpenVINO ----------------------------------------------------------------------------------

_OV_PLUMBING = {"Parameter", "Result", "Constant"}


def _openvino_ops(path: Path) -> _Graph:
    ov = require("openvino")
    weights = path.with_suffix(".bin")
    for file in (path, weights):
        if not file.is_file():
            raise ArtifactLoadError(f"{file}: file not found (OpenVINO IR needs both .xml and .bin)")
    try:
        model = ov.Core().read_model(str(path), str(weights))
    except Exception as exc:
        raise ArtifactLoadError(f"{path}: not a loadable OpenVINO IR: {_first_line(exc)}") from None
    ordered = model.get_ordered_ops()
    # NNCF's int8 IR keeps float tensors with FakeQuantize ops around what runs in int8; the device
    # plugin picks each op's precision. Without FakeQuantize nothing is quantized.
    quantized = any(op.get_type_name() == "FakeQuantize" for op in ordered)
    constant: set[str] = set()
    ops = []
    for op in ordered:
        kind, name = op.get_type_name(), op.get_friendly_name()
        sources = [port.get_source_output().get_node().get_friendly_name() for port in op.inputs()]
        if kind == "Constant" or (sources and all(s in constant for s in sources)):
            constant.add(name)
            continue
        if kind in _OV_PLUMBING:
            continue
        used = [p for p in op.outputs() if p.get_target_inputs()]  # MaxPool-8's unused i64 indices do not count
        live = [p for p, s in zip(op.inputs(), sources) if s not in constant] + used
        types = {_ov_dtype(p.get_element_type()) for p in live}
        dynamic = any(p.get_partial_shape().is_dynamic for p in live)
        ops.append(_Op(kind, name, bool(types & _FLOATS) and not quantized, types - _FLOATS - {""}, dynamic))
    return _Graph(ops, constant)


def _ov_dtype(element_type: Any) -> str:
    try:
        return element_type.to_dtype().name
    except Exception:  # dynamic or exotic element types
        return ""


_READERS = {Format.TFLITE: _tflite_ops, Format.ONNX: _onnx_ops, Format.OPENVINO: _openvino_ops}


# --- helpers -----------------------------------------------------------------------------------


def _coerce(enum: Any, value: Any, what: str) -> Any:
    try:
        return enum(value.value if hasattr(value, "value") else value)
    except ValueError:
        raise InputError(f"unknown {what} {value!r}{did_you_mean(str(value), [e.value for e in enum])}") from None


def _runtime_name(recipe: Recipe) -> str:
    return {Runtime.TFLITE: "LiteRT", Runtime.ONNXRUNTIME: "ONNX Runtime", Runtime.OPENVINO: "OpenVINO"}[recipe.runtime]


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("Exception from")]
    return lines[0][:300] if lines else type(exc).__name__


__all__ = ["Compatibility", "OpFallback", "check_artifact", "check_manifest"]
