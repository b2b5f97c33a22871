"""Calibrate once, quantize per target: TFLiteConverter's calibration results reused in one process.

TFLiteConverter calibrates inside `convert()`: it converts the graph to a float .tflite, adds
intermediate tensors, runs the representative dataset through it (`Calibrator.calibrate`, most
of an int8 conversion's time) and quantizes the calibrated model to the requested I/O types
(`mlir_quantize`). The `cpu` (float I/O) and `npu` (int8 I/O) recipes differ only in that
last step, so the same float model meets the same data twice. TF 2.21 has no public switch for
this; its own QuantizationDebugger uses `converter._experimental_calibrate_only` and
`convert.mlir_quantize`, which skip the converter's post-processing (I/O type rewriting, buffer
de-duplication, metadata) and would change the bytes. Reusing the `Calibrator.calibrate` result
for identical inputs keeps every step of `convert()` as it is, so the artifacts are
byte-identical to calibrating each time: the key is the exact float model bytes plus a digest
of the calibration arrays, and anything else (another graph, other data) calibrates afresh.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from edgekit import timings

_results: dict[tuple[str, str], tuple[bytes, str]] = {}  # (model, data digests) -> calibrated model, first user
_last_float_model: list[bytes] = []  # the float graph the last Calibrator was given (see last_float_model)
_data_digests: dict[int, tuple[Any, str]] = {}


def data_digest(dataset: Any) -> str:
    """A digest of a Dataset's arrays (cached per object: one child holds one calibration set)."""
    cached = _data_digests.get(id(dataset))
    if cached is not None and cached[0] is dataset:
        return cached[1]
    digest = hashlib.sha256()
    for name in sorted(dataset.arrays):
        array = dataset.arrays[name]
        digest.update(name.encode() + str(array.dtype).encode() + str(array.shape).encode())
        digest.update(array.tobytes())
    _data_digests[id(dataset)] = (dataset, digest.hexdigest())
    return digest.hexdigest()


@contextmanager
def reused_calibration(dataset: Any, notes: list[str], label: str = "") -> Iterator[None]:
    """Within the block, TFLiteConverter's calibration of a model already calibrated on `dataset` is reused.

    `notes` gets a line saying so when it was; `label` names this artifact for the next ones.
    """
    if dataset is None:
        yield
        return
    from tensorflow.lite.python import lite

    module = lite._calibrator
    original = module.Calibrator
    _last_float_model.clear()  # only a graph calibrated inside this block is the block's
    key_data = data_digest(dataset)

    class ReusingCalibrator(original):
        def __init__(self, model_content, *args, **kwargs):
            super().__init__(model_content, *args, **kwargs)
            _last_float_model[:] = [bytes(model_content)]
            self._edgekit_key = (hashlib.sha256(bytes(model_content)).hexdigest(), key_data)

        def calibrate(self, dataset_gen):
            if self._edgekit_key in _results:
                calibrated, first = _results[self._edgekit_key]
                notes.append(f"calibration reused from {first} (the same float graph and calibration data); "
                             "only the quantization step ran")
                return calibrated
            started = time.perf_counter()
            calibrated = super().calibrate(dataset_gen)
            timings.add("calibrate", time.perf_counter() - started)
            _results[self._edgekit_key] = (calibrated, label or "an earlier artifact")
            return calibrated

    module.Calibrator = ReusingCalibrator
    try:
        yield
    finally:
        module.Calibrator = original


def last_float_model() -> bytes | None:
    """The float .tflite graph the last calibration in this process started from.

    It is the fp32 conversion op for op (EfficientNetB0: the same 319 ops, 180 bytes of metadata
    apart), so a repair times it as its fp32 reference instead of converting the model again.
    """
    return _last_float_model[0] if _last_float_model else None
