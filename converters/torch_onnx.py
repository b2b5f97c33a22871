"""PyTorch program -> ONNX with PyTorch's own exporter (`torch.onnx.export(..., dynamo=True)`).

The fp32 export is shared by every ONNX recipe of a run, as the TensorFlow sources' is:
quantization and fp16 are onnx.py's (ONNX Runtime's and onnxconverter-common's tools).
The exporter writes the weights as external data (`fp32.onnx.data`); onnx.py reads them
back in, and an artifact too big for one protobuf (2 GB) keeps them beside it.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgekit._deps import require, version_of
from edgekit.converters import layout as layouts
from edgekit.converters.base import ConvertJob, Converted
from edgekit.converters.exports import Exports
from edgekit.errors import ConversionError

# Opset 20: the dynamo exporter's own default in torch 2.13, read by onnxruntime 1.32 and OpenVINO.
OPSET = 20
# How the exporter names an op it cannot translate: `aten::unfold.default`, `aten.unfold`, `prims::...`.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OP = re.compile(r"\b((?:aten|prims|torchvision|quantized_decomposed)(?:::|\.)[A-Za-z_][\w.]*)")


def export_fp32(exports: Exports, dest: Path) -> None:
    """Write the program as fp32 ONNX (weights as external data beside it), inputs named as the source's."""
    torch = require("torch")
    require("onnxscript")
    source = exports.source
    handle = source.handle
    try:
        torch.onnx.export(
            handle.program, handle.example_inputs, str(dest), dynamo=True, opset_version=OPSET,
            input_names=[s.name for s in source.inputs], output_names=[s.name for s in source.outputs],
            external_data=True, verbose=False,
        )
    except Exception as exc:  # the exporter raises many types; the op it cannot lower is what helps
        raise ConversionError(f"torch.onnx.export could not export {source.label}: {unlowered(exc)}") from None


def convert(job: ConvertJob) -> Converted:
    """onnx.py's recipes on the torch export; NHWC inputs get a Transpose at the edge first."""
    from edgekit.converters import onnx as onnx_converter

    exports = job.exports
    if job.layout == layouts.NHWC:
        exports = _LaidOut(job.exports)
    source = replace(job.source, inputs=layouts.specs_in(job.source.inputs, job.layout))
    converted = onnx_converter.convert(replace(job, source=source, exports=exports))
    converted.tools.pop("tf2onnx", None)
    converted.tools.update({"torch": version_of("torch") or "", "onnxscript": version_of("onnxscript") or ""})
    if job.layout == layouts.NHWC:
        converted.notes.append("inputs take NHWC: a Transpose to NCHW at the input edge of the graph")
    return converted


class _LaidOut:
    """The run's fp32 export with NHWC image inputs, made once beside it."""

    def __init__(self, exports: Exports):
        self._exports = exports
        self.source = exports.source
        self.workdir = exports.workdir

    def onnx_fp32(self) -> Path:
        dest = self.workdir / "fp32-nhwc.onnx"
        if not dest.exists():
            onnx = require("onnx")
            model = onnx.load(str(self._exports.onnx_fp32()))
            names = [self.source.inputs[i].name for i in layouts.image_inputs(self.source.inputs)]
            layouts.onnx_transpose_inputs(model, names)
            onnx.save(model, str(dest), save_as_external_data=True, location=dest.name + ".data")
        return dest


def unlowered(exc: BaseException) -> str:
    """The op the exporter could not lower when its message names one, else its first line."""
    text = _ANSI.sub("", str(exc))
    match = _OP.search(text)
    if match:
        return f"op {match[1].removesuffix('.default')} has no ONNX translation in torch.onnx"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__
