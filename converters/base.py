"""What every format converter receives and returns.

A converter is a plain function `convert(job: ConvertJob) -> Converted` in its own
module (tflite.py, onnx.py, openvino.py). It writes exactly one artifact at
`job.output` (OpenVINO also writes the .bin beside the .xml); the caller wrote
nothing there before and renames it into place only after verification, so a
converter never needs to clean up a half-written file on failure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgekit.artifact import TensorSpec
from edgekit.converters.exports import Exports
from edgekit.converters.source import SourceModel
from edgekit.dataset import Dataset
from edgekit.targets.schema import Format, Recipe


@dataclass
class ConvertJob:
    source: SourceModel
    target: str  # the target's name, for messages
    format: Format
    recipe: Recipe
    # Float32 samples keyed by the source's input names, batch axis first. None only
    # when the recipe needs no calibration (the caller checks recipe.precision first).
    calibration: Dataset | None
    exports: Exports  # cached fp32 intermediates of the source (SavedModel, ONNX, ...)
    output: Path  # file to write: .tflite, .onnx or .xml (+ .bin)
    # Input layout of the artifact (converters/layout.py): None = the source's, unchanged.
    # `calibration` is already in this layout; `source.inputs` are in the source's.
    layout: str | None = None
    # A search candidate: the converter may take a route that gives the same numerics in other
    # bytes (TFLite: one QuantizationDebugger's calibrated model for every candidate).
    candidate: bool = False


@dataclass
class Converted:
    """What the converter knows about the file it wrote."""

    inputs: list[TensorSpec]  # in the source's input order; int8/uint8 ones carry quantization
    outputs: list[TensorSpec]  # in the source's output order
    tools: dict[str, str] = field(default_factory=dict)  # package -> version used
    notes: list[str] = field(default_factory=list)  # anything a user should know (fallbacks, warnings)
    traits: dict | None = None  # the graph's traits and the settings chosen for them (converters/traits.py)


@dataclass
class LayerError:
    """One activation's quantization error, as a format's debugging tool measured it."""

    tensor: str  # the activation, in the format's tensor names
    error: float  # the search's error measure (higher: more damaged by quantization)
    nodes: tuple[str, ...]  # float_nodes that keep it in float: its producer and its consumers
