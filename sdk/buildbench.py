"""Benchmarks for `edgekit build`: measure only what the cache lacks, then judge every artifact's budgets.

A measurement is cached under what determines it: the artifact's bytes, its recipe (runtime,
device, threads), the bench settings, the evaluation data, the reference model, edgekit's
version, and where it was measured: this host (CPU, OS, Python, runtime versions) or, with a
cluster, the device slot that ran it (device name, its fingerprint, the lab host reaching it).
Before measuring, a run looks for an entry from any place it would measure at now (this host;
or each slot that serves the artifact), so a local build never takes a device's figures nor a
cluster build this host's. Budgets are not part of the key: changing one re-judges the cached
measurements without measuring again.
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
                  rebench: bool, progress: Progress, cluster: Any = None):
    """(Report, names measured now, names taken from the cache) for the selected targets' artifacts."""
    from edgekit.benchmarks.measurement import Report, Result
    from edgekit.benchmarks.runner import Settings
    from edgekit.targets.hardware import host_facts

    bench = config.bench
    settings = Settings(warmup=bench.warmup, min_runs=bench.min_runs, min_time=bench.min_time, max_time=bench.max_time,
                        threads=bench.threads, batch=bench.batch, timeout=bench.timeout, strict=bench.strict)
    host = host_facts()
    data = sha256_of(config.evaluation) if config.evaluation else None
    if cluster is not None:
        from edgekit.cluster import connect

        cluster = connect(cluster)
    places, slots = _places(cluster, manifest.artifacts, host)
    bases = [_key(a, config, settings, data, manifest.source.get("sha256")) for a in manifest.artifacts]
    live = set(bases)  # forget artifacts that are gone; keep their other places' entries
    cache.bench = {k: v for k, v in cache.bench.items() if k.split("@", 1)[0] in live}
    chosen = [(a, b, p) for a, b, p in zip(manifest.artifacts, bases, places, strict=True) if a.target in selected]
    hits = {b: next((k for k in (place_key(b, where) for where in p) if k in cache.bench), None) for _, b, p in chosen}
    todo = [(a, b) for a, b, _ in chosen if rebench or hits[b] is None]
    measured_now = {b for _, b in todo}
    cached = [f"{a.target}/{a.format}" for a, b, _ in chosen if b not in measured_now]
    if cached:
        progress.info(f"benchmarks {'up to date' if not todo else 'cached'}: {', '.join(cached)} (--rebench measures again)")
    fresh = _measure(config, manifest, todo, settings, progress, cluster) if todo else {}
    # An errored measurement is reported, never cached: a crash may be the host's, not the artifact's.
    for base, entry in fresh.items():
        if not entry["measurement"]["error"]:
            where = measured_at(entry["measurement"], host, slots)
            if where is not None:
                cache.bench[place_key(base, where)] = entry
    results, run_settings = [], None
    for artifact, base, _ in chosen:
        entry = fresh.get(base) or cache.bench[hits[base]]
        run_settings = run_settings or entry["settings"]
        measurement = _measurement(entry["measurement"])
        results.append(Result(measurement, _judge(config, artifact, measurement)))
    if bench.devices:
        results += _on_devices(config, manifest, [a for a, _, _ in chosen], settings, progress)
    report_settings = {**(run_settings or {**settings.__dict__, "data": None, "samples": 0, "reference": None}),
                       "strict": bench.strict}
    report = Report(results, host, report_settings, _created(), edgekit_version())
    return report, [f"{a.target}/{a.format}" for a, _ in todo], cached


def _key(artifact: Artifact, config: BuildConfig, settings, data: str | None, reference: str | None) -> str:
    """What the measurement of this artifact depends on, wherever it is taken (place_key adds where)."""
    entry = config.targets.get(artifact.target)
    recipe = entry.target.formats.get(Format(artifact.format)) if entry else None
    run = {k: v for k, v in settings.__dict__.items() if k != "strict"}  # strict changes verdicts only
    return digest({"artifact": artifact.sha256, "recipe": recipe.model_dump(mode="json") if recipe else None,
                   "settings": run, "data": data, "reference": reference, "edgekit": edgekit_version()})


def place_key(base: str, where: dict[str, Any]) -> str:
    """The cache key of a measurement: what it depends on (`_key`) @ where it was taken."""
    return f"{base}@{digest(where)}"


def local_place(host: dict[str, Any]) -> dict[str, Any]:
    return {"host": host}


# What says a slot's device is the same one: not Ray's node id, which a lab host gets anew each
# `edgekit devices attach`, but the lab host's name (a `local` device is that host).
SLOT_FACTS = ("target", "transport", "address", "runner", "cpu", "os", "runtimes", "host")


def device_place(info: dict[str, Any]) -> dict[str, Any]:
    """A cluster slot, from its describe(): the device's name and fingerprint, and the lab host reaching it."""
    return {"device": info["name"], "fingerprint": {k: info.get(k) for k in SLOT_FACTS}}


def measured_at(measurement: dict[str, Any], host: dict[str, Any], slots: dict[str, dict[str, Any]]):
    """Where a fresh measurement was taken: a slot (its row names the device) or this host; None if unknown."""
    device = (measurement.get("device") or {}).get("name")
    if device is None:
        return local_place(host)
    return device_place(slots[device]) if device in slots else None


def _places(cluster, artifacts: list[Artifact], host: dict[str, Any]):
    """(per artifact, the places this run would measure it at; the cluster's slots by name).

    Locally: this host. On a cluster: every attached slot serving the artifact (edgekit.cluster.bench
    picks one of them at run time), or this host when none does, as the cluster bench does.
    """
    if cluster is None:
        return [[local_place(host)] for _ in artifacts], {}
    from edgekit.cluster.bench import describe_slots, serves
    from edgekit.cluster.slots import list_slots

    slots = describe_slots(cluster.ray, list_slots(cluster.ray))
    places = [[device_place(info) for info in slots.values() if serves(info, a)] or [local_place(host)]
              for a in artifacts]
    return places, slots


def _measure(config: BuildConfig, manifest: Manifest, todo, settings, progress: Progress,
             cluster: Any = None) -> dict[str, dict[str, Any]]:
    """Benchmark just these artifacts, through a manifest listing only them; `_key` -> cache entry."""
    from edgekit.benchmarks.runner import benchmark

    subset = Manifest(source=manifest.source, artifacts=[a for a, _ in todo], calibration=manifest.calibration)
    with tempfile.TemporaryDirectory(prefix="edgekit-build-bench-") as scratch:
        subset.write(Path(scratch) / "manifest.json")
        report = benchmark(subset.path, data=config.evaluation, settings=settings, progress=progress,
                           logs=config.output / "logs", cluster=cluster)
    entries = {}
    for (artifact, base), result in zip(todo, report.results, strict=True):
        result.measurement.path = str(artifact.path)  # not the path through the scratch manifest
        entries[base] = {"measurement": result.measurement.to_dict(), "settings": report.settings}
    return entries


def _measurement(data: dict[str, Any]):
    from edgekit.benchmarks.measurement import LatencyStats, Measurement

    fields = {k: v for k, v in data.items() if k != "accuracy_drop"}  # derived, not stored
    latency, runtime_latency = fields.pop("latency", None), fields.pop("runtime_latency", None)
    measurement = Measurement(**fields)
    measurement.latency = LatencyStats(**latency) if latency else None
    measurement.runtime_latency = LatencyStats(**runtime_latency) if runtime_latency else None
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
