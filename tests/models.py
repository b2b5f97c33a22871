"""Model builders shared by the test suite and the benchmark suite."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 224


def image_like(count: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """Smooth random images in [-1, 1] (MobileNetV2's input range): low-frequency noise, upsampled."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((count, 7, 7, 3), dtype=np.float32)
    step = -(-size // 7)  # ceil: upsample past the size, then crop
    images = coarse.repeat(step, axis=1).repeat(step, axis=2)[:, :size, :size]
    images += 0.1 * rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(images * 2 - 1, -1, 1).astype(np.float32)


def build_mobilenet(folder: Path, size: int = SIZE, calibration: int = 100) -> dict[str, Path]:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    for layer in model.layers:  # re-estimate BatchNorm statistics on image-like data
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(image_like(32, seed=1, size=size), training=True)
    paths = {"model": folder / "mobilenet_v2.keras", "calibration": folder / "calib.npz"}
    model.save(paths["model"])
    np.savez(paths["calibration"], **{model.inputs[0].name: image_like(calibration, seed=2, size=size)})
    return paths


# MobileNetV2 with random weights has 1000 near-tied logits, so top-1 agreement between
# fp32 and int8 is noise; its int8 artifacts are judged on cosine similarity alone.
RANDOM_WEIGHTS_PROFILE = """
extends = "cpu"
name = "cpu"
[tolerances.int8-full]
min_top1_agreement = 0.0
max_accuracy_drop = 1.0
[tolerances.int8-static]
min_top1_agreement = 0.0
max_accuracy_drop = 1.0
"""


def random_weights_profile(folder: Path) -> Path:
    """The `cpu` profile, judged without top-1 agreement (see RANDOM_WEIGHTS_PROFILE)."""
    path = folder / "cpu.toml"
    path.write_text(RANDOM_WEIGHTS_PROFILE)
    return path
