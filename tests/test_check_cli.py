"""`edgekit check`, the manifest's compatibility entries, and the min_accelerated_ops budget."""
from __future__ import annotations

import json

FAST = ["--warmup", "1", "--min-runs", "3", "--min-time", "0"]


def test_convert_records_op_placement(digits_dist):
    data = json.loads((digits_dist["dir"] / "manifest.json").read_text())
    placement = {(a["target"], a["format"]): a["compatibility"] for a in data["artifacts"]}
    assert placement[("cpu", "onnx")]["fraction"] == 1.0
    gpu = placement[("gpu", "tflite")]
    assert gpu["accelerator"] == "LiteRT GPU delegate" and 0 < gpu["fraction"] < 1
    assert {f["op"] for f in gpu["fallbacks"]} >= {"SHAPE"}  # Flatten's shape arithmetic on a dynamic batch


def test_check_a_manifest_and_a_bare_file(cli, digits_dist):
    result = cli("check", digits_dist["dir"], "--json")
    assert result.code == 0, result
    assert len(json.loads(result.stdout)) == 12
    bare = cli("check", digits_dist["dir"] / "gpu" / "digits.tflite", "-t", "gpu", "--min-accelerated-ops", "0.9")
    assert bare.code == 1 and "below min_accelerated_ops=0.9" in bare.stderr
    assert "SHAPE" in bare.stdout


def test_check_bad_input(cli, digits_dist):
    assert cli("check", digits_dist["dir"] / "gpu" / "digits.tflite").code == 2  # no -t
    result = cli("check", digits_dist["dir"], "--min-accelerated-ops", "90")
    assert result.code == 2 and "fraction from 0 to 1" in result.stderr


def test_bench_judges_min_accelerated_ops(cli, digits_dist):
    result = cli("bench", digits_dist["dir"], *FAST, "--budget", "min_accelerated_ops=0.9", "--json")
    assert result.code == 1
    verdicts = {r["measurement"]["name"]: next(v for v in r["verdicts"] if v["budget"] == "min_accelerated_ops")
                for r in json.loads(result.stdout)["results"]}
    assert verdicts["cpu/tflite"]["status"] == "pass"
    assert verdicts["gpu/tflite"]["status"] == "fail"
    assert verdicts["gpu/onnx"]["status"] == "not measured"  # no CUDA here and no op list in the profile
