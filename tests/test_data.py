"""Binding user data to a model's inputs: every mismatch names the file, input and fix."""
from __future__ import annotations

import numpy as np
import pytest

from edgekit.artifact import TensorSpec
from edgekit.data import load_dataset
from edgekit.errors import DataError
from edgekit.targets.schema import Preprocess

IMAGE = [TensorSpec("image", (None, 8, 8, 1), "float32")]
TWO = [TensorSpec("a", (None, 3), "float32"), TensorSpec("b", (None, 2), "float32")]


def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def test_npz_named_after_inputs_with_labels(tmp_path):
    path = _npz(tmp_path, image=np.zeros((5, 8, 8, 1), np.float32), labels=np.arange(5))
    data = load_dataset(path, IMAGE)
    assert data.samples == 5 and data.labels.tolist() == [0, 1, 2, 3, 4]


def test_single_array_for_single_input_and_npy(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((3, 8, 8, 1), np.float64))
    data = load_dataset(tmp_path / "x.npy", IMAGE, limit=2)
    assert data.samples == 2 and data.arrays["image"].dtype == np.float32


def test_multi_input_must_be_named(tmp_path):
    path = _npz(tmp_path, a=np.zeros((2, 3), np.float32), bb=np.zeros((2, 2), np.float32))
    with pytest.raises(DataError, match=r"array 'bb' matches no model input \(did you mean 'b'\?\)"):
        load_dataset(path, TWO)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 8, 8), np.float32), r"has shape \(4, 8, 8\) but the model expects \(N, 8, 8, 1\)"),
        (np.zeros((4, 1, 8, 8), np.float32), "looks NCHW and the model takes NHWC"),
        (np.zeros((4, 8, 8, 1), np.uint8), "is uint8 but the model takes float32"),
        (np.full((4, 8, 8, 1), np.nan, np.float32), "NaN or Inf"),
        (np.zeros((0, 8, 8, 1), np.float32), "zero samples"),
    ],
)
def test_mismatched_data_is_named(tmp_path, array, message):
    path = _npz(tmp_path, image=array)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(path, IMAGE)
    assert str(path) in str(info.value)


def test_labels_count_must_match(tmp_path):
    path = _npz(tmp_path, image=np.zeros((4, 8, 8, 1), np.float32), labels=np.arange(3))
    with pytest.raises(DataError, match="'labels' has 3 entries but the inputs have 4 samples"):
        load_dataset(path, IMAGE)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_dataset(tmp_path / "nope.npz", IMAGE)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(bad, IMAGE)


def test_image_folder_with_preprocessing(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 51 * i, np.uint8)).save(tmp_path / f"{i}.png")
    spec = [TensorSpec("x", (None, 3, 8, 8), "float32")]
    data = load_dataset(tmp_path, spec, preprocess=Preprocess(layout="NCHW", mean=(0.5,), std=(0.5,)))
    assert data.arrays["x"].shape == (3, 3, 8, 8)
    assert np.allclose(data.arrays["x"][0], -1.0) and np.allclose(data.arrays["x"][1], (51 / 255 - 0.5) / 0.5)


def test_empty_image_folder(tmp_path):
    with pytest.raises(DataError, match="no images"):
        load_dataset(tmp_path, IMAGE)


def test_iterables_of_samples():
    rng = np.random.default_rng(0)
    data = load_dataset((rng.random((8, 8, 1), dtype=np.float32) for _ in range(3)), IMAGE)
    assert data.arrays["image"].shape == (3, 8, 8, 1)
    dicts = [{"a": np.zeros(3, np.float32), "b": np.ones(2, np.float32)} for _ in range(4)]
    assert load_dataset(dicts, TWO).samples == 4


def test_manifest_files_are_readable_by_others(tmp_path):
    from edgekit.fsutil import atomic_write_text

    atomic_write_text(tmp_path / "m.json", "{}")
    assert (tmp_path / "m.json").stat().st_mode & 0o044  # group/other read, as the umask allows
