"""int8 on trained non-ReLU architectures: accuracy drop, int8/fp32 latency, repair wall time (`make perf-int8`).

The models are the zoo's (tests/zoo/architectures.py), trained on digits and cached in
~/.cache/edgekit-zoo, so these figures and docs/coverage.md describe the same networks. Each is
converted for `cpu` (repair on), `cpu` with --no-repair (the plain conversion, for the repair's
cost), `cpu` with the held-out images and their labels as --evaluation (the accuracy budget checked,
and repaired, on them: optimistic by selection, as they also score it), and `cpu-fp32`; then
`edgekit bench --data` on the held-out images at 1 and 2 threads, one process per run. Writes FOLDER/results.json and FOLDER/table.md.

    python -m tests.perf.int8_repair FOLDER [MODEL...]
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "EfficientNetV2B0", "TransformerEncoder",
          "MobileNetV2")
FORMATS = ("tflite", "onnx", "openvino")
RUNS = {
    "plain": ["-t", "cpu", "--no-repair"],
    "cpu": ["-t", "cpu"],
    "labelled": ["-t", "cpu", "--evaluation"],  # + the held-out images: the budget checked on accuracy
    "fp32": ["-t", "cpu-fp32"],
}
# The npu (full int8, int8 I/O) accuracy drop per format is in docs/coverage.md, from the same models.


def edgekit(*args: object) -> tuple[int, str, str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - started


def measure(name: str, root: Path) -> dict:
    from tests.zoo.architectures import BY_NAME, built

    source = built(BY_NAME[name])
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    result: dict = {"model": name, "source_accuracy": source.source_accuracy, "convert": {}, "bench": {}}
    for label, args in RUNS.items():
        out = folder / f"dist-{label}"
        if label == "labelled":
            args = [*args, source.evaluation]  # judged and scored on the same images: optimistic by selection
        code, stdout, stderr, seconds = edgekit("convert", source.model, *args, "-c", source.calibration,
                                                "--calibration-samples", 100, "-o", out, "--json")
        (folder / f"convert-{label}.log").write_text(stderr)
        entry: dict = {"exit": code, "seconds": round(seconds, 1), "stderr_tail": stderr.strip().splitlines()[-3:]}
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
            code, stdout, _, _ = edgekit("bench", out / "manifest.json", "--data", source.evaluation,
                                         "--reference", source.model, "--threads", threads, "--min-time", "1", "--json")
            try:
                report = json.loads(stdout)
            except json.JSONDecodeError:
                result["bench"][f"{label}/{threads}"] = {"error": f"exit {code}"}
                continue
            for item in report["results"]:
                m = item["measurement"]
                result["bench"][f"{label}/{m['format']}/{threads}"] = {
                    "accuracy": m["metrics"].get("accuracy"),
                    "reference_accuracy": m.get("reference_metrics", {}).get("accuracy"),
                    "p50_ms": (m.get("latency") or {}).get("p50_ms"),
                    "error": m.get("error"),
                }
    return result


def table(results: list[dict]) -> str:
    """One row per model and format, `cpu` target; npu drops beside."""
    lines = ["| model | format | cpu exit | accuracy drop (pt) | int8/fp32 latency 1 thr | 2 thr | repair | "
             "repair wall / plain | with --evaluation labels: exit, drop (pt) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        bench, plain, cpu = r["bench"], r["convert"].get("plain", {}), r["convert"].get("cpu", {})

        def drop(label: str, fmt: str) -> str:
            m = bench.get(f"{label}/{fmt}/1") or {}
            if m.get("accuracy") is None:
                return m.get("error") and "error" or "n/a"
            return f"{(r['source_accuracy'] - m['accuracy']) * 100:+.1f}"

        def ratio(fmt: str, threads: int) -> str:
            int8, fp32 = (bench.get(f"{label}/{fmt}/{threads}") or {} for label in ("cpu", "fp32"))
            if int8.get("p50_ms") and fp32.get("p50_ms"):
                return f"{int8['p50_ms'] / fp32['p50_ms']:.2f}x"
            return "not measured"

        for fmt in FORMATS:
            artifact = (cpu.get("artifacts") or {}).get(fmt) or {}
            base = ((plain.get("artifacts") or {}).get(fmt) or {}).get("seconds")
            repair = artifact.get("repair") or "none needed"
            cost = f"{artifact['seconds'] / base:.2f}x" if artifact.get("repair") and base else ""
            labelled = r["convert"].get("labelled", {})
            lines.append(f"| {r['model']} | {fmt} | {cpu.get('exit')} | {drop('cpu', fmt)} | {ratio(fmt, 1)} | "
                         f"{ratio(fmt, 2)} | {repair.replace('|', '/')} | {cost} | "
                         f"{labelled.get('exit')}, {drop('labelled', fmt)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for name in sys.argv[2:] or MODELS:
        results.append(measure(name, root))
        print(json.dumps(results[-1]), flush=True)
        (root / "results.json").write_text(json.dumps(results, indent=1))
        (root / "table.md").write_text(table(results))
