"""PyTorch program -> OpenVINO IR with `openvino.convert_model` on the ExportedProgram itself.

Not via ONNX: OpenVINO's PyTorch frontend reads the program directly. Everything after
reading (static batch, NNCF int8, weight compression, fp16, integer I/O) is openvino.py's,
the same recipes as for every other source.
"""
from __future__ import annotations

from typing import Any

from edgekit._deps import version_of
from edgekit.converters import layout as layouts
from edgekit.converters.base import ConvertJob, Converted
from edgekit.errors import ConversionError


def convert(job: ConvertJob) -> Converted:
    from edgekit.converters import openvino as openvino_converter

    converted = openvino_converter.convert(job)  # reads the program through read_program below
    converted.tools["torch"] = version_of("torch") or ""
    if job.layout == layouts.NHWC:
        converted.notes.append("inputs take NHWC: OpenVINO PrePostProcessor transposes them to the model's NCHW")
    return converted


def read_program(ov: Any, job: ConvertJob) -> Any:
    """The ov.Model of the source's program: inputs and outputs named as the source's, the source's
    static dimensions set (convert_model leaves them dynamic), NHWC inputs when the job asks."""
    source = job.source
    try:
        model = ov.convert_model(source.handle.program)
    except Exception as exc:  # the PyTorch frontend raises many types; its message names the op
        raise ConversionError(f"OpenVINO could not convert the torch program {source.label}: {_reason(exc)}") from None
    if len(model.inputs) != len(source.inputs) or len(model.outputs) != len(source.outputs):
        raise ConversionError(
            f"OpenVINO made {len(model.inputs)} inputs and {len(model.outputs)} outputs of a program with "
            f"{len(source.inputs)} and {len(source.outputs)}"
        )
    # Positional: convert_model keeps the program's input order; outputs get op-made names.
    for port, spec in zip([*model.inputs, *model.outputs], [*source.inputs, *source.outputs]):
        port.get_tensor().set_names({spec.name})
    shapes = {spec.name: ov.PartialShape([-1 if d is None else d for d in spec.shape]) for spec in source.inputs}
    try:
        model.reshape(shapes)
    except Exception as exc:
        raise ConversionError(f"OpenVINO could not set the program's input shapes {shapes}: {_reason(exc)}") from None
    if job.layout == layouts.NHWC:
        names = [source.inputs[i].name for i in layouts.image_inputs(source.inputs)]
        model = layouts.openvino_nhwc_inputs(ov, model, names)
    from edgekit.converters.openvino import _renumber_auto_names

    _renumber_auto_names(model)  # stable op names for float_nodes and reproducible .xml bytes
    return model


def _reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    for line in lines:  # the frontend's useful line names the op it has no translation for
        if "aten" in line or "No conversion rule" in line or "not supported" in line:
            return line[:300]
    return lines[0][:300] if lines else type(exc).__name__
