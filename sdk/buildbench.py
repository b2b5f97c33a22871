"""Benchmarks for `edgekit build`: measure only what the cache lacks, then judge every artifact's budgets.

A measurement is cached under what determines it: the artifact's bytes, its recipe (runtime,
device, threads), the bench settings, the evaluation data, the reference model, edgekit's
version and this host (CPU, OS, Python, runtime versions). Budgets are not part of the key:
changing one re-judges the cached measurements without measuring again.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgekit.artifact import Artifact, sha256_of
from edgekit.buildcache import BuildCache, digest
from edgekit.config import BuildConfig
from edgekit.console import Progress
from edgekit.manifest import Manifest, _created, edgekit_version
from edgekit.targets.schema import Format


def bench_targets(config: BuildConfig, manifest: Manifest, selected: list[str], cache: BuildCache,
                  rebench: bool, progress: Progress):
    """(Report, names measured now, names taken from the cache) for the selected targets' artifacts."""
    from edgekit.benchmarks.measurement import Report, Result
    from edgekit.benchmarks.runner import Settings
    from edgekit.targets.hardware import host_facts

    bench = config.bench
    settings = Settings(warmup=bench.warmup, min_runs=bench.min_runs, min_time=bench.min_time, max_time=bench.max_time,
                        threads=bench.threads, batch=bench.batch, timeout=bench.timeout, strict=bench.strict)
    host = host_facts()
    data = sha256_of(config.evaluation) if config.evaluation else None
    keys = [_key(a, config, settings, host, data, manifest.source.get("sha256")) for a in manifest.artifacts]
    cache.bench = {k: v for k, v in cache.bench.items() if k in keys}  # forget artifacts that are gone
    chosen = [(a, k) for a, k in zip(manifest.artifacts, keys) if a.target in selected]
    todo = [(a, k) for a, k in chosen if rebench or k not in cache.bench]
    cached = [f"{a.target}/{a.format}" for a, k in chosen if (a, k) not in todo]
    if cached:
        progress.info(f"benchmarks {'up to date' if not todo else 'cached'}: {', '.join(cached)} (--rebench measures again)")
    fresh = _measure(config, manifest, todo, settings, progress) if todo else {}
    # An errored measurement is reported, never cached: a crash may be the host's, not the artifact's.
    cache.bench.update({k: v for k, v in fresh.items() if not v["measurement"]["error"]})
    results, run_settings = [], None
    for artifact, key in chosen:
        entry = fresh.get(key) or cache.bench[key]
        run_settings = run_settings or entry["settings"]
        measurement = _measurement(entry["measurement"])
        results.append(Result(measurement, _judge(config, artifact, measurement)))
    if bench.devices:
        results += _on_devices(config, manifest, [a for a, _ in chosen], settings, progress)
    report_settings = {**(run_settings or {**settings.__dict__, "data": None, "samples": 0, "reference": None}),
                       "strict": bench.strict}
    report = Report(results, host, report_settings, _created(), edgekit_version())
    return report, [f"{a.target}/{a.format}" for a, _ in todo], cached


def _key(artifact: Artifact, config: BuildConfig, settings, host: dict[str, Any], data: str | None,
         reference: str | None) -> str:
    entry = config.targets.get(artifact.target)
    recipe = entry.target.formats.get(Format(artifact.format)) if entry else None
    run = {k: v for k, v in settings.__dict__.items() if k != "strict"}  # strict changes verdicts only
    return digest({"artifact": artifact.sha256, "recipe": recipe.model_dump(mode="json") if recipe else None,
                   "settings": run, "host": host, "data": data, "reference": reference, "edgekit": edgekit_version()})


def _measure(config: BuildConfig, manifest: Manifest, todo, settings, progress: Progress) -> dict[str, dict[str, Any]]:
    """Benchmark just these artifacts, through a manifest listing only them; bench key -> cache entry."""
    from edgekit.benchmarks.runner import benchmark

    subset = Manifest(source=manifest.source, artifacts=[a for a, _ in todo], calibration=manifest.calibration)
    with tempfile.TemporaryDirectory(prefix="edgekit-build-bench-") as scratch:
        subset.write(Path(scratch) / "manifest.json")
        report = benchmark(subset.path, data=config.evaluation, settings=settings, progress=progress,
                           logs=config.output / "logs")
    entries = {}
    for (artifact, key), result in zip(todo, report.results, strict=True):
        result.measurement.path = str(artifact.path)  # not the path through the scratch manifest
        entries[key] = {"measurement": result.measurement.to_dict(), "settings": report.settings}
    return entries


def _measurement(data: dict[str, Any]):
    from edgekit.benchmarks.measurement import LatencyStats, Measurement

    fields = {k: v for k, v in data.items() if k != "accuracy_drop"}  # derived, not stored
    latency = fields.pop("latency", None)
    measurement = Measurement(**fields)
    measurement.latency = LatencyStats(**latency) if latency else None
    return measurement


def _judge(config: BuildConfig, artifact: Artifact, measurement) -> list:
    """The profile's budgets, overridden key by key by the config's (profile < config)."""
    from edgekit.benchmarks import budgets as rules

    entry = config.targets.get(artifact.target)
    if entry is None:
        return []
    profile = {k: rules.make_budget(k, v, f"{entry.target.source}: budgets") for k, v in entry.target.budgets.items()}
    return [rules.judge(b, measurement) for b in rules.merge(profile, entry.budgets).values()]


def _on_devices(config: BuildConfig, manifest: Manifest, artifacts: list[Artifact], settings, progress: Progress) -> list:
    """`[bench] devices`: the selected artifacts measured on each device that realizes their target.

    Never cached: a device's temperature and load are not part of any key, so it is measured every build.
    """
    from edgekit.benchmarks.measurement import Result
    from edgekit.benchmarks.remote.bench import realizes
    from edgekit.benchmarks.runner import benchmark

    devices = [config.devices[name] for name in config.bench.devices]
    wanted = [d for d in devices if any(realizes(d, a) for a in artifacts)]
    for device in devices:
        if device not in wanted:
            progress.info(f"device {device.name}: no selected artifact is built for its target '{device.target}'; skipped")
    if not wanted:
        return []
    by_name = {f"{a.target}/{a.format}": a for a in artifacts}
    subset = Manifest(source=manifest.source, artifacts=artifacts, calibration=manifest.calibration)
    with tempfile.TemporaryDirectory(prefix="edgekit-build-devices-") as scratch:
        subset.write(Path(scratch) / "manifest.json")
        report = benchmark(subset.path, data=config.evaluation, settings=settings, progress=progress, devices=wanted)
    results = []
    for result in report.results:
        artifact = by_name[result.measurement.name.rsplit("@", 1)[0]]
        result.measurement.path = str(artifact.path)
        results.append(Result(result.measurement, _judge(config, artifact, result.measurement)))
    return results
