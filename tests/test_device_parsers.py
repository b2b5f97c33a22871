"""Vendor benchmark tools' output, parsed: the formats their documentation shows, with the variations
seen across versions (log prefixes, scientific notation, missing lines)."""
from __future__ import annotations

import pytest

from edgekit.benchmarks.remote.parsers import parse_benchmark_app, parse_benchmark_model, parse_onnxruntime_perf_test

# The tail of LiteRT's tools/benchmark/README.md example (op profiling on), as documented.
BENCHMARK_MODEL_README = """\
Number of nodes executed: 31
============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t                 CONV_2D\t       15\t     1.406\t    89.270%\t    89.270%\t     0.000\t        0

Timings (microseconds): count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929
Memory (bytes): count=0
31 nodes observed


Average inference timings in us: Warmup: 83235, Init: 38467, Inference: 79760.9
"""

# A current run with a delegate: INFO: prefixes, warm-up and timed stats, scientific notation.
BENCHMARK_MODEL_GPU = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/mobilenet_v2.tflite]
INFO: Use gpu: [1]
INFO: Loaded model /data/local/tmp/mobilenet_v2.tflite
INFO: Created TensorFlow Lite delegate for GPU.
INFO: Replacing 63 out of 66 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 partitions for the whole graph.
INFO: The input model file size (MB): 13.9787
INFO: Initialized session in 1.45623e+03ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=52 first=58734 curr=8493 min=8116 max=58734 avg=9657.04 std=7068

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=116 first=8587 curr=8608 min=8267 max=9224 avg=8.56259e+03 std=139 p5=8301 median=8544 p95=8902

INFO: Inference timings in us: Init: 1.45623e+06, First inference: 58734, Warmup (avg): 9657.04, Inference (avg): 8562.59
INFO: Memory footprint delta from the start of the tool (MB): init=8.21875 overall=17.3477
INFO: Overall peak memory footprint (MB) via periodic monitoring: 20.2031
"""


def test_benchmark_model_documented_output():
    parsed = parse_benchmark_model(BENCHMARK_MODEL_README)
    latency = parsed["latency"]
    assert latency["runs"] == 50 and latency["mean_ms"] == pytest.approx(79.732) and latency["min_ms"] == pytest.approx(77.385)
    assert "p50_ms" not in latency  # this version prints no median: nothing is made up
    assert parsed["init_ms"] == pytest.approx(38.467) and parsed["inference_avg_ms"] == pytest.approx(79.7609)


def test_benchmark_model_with_a_delegate_and_scientific_notation():
    parsed = parse_benchmark_model(BENCHMARK_MODEL_GPU)
    latency = parsed["latency"]
    assert latency["runs"] == 116  # the timed run, not the warm-up's count=52
    assert latency["mean_ms"] == pytest.approx(8.56259) and latency["p50_ms"] == pytest.approx(8.544)
    assert parsed["accelerated_ops"] == {"delegate": "TfLiteGpuDelegateV2", "replaced": 63, "total": 66,
                                         "fraction": pytest.approx(63 / 66)}
    assert parsed["init_ms"] == pytest.approx(1456.23) and parsed["first_inference_ms"] == pytest.approx(58.734)
    assert parsed["peak_memory_mb"] == pytest.approx(20.2031)
    assert "error" not in parsed


def test_benchmark_model_glog_prefixes_and_errors():
    text = ("I1202 01:02:03.456789 12345 benchmark_tflite_model.cc:456] Replacing 10 out of 10 node(s) with delegate "
            "(TfLiteXNNPackDelegate) node, yielding 1 partitions.\n"
            "ERROR: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'\n")
    parsed = parse_benchmark_model(text)
    assert parsed["accelerated_ops"]["fraction"] == 1.0
    assert parsed["error"] == "Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'"
    assert "latency" not in parsed


BENCHMARK_APP = """\
[Step 11/11] Dumping statistics report
[ INFO ] Execution Devices:['CPU']
[ INFO ] Count:            1000 iterations
[ INFO ] Duration:         2623.41 ms
[ INFO ] Latency:
[ INFO ]    Median:        2.61 ms
[ INFO ]    Average:       2.62 ms
[ INFO ]    Min:           2.40 ms
[ INFO ]    Max:           5.01 ms
[ INFO ] Throughput:   381.18 FPS
"""


def test_benchmark_app_output_and_older_single_latency_line():
    parsed = parse_benchmark_app("[ INFO ] First inference took 12.30 ms\n" + BENCHMARK_APP)
    assert parsed["latency"] == {"runs": 1000, "p50_ms": 2.61, "mean_ms": 2.62, "min_ms": 2.40, "max_ms": 5.01}
    assert parsed["throughput_ips"] == 381.18 and parsed["first_inference_ms"] == 12.3
    old = parse_benchmark_app("[ INFO ] Latency: 3.14 ms\n[ INFO ] Throughput: 300 FPS\n")
    assert old["latency"]["p50_ms"] == 3.14
    fast = parse_benchmark_app("[ INFO ]    Median:        96.31 us\n[ INFO ]    Min:   52.13 us\n")
    assert fast["latency"] == {"p50_ms": pytest.approx(0.09631), "min_ms": pytest.approx(0.05213)}  # 2026.x: us
    assert parse_benchmark_app("[ ERROR ] Failed to load the model\n")["error"] == "Failed to load the model"


def test_onnxruntime_perf_test_output():
    text = """\
