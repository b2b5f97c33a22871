"""Graph traits and the settings chosen for them, on hand-built node lists (no conversion)."""
from __future__ import annotations

from edgekit.converters.traits import Node, Traits, apply, choose, find
from edgekit.targets.loader import load_target
from edgekit.targets.schema import BiasCorrection, Calibration, Format, NNCFModelType, NNCFPreset


def _se_block() -> list[Node]:
    return [
        Node("conv", "convolution", ()), Node("act_sig", "sigmoid", ("conv",)), Node("act", "multiply", ("conv", "act_sig")),
        Node("pool", "reduce_mean", ("act",)), Node("squeeze", "convolution", ("pool",)), Node("bias", "add", ("squeeze",)),
        Node("gate", "sigmoid", ("bias",)), Node("excite", "multiply", ("act", "gate")),
    ]


def _attention() -> list[Node]:
    return [Node("norm", "layer_norm", ()), Node("qk", "matmul", ("norm", "norm")), Node("scale", "multiply", ("qk",)),
            Node("probs", "softmax", ("scale",)), Node("av", "matmul", ("probs", "norm")), Node("mlp", "gelu", ("av",))]


def test_swish_and_squeeze_excite_are_told_apart():
    traits = find(_se_block())
    assert traits.activations == {"swish": 1} and traits.gates == ["excite"] and traits.gate_activations == ["gate"]
    assert traits.summary() == "swish x1, squeeze-excite x1"


def test_non_relu_models_get_nncf_mixed_and_full_bias_correction():
    recipe = load_target("cpu").formats[Format.OPENVINO]
    choice = choose(find(_se_block()), Format.OPENVINO, recipe, float_ops_allowed=True)
    chosen = apply(recipe, choice)
    assert chosen.nncf_preset is NNCFPreset.MIXED and chosen.bias_correction is BiasCorrection.FULL
    assert chosen.float_nodes == () and "nncf_preset=mixed" in choice.line()


def test_attention_gets_transformer_type_percentile_and_float_softmax():
    traits = find(_attention())
    assert traits.attention == 1 and traits.layer_norm == 1 and "gelu" in traits.activations
    cpu = load_target("cpu")
    openvino = apply(cpu.formats[Format.OPENVINO], choose(traits, Format.OPENVINO, cpu.formats[Format.OPENVINO], True))
    assert openvino.nncf_model_type is NNCFModelType.TRANSFORMER
    onnx = apply(cpu.formats[Format.ONNX], choose(traits, Format.ONNX, cpu.formats[Format.ONNX], True))
    assert onnx.calibration is Calibration.PERCENTILE and onnx.float_nodes == ("probs",)


def test_the_profile_wins_and_from_model_false_takes_the_recipe_as_written():
    recipe = load_target("cpu").formats[Format.OPENVINO].model_copy(update={"nncf_preset": NNCFPreset.PERFORMANCE})
    assert "nncf_preset" not in choose(find(_se_block()), Format.OPENVINO, recipe, True).settings
    literal = recipe.model_copy(update={"from_model": False})
    assert choose(find(_se_block()), Format.OPENVINO, literal, True).settings == {}
    npu = load_target("npu").formats[Format.ONNX]  # int8-full: nothing kept in float
    assert choose(Traits(softmax=["probs"]), Format.ONNX, npu, False).float_nodes == ()
