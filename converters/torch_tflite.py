"""PyTorch program -> TFLite with litert-torch, quantized by ai-edge-quantizer.

litert-torch (`litert_torch.convert`) lowers the program to an fp32 .tflite; for the other
precisions ai-edge-quantizer, the quantizer LiteRT documents for litert-torch models, applies
its own recipes to that file: fp16 weights (FLOAT_CASTING), dynamic int8 (dynamic_wi8_afp32),
static int8 (static_wi8_ai8) and int16x8 (static_wi8_ai16), calibrated on the job's data.
Inputs keep the source's names: the program is traced with keyword inputs, which become the
TFLite signature's names. litert-torch converts at the example shapes: batch 1.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._deps import require, version_of
from edgekit.converters import layout as layouts
from edgekit.converters.base import ConvertJob, Converted
from edgekit.converters.torch_onnx import unlowered
from edgekit.errors import ConversionError, DataError
from edgekit.targets.schema import IODtype, Precision

SIGNATURE = "serving_default"


def convert(job: ConvertJob) -> Converted:
    require("ai_edge_litert")
    recipe, precision = job.recipe, job.recipe.precision
    notes: list[str] = []
    tools = {"litert-torch": version_of("litert-torch") or "", "torch": version_of("torch") or ""}
    with tempfile.TemporaryDirectory(prefix="edgekit-litert-torch-") as scratch:
        fp32 = job.output if precision is Precision.FP32 else Path(scratch) / "fp32.tflite"
        _lower(job, fp32)
        if precision is not Precision.FP32:
            tools["ai-edge-quantizer"] = version_of("ai-edge-quantizer") or ""
            _quantize(job, fp32, notes)
    inputs, outputs = _specs(job)
    if precision in (Precision.INT8_STATIC, Precision.INT8_FULL, Precision.INT16X8):
        wanted = {recipe.input_dtype, recipe.output_dtype}
        got = {s.dtype for s in [*inputs, *outputs]}
        if IODtype.FLOAT32 in wanted and got != {"float32"}:
            notes.append(
                f"ai-edge-quantizer's static recipes quantize inputs and outputs too ({', '.join(sorted(got))}); the "
                f"recipe's float32 I/O is not available for a PyTorch source: quantize with the scales in the manifest"
            )
    if job.layout == layouts.NHWC:
        notes.append("inputs take NHWC: litert-torch's to_channel_last_io transposes them to the model's NCHW")
    return Converted(inputs=inputs, outputs=outputs, tools=tools, notes=notes)


class _Named:
    """Builds an nn.Module whose forward takes the inputs as keywords (the TFLite signature's names)."""

    @staticmethod
    def wrap(module: Any, names: list[str]) -> Any:
        torch = require("torch")

        class Named(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = module

            def forward(self, **inputs: Any) -> Any:
                return self.inner(*[inputs[name] for name in names])

        named = Named()
        named.training = False  # not .eval(): an exported program's module refuses train()/eval() calls
        return named


def _lower(job: ConvertJob, dest: Path) -> None:
    litert_torch = require("litert_torch")
    torch = require("torch")
    handle = job.source.handle
    module = handle.module()
    examples = [t[:1] for t in handle.example_inputs]  # static batch 1: the shapes litert-torch converts at
    if job.layout == layouts.NHWC:
        images = layouts.image_inputs(job.source.inputs)
        module = litert_torch.to_channel_last_io(module, args=images)
        examples = [t.permute(*layouts.TO_NHWC).contiguous() if i in images else t for i, t in enumerate(examples)]
    names = [spec.name for spec in job.source.inputs]
    wrapped = _Named.wrap(module, names)
    try:
        with _quiet(), torch.no_grad():
            model = litert_torch.convert(wrapped, sample_kwargs=dict(zip(names, examples)))
            model.export(str(dest))
    except Exception as exc:  # litert-torch raises many types; the op it cannot lower is what helps
        raise ConversionError(f"litert-torch could not convert {job.source.label}: {_lowering_reason(exc)}") from None


def _quantize(job: ConvertJob, fp32: Path, notes: list[str]) -> None:
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer, recipe as recipes

    precision = job.recipe.precision
    recipe = None
    if precision is Precision.FP16:
        tool = quantizer.Quantizer(str(fp32))
        tool.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                    algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
        notes.append("fp16: ai-edge-quantizer FLOAT_CASTING, float16 weights dequantized at load; float compute")
    elif precision is Precision.INT8_DYNAMIC:
        tool = quantizer.Quantizer(str(fp32), recipes.dynamic_wi8_afp32())
    elif precision is Precision.INT16X8:
        recipe = recipes.static_wi8_ai16()
        tool = quantizer.Quantizer(str(fp32), recipe)
    else:
        recipe = recipes.static_wi8_ai8()
        tool = quantizer.Quantizer(str(fp32), recipe)
        if not job.recipe.per_channel:
            notes.append("ai-edge-quantizer's static int8 recipe quantizes weights per channel; per_channel=false ignored")
        if job.recipe.reduce_range:
            notes.append("reduce_range not applied: ai-edge-quantizer has no 7-bit weight option")
        if precision is Precision.INT8_FULL:
            notes.append("int8-full on a PyTorch source is ai-edge-quantizer static_wi8_ai8 (every supported op)")
    try:
        with _quiet():
            calibration = None
            if precision.needs_calibration:
                calibration = _calibrate(fp32, recipe, _samples(job))
            result = tool.quantize(calibration)
            result.export_model(str(job.output), overwrite=True)
    except (ConversionError, DataError):
        raise
    except Exception as exc:  # the quantizer raises many types
        raise ConversionError(f"ai-edge-quantizer could not quantize to {precision.value}: {_first_line(exc)}") from None


def _calibrate(fp32: Path, recipe: Any, samples: list[dict[str, np.ndarray]]) -> dict:
    """Activation ranges as the min and max over every sample, as TFLiteConverter, ONNX Runtime and
    NNCF (minmax) take them. Quantizer.calibrate keeps a moving average (smoothing 0.95) of each
    step's range instead; the model is batch 1, so that is the average of single samples' ranges,
    which clips the rarer large activations (a two-input model's int8 top-1 fell 5.3 points with
    it, 1.0 with min/max). The Calibrator it uses takes the update rule as an argument."""
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe)
    calibration = calibrator.Calibrator(str(fp32), qsv_update_func=qsv_utils.min_max_update)
    calibration.calibrate({SIGNATURE: samples}, manager)
    return calibration.get_model_qsvs()


def _samples(job: ConvertJob) -> list[dict[str, np.ndarray]]:
    if job.calibration is None:
        raise DataError(f"{job.target}: {job.recipe.precision.value} needs calibration data")
    names = [spec.name for spec in job.source.inputs]
    return [{n: np.ascontiguousarray(feed[n], dtype=np.float32) for n in names} for feed in job.calibration.batches(1)]


def _specs(job: ConvertJob) -> tuple[list[Any], list[Any]]:
    """The artifact's inputs and outputs as LiteRT reads them, in the source's order."""
    from edgekit.benchmarks.tflite_backend import TFLiteBackend

    backend = TFLiteBackend(job.output)
    backend.load()
    try:
        by_name = {s.name: s for s in [*backend.inputs(), *backend.outputs()]}
    finally:
        backend.close()
    try:
        return ([by_name[s.name] for s in job.source.inputs], [by_name[s.name] for s in job.source.outputs])
    except KeyError as exc:
        raise ConversionError(f"litert-torch's model has no tensor named {exc} (has: {', '.join(by_name)})") from None


@contextlib.contextmanager
def _quiet():
    """litert-torch and ai-edge-quantizer print progress bars and banners; edgekit keeps its own output."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        previous = logging.getLogger("litert_torch").level
        logging.getLogger("litert_torch").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("litert_torch").setLevel(previous)


def _lowering_reason(exc: BaseException) -> str:
    reason = unlowered(exc)
    return reason.replace("has no ONNX translation in torch.onnx", "has no TFLite lowering in litert-torch")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__
