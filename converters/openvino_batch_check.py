"""Run one OpenVINO IR on the CPU with its dynamic batch and at batch 1, in a child process.

`python -m edgekit.converters.openvino_batch_check DIR` reads DIR/model.xml and DIR/samples.npz
(arrays i0, i1, ... in the model's input order, batch axis first), feeds each sample to both
compilations and prints {"cosine": the lowest mean cosine over the outputs}. It imports only
OpenVINO and NumPy. A child process because OpenVINO's CPU plugin can crash, not only err, on a
dynamic-batch int8 model (measured: SIGSEGV on an NNCF int8 EfficientNetB0), and a crash must
cost this check, not the conversion.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def run_all(compiled, samples: list[list[np.ndarray]]) -> list[np.ndarray]:
    request = compiled.create_infer_request()
    per_sample = [[request.infer(sample)[i].copy() for i in range(len(compiled.outputs))] for sample in samples]
    return [np.concatenate([outs[i] for outs in per_sample]) for i in range(len(compiled.outputs))]


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    same = norms == 0  # two all-zero outputs agree
    return float(np.mean(np.where(same, 1.0, np.sum(a * b, axis=1) / np.where(same, 1.0, norms))))


def main(folder: Path) -> dict:
    import openvino as ov

    core = ov.Core()
    arrays = np.load(folder / "samples.npz")
    inputs = [arrays[f"i{k}"] for k in range(len(arrays.files))]
    samples = [[x[i : i + 1] for x in inputs] for i in range(len(inputs[0]))]
    static = core.read_model(str(folder / "model.xml"))
    static.reshape({port.get_any_name(): [1, *list(port.get_partial_shape())[1:]] for port in static.inputs})
    static_out = run_all(core.compile_model(static, "CPU"), samples)
    dynamic_out = run_all(core.compile_model(core.read_model(str(folder / "model.xml")), "CPU"), samples)
    return {"cosine": min(mean_cosine(d, s) for d, s in zip(dynamic_out, static_out))}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
