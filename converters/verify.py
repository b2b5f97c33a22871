"""Convert-time verification: run an artifact in its own runtime next to the source model.

Polygraphy-style: the same inputs go to the reference and to the artifact, outputs
are compared per output position, and the result carries the numbers, not just a boolean.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit import iocast
from edgekit.artifact import TensorSpec, Verification
from edgekit.benchmarks.base import Backend, DeviceUnavailable
from edgekit.benchmarks.metrics import fidelity
from edgekit.benchmarks.registry import backend_class
from edgekit.dataset import Dataset
from edgekit.targets.schema import Recipe, Tolerance


def open_backend(path: Path, recipe: Recipe, notes: list[str]) -> Backend:
    """The recipe's runtime on its device, or on the CPU, saying so, when the device is absent."""
    cls = backend_class(recipe.runtime.value)
    options = dict(threads=recipe.threads, precision=recipe.precision.value)
    backend = cls(path, device=recipe.device, providers=recipe.providers, **options)
    try:
        backend.load()
        return backend
    except DeviceUnavailable as exc:
        notes.append(f"verified on CPU: {exc}")
    backend = cls(path, device="CPU", providers=("CPUExecutionProvider",), **options)
    backend.load()
    return backend


def reference_outputs(run, samples: Dataset) -> list[np.ndarray]:
    """The source model's outputs for every sample, run one sample at a time."""
    per_sample = [run(feed) for feed in samples.batches(1)]
    return [np.concatenate([outs[i] for outs in per_sample]).astype(np.float32) for i in range(len(per_sample[0]))]


def verify(
    backend: Backend,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    samples: Dataset,
    reference: list[np.ndarray],
    tolerance: Tolerance,
) -> Verification:
    """Compare the artifact's outputs with `reference` on `samples`, judged by `tolerance`.

    `inputs`/`outputs` are the artifact's specs in the source's order (with int8
    quantization where the artifact's I/O is integer); samples are keyed by source names.
    """
    actual = artifact_outputs(backend, inputs, outputs, samples)
    return judge(actual, reference, tolerance, samples.samples, backend.describe().get("inference_precision"))


def artifact_outputs(
    backend: Backend, inputs: list[TensorSpec], outputs: list[TensorSpec], samples: Dataset
) -> list[np.ndarray]:
    """The artifact's float outputs for every sample (one at a time), in the source's output order."""
    source_names = list(samples.arrays)
    produced: list[list[np.ndarray]] = [[] for _ in outputs]
    for feed in samples.batches(1):
        feeds = {spec.name: iocast.to_input(spec, feed[name]) for spec, name in zip(inputs, source_names, strict=True)}
        result = backend.infer(feeds)
        for index, spec in enumerate(outputs):
            produced[index].append(iocast.from_output(spec, result[spec.name]))
    return [np.concatenate(chunks) for chunks in produced]


def judge(
    actual: list[np.ndarray],
    reference: list[np.ndarray],
    tolerance: Tolerance,
    samples: int,
    precision_ran: str | None = None,
) -> Verification:
    figures = fidelity(actual, reference)
    cosine, top1, max_error = figures["cosine"], figures["top1_agreement"], figures["max_abs_error"]
    failures = []
    if cosine < tolerance.min_cosine:
        failures.append(f"cosine {cosine:.5f} < {tolerance.min_cosine}")
    if tolerance.max_abs_error is not None and max_error > tolerance.max_abs_error:
        failures.append(f"max abs error {max_error:.3g} > {tolerance.max_abs_error}")
    if tolerance.min_top1_agreement is not None and top1 is not None and top1 < tolerance.min_top1_agreement:
        failures.append(f"top-1 agreement {top1:.3f} < {tolerance.min_top1_agreement}")
    if tolerance.max_accuracy_drop is not None and top1 is not None:
        disagree = round((1.0 - top1) * samples)
        allowed = allowed_disagreements(samples, tolerance.max_accuracy_drop)
        if disagree > allowed:
            failures.append(
                f"top-1 disagrees with the source on {disagree} of {samples} samples: more than the "
                f"{tolerance.max_accuracy_drop * 100:.1f} pt accuracy budget allows ({allowed} of {samples}, "
                "95 % binomial bound)")
    return Verification(
        passed=not failures,
        samples=samples,
        max_abs_error=max_error,
        mean_abs_error=figures["mean_abs_error"],
        cosine=cosine,
        top1_agreement=top1,
        tolerances=tolerance.model_dump(exclude_none=True),
        failures=failures,
        precision_ran=precision_ran,
    )


def allowed_disagreements(samples: int, budget: float, confidence: float = 0.95) -> int:
    """How many top-1 disagreements with the source `samples` samples may show under an accuracy budget.

    The budget judged without labels: where the artifact and the source agree on top-1 they are
    both right or both wrong, so the artifact's accuracy can fall below the source's by at most the
    share of samples where they disagree. A disagreement rate at the budget still shows more
    disagreements than `budget * samples` on some draws; this is the count a rate equal to the
    budget stays within with `confidence` (binomial), so an artifact fails when its disagreements
    are more than chance at the budget explains: 3 of 100 at a 1 pt budget, 2 of 50.
    """
    from scipy.stats import binom

    return int(binom.ppf(confidence, samples, budget))


def generated_samples(inputs: list[TensorSpec], count: int = 16, seed: int = 0) -> Dataset:
    """Seeded inputs for verification when the user gave no data (unknown dims become 1)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in inputs:
        shape = (count, *(d if d is not None else 1 for d in spec.shape[1:]))
        if np.dtype(spec.dtype).kind == "f":
            arrays[spec.name] = rng.random(shape, dtype=np.float32).astype(spec.dtype)
        else:
            arrays[spec.name] = rng.integers(0, 10, size=shape).astype(spec.dtype)
    return Dataset(arrays, origin="generated (seeded uniform [0, 1); no data given)")
