"""`edgekit serve` under load: throughput and p50/p99 against `edgekit bench` on the same artifact.

Bounded in count and time: at most CLIENTS concurrent clients, each for SECONDS or
MAX_REQUESTS requests, whichever comes first. The clients are plain keep-alive
http.client connections in threads of this process, on the same host as the server,
so on a 2-core machine they compete with it for CPU: the figures are what one box
serving itself sees. Server overhead per request = one client's p50 minus the
runtime's p50 from `edgekit bench` (HTTP, JSON, quantization, the worker round trip).
Run with `make perf` (or `pytest tests/perf -k serve -o addopts="" -s`).
"""
from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.serving import Server

SECONDS = 5.0
MAX_REQUESTS = 20000
CLIENTS = 8


@pytest.fixture(scope="module")
def cpu_artifact(digits_example, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve-perf")
    command = [sys.executable, "-m", "edgekit", "convert", str(digits_example["model"]), "-t", "cpu", "-f", "tflite",
               "-c", str(digits_example["calibration"]), "-o", str(out / "dist"), "-q"]
    subprocess.run(command, check=True, capture_output=True)
    return out


def bench_figures(dist: Path) -> dict:
    command = [sys.executable, "-m", "edgekit", "bench", str(dist), "--json", "-q", "--min-time", "3", "--warmup", "50"]
    report = json.loads(subprocess.run(command, capture_output=True, text=True, check=False).stdout)
    return report["results"][0]["measurement"]["latency"]


def load(url: str, body: bytes, path: str, clients: int) -> dict:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = []
    start_gate = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        start_gate.wait()
        deadline = time.perf_counter() + SECONDS
        for _ in range(MAX_REQUESTS):
            began = time.perf_counter()
            if began > deadline:
                break
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            latencies[index].append(time.perf_counter() - began)
            if response.status != 200:
                failures.append(response.status)
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout=SECONDS + 60)
    elapsed = time.perf_counter() - began
    every = np.concatenate([np.asarray(x) for x in latencies]) * 1000
    return {"clients": clients, "requests": int(every.size), "failures": len(failures),
            "throughput_rps": every.size / elapsed, "p50_ms": float(np.percentile(every, 50)),
            "p99_ms": float(np.percentile(every, 99))}


def test_serve_throughput_latency_and_overhead(cpu_artifact, digits_example, tmp_path):
    dist = cpu_artifact / "dist"
    bench = bench_figures(dist)
    image = np.load(digits_example["evaluation"])["image"][:1]
    tfs = json.dumps({"instances": image.tolist()}).encode()
    v2 = json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8, 1], "datatype": "FP32",
                                 "data": image.reshape(-1).tolist()}]}).encode()
    rows = []
    for label, args, clients, body, path in [
        ("1 client, TF Serving REST", [], 1, tfs, "/v1/models/digits:predict"),
        ("1 client, KServe v2", [], 1, v2, "/v2/models/digits/infer"),
        (f"{CLIENTS} clients, 1 worker, no batching", [], CLIENTS, v2, "/v2/models/digits/infer"),
        (f"{CLIENTS} clients, 1 worker, --batch-max 8", ["--batch-max", "8", "--batch-delay-ms", "1"], CLIENTS, v2, "/v2/models/digits/infer"),
        (f"{CLIENTS} clients, 2 workers, no batching", ["--workers", "2"], CLIENTS, v2, "/v2/models/digits/infer"),
        (f"{CLIENTS} clients, 2 workers, --batch-max 8", ["--workers", "2", "--batch-max", "8", "--batch-delay-ms", "1"], CLIENTS, v2, "/v2/models/digits/infer"),
    ]:
        server = Server([dist, "--poll", "0", *args], tmp_path / f"server-{len(rows)}.log")
        try:
            load(server.url, body, path, 1)  # warm-up: connections, the runtime's first calls
            result = load(server.url, body, path, clients)
        finally:
            server.stop()
        rows.append({"case": label, **result})
        assert result["failures"] == 0 and result["requests"] > 0
    overhead = {r["case"]: r["p50_ms"] - bench["p50_ms"] for r in rows if r["clients"] == 1}
    print(f"\n`edgekit bench` on the same artifact (cpu/tflite, int8): p50 {bench['p50_ms']:.4f} ms, "
          f"p99 {bench['p99_ms']:.4f} ms, {bench['throughput_ips']:.0f} inferences/s on one thread")
    print(f"{'case':45} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for r in rows:
        print(f"{r['case']:45} {r['requests']:>9} {r['throughput_rps']:>8.0f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
    for case, ms in overhead.items():
        print(f"server overhead per request ({case}): {ms:.3f} ms (client p50 - bench p50)")
    by_case = {r["case"]: r for r in rows}
    for workers in (1, 2):
        plain = by_case[f"{CLIENTS} clients, {workers} worker{'s' if workers > 1 else ''}, no batching"]
        batched = by_case[f"{CLIENTS} clients, {workers} worker{'s' if workers > 1 else ''}, --batch-max 8"]
        print(f"dynamic batching, {workers} worker(s): throughput x{batched['throughput_rps'] / plain['throughput_rps']:.2f}, "
              f"p99 {plain['p99_ms']:.2f} -> {batched['p99_ms']:.2f} ms")
    print(json.dumps({"bench": {k: bench[k] for k in ("p50_ms", "p99_ms", "throughput_ips")}, "rows": rows}))
