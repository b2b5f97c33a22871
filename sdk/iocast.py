"""The one place that maps float data to and from an artifact's integer inputs and outputs.

Convert-time verification and `edgekit bench` both feed artifacts through here, so
an app, a test and a benchmark quantize with exactly the numbers in the manifest.
"""
from __future__ import annotations

import numpy as np

from edgekit.artifact import Quantization, TensorSpec

INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def to_input(spec: TensorSpec, data: np.ndarray) -> np.ndarray:
    """Float data -> what the artifact's input expects (quantized when it is integer)."""
    if spec.quantization is not None and spec.dtype in INT_RANGES:
        low, high = INT_RANGES[spec.dtype]
        q = np.round(data.astype(np.float32) / spec.quantization.scale) + spec.quantization.zero_point
        return np.clip(q, low, high).astype(spec.dtype)
    return data.astype(spec.dtype, copy=False)


def from_output(spec: TensorSpec, data: np.ndarray) -> np.ndarray:
    """An artifact's output -> float32 (dequantized when it is integer)."""
    if spec.quantization is not None and data.dtype.kind in "iu":
        zero, scale = spec.quantization.zero_point, spec.quantization.scale
        return (data.astype(np.float32) - zero) * np.float32(scale)
    return data.astype(np.float32, copy=False)


def quantization_from_range(low: float, high: float, dtype: str = "int8") -> Quantization:
    """Asymmetric scale/zero point covering [low, high] (always including 0)."""
    qmin, qmax = INT_RANGES[dtype]
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = (high - low) / (qmax - qmin) or 1.0
    zero_point = int(np.clip(round(qmin - low / scale), qmin, qmax))
    return Quantization(scale=float(scale), zero_point=zero_point)
