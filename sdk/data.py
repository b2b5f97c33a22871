"""Turn user data (arrays, .npz/.npy files, image folders) into a Dataset bound to a model's inputs.

Every mismatch is a DataError naming the file, the input and what would be accepted.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifact import TensorSpec
from edgekit.dataset import Dataset, load_arrays
from edgekit.errors import DataError, did_you_mean
from edgekit.targets.schema import Preprocess

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def load_dataset(
    data: Any,
    inputs: list[TensorSpec],
    *,
    limit: int | None = None,
    preprocess: Preprocess | None = None,
) -> Dataset:
    """A Dataset for `inputs` from a path (.npz, .npy, image folder), a dict of arrays, one array, or a Dataset."""
    if isinstance(data, Dataset):
        arrays, labels, origin = data.arrays, data.labels, data.origin
    elif isinstance(data, (str, Path)):
        path = Path(data)
        origin = str(path)
        if path.is_dir():
            arrays, labels = {inputs[0].name: _load_images(path, inputs, preprocess)}, None
            if len(inputs) != 1:
                raise DataError(f"{path}: an image folder feeds a single-input model; this one has {len(inputs)} inputs")
        else:
            arrays, labels = load_arrays(path)
    elif isinstance(data, Mapping):
        arrays, labels, origin = dict(data), None, "<arrays>"
        labels = arrays.pop("labels", None)
    elif isinstance(data, np.ndarray):
        arrays, labels, origin = {"": data}, None, "<array>"
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        arrays, labels, origin = _stack(data), None, "<iterable>"
        labels = arrays.pop("labels", None)
    else:
        raise DataError(f"unsupported data of type {type(data).__name__}; pass a path, a dict of arrays or an array")
    dataset = Dataset(_bind(arrays, inputs, origin), None if labels is None else np.asarray(labels), origin)
    if dataset.samples == 0:
        raise DataError(f"{origin}: has zero samples; calibration and evaluation need at least one")
    if dataset.labels is not None and len(dataset.labels) != dataset.samples:
        raise DataError(f"{origin}: 'labels' has {len(dataset.labels)} entries but the inputs have {dataset.samples} samples")
    dataset.check_finite()
    return dataset.head(limit) if limit else dataset


def _stack(items: Iterable[Any]) -> dict[str, np.ndarray]:
    """Samples from an iterable (one array, or a dict of arrays, per sample) stacked on a batch axis."""
    samples = list(items)
    if not samples:
        raise DataError("<iterable>: has zero samples; calibration and evaluation need at least one")
    if isinstance(samples[0], Mapping):
        return {name: np.stack([np.asarray(s[name]) for s in samples]) for name in samples[0]}
    return {"": np.stack([np.asarray(s) for s in samples])}


def _bind(arrays: dict[str, np.ndarray], inputs: list[TensorSpec], origin: str) -> dict[str, np.ndarray]:
    names = [spec.name for spec in inputs]
    if len(arrays) == 1 and len(inputs) == 1 and next(iter(arrays)) not in names:
        arrays = {names[0]: next(iter(arrays.values()))}  # a single array for a single-input model
    for name in arrays:
        if name not in names:
            raise DataError(
                f"{origin}: array '{name}' matches no model input{did_you_mean(name, names)}; "
                f"name arrays after the inputs ({', '.join(names)}), plus optional 'labels'"
            )
    bound = {}
    for spec in inputs:
        if spec.name not in arrays:
            raise DataError(f"{origin}: no array for model input '{spec.name}' (has: {', '.join(arrays) or 'none'})")
        bound[spec.name] = _check_array(np.asarray(arrays[spec.name]), spec, origin)
    return bound


def _check_array(array: np.ndarray, spec: TensorSpec, origin: str) -> np.ndarray:
    expected = "(N, " + ", ".join("?" if d is None else str(d) for d in spec.shape[1:]) + ")"
    if array.ndim != len(spec.shape) or any(
        want is not None and got != want for got, want in zip(array.shape[1:], spec.shape[1:])
    ):
        hint = _layout_hint(array.shape, spec.shape)
        raise DataError(
            f"{origin}: input '{spec.name}' has shape {tuple(array.shape)} but the model expects {expected}{hint}"
        )
    want_float = np.dtype(spec.dtype).kind == "f"
    if want_float and array.dtype.kind not in "f":
        raise DataError(
            f"{origin}: input '{spec.name}' is {array.dtype} but the model takes {spec.dtype}; "
            "give float data already scaled as the model expects (e.g. pixels / 255)"
        )
    if not want_float and array.dtype.kind not in "iub":
        raise DataError(f"{origin}: input '{spec.name}' is {array.dtype} but the model takes integer {spec.dtype}")
    return array.astype(spec.dtype, copy=False)


def _layout_hint(got: tuple[int, ...], want: tuple[int | None, ...]) -> str:
    if len(got) == 4 and len(want) == 4 and None not in want[1:]:
        nchw_to_nhwc = (got[0], got[2], got[3], got[1])
        nhwc_to_nchw = (got[0], got[3], got[1], got[2])
        if nchw_to_nhwc[1:] == tuple(want[1:]):
            return " (the data looks NCHW and the model takes NHWC: transpose it with (0, 2, 3, 1))"
        if nhwc_to_nchw[1:] == tuple(want[1:]):
            return " (the data looks NHWC and the model takes NCHW: transpose it with (0, 3, 1, 2))"
    return ""


def _load_images(folder: Path, inputs: list[TensorSpec], preprocess: Preprocess | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    spec = preprocess or Preprocess()
    shape = inputs[0].shape
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    if len(shape) != 4:
        raise DataError(f"{folder}: images feed a 4-D input, but '{inputs[0].name}' has shape {shape}")
    channels_at, hw = (1, shape[2:4]) if spec.layout == "NCHW" else (3, shape[1:3])
    size = spec.size or (None if None in hw else tuple(hw))
    if size is None:
        raise DataError(f"{folder}: the model's input size is dynamic; give a preprocessing size (e.g. size=224,224)")
    mode = "L" if spec.color == "L" else "RGB"
    batch = []
    for file in files:
        try:
            with Image.open(file) as image:
                pixels = np.asarray(image.convert(mode).resize((size[1], size[0])), dtype=np.float32)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{file}: not a readable image: {exc}") from None
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        if spec.color == "BGR":
            pixels = pixels[..., ::-1]
        pixels = (pixels * spec.scale - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
        batch.append(pixels)
    images = np.stack(batch).astype(np.float32)
    if channels_at == 1:
        images = images.transpose(0, 3, 1, 2)
    return images
