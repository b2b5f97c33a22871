"""What a graph contains that matters to int8 (activations, squeeze-excite gates, attention, LayerNorm),
and the quantizer settings each format documents for it.

Each converter reads its own graph (ONNX nodes, OpenVINO ops, TFLite ops) into `Node`s, so that
the ops named here are in that format's own names (float_nodes, nodes_to_exclude, IgnoredScope).
`choose` turns the traits into recipe settings with a reason for each; a setting the profile
gives explicitly is kept (the profile wins), and `from_model = false` turns the choice off.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edgekit.targets.schema import Calibration, Format, Precision, Recipe

# Normalized op kinds. Everything else keeps its own (lower-cased) type name.
_ACTIVATIONS = ("relu", "relu6", "swish", "hard_swish", "gelu", "sigmoid", "hard_sigmoid", "tanh", "elu", "prelu")
_NON_RELU = {"swish", "hard_swish", "gelu", "sigmoid", "tanh", "elu", "prelu"}
_GATES = {"sigmoid", "hard_sigmoid"}
_POOLS = {"pool", "reduce_mean"}
_MOVES = {"reshape", "transpose", "squeeze", "unsqueeze", "convert", "cast", "identity", "fakequantize"}

_KINDS = {
    # ONNX / OpenVINO / TFLite op types -> kind
    "relu": "relu", "relu6": "relu6", "clip": "relu6", "clamp": "relu6",
    "sigmoid": "sigmoid", "logistic": "sigmoid",
    "hardsigmoid": "hard_sigmoid", "hsigmoid": "hard_sigmoid",
    "swish": "swish", "hswish": "hard_swish", "hardswish": "hard_swish", "hard_swish": "hard_swish",
    "gelu": "gelu", "erf": "gelu", "tanh": "tanh", "elu": "elu", "prelu": "prelu", "leakyrelu": "prelu",
    "softmax": "softmax", "logsoftmax": "softmax",
    "layernormalization": "layer_norm", "mvn": "layer_norm",
    "globalaveragepool": "pool", "averagepool": "pool", "avgpool": "pool", "average_pool_2d": "pool",
    "reducemean": "reduce_mean", "mean": "reduce_mean",
    "mul": "multiply", "multiply": "multiply",
    "matmul": "matmul", "batch_matmul": "matmul", "batchmatmul": "matmul", "einsum": "matmul",
}


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    inputs: tuple[str, ...]  # names of the nodes producing its inputs (constants left out)


def kind_of(op_type: str) -> str:
    key = op_type.lower()
    return _KINDS.get(key, key)


@dataclass
class Traits:
    activations: dict[str, int] = field(default_factory=dict)  # kind -> count (swish counts x*sigmoid(x))
    gates: list[str] = field(default_factory=list)  # squeeze-excite gating multiplies
    gate_activations: list[str] = field(default_factory=list)  # the sigmoid / hard-sigmoid feeding them
    softmax: list[str] = field(default_factory=list)
    attention: int = 0  # softmax nodes fed by a matmul
    layer_norm: int = 0

    @property
    def non_relu(self) -> list[str]:
        return [kind for kind in self.activations if kind in _NON_RELU]

    def summary(self) -> str:
        parts = [f"{kind} x{count}" for kind, count in self.activations.items()]
        if self.gates:
            parts.append(f"squeeze-excite x{len(self.gates)}")
        if self.attention:
            parts.append(f"attention x{self.attention}")
        elif self.softmax:
            parts.append(f"softmax x{len(self.softmax)}")
        if self.layer_norm:
            parts.append(f"layernorm x{self.layer_norm}")
        return ", ".join(parts) or "no activations found"

    def to_dict(self) -> dict[str, Any]:
        return {
            "activations": dict(self.activations),
            "squeeze_excite": len(self.gates),
            "attention": self.attention,
            "softmax": len(self.softmax),
            "layer_norm": self.layer_norm,
        }


def find(nodes: list[Node]) -> Traits:
    by_name = {node.name: node for node in nodes}

    def producer(name: str) -> Node | None:
        node = by_name.get(name)
        while node is not None and node.kind in _MOVES and node.inputs:
            node = by_name.get(node.inputs[0])
        return node

    def reaches_pool(node: Node, depth: int = 10) -> bool:
        """A squeeze-excite gate's input comes from a global pool a few (small) ops back."""
        frontier = [node]
        for _ in range(depth):
            frontier = [p for n in frontier for p in map(by_name.get, n.inputs) if p is not None]
            if any(p.kind in _POOLS for p in frontier):
                return True
        return False

    counts: Counter[str] = Counter()
    traits = Traits()
    swish_sigmoids: set[str] = set()
    for node in nodes:
        if node.kind == "multiply" and len(node.inputs) == 2:
            first, second = (producer(name) for name in node.inputs)
            pair = [n for n in (first, second) if n is not None]
            gate = next((n for n in pair if n.kind in _GATES), None)
            if gate is None:
                continue
            other = next((n for n in pair if n is not gate), None)
            gate_input = producer(gate.inputs[0]) if gate.inputs else None
            if other is not None and gate_input is not None and gate_input.name == other.name:
                # x * sigmoid(x) is swish, x * hard_sigmoid(x) hard-swish
                counts["swish" if gate.kind == "sigmoid" else "hard_swish"] += 1
                swish_sigmoids.add(gate.name)
            elif reaches_pool(gate):
                traits.gates.append(node.name)
                traits.gate_activations.append(gate.name)
    gate_names = set(traits.gate_activations)
    for node in nodes:
        if node.kind in _ACTIVATIONS and node.name not in swish_sigmoids and node.name not in gate_names:
            counts[node.kind] += 1
        elif node.kind == "softmax":
            traits.softmax.append(node.name)
            source = producer(node.inputs[0]) if node.inputs else None
            for _ in range(3):  # scale and mask ops may sit between the matmul and the softmax
                if source is None or source.kind == "matmul":
                    break
                source = producer(source.inputs[0]) if source.inputs else None
            traits.attention += bool(source is not None and source.kind == "matmul")
        elif node.kind == "layer_norm":
            traits.layer_norm += 1
    traits.activations = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    return traits


