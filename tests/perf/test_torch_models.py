"""PyTorch sources at scale: MobileNetV3-small and ResNet-18 trained briefly on digits (3x32x32).

Measures, for `make perf` / a report (numbers are printed and kept in pytest-benchmark's extra_info):
- conversion seconds per format and target (the manifest's per-artifact `seconds`);
- accuracy of every artifact on held-out digits, on its own runtime, against the PyTorch model's:
  an int8 artifact should stay within 1.0 point (asserted: it is fidelity, not speed);
- the int8 (`cpu`) / fp32 (`cpu-fp32`) median latency ratio per runtime for MobileNetV3 (goal <= 0.6x;
  printed, not asserted: timing on a shared host is a measurement).

The models are the zoo's (TorchMobileNetV3Small, TorchResNet18 in tests/zoo/architectures.py): trained
once, in a subprocess, and kept in the zoo's cache (~/.cache/edgekit-zoo), so a `make zoo` run and
this file share them; artifacts are kept in pytest's cache. Each model is built and converted only
when a selected test needs it (`-k mobilenet` skips ResNet-18).
"""
from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.perf.latency import median_ms  # noqa: E402
from tests.torch_models import accuracy  # noqa: E402

TARGETS = ("cpu", "gpu", "npu", "cpu-fp32")
MODELS = {"mobilenet_v3_small": "TorchMobileNetV3Small", "resnet18": "TorchResNet18"}
MAX_INT8_DROP = 0.010
LATENCY_GOAL = 0.6
ROOT = Path(__file__).parents[2]


@functools.cache
def _zoo_model(name: str) -> dict:
    """The zoo's trained .pt2 with its calibration (100 training samples) and evaluation (300 held-out)
    data; trained in a subprocess so that this process imports only the runtimes it times."""
    from tests.zoo.architectures import BY_NAME, built

    architecture = BY_NAME[MODELS[name]]
    script = f"from tests.zoo.architectures import BY_NAME, built; built(BY_NAME[{architecture.name!r}])"
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    source = built(architecture)  # cached now: reads built.json
    return {"path": source.model, "calibration": source.calibration, "evaluation": source.evaluation,
            "accuracy": source.source_accuracy}


@pytest.fixture(scope="session")
def artifacts_folder(request) -> Path:
    return request.config.cache.mkdir("edgekit-torch-zoo-artifacts")


def _convert(model: dict, out: Path) -> dict:
    """Every target and format, in a subprocess (edgekit's CLI); kept per model file, so a retrained
    model (a new zoo cache key) is converted again."""
    out = out / model["path"].parent.name
    if not (out / "manifest.json").exists():
        command = [sys.executable, "-m", "edgekit", "convert", str(model["path"]),
                   *[a for t in TARGETS for a in ("-t", t)], "-c", str(model["calibration"]), "-o", str(out), "-q"]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode in (0, 1), result.stderr[-3000:]
    return {**json.loads((out / "manifest.json").read_text()), "folder": out}


def _artifact_accuracy(entry: dict, base: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 on the artifact's own runtime, the whole evaluation set (edgekit feeds it at the
    artifact's batch size)."""
    from edgekit.artifact import TensorSpec
    from edgekit.converters.verify import artifact_outputs, open_backend
    from edgekit.dataset import Dataset
    from edgekit.targets.loader import load_target
    from edgekit.targets.schema import Format

    recipe = load_target(entry["profile"]).formats[Format(entry["format"])]
    backend = open_backend(base / entry["path"], recipe, [])
    try:
        inputs = [TensorSpec.from_dict(t) for t in entry["inputs"]]
        outputs = [TensorSpec.from_dict(t) for t in entry["outputs"]]
        logits = artifact_outputs(backend, inputs, outputs, Dataset({inputs[0].name: images}))[0]
    finally:
        backend.close()
    return accuracy(logits, labels)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_target_and_format_converts_and_int8_keeps_accuracy(benchmark, artifacts_folder, name):
    model = _zoo_model(name)
    manifest = benchmark.pedantic(_convert, args=(model, artifacts_folder / name), rounds=1, iterations=1)
    with np.load(model["evaluation"]) as data:
        labels = data["labels"]
        images = next(data[k] for k in data.files if k != "labels")
    rows, drops, seconds = [], {}, {}
    for entry in manifest["artifacts"]:
        acc = _artifact_accuracy(entry, manifest["folder"], images, labels)
        drop = model["accuracy"] - acc
        seconds[entry["format"]] = seconds.get(entry["format"], 0.0) + entry["seconds"]
        rows.append(f"{entry['target']:9} {entry['format']:8} {entry['precision']:12} {entry['seconds']:6.1f} s  "
                    f"accuracy {acc:.4f} (drop {drop * 100:+.2f} pt)  cosine {entry['verification']['cosine']:.4f}")
        if entry["precision"].startswith("int8"):
            drops[(entry["target"], entry["format"])] = drop
    print(f"\n{name}: PyTorch accuracy {model['accuracy']:.4f} on {len(labels)} held-out digits\n" + "\n".join(rows))
    print("conversion seconds per format (4 targets): " + ", ".join(f"{f} {s:.1f}" for f, s in seconds.items()))
    for error in manifest["errors"]:
        print(f"FAILED {error['target']}/{error['format']}: {error['error']}")
    benchmark.extra_info.update(pytorch_accuracy=model["accuracy"], rows=rows, errors=manifest["errors"],
                                seconds_per_format=seconds)
    assert not manifest["errors"]
    assert len(manifest["artifacts"]) == len(TARGETS) * 3
    worst = max(drops.items(), key=lambda kv: kv[1])
    assert worst[1] <= MAX_INT8_DROP, f"{worst[0]}: int8 accuracy drop {worst[1] * 100:.2f} pt"


def _median_ms(entry: dict, base: Path, threads: int, runs: int = 100, warmup: int = 10) -> float:
    from edgekit.artifact import TensorSpec

    spec = TensorSpec.from_dict(entry["inputs"][0])
    sample = np.random.default_rng(3).random((1, *spec.shape[1:]), dtype=np.float32)
    return median_ms(entry, base / entry["path"], sample, threads, runs, warmup)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fmt", ["tflite", "onnx", "openvino"])
def test_mobilenet_v3_int8_over_fp32_latency(benchmark, artifacts_folder, fmt, threads):
    manifest = _convert(_zoo_model("mobilenet_v3_small"), artifacts_folder / "mobilenet_v3_small")
    base = manifest["folder"]
    by_key = {(a["target"], a["format"]): a for a in manifest["artifacts"]}
    fp32_ms = _median_ms(by_key[("cpu-fp32", fmt)], base, threads)
    int8_ms = benchmark.pedantic(_median_ms, args=(by_key[("cpu", fmt)], base, threads), rounds=1, iterations=1)
    ratio = int8_ms / fp32_ms
    benchmark.extra_info.update(fp32_ms=round(fp32_ms, 3), int8_ms=round(int8_ms, 3), ratio=round(ratio, 3))
    verdict = "meets" if ratio <= LATENCY_GOAL else "MISSES"
    print(f"\nMobileNetV3-small {fmt} {threads} thr: fp32 {fp32_ms:.3f} ms, int8 {int8_ms:.3f} ms, "
          f"ratio {ratio:.2f} ({verdict} the {LATENCY_GOAL}x goal)")
