"""int8 on trained non-ReLU architectures: accuracy drop, int8/fp32 latency, repair wall time (`make perf-int8`).

For each model of tests/perf/trained_models.py (trained here on digits, never downloaded):
convert for `cpu` (repair on), `cpu` with --no-repair (the plain conversion's wall time),
`cpu-fp32` and `npu`; then `edgekit bench --data eval.npz` at 1 and 2 threads, one process per
run (edgekit bench runs each artifact in its own worker). Prints one JSON line per model and
writes FOLDER/results.json; docs/int8-repair.md is written from these figures by hand.

    python -m tests.perf.int8_repair FOLDER [MODEL...]
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.perf.trained_models import NAMES, train


def edgekit(*args: str) -> tuple[int, str, str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - started


def measure(name: str, root: Path, epochs: int = 6) -> dict:
    folder = root / name
    info = json.loads((folder / "info.json").read_text()) if (folder / "info.json").exists() else train(name, folder, epochs)
    model, calib, evaluation = info["model"], folder / "calib.npz", folder / "eval.npz"
    result: dict = {"model": name, "keras_accuracy": info["keras_accuracy"], "convert": {}, "bench": {}}
    runs = {
        "plain": ["-t", "cpu", "--no-repair"],
        "cpu": ["-t", "cpu"],
        "fp32": ["-t", "cpu-fp32"],
        "npu": ["-t", "npu", "--no-repair"],
    }
    for label, args in runs.items():
        out = folder / f"dist-{label}"
        code, stdout, stderr, seconds = edgekit("convert", model, *args, "-c", calib, "-o", out, "--json")
        (folder / f"convert-{label}.log").write_text(stderr)
        entry: dict = {"exit": code, "seconds": round(seconds, 1)}
        if stdout.strip():
            manifest = json.loads(stdout)
            entry["artifacts"] = {
                a["format"]: {
                    "passed": (a["verification"] or {}).get("passed"),
                    "cosine": (a["verification"] or {}).get("cosine"),
                    "top1": (a["verification"] or {}).get("top1_agreement"),
                    "seconds": a["seconds"],
                    "traits": (a.get("traits") or {}).get("line"),
                    "repair": (a.get("repair") or {}).get("line"),
                    "repair_seconds": (a.get("repair") or {}).get("seconds"),
                }
                for a in manifest["artifacts"]
            }
            entry["errors"] = manifest.get("errors", [])
        result["convert"][label] = entry
        if label == "plain" or not (out / "manifest.json").exists():
            continue
        for threads in (1, 2):
            code, stdout, _, _ = edgekit("bench", out / "manifest.json", "--data", evaluation, "--reference", model,
                                         "--threads", threads, "--min-time", "1", "--json")
            try:
                report = json.loads(stdout)
            except json.JSONDecodeError:
                result["bench"][f"{label}/{threads}"] = {"error": f"exit {code}"}
                continue
            for item in report["results"]:
                m = item["measurement"]
                result["bench"][f"{label}/{m['format']}/{threads}"] = {
                    "accuracy": m["metrics"].get("accuracy"),
                    "accuracy_drop": m.get("accuracy_drop"),
                    "p50_ms": (m.get("latency") or {}).get("p50_ms"),
                    "error": m.get("error"),
                }
    return result


if __name__ == "__main__":
    root = Path(sys.argv[1])
    results = []
    for name in sys.argv[2:] or NAMES:
        results.append(measure(name, root))
        print(json.dumps(results[-1]), flush=True)
        (root / "results.json").write_text(json.dumps(results, indent=1))
