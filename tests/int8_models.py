"""Small Keras models that plain int8 really breaks, for the int8 repair and OpenVINO tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

OUTLIER = 1000.0


def one_by_one_blocks(size: int = 8, width: int = 32, expand: int = 128, activation: str = "swish"):
    """Strided convolutions down to a 1x1 feature map, then two inverted-residual blocks at 1x1
    (as EfficientNetB0's last stages are on a 32x32 input); BatchNorm statistics set from data.

    OpenVINO 2026.4.1's CPU plugin runs this model's NNCF int8 IR wrongly with a dynamic batch
    (cosine 0.2-0.4 to the batch-1 execution of the same IR, with swish or ReLU; see
    converters/openvino.py).
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3), name="image")
    x = inputs
    while x.shape[1] > 1:
        x = layers.Conv2D(width, 3, strides=2, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation(activation)(x)
    for _ in range(2):
        y = layers.Conv2D(expand, 1, use_bias=False)(x)
        y = layers.BatchNormalization()(y)
        y = layers.Activation(activation)(y)
        y = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        y = layers.Activation(activation)(y)
        y = layers.Conv2D(width, 1, use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        x = layers.add([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(10, name="logits")(x))
    data = smooth_images(64, size)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = 0.0
    model(data, training=True)
    return model, data


def smooth_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, size, size, 3), dtype=np.float32)


def outlier_cnn(x_train: np.ndarray, y_train: np.ndarray, path: Path, epochs: int = 15) -> Path:
    """A trained digits CNN with one 1000x activation channel, saved at `path`.

    One channel of the first convolution is scaled up 1000x and the next convolution reads it
    scaled down 1000x: the float function is unchanged, but a per-tensor int8 range sized for
    that one channel rounds the 31 others to zero. No calibration method fixes it (the outlier
    channel is real data, not a rare spike); keeping the two convolutions in float does.
    """
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="mix")(x)  # mixes channels
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    # ReLU commutes with a positive scale: channel 0 becomes 1000x larger, and the next layer
    # reads it 1000x weaker, so the float model computes exactly what it did before.
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., 0] *= OUTLIER
    bias[0] *= OUTLIER
    model.get_layer("conv").set_weights([kernel, bias])
    kernel, bias = model.get_layer("mix").get_weights()
    kernel[:, :, 0, :] /= OUTLIER
    model.get_layer("mix").set_weights([kernel, bias])
    model.save(path)
    return path
