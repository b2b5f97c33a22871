"""A measured figure equal to its limit up to float rounding is within budget."""
from __future__ import annotations

from edgekit.benchmarks.budgets import judge, make_budget
from edgekit.benchmarks.measurement import Measurement


def test_an_accuracy_drop_of_exactly_the_limit_passes_and_one_sample_more_fails():
    def measured(accuracy: float) -> Measurement:
        return Measurement(name="cpu/tflite", path="model.tflite", format="tflite", runtime="tflite",
                           metrics={"accuracy": accuracy}, reference_metrics={"accuracy": 1.0})

    assert 1.0 - 0.97 > 0.03  # the float rounding at stake
    assert judge(make_budget("max_accuracy_drop", 0.03), measured(0.97)).passed
    verdict = judge(make_budget("max_accuracy_drop", 0.03), measured(0.96))
    assert verdict.status == "fail" and "0.04 > limit 0.03" in verdict.reason
    assert judge(make_budget("min_cosine", 0.97), Measurement(
        name="cpu/tflite", path="m", format="tflite", runtime="tflite", fidelity={"cosine": 0.97})).passed
