"""Shared fixtures: tiny real models built on the fly, never downloaded."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tiny_keras_path(tmp_path_factory) -> Path:
    """A small CNN (8x8x1 -> 10 logits) saved as .keras; weights seeded, not trained."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_calibration() -> dict[str, np.ndarray]:
    """64 image-like samples in [0, 1] for the tiny CNN's input 'image'."""
    rng = np.random.default_rng(0)
    return {"image": rng.random((64, 8, 8, 1), dtype=np.float32)}


@pytest.fixture(scope="session")
def tiny_source(tiny_keras_path):
    from edgekit.converters.source import load_source

    return load_source(tiny_keras_path)


@pytest.fixture(scope="session")
def tiny_exports(tiny_source, tmp_path_factory):
    from edgekit.converters.exports import Exports

    return Exports(tiny_source, tmp_path_factory.mktemp("exports"))


@pytest.fixture(scope="session")
def digits_example(tmp_path_factory) -> dict[str, Path]:
    """The bundled example: a CNN trained on scikit-learn's digits, with calib.npz and eval.npz."""
    from edgekit.demo import train_digits

    return train_digits(tmp_path_factory.mktemp("digits"), epochs=30)


@pytest.fixture(scope="session")
def digits_dist(digits_example, tmp_path_factory) -> dict:
    """The digits model converted for cpu, gpu, npu and cpu-fp32 in every format (12 artifacts)."""
    from edgekit import convert

    out = tmp_path_factory.mktemp("dist")
    targets = ["cpu", "gpu", "npu", "cpu-fp32"]
    manifest = convert(digits_example["model"], targets, calibration=digits_example["calibration"], output=out)
    return {"manifest": manifest, "dir": out}


class CliResult:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self) -> str:
        return f"exit {self.code}\nstdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-3000:]}"


@pytest.fixture(scope="session")
def cli():
    """Run `edgekit ARGS...` in-process, as a user would, capturing exit code and streams."""
    from edgekit.cli import app
    from typer.testing import CliRunner

    def run(*args: str) -> CliResult:
        result = CliRunner().invoke(app, [str(a) for a in args])
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


def one_line_exit_2(result, *fragments):
    """Bad input: exit 2, exactly one `edgekit: error:` line containing each fragment, no traceback."""
    assert result.code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgekit: error: "), result
    for fragment in fragments:
        assert fragment in lines[0], result
    assert "Traceback" not in result.stderr


def interrupt_after_first_artifact(command: list[str]) -> None:
    """Run an edgekit command, Ctrl-C it once the first artifact is done, expect a clean exit 130."""
    import signal
    import subprocess

    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in process.stderr:  # wait until conversions are under way
        if line.startswith("ok "):
            break
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest
    assert "interrupted" in rest and "Traceback" not in rest
