"""Architectures people deploy, trained for a few epochs on scikit-learn's digits (never downloaded).

Digits (8x8, 0..16) are upsampled to 32x32 RGB in 0..255 (keras.applications rescale inside the
model). keras.applications BatchNorm layers use momentum 0.99-0.999, so after a short run their
moving statistics are still near the initial ones and the model scores at chance in inference
mode: `_reestimate_batchnorm` sets them from one pass over training data (momentum 0).

`python -m tests.perf.trained_models NAME FOLDER [EPOCHS]` writes FOLDER/NAME.keras, calib.npz
(200 training images) and eval.npz (held-out images with labels), and prints the Keras accuracy.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SIZE = 32
NAMES = ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_v2_b0", "transformer", "mobilenet_v2")


def digits(size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, held-out images, held-out labels): 32x32x3 in 0..255."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images.astype(np.float32) * (255.0 / 16.0))[..., None]
    factor = size // 8
    images = images.repeat(factor, axis=1).repeat(factor, axis=2).repeat(3, axis=3)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    images, labels = images[order], data.target[order].astype(np.int64)
    split = 1400
    return images[:split], labels[:split], images[split:], labels[split:]


def build(name: str):
    import keras

    shape = (SIZE, SIZE, 3)
    common = dict(weights=None, input_shape=shape, classes=10, classifier_activation=None)
    if name == "mobilenet_v3_small":
        return keras.applications.MobileNetV3Small(**common, include_preprocessing=True)
    if name == "mobilenet_v3_large":
        return keras.applications.MobileNetV3Large(**common, include_preprocessing=True)
    if name == "efficientnet_b0":
        return keras.applications.EfficientNetB0(**common)
    if name == "efficientnet_v2_b0":
        return keras.applications.EfficientNetV2B0(**common, include_preprocessing=True)
    if name == "mobilenet_v2":
        inputs = keras.Input(shape)
        x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
        body = keras.applications.MobileNetV2(weights=None, input_shape=shape, classes=10, classifier_activation=None)
        return keras.Model(inputs, body(x))
    if name == "transformer":
        return _transformer()
    raise ValueError(f"unknown model {name!r}; one of {', '.join(NAMES)}")


def _transformer(width: int = 64, heads: int = 4, blocks: int = 2):
    """A small encoder: the image's 32 rows are the tokens (LayerNorm, softmax attention, GELU MLP)."""
    import keras
    from keras import layers

    inputs = keras.Input((SIZE, SIZE, 3))
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.Reshape((SIZE, SIZE * 3))(x)
    x = layers.Dense(width)(x)
    positions = keras.ops.arange(SIZE)
    x = x + layers.Embedding(SIZE, width)(positions)
    for _ in range(blocks):
        y = layers.LayerNormalization(epsilon=1e-6)(x)
        y = layers.MultiHeadAttention(heads, width // heads)(y, y)
        x = x + y
        y = layers.LayerNormalization(epsilon=1e-6)(x)
        y = layers.Dense(width * 2, activation="gelu")(y)
        x = x + layers.Dense(width)(y)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(10)(x))


def _reestimate_batchnorm(model, images: np.ndarray) -> None:
    import keras

    norms = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(norms, saved):
        layer.momentum = momentum


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def train(name: str, folder: Path, epochs: int = 8) -> dict:
    import keras

    keras.utils.set_random_seed(0)
    x_train, y_train, x_eval, y_eval = digits()
    model = build(name)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0)
    _reestimate_batchnorm(model, x_train[:512])
    accuracy = float(np.mean(model.predict(x_eval, verbose=0).argmax(axis=1) == y_eval))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.keras"
    model.save(path)
    input_name = model.inputs[0].name
    np.savez(folder / "calib.npz", **{input_name: x_train[:200]})
    np.savez(folder / "eval.npz", **{input_name: x_eval, "labels": y_eval})
    info = {"model": str(path), "keras_accuracy": accuracy, "epochs": epochs, "input": input_name}
    (folder / "info.json").write_text(json.dumps(info))
    return info


if __name__ == "__main__":
    print(json.dumps(train(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 8)))