@dataclass
class Choice:
    """Settings chosen from the traits for one recipe, with why."""

    traits: Traits
    settings: dict[str, Any] = field(default_factory=dict)  # recipe field -> value (JSON-able)
    float_nodes: tuple[str, ...] = ()  # fragile ops kept in float
    reasons: list[str] = field(default_factory=list)

    def line(self) -> str:
        chosen = [f"{key}={value}" for key, value in self.settings.items()]
        if self.float_nodes:
            chosen.append(f"{len(self.float_nodes)} fragile op(s) in float")
        return f"traits: {self.traits.summary()}; chosen: {', '.join(chosen) or 'profile recipe as is'}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "traits": self.traits.to_dict(),
            "settings": dict(self.settings),
            "float_nodes": list(self.float_nodes),
            "reasons": list(self.reasons),
        }


def choose(traits: Traits, fmt: Format, recipe: Recipe, float_ops_allowed: bool) -> Choice:
    """The documented settings for these traits. `float_ops_allowed`: the target runs float ops
    (a CPU or GPU int8-static recipe), so fragile ops may stay in float."""
    choice = Choice(traits)
    if not recipe.from_model or recipe.precision not in (Precision.INT8_STATIC, Precision.INT8_FULL):
        return choice
    non_relu = traits.non_relu
    transformer = bool(traits.attention or traits.layer_norm)
    if fmt is Format.OPENVINO:
        if recipe.nncf_preset is None and non_relu:
            choice.settings["nncf_preset"] = "mixed"
            choice.reasons.append(
                f"NNCF preset mixed (asymmetric activations): documented for non-ReLU activations ({', '.join(non_relu)})"
            )
        if recipe.nncf_model_type is None and transformer:
            choice.settings["nncf_model_type"] = "transformer"
            choice.reasons.append(
                "NNCF model_type transformer: its attention / LayerNorm patterns (softmax and LayerNorm kept in float)"
            )
        if recipe.bias_correction is None and non_relu:
            choice.settings["bias_correction"] = "full"
            choice.reasons.append(
                "NNCF full bias correction (fast_bias_correction=False): more accurate, slower; for non-ReLU activations"
            )
    if fmt is Format.ONNX and recipe.calibration is Calibration.MINMAX and transformer:
        choice.settings["calibration"] = Calibration.PERCENTILE.value
        choice.reasons.append(
            "onnxruntime Percentile calibration: LayerNorm / attention activations have outlier-dominated min-max ranges"
        )
    if fmt is Format.TFLITE and (non_relu or traits.gates):
        choice.reasons.append(
            "TFLiteConverter has no per-op float, preset or calibration setting: a missed tolerance is left to "
            "the repair (QuantizationDebugger denylisted_nodes)"
        )
    if float_ops_allowed and recipe.precision is Precision.INT8_STATIC and fmt in (Format.ONNX, Format.OPENVINO):
        # Softmax only: NNCF's transformer model type keeps it in float on OpenVINO. Squeeze-excite
        # gates are left quantized: measured on EfficientNetB0, int8 gates verified (cosine 0.994
        # on OpenVINO, 0.98 on TFLite), and a float island per block costs speed; where they do
        # break, the repair finds them by measured per-layer error.
        fragile = tuple(traits.softmax) if fmt is Format.ONNX else ()
        if fragile:
            choice.float_nodes = fragile
            choice.reasons.append(f"{len(fragile)} softmax op(s) kept in float (nodes_to_exclude)")
    return choice


def apply(recipe: Recipe, choice: Choice) -> Recipe:
    """The recipe with the chosen settings; float_nodes the profile or the search set are kept."""
    update: dict[str, Any] = dict(choice.settings)
    if choice.float_nodes:
        update["float_nodes"] = tuple(dict.fromkeys((*recipe.float_nodes, *choice.float_nodes)))
    # Validated, so that the JSON values become the schema's enums.
    return Recipe.model_validate({**recipe.model_dump(), **update}) if update else recipe


# --- each format's graph as Nodes ----------------------------------------------------------------


def onnx_nodes(model: Any) -> list[Node]:
    producer = {output: node.name for node in model.graph.node for output in node.output}
    return [
        Node(node.name, kind_of(node.op_type), tuple(producer[i] for i in node.input if i in producer))
        for node in model.graph.node
    ]


def openvino_nodes(model: Any) -> list[Node]:
    nodes = []
    for op in model.get_ordered_ops():
        kind = kind_of(op.get_type_name())
        if kind in ("constant", "parameter", "result"):
            continue
        inputs = tuple(
            value.get_node().get_friendly_name()
            for value in op.input_values()
            if value.get_node().get_type_name() != "Constant"
        )
        nodes.append(Node(op.get_friendly_name(), kind, inputs))
    return nodes


def tflite_nodes(ops: list[dict], tensor_names: dict[int, str]) -> list[Node]:
    """From LiteRT's op details: a node is named by its first output tensor (as float_nodes are)."""
    producer = {index: op["outputs"][0] for op in ops for index in op["outputs"] if index >= 0}
    nodes = []
    for op in ops:
        name = tensor_names.get(op["outputs"][0], str(op["outputs"][0]))
        inputs = tuple(tensor_names[producer[i]] for i in op["inputs"] if i in producer and producer[i] in tensor_names)
        nodes.append(Node(name, kind_of(op["op_name"]), inputs))
    return nodes
