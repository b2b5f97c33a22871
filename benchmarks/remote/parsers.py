"""Read vendor benchmark tools' text output: LiteRT benchmark_model, OpenVINO benchmark_app, onnxruntime_perf_test.

Version-tolerant by construction: each figure is found by its own pattern anywhere in a line,
so log prefixes (`INFO: `, `[ INFO ] `, glog's `I1201 12:00:00.1 123 file.cc:45] `), reordered
lines and numbers in scientific notation (`avg=1.23457e+06`) all parse. A figure the tool
did not print is absent from the result, never guessed: benchmark_model prints no median,
so its latency says so instead of leading with the mean or the minimum.
"""
from __future__ import annotations

import re
from typing import Any

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"\b([A-Za-z][A-Za-z0-9_.]*)=({NUMBER})")
_REPLACING = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]*)\)")
_RUNNING = re.compile(r"Running benchmark for at least")


_UNIT = r"(ms|us|µs|s)\b"  # benchmark_app prints us for fast models, ms otherwise


def _float(text: str) -> float:
    return float(text)


def _ms(found: re.Match) -> float:
    return float(found.group(1)) * {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}[found.group(2)]


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """LiteRT/TFLite benchmark_model: latency (µs in the tool, ms here), init, first inference, delegation, memory."""
    result: dict[str, Any] = {"tool": "benchmark_model"}
    runs: list[dict[str, float]] = []  # the stats line after each "Running benchmark..." (warm-up, then timed)
    profile_stats = None
    after_running = False
    for line in text.splitlines():
        if _RUNNING.search(line):
            after_running = True
            continue
        if "count=" in line:
            pairs = {k: _float(v) for k, v in _PAIR.findall(line)}
            if "Timings (microseconds)" in line:
                profile_stats = pairs
            elif after_running:
                runs.append(pairs)
                after_running = False
            elif "Memory" not in line:
                runs.append(pairs)
        timings = re.search(r"inference timings in us:(.*)", line, re.IGNORECASE)
        if timings:
            for label, value in re.findall(rf"([A-Za-z][A-Za-z ()]*?):\s*({NUMBER})", timings.group(1)):
                key = {"Init": "init_ms", "First inference": "first_inference_ms", "Warmup (avg)": "warmup_avg_ms",
                       "Warmup": "warmup_avg_ms", "Inference (avg)": "inference_avg_ms",
                       "Inference": "inference_avg_ms"}.get(label.strip())
                if key:
                    result[key] = _float(value) / 1000
        replaced = _REPLACING.search(line)
        if replaced:
            done, total = int(replaced.group(1)), int(replaced.group(2))
            result["accelerated_ops"] = {"delegate": replaced.group(3), "replaced": done, "total": total,
                                         "fraction": done / total if total else None}
        peak = re.search(rf"[Pp]eak memory footprint \(MB\)[^:]*:\s*({NUMBER})", line)
        if peak:
            result["peak_memory_mb"] = _float(peak.group(1))
        delta = re.search(rf"Memory footprint delta from the start of the tool \(MB\):\s*init=({NUMBER})\s+overall=({NUMBER})", line)
        if delta:
            result["memory_delta_mb"] = {"init": _float(delta.group(1)), "overall": _float(delta.group(2))}
        if re.search(r"\bERROR\b|Failed to|failed to", line) and "error" not in result:
            result["error"] = re.sub(r"^.*?ERROR:\s*", "", line.strip())[:300]
    stats = runs[-1] if runs else profile_stats
    if stats:
        result["latency"] = _latency(stats, scale=1e-3)
    return result


def _latency(pairs: dict[str, float], scale: float) -> dict[str, Any]:
    """The tool's statistics in ms; p50 only where the tool printed a median."""
    names = {"count": "runs", "avg": "mean_ms", "std": "std_ms", "min": "min_ms", "max": "max_ms",
             "median": "p50_ms", "p50": "p50_ms", "p90": "p90_ms", "p95": "p95_ms", "p99": "p99_ms",
             "first": "first_ms"}
    latency: dict[str, Any] = {}
    for key, value in pairs.items():
        name = names.get(key)
        if name:
            latency[name] = int(value) if name == "runs" else value * scale
    return latency


