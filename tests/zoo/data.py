"""Training and evaluation data for the zoo, all generated here: scikit-learn's digits, reshaped
per architecture (32x32 RGB images, row sequences, canvases with a box), and synthetic tones."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EVAL_SAMPLES = 300


@dataclass
class Split:
    """Inputs keyed by the model's input names, integer class labels for the first output,
    and extra training targets (a second output's)."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray
    targets: list[np.ndarray]

    def head(self, count: int) -> Split:
        return Split({k: v[:count] for k, v in self.inputs.items()}, self.labels[:count],
                     [t[:count] for t in self.targets])


def _digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels): 8x8 floats in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, random_state=seed, stratify=digits.target
    )
    return x_train, y_train, x_test[:EVAL_SAMPLES], y_test[:EVAL_SAMPLES]


def images32(name: str, scale: float = 1.0) -> tuple[Split, Split]:
    """Digits upsampled 4x to 32x32 and repeated to RGB, times `scale` (255 for models that
    carry their own preprocessing)."""
    x_train, y_train, x_test, y_test = _digits()

    def grow(x: np.ndarray) -> np.ndarray:
        big = x.repeat(4, axis=1).repeat(4, axis=2)[..., None].repeat(3, axis=-1)
        return (big * scale).astype(np.float32)

    return Split({name: grow(x_train)}, y_train, []), Split({name: grow(x_test)}, y_test, [])


def images8(name: str, scale: float = 1.0) -> tuple[Split, Split]:
    x_train, y_train, x_test, y_test = _digits()
    return (Split({name: (x_train[..., None] * scale).astype(np.float32)}, y_train, []),
            Split({name: (x_test[..., None] * scale).astype(np.float32)}, y_test, []))


def sequences(name: str) -> tuple[Split, Split]:
    """Each digit as a sequence of its 8 rows (8 steps of 8 features)."""
    x_train, y_train, x_test, y_test = _digits()
    return Split({name: x_train}, y_train, []), Split({name: x_test}, y_test, [])


def image_and_meta() -> tuple[Split, Split]:
    """Two inputs (the image and its 8 row sums); targets: the class and the mean ink."""
    x_train, y_train, x_test, y_test = _digits()

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        meta = x.sum(axis=2).astype(np.float32) / 8.0
        return Split({"image": x[..., None], "row_sums": meta}, y, [x.mean(axis=(1, 2))[:, None].astype(np.float32)])

    return split(x_train, y_train), split(x_test, y_test)


def canvases(name: str) -> tuple[Split, Split]:
    """A digit (upsampled to 16x16) at a random place on a 32x32 canvas; targets: the class and
    its box (y0, x0, y1, x1) in [0, 1]."""
    x_train, y_train, x_test, y_test = _digits()
    rng = np.random.default_rng(0)

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        canvas = np.zeros((len(x), 32, 32, 1), np.float32)
        boxes = np.zeros((len(x), 4), np.float32)
        for i, image in enumerate(x):
            top, left = rng.integers(0, 17, size=2)
            canvas[i, top : top + 16, left : left + 16, 0] = image.repeat(2, axis=0).repeat(2, axis=1)
            boxes[i] = (top / 32, left / 32, (top + 16) / 32, (left + 16) / 32)
        return Split({name: canvas}, y, [boxes])

    return split(x_train, y_train), split(x_test, y_test)


def tones(name: str, length: int = 256) -> tuple[Split, Split]:
    """Keyword-spotting stand-in: 10 classes of two-tone chirps in noise, 256 samples long."""
    rng = np.random.default_rng(0)

    def split(count: int) -> Split:
        labels = rng.integers(0, 10, size=count)
        t = np.arange(length, dtype=np.float32) / length
        base = 4 + 3 * labels[:, None]
        phase = rng.random((count, 1)) * 2 * np.pi
        signal = np.sin(2 * np.pi * base * t + phase) + 0.5 * np.sin(2 * np.pi * (base + 20) * t ** 2)
        signal += 0.3 * rng.standard_normal((count, length))
        return Split({name: signal[..., None].astype(np.float32)}, labels, [])

    return split(1200), split(EVAL_SAMPLES)
