"""Named input arrays (calibration or evaluation data), with optional labels."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import DataError


@dataclass
class Dataset:
    """N samples per input, keyed by the source model's input names, float32.

    Each array has the batch axis first: arrays[name].shape == (N, *sample_shape).
    """

    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    origin: str = "<memory>"

    @property
    def samples(self) -> int:
        return len(next(iter(self.arrays.values())))

    def head(self, count: int) -> Dataset:
        labels = None if self.labels is None else self.labels[:count]
        return Dataset({k: v[:count] for k, v in self.arrays.items()}, labels, self.origin)

    def rows(self, start: int, stop: int) -> Dataset:
        labels = None if self.labels is None else self.labels[start:stop]
        return Dataset({k: v[start:stop] for k, v in self.arrays.items()}, labels, self.origin)

    def joined(self, other: Dataset) -> Dataset:
        """This dataset's samples followed by `other`'s (the same inputs)."""
        labels = None if self.labels is None or other.labels is None else np.concatenate([self.labels, other.labels])
        return Dataset({k: np.concatenate([v, other.arrays[k]]) for k, v in self.arrays.items()}, labels, self.origin)

    def batches(self, batch: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Feeds of `batch` samples each (the last may be shorter), keyed by input name."""
        for start in range(0, self.samples, batch):
            yield {k: v[start : start + batch] for k, v in self.arrays.items()}

    def ranges(self) -> dict[str, tuple[float, float]]:
        return {k: (float(v.min()), float(v.max())) for k, v in self.arrays.items()}

    def check_finite(self) -> None:
        for name, array in self.arrays.items():
            if not np.isfinite(array).all():
                bad = int((~np.isfinite(array)).sum())
                raise DataError(f"{self.origin}: input '{name}' has {bad} NaN or Inf values; clean the data first")


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Arrays and optional `labels` from an .npz or .npy file."""
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    try:
        if path.suffix == ".npy":
            return {"": np.load(path, allow_pickle=False)}, None
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            labels = arrays.pop("labels", None)
            return arrays, labels
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as {path.suffix} data: {exc}") from None
    raise DataError(f"{path}: unsupported data file; pass an .npz, an .npy or a folder of images")
