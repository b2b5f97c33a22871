"""How artifact outputs are compared with the source's: the figures verification and repair judge."""
from __future__ import annotations

import numpy as np
import pytest

from edgekit.benchmarks.metrics import fidelity


def test_cosine_is_per_sample_so_one_large_output_does_not_set_it():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(100, 10))
    reference[0] *= 20.0  # one sample's logits 20x the others', as a confident trained classifier gives
    actual = reference + 0.01 * rng.normal(size=reference.shape)
    actual[0] *= 1.3  # that sample's scale off by 30 %, its direction and top-1 intact
    figures = fidelity([actual], [reference])
    assert figures["cosine"] > 0.999
    assert figures["top1_agreement"] == 1.0
    concatenated = np.dot(actual.ravel(), reference.ravel()) / np.linalg.norm(actual) / np.linalg.norm(reference)
    assert concatenated < figures["cosine"]  # the one cosine of everything would weigh sample 0 most


def test_cosine_still_sees_a_collapse_and_spans_every_output():
    rng = np.random.default_rng(1)
    logits, boxes = rng.normal(size=(50, 10)), rng.normal(size=(50, 4, 4))
    assert fidelity([logits, boxes], [logits, boxes])["cosine"] == pytest.approx(1.0)
    collapsed = fidelity([rng.normal(size=logits.shape), boxes], [logits, boxes])["cosine"]
    assert 0.3 < collapsed < 0.8  # the second output agrees, the first is noise: per sample, both count
    assert fidelity([np.zeros((3, 2))], [np.zeros((3, 2))])["cosine"] == 1.0
    assert fidelity([np.zeros((3, 2))], [np.ones((3, 2))])["cosine"] == 0.0


def test_outputs_without_a_common_sample_dimension_are_compared_whole():
    values = [np.arange(6.0).reshape(2, 3), np.array(4.0)]
    assert fidelity(values, values)["cosine"] == pytest.approx(1.0)
    flipped = [values[0], np.array(-4.0)]
    assert fidelity(flipped, values)["cosine"] < 1.0


def test_one_value_per_sample_is_compared_whole_not_by_its_sign():
    reference = np.array([[1.0], [2.0], [0.01], [3.0]])
    actual = np.array([[1.0], [2.0], [-0.01], [3.0]])  # a value near zero crossed it
    assert fidelity([actual], [reference])["cosine"] > 0.999