def parse_benchmark_app(text: str) -> dict[str, Any]:
    """OpenVINO benchmark_app (`[ INFO ] Median: 2.61 ms` and friends; older builds print one `Latency:` line)."""
    result: dict[str, Any] = {"tool": "benchmark_app"}
    latency: dict[str, Any] = {}
    patterns = {"p50_ms": "Median", "mean_ms": "Average", "min_ms": "Min", "max_ms": "Max"}
    for line in text.splitlines():
        for key, label in patterns.items():
            found = re.search(rf"\b{label}:\s*({NUMBER})\s*{_UNIT}", line)
            if found:
                latency[key] = _ms(found)
        single = re.search(rf"\bLatency:\s*({NUMBER})\s*{_UNIT}", line)
        if single:
            latency.setdefault("p50_ms", _ms(single))  # benchmark_app's single figure is the median
        count = re.search(r"\bCount:\s*(\d+)\s*iterations", line)
        if count:
            latency["runs"] = int(count.group(1))
        throughput = re.search(rf"\bThroughput:\s*({NUMBER})\s*FPS", line)
        if throughput:
            result["throughput_ips"] = _float(throughput.group(1))
        first = re.search(rf"First inference took\s*({NUMBER})\s*ms", line)
        if first:
            result["first_inference_ms"] = _float(first.group(1))
        compiled = re.search(rf"Compile model took\s*({NUMBER})\s*ms", line)
        if compiled:
            result["init_ms"] = _float(compiled.group(1))
        if re.search(r"\[\s*ERROR\s*\]", line) and "error" not in result:
            result["error"] = re.sub(r"^.*?\[\s*ERROR\s*\]\s*", "", line.strip())[:300]
    if latency:
        result["latency"] = latency
    return result


def parse_onnxruntime_perf_test(text: str) -> dict[str, Any]:
    """onnxruntime_perf_test: `Average inference time cost: 1.2 ms`, `P50 Latency: 0.0012 s`, ..."""
    result: dict[str, Any] = {"tool": "onnxruntime_perf_test"}
    latency: dict[str, Any] = {}
    for line in text.splitlines():
        found = re.search(rf"\b(Min|Max|P50|P90|P95|P99|P999)\s+Latency:\s*({NUMBER})\s*(s|ms|us)?", line)
        if found:
            unit = {"s": 1000.0, "ms": 1.0, "us": 1e-3}[found.group(3) or "s"]
            key = {"Min": "min_ms", "Max": "max_ms", "P50": "p50_ms", "P90": "p90_ms", "P95": "p95_ms",
                   "P99": "p99_ms", "P999": "p999_ms"}[found.group(1)]
            latency[key] = _float(found.group(2)) * unit
        average = re.search(rf"Average inference time cost:\s*({NUMBER})\s*ms", line)
        if average:
            latency["mean_ms"] = _float(average.group(1))
        requests = re.search(r"Total inference requests:\s*(\d+)", line)
        if requests:
            latency["runs"] = int(requests.group(1))
        session = re.search(rf"Session creation time cost:\s*({NUMBER})\s*s", line)
        if session:
            result["init_ms"] = _float(session.group(1)) * 1000
        peak = re.search(r"Peak working set size:\s*(\d+)\s*bytes", line)
        if peak:
            result["peak_memory_mb"] = int(peak.group(1)) / 2**20
        per_second = re.search(rf"Number of inferences per second:\s*({NUMBER})", line)
        if per_second:
            result["throughput_ips"] = _float(per_second.group(1))
    if latency:
        result["latency"] = latency
    return result


PARSERS = {"benchmark_model": parse_benchmark_model, "benchmark_app": parse_benchmark_app,
           "onnxruntime_perf_test": parse_onnxruntime_perf_test}
