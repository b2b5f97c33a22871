"""The bundled example: a small CNN trained on scikit-learn's digits, converted for every generic target.

`python -m edgekit.demo` (what `make demo` runs) trains the model, writes calibration
and evaluation data, converts for cpu, gpu, npu and cpu-fp32 into every format,
prints each artifact's verification and its accuracy on the held-out digits, then
benchmarks every artifact and writes the JSON, Markdown, JUnit and HTML reports.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

GENERIC_TARGETS = ["cpu-fp32", "cpu", "gpu", "npu"]


def digits_data(seed: int = 0):
    """(x_train, y_train, x_test, y_test): 8x8x1 float32 images in [0, 1], int labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    return train_test_split(images, digits.target, test_size=0.25, random_state=seed, stratify=digits.target)


def train_digits(folder: Path, epochs: int = 40, seed: int = 0) -> dict[str, Path]:
    """Train the digits CNN; write digits.keras, calib.npz (train images) and eval.npz (test images + labels)."""
    from edgekit._deps import require

    keras = require("keras")
    folder.mkdir(parents=True, exist_ok=True)
    x_train, x_test, y_train, y_test = digits_data(seed)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    # ~280 k parameters: large enough that weights, not graph metadata, dominate file sizes.
    x = keras.layers.Dense(256, activation="relu")(x)
    # Logits, not softmax: an int8 softmax output floors small probabilities to zero.
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    paths = {"model": folder / "digits.keras", "calibration": folder / "calib.npz", "evaluation": folder / "eval.npz"}
    model.save(paths["model"])
    np.savez(paths["calibration"], image=x_train[:200])
    np.savez(paths["evaluation"], image=x_test, labels=y_test)
    return paths


def accuracy_of(artifact, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of an artifact on its own runtime, fed through the manifest's I/O quantization."""
    from edgekit import iocast
    from edgekit.benchmarks.registry import backend_class

    backend = backend_class(artifact.runtime)(artifact.path, precision=artifact.precision)
    backend.load()
    try:
        spec_in, spec_out = artifact.inputs[0], artifact.outputs[0]
        predictions = []
        for start in range(0, len(images), 1):
            result = backend.infer({spec_in.name: iocast.to_input(spec_in, images[start : start + 1])})
            predictions.append(iocast.from_output(spec_out, result[spec_out.name]).argmax(axis=1))
    finally:
        backend.close()
    return float(np.mean(np.concatenate(predictions) == labels))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekit.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("demo-out"))
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from edgekit.console import Progress
    from edgekit.conversion import convert

    console = Console()
    console.print("[bold]1. training a small CNN on scikit-learn's digits[/]")
    paths = train_digits(args.output / "example")
    evaluation = np.load(paths["evaluation"])
    keras = __import__("keras")
    reference = keras.models.load_model(paths["model"]).predict(evaluation["image"], verbose=0)
    keras_accuracy = float(np.mean(reference.argmax(axis=1) == evaluation["labels"]))
    console.print(f"   Keras test accuracy: {keras_accuracy:.4f} on {len(evaluation['labels'])} held-out digits")

    console.print(f"[bold]2. edgekit convert {paths['model']} -t {' -t '.join(GENERIC_TARGETS)} -c {paths['calibration']}[/]")
    manifest = convert(
        paths["model"], GENERIC_TARGETS, calibration=paths["calibration"], output=args.output / "dist", progress=Progress()
    )

    console.print("[bold]3. every artifact on its own runtime, on the held-out digits[/]")
    table = Table()
    for column in ("artifact", "precision", "I/O", "KB", "cosine", "accuracy", "vs Keras"):
        table.add_column(column, no_wrap=True)
    for artifact in manifest.artifacts:
        accuracy = accuracy_of(artifact, evaluation["image"], evaluation["labels"])
        check = artifact.verification
        table.add_row(
            f"{artifact.target}/{artifact.format}", artifact.precision,
            f"{artifact.inputs[0].dtype}/{artifact.outputs[0].dtype}", f"{artifact.bytes / 1024:.0f}",
            f"{check.cosine:.5f}" + ("" if check.passed else " FAILED") if check else "-",
            f"{accuracy:.4f}", f"{(accuracy - keras_accuracy) * 100:+.2f} pts",
        )
    console.print(table)

    reports_dir = args.output / "reports"
    console.print(f"[bold]4. edgekit bench {manifest.path} --data {paths['evaluation']} --html {reports_dir / 'bench.html'}[/]")
    from edgekit import reports
    from edgekit.benchmarks.runner import Settings, benchmark

    report = benchmark(manifest.path, data=paths["evaluation"], settings=Settings(min_time=0.5), progress=Progress())
    for writer, name in ((reports.write_json, "bench.json"), (reports.write_markdown, "bench.md"),
                         (reports.write_junit, "junit.xml"), (reports.write_html, "bench.html")):
        writer(report, reports_dir / name)
    reports.console_table(report, console)
    console.print(f"reports: {reports_dir}")
    console.print(f"manifest: {manifest.path}")
    return 0 if manifest.passed and report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
