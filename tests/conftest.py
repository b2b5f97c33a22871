"""Shared fixtures: tiny real models built on the fly, never downloaded."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(config, items):
    """With pytest-xdist (`make test` runs `-n 2 --dist loadgroup`), each test file runs whole on one
    worker: its module fixtures (a Ray cluster, an sshd, a trained model) are built once, and the
    servers of one file never meet those of another. One process keeps 1.2 of 2 cores busy (it
    waits on servers, clusters and conversion children): 1498 s in one process, 891 s on two
    workers (2026-12-02, a 2-core host with VNNI); on an AVX2-only host whose conversions kept both
    cores busy the gain was 15 % (2290 s -> 1954 s)."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


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


def _built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder `build(folder)` fills once per test run, shared by the pytest-xdist workers: the
    first worker builds it under a file lock, the others wait and read it (the xdist docs' recipe)."""
    from filelock import FileLock

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    root = tmp_path_factory.getbasetemp().parent  # shared by every worker of this run
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            folder.mkdir(exist_ok=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def digits_example(tmp_path_factory) -> dict[str, Path]:
    """The bundled example: a CNN trained on scikit-learn's digits, with calib.npz and eval.npz."""
    import json

    from edgekit.demo import train_digits

    def build(folder: Path) -> None:
        paths = train_digits(folder, epochs=30)
        (folder / "paths.json").write_text(json.dumps({key: str(value) for key, value in paths.items()}))

    folder = _built_once(tmp_path_factory, "digits", build)
    return {key: Path(value) for key, value in json.loads((folder / "paths.json").read_text()).items()}


@pytest.fixture(scope="session")
def digits_dist(digits_example, tmp_path_factory) -> dict:
    """The digits model converted for cpu, gpu, npu and cpu-fp32 in every format (12 artifacts)."""
    from edgekit import convert
    from edgekit.manifest import Manifest

    def build(folder: Path) -> None:
        targets = ["cpu", "gpu", "npu", "cpu-fp32"]
        convert(digits_example["model"], targets, calibration=digits_example["calibration"], output=folder)

    out = _built_once(tmp_path_factory, "dist", build)
    return {"manifest": Manifest.read(out / "manifest.json"), "dir": out}


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

    # A terminal's Ctrl-C reaches a process whose SIGINT is at its default. Started from a shell's
    # background job (`make test &`), SIGINT is inherited as ignored and Python then keeps it ignored,
    # as a nohup'd program should: the child would run to the end and exit 0.
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stderr:  # wait until conversions are under way
        if line.startswith("ok "):
            break
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest
    assert "interrupted" in rest and "Traceback" not in rest
