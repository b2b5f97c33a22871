"""PyTorch sources at scale: MobileNetV3-small and ResNet-18 trained briefly on digits (3x32x32).

Measures, for `make perf` / a report (numbers are printed and kept in pytest-benchmark's extra_info):
- conversion seconds per format and target (the manifest's per-artifact `seconds`);
- accuracy of every artifact on held-out digits, on its own runtime, against the PyTorch model's:
  an int8 artifact should stay within 1.0 point (asserted: it is fidelity, not speed);
- the int8 (`cpu`) / fp32 (`cpu-fp32`) median latency ratio per runtime for MobileNetV3 (goal <= 0.6x;
  printed, not asserted: timing on a shared host is a measurement).

Training length: EDGEKIT_TORCH_EPOCHS (default 2). Models and artifacts are cached in pytest's cache.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.torch_models import MobileNetV3Small, ResNet18, accuracy, digits_32, train_briefly  # noqa: E402
from tests.perf.latency import median_ms  # noqa: E402

TARGETS = ("cpu", "gpu", "npu", "cpu-fp32")
MODELS = {"mobilenet_v3_small": MobileNetV3Small, "resnet18": ResNet18}
MAX_INT8_DROP = 0.010
LATENCY_GOAL = 0.6


@pytest.fixture(scope="session")
def digits_models(request) -> dict[str, dict]:
    epochs = int(os.environ.get("EDGEKIT_TORCH_EPOCHS", "2"))
    folder = request.config.cache.mkdir(f"edgekit-torch-digits-e{epochs}")
    (train_x, train_y), (test_x, test_y) = digits_32()
    np.savez(folder / "calib.npz", image=train_x[:200])
    np.savez(folder / "eval.npz", image=test_x, labels=test_y)
    models = {}
    for name, cls in MODELS.items():
        path, info = folder / f"{name}.pt2", folder / f"{name}.json"
        if not info.exists():
            torch.manual_seed(0)
            started = time.perf_counter()
            model = train_briefly(cls(num_classes=10), train_x, train_y, epochs=epochs)
            seconds = time.perf_counter() - started
            with torch.no_grad():
                reference = accuracy(model(torch.from_numpy(test_x)).numpy(), test_y)
            torch.export.save(torch.export.export(model, (torch.from_numpy(train_x[:1]),)), path)
            info.write_text(json.dumps({"accuracy": reference, "train_seconds": seconds, "epochs": epochs}))
        models[name] = {"path": path, **json.loads(info.read_text())}
    return {"folder": folder, "models": models}


def _convert(model: Path, folder: Path, out: Path) -> dict:
    if not (out / "manifest.json").exists():
        command = [sys.executable, "-m", "edgekit", "convert", str(model), *[a for t in TARGETS for a in ("-t", t)],
                   "-c", str(folder / "calib.npz"), "-o", str(out), "-q"]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode in (0, 1), result.stderr[-3000:]
    return json.loads((out / "manifest.json").read_text())


def _artifact_accuracy(entry: dict, base: Path, images: np.ndarray, labels: np.ndarray) -> float:
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
def test_every_target_and_format_converts_and_int8_keeps_accuracy(benchmark, digits_models, name):
    folder, model = digits_models["folder"], digits_models["models"][name]
    manifest = benchmark.pedantic(_convert, args=(model["path"], folder, folder / f"dist-{name}"), rounds=1, iterations=1)
    with np.load(folder / "eval.npz") as data:
        images, labels = data["image"], data["labels"]
    rows, drops = [], {}
    for entry in manifest["artifacts"]:
        acc = _artifact_accuracy(entry, folder / f"dist-{name}", images, labels)
        drop = model["accuracy"] - acc
        rows.append(f"{entry['target']:9} {entry['format']:8} {entry['precision']:12} {entry['seconds']:6.1f} s  "
                    f"accuracy {acc:.4f} (drop {drop * 100:+.2f} pt)  cosine {entry['verification']['cosine']:.4f}")
        if entry["precision"].startswith("int8"):
            drops[(entry["target"], entry["format"])] = drop
    print(f"\n{name}: PyTorch accuracy {model['accuracy']:.4f} after {model['epochs']} epoch(s) "
          f"({model['train_seconds']:.0f} s)\n" + "\n".join(rows))
    for error in manifest["errors"]:
        print(f"FAILED {error['target']}/{error['format']}: {error['error']}")
    benchmark.extra_info.update(pytorch_accuracy=model["accuracy"], rows=rows, errors=manifest["errors"])
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
def test_mobilenet_v3_int8_over_fp32_latency(benchmark, digits_models, fmt, threads):
    folder = digits_models["folder"]
    base = folder / "dist-mobilenet_v3_small"
    manifest = _convert(digits_models["models"]["mobilenet_v3_small"]["path"], folder, base)
    by_key = {(a["target"], a["format"]): a for a in manifest["artifacts"]}
    fp32_ms = _median_ms(by_key[("cpu-fp32", fmt)], base, threads)
    int8_ms = benchmark.pedantic(_median_ms, args=(by_key[("cpu", fmt)], base, threads), rounds=1, iterations=1)
    ratio = int8_ms / fp32_ms
    benchmark.extra_info.update(fp32_ms=round(fp32_ms, 3), int8_ms=round(int8_ms, 3), ratio=round(ratio, 3))
    verdict = "meets" if ratio <= LATENCY_GOAL else "MISSES"
    print(f"\nMobileNetV3-small {fmt} {threads} thr: fp32 {fp32_ms:.3f} ms, int8 {int8_ms:.3f} ms, "
          f"ratio {ratio:.2f} ({verdict} the {LATENCY_GOAL}x goal)")
