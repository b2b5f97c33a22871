"""`make zoo`: convert every zoo architecture for cpu, gpu, npu and cpu-fp32 in every format,
benchmark each artifact on the evaluation data, and write docs/coverage.md.

Each architecture runs in its own process (`python -m tests.zoo.coverage one NAME RESULT.json`):
a crash in a converter's native code costs that architecture, not the table, and each
architecture's results are kept so that `--only` re-runs a few and re-renders the whole table.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

TARGETS = ["cpu", "gpu", "npu", "cpu-fp32"]
FORMATS = ["tflite", "onnx", "openvino"]
FAST = ["GRU", "InModelPreprocessing"]  # small and quick: the subset `make test` runs
TOOLS = ["tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "onnxconverter-common", "openvino", "nncf",
         "ai-edge-litert", "torch", "onnxscript"]
RESULTS = Path("build/zoo")  # one JSON per architecture; docs/coverage.md is rendered from all of them


def run_one(name: str, result_file: Path, workdir: Path, bench_time: float = 0.1, bench_runs: int = 10) -> dict:
    """Train (or load) one architecture, convert it for every target, benchmark, and return its rows."""
    import edgekit
    from edgekit.benchmarks.runner import Settings
    from tests.zoo.architectures import BY_NAME, built

    architecture = BY_NAME[name]
    started = time.perf_counter()
    source = built(architecture)
    trained = time.perf_counter()
    out = workdir / name
    manifest = edgekit.convert(source.model, TARGETS, calibration=source.calibration, calibration_samples=100,
                               output=out)
    converted = time.perf_counter()
    results = {}
    if manifest.artifacts:
        settings = Settings(warmup=min(3, bench_runs), min_runs=bench_runs, min_time=bench_time, threads=1,
                            timeout=600)
        report = edgekit.benchmark(out / "manifest.json", data=source.evaluation, settings=settings)
        results = {(r.measurement.target, r.measurement.format): r for r in report.results}
    rows = []
    for target in TARGETS:
        for fmt in FORMATS:
            rows.append(_row(name, target, fmt, manifest, results.get((target, fmt))))
    record = {
        "name": name, "kind": architecture.kind, "source_format": manifest.source["format"],
        "source_accuracy": source.source_accuracy, "rows": rows,
        "seconds": {"train_or_load": trained - started, "convert": converted - trained,
                    "bench": time.perf_counter() - converted},
    }
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(record, indent=1))
    return record


def _row(name: str, target: str, fmt: str, manifest, result) -> dict:
    row = {"model": name, "target": target, "format": fmt, "precision": None, "status": "fails", "reason": "",
           "cosine": None, "accuracy_change": None, "p50_ms": None, "notes": [], "repair": None}
    for skip in manifest.skipped:
        if (skip["target"], skip["format"]) == (target, fmt):
            return {**row, "status": "not offered", "reason": skip["reason"]}
    for error in manifest.errors:
        if (error["target"], error["format"]) == (target, fmt):
            return {**row, "reason": _one_line(error["error"])}
    artifact = next((a for a in manifest.artifacts if (a.target, a.format) == (target, fmt)), None)
    if artifact is None:
        return {**row, "reason": "no artifact and no error recorded"}
    repair = artifact.repair or {}
    row.update(precision=artifact.precision, notes=artifact.notes, repair=repair.get("line"),
               repair_confirmed=repair.get("confirmed", True))
    if result is None:
        return {**row, "reason": "produced but not benchmarked"}
    measurement = result.measurement
    if measurement.error:
        return {**row, "reason": _one_line(f"{measurement.runtime}: {measurement.error}")}
    if measurement.fidelity:
        row["cosine"] = measurement.fidelity.get("cosine")
    accuracy, reference = measurement.metrics.get("accuracy"), measurement.reference_metrics.get("accuracy")
    if accuracy is not None and reference is not None:
        row["accuracy_change"] = accuracy - reference
    if measurement.latency:
        row["p50_ms"] = measurement.latency.p50_ms
    elif "latency" in measurement.skipped:
        row["notes"] = [f"not timed ({measurement.skipped['latency'].split(' (')[0]})", *row["notes"]]
    problems = list(artifact.verification.failures) if artifact.verification else []
    problems += [f"{v.budget} {v.measured:.4f} > {v.limit}" if v.measured is not None else f"{v.budget}: {v.reason}"
                 for v in result.verdicts if v.status == "fail"]
    if problems:
        return {**row, "status": "completes", "reason": _one_line("; ".join(problems))}
    return {**row, "status": "accurate"}


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line[:240] + ("..." if len(line) > 240 else "")


# --- the table ------------------------------------------------------------------------------------


def render(records: list[dict], wall_seconds: float | None = None) -> str:
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    tensorflow = installed("tensorflow-cpu") if installed("tensorflow") == "not installed" else installed("tensorflow")
    versions = {"tensorflow": tensorflow, **{p: installed(p) for p in TOOLS if p != "tensorflow"}}
    lines = [
        "# Conversion coverage",
        "",
        "Generated by `make zoo` (tests/zoo/coverage.py); do not edit by hand.",
        f"Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. "
        f"Tools: {', '.join(f'{k} {v}' for k, v in versions.items())}.",
        "",
        f"{len(records)} architectures, each trained on generated data (scikit-learn digits, synthetic tones), "
        f"converted for the targets {', '.join(TARGETS)} in every format and benchmarked on held-out data "
        "(1 thread, batch 1, this host).",
        "",
        "Status: **accurate**: verified against the source and within the target's accuracy budget; "
        "**completes**: converts and runs, over a tolerance or budget (the reason says which); "
        "**fails**: no artifact (the reason names the tool and the op); **not offered**: edgekit has no converter for "
        "that source and format. *cosine*: outputs against the source on the evaluation data, per sample, averaged; "
        "*accuracy change*: top-1 accuracy on the first output minus the source's; *repaired*: what the automatic int8 "
        "repair kept in float or changed when the first conversion missed the target's tolerance; *latency / fp32*: median "
        "latency over the same format's cpu-fp32 artifact (timings on a shared 2-core host: compare within a row group). "
        "This host has no GPU or NPU: gpu and npu artifacts are verified and scored on the CPU but not timed "
        "(edgekit does not time a substitute device).",
        "",
    ]
    if wall_seconds is not None:
        lines += [f"Wall time of the last full run (`make zoo`): {wall_seconds / 60:.1f} min; architectures re-run "
                  "since with `--only` (newer seconds below) and ones added since are not in it.", ""]
    from tests.zoo.architectures import ARCHITECTURES

    missing = [a.name for a in ARCHITECTURES if a.name not in {r["name"] for r in records}]
    if missing:
        lines += [f"**Partial run**: not yet in this table: {', '.join(missing)} "
                  "(`python -m tests.zoo.coverage all --only NAME` adds one).", ""]
    lines += _summary(records) + [""]
    lines += ["## Architectures", "", "| model | what it exercises | source | source accuracy | seconds (train/load, convert, bench) |",
              "| --- | --- | --- | --- | --- |"]
    for record in records:
        seconds = record["seconds"]
        lines.append(f"| {record['name']} | {record['kind']} | {record['source_format']} | "
                     f"{record['source_accuracy']:.3f} | {seconds['train_or_load']:.0f} / {seconds['convert']:.0f} / "
                     f"{seconds['bench']:.0f} |")
    lines += ["", "## Cells", "", "| model | target | format | precision | status | cosine | accuracy change | "
              "latency / fp32 | repaired | reason or notes |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for record in records:
        fp32 = {r["format"]: r["p50_ms"] for r in record["rows"] if r["target"] == "cpu-fp32"}
        for row in record["rows"]:
            ratio = ""
            if row["p50_ms"] and fp32.get(row["format"]):
                ratio = f"{row['p50_ms'] / fp32[row['format']]:.2f}"
            cosine = "" if row["cosine"] is None else f"{row['cosine']:.5f}"
            change = "" if row["accuracy_change"] is None else f"{row['accuracy_change']:+.3f}"
            detail = row["reason"] or "; ".join(_short_notes(row["notes"]))
            precision = row["precision"] or _planned_precision(row["target"], row["format"])
            repaired = _repaired(row.get("repair"), row.get("repair_confirmed", True))
            lines.append(f"| {row['model']} | {row['target']} | {row['format']} | {precision} | "
                         f"{row['status']} | {cosine} | {change} | {ratio} | {repaired} | {detail.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _repaired(line: str | None, confirmed: bool = True) -> str:
    """The repair's outcome in a few words: what it kept in float or changed, or that it failed."""
    if not line:
        return ""
    if line.startswith("NOT repaired"):
        return "not repairable: " + _one_line(line.split(": ", 1)[-1])[:90].replace("|", "/")
    what = _one_line(line.removeprefix("repaired: ").split(", cosine")[0])[:90].replace("|", "/")
    return f"yes: {what}" if confirmed else f"tried: {what} (met on the held-out samples, not in verification)"


