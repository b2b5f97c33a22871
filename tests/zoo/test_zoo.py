"""The zoo in the test suite: a fast subset on every `make test`; the full zoo only when asked
(`make zoo`, or `pytest -m zoo`), since it takes an hour on a 2-core host."""
from __future__ import annotations

import re

import pytest

from tests.zoo import coverage
from tests.zoo.architectures import ARCHITECTURES

FAST = ["InModelPreprocessing", "TFLiteSource"]
TOOL_NAMES = re.compile(r"TFLiteConverter|tf2onnx|onnxruntime|onnxconverter-common|OpenVINO|NNCF|TensorFlow|LiteRT")


def test_the_zoo_has_the_architectures_the_issue_lists():
    names = {a.name for a in ARCHITECTURES}
    assert len(names) >= 20
    assert {"MobileNetV2", "EfficientNetB0", "ConvNeXtTiny", "GRU", "BidirectionalGRU", "TransformerEncoder",
            "PyTorchONNX", "TFLiteSource", "TFModuleSavedModel"} <= names


@pytest.fixture(scope="module")
def fast_records(tmp_path_factory):
    work = tmp_path_factory.mktemp("zoo")
    return [coverage.run_one(name, work / f"{name}.json", work / "out", bench_time=0.0, bench_runs=3) for name in FAST]


def test_fast_subset_cells(fast_records):
    for record in fast_records:
        assert record["source_accuracy"] > 0.8, record["name"]  # trained, not random weights
        rows = record["rows"]
        assert len(rows) == len(coverage.TARGETS) * len(coverage.FORMATS)
        for row in rows:
            if row["status"] == "fails":
                assert TOOL_NAMES.search(row["reason"]), row
            if row["precision"] in ("fp32", "fp16"):
                assert row["status"] == "accurate", row
            if row["status"] in ("accurate", "completes"):
                assert row["cosine"] is not None and row["accuracy_change"] is not None, row
    tflite_source = {(r["target"], r["format"]): r for r in fast_records[1]["rows"]}
    assert tflite_source[("cpu", "tflite")]["status"] == "not offered"  # a .tflite is not re-quantized


def test_the_table_renders_a_row_per_cell_and_a_summary(fast_records):
    table = coverage.render(fast_records, wall_seconds=60.0)
    assert "Tools: tensorflow " in table and "onnxruntime " in table
    assert "## Summary" in table and "| onnx | int8-static |" in table
    cells = [line for line in table.splitlines() if line.startswith(("| InModelPreprocessing |", "| TFLiteSource |"))]
    assert len(cells) == 2 + 2 * len(coverage.TARGETS) * len(coverage.FORMATS)  # + the architectures table


@pytest.mark.zoo
def test_full_zoo(tmp_path):
    """Every architecture (about an hour here): `pytest -m zoo tests/zoo`."""
    assert coverage.main(["all", "--results", str(tmp_path), "--output", str(tmp_path / "coverage.md")]) == 0