Session creation time cost: 0.0512 s
First inference time cost: 3 ms
Total inference time cost: 1.2 s
Total inference requests: 500
Average inference time cost: 2.4 ms
Total inference run time: 1.21 s
Number of inferences per second: 413.2
Peak working set size: 104857600 bytes
Min Latency: 0.0021 s
Max Latency: 0.0051 s
P50 Latency: 0.00235 s
P90 Latency: 0.0026 s
P95 Latency: 0.0028 s
P99 Latency: 0.0041 s
P999 Latency: 0.005 s
"""
    parsed = parse_onnxruntime_perf_test(text)
    latency = parsed["latency"]
    assert latency["runs"] == 500 and latency["p50_ms"] == pytest.approx(2.35) and latency["p99_ms"] == pytest.approx(4.1)
    assert latency["mean_ms"] == 2.4 and parsed["init_ms"] == pytest.approx(51.2) and parsed["peak_memory_mb"] == 100.0


# The device probe (benchmarks/remote/fingerprint.py) as a Raspberry Pi 5 answers it.
PI_PROBE = """\
@uname
Linux 6.6.31+rpt-rpi-2712 aarch64
@os
Debian GNU/Linux 12 (bookworm)
@android
@cpuinfo
CPU part	: 0xd0b
Model		: Raspberry Pi 5 Model B Rev 1.0
@devicetree
Raspberry Pi 5 Model B Rev 1.0
@cores
4
@governor
performance
performance
performance
performance
@freq
2400000
2400000
2400000
2400000
@maxfreq
2400000
@thermal
cpu-thermal 61850
@throttled
throttled=0x0
@df
/dev/mmcblk0p2 30502032 9520012 19400388 33% /
@end
"""


def test_probe_of_a_raspberry_pi():
    from edgekit.benchmarks.remote.fingerprint import parse_probe

    facts = parse_probe(PI_PROBE)
    assert facts["cpu_model"] == "Raspberry Pi 5 Model B Rev 1.0" and facts["cores"] == 4
    assert facts["governor"] == ["performance"] and facts["frequencies_mhz"] == [2400.0] * 4
    assert facts["temperatures_c"] == {"cpu-thermal": 61.85} and facts["vcgencmd_throttled"] == "0x0"
    assert facts["free_disk_mb"] == pytest.approx(19400388 / 1024) and facts["kernel"].endswith("aarch64")


def test_throttled_marking():
    from edgekit.benchmarks.remote.fingerprint import parse_probe, throttled

    before = parse_probe(PI_PROBE)
    assert throttled(before, before, 80.0) == []
    hot = parse_probe(PI_PROBE.replace("2400000\n2400000\n2400000\n2400000\n@maxfreq", "1500000\n1500000\n1500000\n"
                                       "1500000\n@maxfreq").replace("61850", "85200").replace("0x0", "0x60006"))
    reasons = throttled(before, hot, 80.0)
    assert "CPU frequency dropped from 2400 to 1500 MHz" in reasons
    assert "temperature reached 85.2 °C (threshold 80 °C)" in reasons
    assert any("vcgencmd get_throttled = 0x60006" in r for r in reasons)
    ondemand = parse_probe(PI_PROBE.replace("performance", "ondemand"))
    assert throttled(ondemand, parse_probe(PI_PROBE.replace("performance", "ondemand").replace("2400000", "600000")),
                     None) == []  # an ondemand governor idles low by design: not throttling
