"""Budgets: a limit on one measured figure, and one function that judges it.

A budget is data (`key`, `limit`); the key says which figure and which way is good:
`min_*` keys are lower bounds, everything else is an upper bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from edgekit.benchmarks.measurement import Measurement, Verdict
from edgekit.errors import InputError, did_you_mean

# budget key -> the Measurement figure it limits (see Measurement.value)
UPPER = {
    "latency_p50_ms": "latency_p50_ms",
    "latency_p90_ms": "latency_p90_ms",
    "latency_p95_ms": "latency_p95_ms",
    "latency_p99_ms": "latency_p99_ms",
    "latency_mean_ms": "latency_mean_ms",
    "load_ms": "load_ms",
    "first_inference_ms": "first_inference_ms",
    "peak_memory_mb": "peak_memory_mb",
    "model_memory_mb": "model_memory_mb",
    "size_mb": "size_mb",
    "max_accuracy_drop": "accuracy_drop",
    "max_abs_error": "max_abs_error",
    "max_mean_abs_error": "mean_abs_error",
    "max_mae": "mae",
    "max_rmse": "rmse",
}
LOWER = {
    "min_throughput_ips": "throughput_ips",
    "min_accuracy": "accuracy",
    "min_precision": "precision",
    "min_recall": "recall",
    "min_f1": "f1",
    "min_roc_auc": "roc_auc",
    "min_cosine": "cosine",
    "min_top1_agreement": "top1_agreement",
    "min_accelerated_ops": "accelerated_ops",  # fraction of ops on the accelerator (edgekit.converters.compat)
}
KEYS = sorted({*UPPER, *LOWER})
# Budgets on shares (0-1), not percentages: 95 for min_accuracy is a mistake worth saying.
FRACTIONS = {"min_accelerated_ops", "min_accuracy", "min_precision", "min_recall", "min_f1", "min_roc_auc",
             "min_top1_agreement", "min_cosine", "max_accuracy_drop"}


@dataclass(frozen=True)
class Budget:
    key: str
    limit: float

    @property
    def figure(self) -> str:
        return UPPER.get(self.key) or LOWER[self.key]

    @property
    def higher_is_better(self) -> bool:
        return self.key in LOWER


def make_budget(key: str, value: object, where: str = "--budget") -> Budget:
    """A validated Budget; `where` names the source in error messages (a flag, a file and key)."""
    if key not in UPPER and key not in LOWER:
        raise InputError(f"{where}: unknown budget '{key}'{did_you_mean(key, KEYS)}")
    try:
        limit = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{where}: budget {key} must be a number, got {value!r}") from None
    if not math.isfinite(limit) or limit < 0:
        raise InputError(f"{where}: budget {key} must be a finite number >= 0, got {value!r}")
    if key in FRACTIONS and limit > 1:
        raise InputError(f"{where}: budget {key} is a fraction from 0 to 1, got {value!r}")
    return Budget(key, limit)


def parse_budget(text: str) -> Budget:
    """`KEY=VALUE` from the command line."""
    key, sep, value = text.partition("=")
    if not sep:
        raise InputError(f"--budget {text!r}: expected KEY=VALUE, e.g. latency_p90_ms=5")
    return make_budget(key.strip(), value.strip(), f"--budget {text}")


def merge(*sources: dict[str, Budget]) -> dict[str, Budget]:
    """Later sources win, key by key (profile defaults, then config, then flags)."""
    merged: dict[str, Budget] = {}
    for source in sources:
        merged.update(source)
    return merged


def judge(budget: Budget, measurement: Measurement) -> Verdict:
    measured = measurement.value(budget.figure)
    if measured is None:
        reason = measurement.skipped.get(budget.figure.split("_")[0]) or measurement.skipped.get(budget.figure) or _why_missing(budget.figure)
        return Verdict(budget.key, budget.limit, None, "not measured", reason)
    # Equal within float rounding is within budget: an accuracy drop of 1.0 - 0.97 reads
    # 0.030000000000000027 and must not fail a 0.03 limit as 'measured 0.03 > limit 0.03'.
    ok = (measured >= budget.limit if budget.higher_is_better else measured <= budget.limit) or math.isclose(
        measured, budget.limit, rel_tol=1e-9, abs_tol=1e-12)
    sign = "<" if budget.higher_is_better else ">"
    reason = "" if ok else f"measured {measured:.4g} {sign} limit {budget.limit:g}"
    return Verdict(budget.key, budget.limit, float(measured), "pass" if ok else "fail", reason)


def _why_missing(figure: str) -> str:
    if figure in ("accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse"):
        return "no labels in --data"
    if figure == "accuracy_drop":
        return "needs labels and a reference model"
    if figure in ("cosine", "top1_agreement", "max_abs_error", "mean_abs_error"):
        return "no reference model"
    if figure == "accelerated_ops":
        return "op placement not checked (no target profile, or the check could not decide)"
    return "not measured"
