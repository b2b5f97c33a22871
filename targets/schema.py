"""The target profile schema: closed vocabularies are enums, checked once at load."""
from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Format(str, Enum):
    TFLITE = "tflite"
    ONNX = "onnx"
    OPENVINO = "openvino"


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"  # int8 weights, float activations
    INT8_STATIC = "int8-static"  # int8 weights and activations, float ops allowed where needed
    INT8_FULL = "int8-full"  # every op int8; I/O dtype as the recipe says
    INT16X8 = "int16x8"  # int16 activations, int8 weights

    @property
    def needs_calibration(self) -> bool:
        return self in (Precision.INT8_STATIC, Precision.INT8_FULL, Precision.INT16X8)


class Calibration(str, Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class DeviceClass(str, Enum):
    CPU = "cpu"
    GPU = "gpu"
    NPU = "npu"


class Runtime(str, Enum):
    TFLITE = "tflite"  # LiteRT (ai-edge-litert), or tflite-runtime / tf.lite where only that exists
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"


class IODtype(str, Enum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT8 = "int8"
    UINT8 = "uint8"


class QuantDtype(str, Enum):
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"


class NNCFPreset(str, Enum):
    PERFORMANCE = "performance"  # symmetric activations
    MIXED = "mixed"  # asymmetric activations: NNCF's advice for non-ReLU activations


class NNCFModelType(str, Enum):
    TRANSFORMER = "transformer"  # NNCF's attention / LayerNorm patterns
    NONE = "none"  # no model-type patterns, even where the graph has attention


class BiasCorrection(str, Enum):
    FAST = "fast"  # NNCF's default
    FULL = "full"  # fast_bias_correction=False: more accurate, slower


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Tolerance(_Strict):
    """Convert-time verification limits of an artifact against its source model."""

    min_cosine: float = Field(0.99, ge=-1.0, le=1.0)
    max_abs_error: float | None = Field(None, gt=0)
    min_top1_agreement: float | None = Field(None, ge=0.0, le=1.0)
    # The accuracy budget judged without labels, as top-1 disagreement with the source (filled in
    # from `[budgets] max_accuracy_drop` by Target.tolerance_for; converters/verify.py explains it).
    max_accuracy_drop: float | None = Field(None, ge=0.0, le=1.0)


class Preprocess(_Strict):
    """How to turn images into model inputs (calibration folders, and apps via the manifest)."""

    size: tuple[int, int] | None = None  # height, width
    layout: str = "NHWC"
    color: str = "RGB"  # RGB | BGR | L
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    @field_validator("layout")
    @classmethod
    def _layout(cls, value: str) -> str:
        if value not in ("NHWC", "NCHW"):
            raise ValueError(f"layout must be NHWC or NCHW, got {value!r}")
        return value

    @field_validator("color")
    @classmethod
    def _color(cls, value: str) -> str:
        if value not in ("RGB", "BGR", "L"):
            raise ValueError(f"color must be RGB, BGR or L, got {value!r}")
        return value


class Recipe(_Strict):
    """How to produce, verify and run one artifact format for a target."""

    enabled: bool = True
    precision: Precision
    per_channel: bool = True
    calibration: Calibration = Calibration.MINMAX
    activation_type: QuantDtype = QuantDtype.INT8
    weight_type: QuantDtype = QuantDtype.INT8
    input_dtype: IODtype = IODtype.FLOAT32
    output_dtype: IODtype = IODtype.FLOAT32
    runtime: Runtime
    device: str = "CPU"  # OpenVINO device, ORT provider list is `providers`, LiteRT delegate
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int | None = Field(None, ge=1)
    supported_ops: tuple[str, ...] | None = None  # the accelerator's op list, from its vendor
    tolerance: Tolerance | None = None  # overrides the profile's per-precision tolerance
    # Nodes kept in float inside a quantized model, in the format's own names: TFLite op output
    # tensor names, ONNX node names, OpenVINO op names. The accuracy-aware search fills it in.
    float_nodes: tuple[str, ...] = ()
    # NPUs compile static shapes only: when set, the artifact's inputs get this fixed batch size
    # instead of the source's dynamic one. Only 1 for now: verification, calibration and the
    # layer-error tools feed one sample per call.
    static_batch: int | None = Field(None, ge=1, le=1)
    # Settings chosen from the model's graph (edgekit.converters.traits) where the recipe leaves
    # them unset: NNCF preset, model type and bias correction, ONNX calibration in place of
    # minmax, fragile ops kept in float on targets that run float ops. false: the recipe as written.
    from_model: bool = True
    nncf_preset: NNCFPreset | None = None  # None: from the model (or by activation_type)
    nncf_model_type: NNCFModelType | None = None
    bias_correction: BiasCorrection | None = None
    # int8 weights in 7 bits. x86 CPUs without VNNI (AVX2, AVX-512F alone) multiply uint8 by int8
    # with vpmaddubsw, which sums each pair of products into int16 and saturates; 7-bit weights
    # cannot overflow it. onnxruntime's reduce_range, NNCF's OverflowFix.ENABLE; TFLite has none.
    # It costs weight precision where VNNI is present, so repair tries it only on such hosts.
    reduce_range: bool = False

    @model_validator(mode="after")
    def _float_nodes_need_quantized_activations(self) -> Recipe:
        if self.float_nodes and not self.precision.needs_calibration:
            raise ValueError(
                f"float_nodes keeps nodes out of static quantization; precision {self.precision.value} has none "
                "(use int8-static, int8-full or int16x8, or remove float_nodes)"
            )
        return self


class AccuracyAware(_Strict):
    """`[accuracy_aware]`: search for the fastest int8 recipe that keeps accuracy within a goal.

    The search (edgekit.converters.accuracy_aware) tries the recipe, then the other calibration
    methods, per-channel weights, then keeps the most sensitive layers in float.
    """

    enabled: bool = False  # run the search for this target's int8 recipes (convert --accuracy-aware)
    max_accuracy_drop: float | None = Field(None, ge=0.0, le=1.0)  # vs the source's accuracy; needs labels
    min_cosine: float | None = Field(None, ge=-1.0, le=1.0)  # output similarity to the source; no labels needed
    # OpenVINO: wall time for NNCF's accuracy control to pick the ops kept in float; when it runs
    # out, the ops it had reverted so far are judged like any other candidate.
    accuracy_control_seconds: float = Field(300.0, gt=0)


class Hardware(_Strict):
    """Published facts about a concrete device (for people; code does not branch on them)."""

    vendor: str | None = None
    chip: str | None = None
    accelerator: str | None = None
    cores: int | None = None
    memory_gb: float | None = None
    peak_tops_int8: float | None = None
    notes: str | None = None
    source: str | None = None


class Target(_Strict):
    """A fully resolved target profile (after `extends`)."""

    name: str
    description: str = ""
    device_class: DeviceClass
    formats: dict[Format, Recipe]
    tolerances: dict[Precision, Tolerance] = Field(default_factory=dict)
    budgets: dict[str, float] = Field(default_factory=dict)
    preprocess: Preprocess | None = None
    hardware: Hardware | None = None
    accuracy_aware: AccuracyAware | None = None  # absent: no search unless asked for per run
    # An int8 artifact that misses its tolerance is repaired (edgekit.converters.repair) unless false.
    repair: bool = True
    source: str = ""  # where the profile came from: built-in name or file path
    extends: tuple[str, ...] = ()  # the chain it was resolved from, nearest first

    def recipes(self) -> dict[Format, Recipe]:
        """The enabled formats, in a stable order."""
        return {fmt: r for fmt, r in sorted(self.formats.items(), key=lambda kv: list(Format).index(kv[0])) if r.enabled}

    def tolerance_for(self, fmt: Format) -> Tolerance:
        """What an artifact of `fmt` is verified against: the recipe's or the precision's tolerance,
        with the target's `[budgets] max_accuracy_drop` carried in (judged without labels; see
        edgekit.converters.verify.allowed_disagreements). A tolerance's own value wins."""
        recipe = self.formats[fmt]
        tolerance = recipe.tolerance or self.tolerances.get(recipe.precision) or Tolerance()
        budget = self.budgets.get("max_accuracy_drop")
        if budget is not None and tolerance.max_accuracy_drop is None:
            tolerance = tolerance.model_copy(update={"max_accuracy_drop": budget})
        return tolerance

    def with_precision(self, precision: Precision) -> Target:
        """The same target with every recipe's precision overridden (--precision)."""
        formats = {fmt: r.model_copy(update={"precision": precision}) for fmt, r in self.formats.items()}
        return self.model_copy(update={"formats": formats})

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