def _short_notes(notes: list[str]) -> list[str]:
    """The notes that say what differs (fallbacks, fixed batch, fp32 islands), not routine ones."""
    keep = ("fixed batch", "kept in fp32", "skip_symbolic_shape", "left in float", "quantized ops", "not timed",
            "repaired", "static batch")
    notes = [re.sub(r"^not timed: ([^(;]*?) ?\(available[^)]*\)", r"not timed (\1)", n) for n in notes]
    return [_one_line(n)[:110] for n in notes if any(k in n for k in keep)]


def _summary(records: list[dict]) -> list[str]:
    """Counts per format and precision."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for record in records:
        for row in record["rows"]:
            precision = row["precision"] or _planned_precision(row["target"], row["format"])
            cell = counts.setdefault((row["format"], precision), {})
            cell[row["status"]] = cell.get(row["status"], 0) + 1
            if row.get("repair") and row["status"] == "accurate":
                cell["repaired"] = cell.get("repaired", 0) + 1
    statuses = ["accurate", "completes", "fails", "not offered"]
    lines = ["## Summary", "", "| format | precision | " + " | ".join(statuses) + " | accurate share of offered | "
             "accurate after repair |", "| --- | --- | " + " | ".join("---" for _ in statuses) + " | --- | --- |"]
    for (fmt, precision), cell in sorted(counts.items()):
        offered = sum(cell.get(s, 0) for s in statuses[:3])
        share = f"{cell.get('accurate', 0) / offered:.0%}" if offered else ""
        lines.append(f"| {fmt} | {precision} | " + " | ".join(str(cell.get(s, 0)) for s in statuses) +
                     f" | {share} | {cell.get('repaired', 0)} |")
    return lines


def _planned_precision(target: str, fmt: str) -> str:
    from edgekit.targets.loader import load_target
    from edgekit.targets.schema import Format

    return load_target(target).recipes()[Format(fmt)].precision.value


# --- the command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.zoo.coverage")
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("one", help="one architecture, in this process")
    one.add_argument("name")
    one.add_argument("result", type=Path)
    one.add_argument("--workdir", type=Path, default=Path("build/zoo-out"))
    every = sub.add_parser("all", help="every architecture (or --only), one process each, then the table")
    every.add_argument("--only", action="append", default=[])
    every.add_argument("--fast", action="store_true", help=f"only {', '.join(FAST)}")
    every.add_argument("--results", type=Path, default=RESULTS)
    every.add_argument("--output", type=Path, default=Path("docs/coverage.md"))
    table = sub.add_parser("render", help="re-render the table from the kept results")
    table.add_argument("--results", type=Path, default=RESULTS)
    table.add_argument("--output", type=Path, default=Path("docs/coverage.md"))
    args = parser.parse_args(argv)
    if args.command == "render":
        wall_file = args.results / "wall.json"
        wall = json.loads(wall_file.read_text())["seconds"] if wall_file.exists() else None
        records = [json.loads(p.read_text()) for p in _ordered(args.results)]
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(render(records, wall))
        print(f"wrote {args.output} ({len(records)} architectures)")
        return 0
    if args.command == "one":
        run_one(args.name, args.result, args.workdir)
        return 0
    from tests.zoo.architectures import ARCHITECTURES

    names = args.only or (FAST if args.fast else [a.name for a in ARCHITECTURES])
    started = time.perf_counter()
    failed = []
    for name in names:
        result = args.results / f"{name}.json"
        log = args.results / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        begun = time.perf_counter()
        with log.open("w") as stream:
            code = subprocess.call([sys.executable, "-m", "tests.zoo.coverage", "one", name, str(result),
                                    "--workdir", str(args.results / "out")], stdout=stream, stderr=stream,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        print(f"{name}: exit {code} in {time.perf_counter() - begun:.0f}s (log {log})", flush=True)
        if code:
            failed.append(name)
            _crashed(name, code, result, log, started_at=begun)
    records = [json.loads(p.read_text()) for p in _ordered(args.results)]
    wall_file = args.results / "wall.json"
    if not args.only and not args.fast:
        wall_file.write_text(json.dumps({"seconds": time.perf_counter() - started}))
    wall = json.loads(wall_file.read_text())["seconds"] if wall_file.exists() else None
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(records, wall))
    print(f"wrote {args.output} ({len(records)} architectures) in {(time.perf_counter() - started) / 60:.1f} min")
    return 1 if failed else 0


def _crashed(name: str, code: int, result: Path, log: Path, started_at: float) -> None:
    """A record for an architecture whose process died: every cell fails with the last log line."""
    if result.exists() and result.stat().st_mtime >= time.time() - (time.perf_counter() - started_at):
        return  # it wrote its rows, then failed later
    from tests.zoo.architectures import BY_NAME

    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
    reason = _one_line(f"the zoo process for {name} died ({how}): {lines[-1] if lines else 'no output'}")
    rows = [{"model": name, "target": t, "format": f, "precision": None, "status": "fails", "reason": reason,
             "cosine": None, "accuracy_change": None, "p50_ms": None, "notes": [], "repair": None} for t in TARGETS for f in FORMATS]
    record = {"name": name, "kind": BY_NAME[name].kind, "source_format": "?", "source_accuracy": float("nan"),
              "rows": rows, "seconds": {"train_or_load": 0, "convert": 0, "bench": 0}}
    result.write_text(json.dumps(record, indent=1))


def _ordered(results: Path) -> list[Path]:
    from tests.zoo.architectures import ARCHITECTURES

    return [results / f"{a.name}.json" for a in ARCHITECTURES if (results / f"{a.name}.json").exists()]


if __name__ == "__main__":
    sys.exit(main())
