"""Calibrate once, quantize per target: the same bytes as calibrating each time.

`npu` and `coral-edgetpu` make TFLite int8-full from the same batch-1 float graph and
the same calibration data; only the I/O types differ (int8 vs uint8). Converted together,
the second reuses the first's calibration; each artifact must be byte-identical to the one a
run with that target alone writes.
"""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def calib_file(tiny_calibration, tmp_path_factory):
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(path, **tiny_calibration)
    return path


def test_shared_calibration_is_byte_identical(tiny_keras_path, calib_file, tmp_path):
    from edgekit import convert

    together = convert(tiny_keras_path, ["npu", "coral-edgetpu"], formats=["tflite"], calibration=calib_file,
                       output=tmp_path / "together")
    # npu calibrates first in both cases; coral-edgetpu alone calibrates for itself.
    alone = convert(tiny_keras_path, ["coral-edgetpu"], formats=["tflite"], calibration=calib_file,
                    output=tmp_path / "alone")
    assert not together.errors
    (single,) = alone.artifacts
    assert together.artifacts[1].target == "coral-edgetpu" and together.artifacts[1].sha256 == single.sha256
    assert not any("calibration reused" in n for n in single.notes)
    reused = [a for a in together.artifacts if any("calibration reused" in n for n in a.notes)]
    assert [a.target for a in reused] == ["coral-edgetpu"]
    steps = together.artifacts[0].timings
    assert set(steps) == {"export", "calibrate", "quantize", "verify"} and steps["calibrate"] > 0
    assert reused[0].timings["calibrate"] == 0
    assert "calibration reused from npu/tflite" in " ".join(reused[0].notes)
