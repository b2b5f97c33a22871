"""Minimal repro: one NNCF int8 IR gives different answers at a dynamic and a static batch on OpenVINO's CPU.

Only Keras (for the SavedModel), OpenVINO and NNCF; no edgekit code. The int8 IR is quantized
once; it is then compiled twice on CPU, as saved (batch dimension dynamic, -1) and after
model.reshape to [1, ...]. Both are fed the same batch-1 inputs, so they should agree to
rounding. Each is also compared with the float model (f32 execution).

    python tests/perf/repro_openvino_dynamic_batch.py MODEL.keras CALIB.npz [EVAL.npz]

(The zoo's EfficientNetB0 is one: `make zoo`, or `python -m tests.zoo.coverage all --only EfficientNetB0`,
leaves model.keras, calibration.npz and evaluation.npz in ~/.cache/edgekit-zoo/EfficientNetB0-*/.)
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)))


def run(compiled, images: np.ndarray) -> np.ndarray:
    request = compiled.create_infer_request()
    return np.concatenate([request.infer([images[i : i + 1]])[0].copy() for i in range(len(images))])


def main(model_path: str, calib_path: str, eval_path: str | None = None) -> dict:
    import keras
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    calib = next(iter(np.load(calib_path).values())).astype(np.float32)
    images = calib
    labels = None
    if eval_path:
        data = np.load(eval_path)
        labels = data["labels"]
        images = next(data[k] for k in data.files if k != "labels").astype(np.float32)[:200]
        labels = labels[:200]
    with tempfile.TemporaryDirectory() as scratch:
        keras.models.load_model(model_path).export(scratch, format="tf_saved_model", verbose=False)
        model = ov.convert_model(scratch)
    core = ov.Core()
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    reference = run(core.compile_model(model, "CPU", f32), images)

    # edgekit's `cpu` recipe: PERFORMANCE preset, global min/max ranges, per-channel weights.
    quantized = nncf.quantize(
        model,
        nncf.Dataset([calib[i : i + 1] for i in range(len(calib))]),
        subset_size=len(calib),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        advanced_parameters=AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
        ),
    )
    static = quantized.clone()
    static.reshape({port.get_any_name(): [1, *list(port.get_partial_shape())[1:]] for port in static.inputs})
    results = {"input_shape_dynamic": str(quantized.inputs[0].get_partial_shape())}
    for label, ir in (("dynamic batch", quantized), ("static batch 1", static)):
        for hint in ("default", "f32"):
            compiled = core.compile_model(ir, "CPU", f32 if hint == "f32" else {})
            out = run(compiled, images)
            entry = {
                "cosine_vs_float": round(cosine(out, reference), 4),
                "top1_agreement": round(float(np.mean(out.argmax(1) == reference.argmax(1))), 3),
            }
            if labels is not None:
                entry["accuracy"] = round(float(np.mean(out.argmax(1) == labels)), 3)
            results[f"{label}, precision hint {hint}"] = entry
    if labels is not None:
        results["float accuracy"] = round(float(np.mean(reference.argmax(1) == labels)), 3)
    results["versions"] = {"openvino": ov.get_version(), "nncf": nncf.__version__}
    return results


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:]), indent=2))
