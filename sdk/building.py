"""`edgekit.build`: one config file -> convert what changed -> benchmark -> judge budgets -> reports.

Incremental: a target is converted again only when its key (buildcache.target_key) changed,
or its files in the output directory no longer match the manifest. Stale targets are
converted into a staging directory inside the output; the new files, the merged manifest
and the cache are published last, with interrupts held, so a failed or interrupted build
leaves the previous output and its manifest valid.
"""
from __future__ import annotations


import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.artifact import sha256_of
from edgekit.buildcache import BuildCache, digest, target_key, what_changed
from edgekit.buildlock import interrupts_held, output_lock
from edgekit.config import BuildConfig, load_config
from edgekit.console import SILENT, Progress
from edgekit.errors import EXIT_FAILED, EXIT_OK, EdgekitError, InputError, did_you_mean
from edgekit.manifest import Manifest

MANIFEST = "manifest.json"
REPORTS_DIR = "reports"
REPORT_FILES = {"json": "report.json", "junit": "junit.xml", "markdown": "report.md", "html": "report.html"}
UP_TO_DATE = "up to date"


@dataclass
class BuildResult:
    """What `edgekit build` did and decided. `exit_code` is what the CLI exits with."""

    config: BuildConfig
    manifest: Manifest
    report: Any = None  # benchmarks.measurement.Report, or None with bench=False
    targets: dict[str, str] = field(default_factory=dict)  # name -> "built (why)" | "up to date" | "not selected"
    benchmarked: list[str] = field(default_factory=list)  # artifacts measured in this run
    bench_cached: list[str] = field(default_factory=list)  # artifacts whose measurement came from the cache
    reports: dict[str, Path] = field(default_factory=dict)  # kind -> file
    seconds: float = 0.0

    @property
    def built(self) -> list[str]:
        return [name for name, state in self.targets.items() if state.startswith("built")]

    @property
    def passed(self) -> bool:
        return self.manifest.passed and (self.report is None or self.report.passed)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_FAILED

    def failures(self) -> list[str]:
        """One line per failed artifact: conversion errors, verification misses, missed budgets."""
        lines = [f"{e['target']}/{e['format']}: conversion failed: {e['error']}" for e in self.manifest.errors]
        lines += [f"{a.target}/{a.format}: verification failed: {'; '.join(a.verification.failures)}"
                  for a in self.manifest.artifacts if not a.passed]
        if self.report is not None:
            strict = bool(self.report.settings.get("strict"))
            for result in self.report.results:
                name = result.measurement.name
                if result.measurement.error:
                    lines.append(f"{name}: {result.measurement.error}")
                bad = {"fail", "not measured"} if strict else {"fail"}
                lines += [f"{name}: {v.budget} {v.reason or v.status}" for v in result.verdicts if v.status in bad]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "config": str(self.config.path),
            "manifest": str(self.manifest.path),
            "targets": self.targets,
            "benchmarked": self.benchmarked,
            "bench_cached": self.bench_cached,
            "reports": {kind: str(path) for kind, path in self.reports.items()},
            "failures": self.failures(),
            "seconds": round(self.seconds, 3),
        }


def build(
    config: str | Path | BuildConfig | None = None,
    *,
    only: list[str] | None = None,
    force: bool = False,
    bench: bool = True,
    rebench: bool = False,
    progress: Progress = SILENT,
) -> BuildResult:
    """Convert every target of `config` whose inputs changed, benchmark, judge budgets, write reports.

    `config`: an edgekit.toml or pyproject.toml path, a loaded BuildConfig, or None to find
    edgekit.toml (or [tool.edgekit] in pyproject.toml) in the working directory.
    `only`: target names to build (others keep what the previous build made).
    `force`: convert even up-to-date targets. `bench=False`: convert only, write no reports.
    `rebench`: measure again instead of reusing cached measurements.
    Bad input raises an EdgekitError before anything in the output directory changes.
    """
    started = time.perf_counter()
    config = config if isinstance(config, BuildConfig) else load_config(config)
    selected = _select(config, only)
    _check_calibration(config)
    with output_lock(config.output):
        cache = BuildCache.load(config.output)
        old = _previous_manifest(config.output)
        keys = _keys(config)
        states: dict[str, str] = {name: "not selected" for name in config.targets}
        stale: dict[str, str] = {}
        for name in selected:
            reason = "--force" if force else _stale_reason(name, old, cache.targets.get(name), keys[name])
            if reason:
                stale[name] = reason
            else:
                states[name] = UP_TO_DATE
        source, load_log = _check_inputs(config, old, stale, progress.verbose)  # bad input stops here, before a line is printed
        for name in selected:
            progress.info(f"{name}: {'building (' + stale[name] + ')' if name in stale else UP_TO_DATE}")
        manifest = _convert_and_publish(config, old, source, stale, keys, cache, progress, load_log)
        for name, reason in stale.items():
            states[name] = f"built ({reason})"
        result = BuildResult(config, manifest, targets=states)
        if bench:
            from edgekit.buildbench import bench_targets

            result.report, result.benchmarked, result.bench_cached = bench_targets(
                config, manifest, selected, cache, rebench, progress)
            result.reports = _write_reports(config, result.report, cache, progress)
            cache.save()
    result.seconds = time.perf_counter() - started
    return result


def _select(config: BuildConfig, only: list[str] | None) -> list[str]:
    if not only:
        return list(config.targets)
    for name in only:
        if name not in config.targets:
            raise InputError(f"--only {name}: {config.label} defines no target '{name}'{did_you_mean(name, config.targets)}")
    return [name for name in config.targets if name in only]  # config order, whatever the flag order


def _check_calibration(config: BuildConfig) -> None:
    if config.calibration is not None:
        return
    for name, entry in config.targets.items():
        for fmt, recipe in entry.target.recipes().items():
            if recipe.precision.needs_calibration:
                raise config.error("data.calibration", f"target '{name}' makes {fmt.value} {recipe.precision.value}, which "
                                   "needs calibration data; set it to an .npz (arrays named after the model's inputs), "
                                   "an .npy or a folder of images")


def _keys(config: BuildConfig) -> dict[str, dict[str, str]]:
    model = sha256_of(config.model)
    calibration = None
    if config.calibration is not None:
        parts: list[Any] = [sha256_of(config.calibration), config.calibration_samples]
        if config.calibration.is_dir():  # images become arrays through the preprocessing spec
            parts.append(config.preprocess.model_dump(mode="json") if config.preprocess else None)
        calibration = digest(parts)
    return {name: target_key(entry.target, model=model, calibration=calibration) for name, entry in config.targets.items()}


def _previous_manifest(output: Path) -> Manifest | None:
    try:
        return Manifest.read(output / MANIFEST)
    except (EdgekitError, KeyError, TypeError, ValueError):
        return None  # none yet, or unreadable: everything is rebuilt


def _stale_reason(name: str, old: Manifest | None, cached: dict[str, str] | None, key: dict[str, str]) -> str | None:
    if old is None:
        return "no previous manifest"
    changed = what_changed(cached, key)
    if changed:
        return changed
    if not any(a.target == name for a in old.artifacts) and not any(s["target"] == name for s in old.skipped):
        return "not in the previous manifest"
    if any(e["target"] == name for e in old.errors):
        return "its previous conversion failed"
    for artifact in (a for a in old.artifacts if a.target == name):
        expected = artifact.sha256
        if not all(p.is_file() for p in artifact.files()):
            return f"{artifact.path.name} is missing"
        artifact.fingerprint()
        if artifact.sha256 != expected:
            return f"{artifact.path.name} changed on disk"
    return None


def _check_inputs(config: BuildConfig, old: Manifest | None, stale: dict[str, str], verbose: bool = False):
    """The model (loaded when something must be converted) and the data checked against it: the SourceModel or
    None, and what TensorFlow printed while loading it (for OUTPUT/logs/source.log once a conversion runs)."""
    if stale:
        source, load_log = _load_source(config, verbose)
        _check_data(config, source.inputs, source.outputs)
        return source, load_log
    if old is not None:
        _check_data(config, *_specs(old))  # the manifest knows the model's inputs: no TensorFlow needed
    return None, b""


def _convert_and_publish(config: BuildConfig, old: Manifest | None, source, stale: dict[str, str],
                         keys: dict[str, dict[str, str]], cache: BuildCache, progress: Progress,
                         load_log: bytes = b"") -> Manifest:
    fresh = None
    staging = None
    dropped = {a.target for a in old.artifacts} - set(config.targets) if old else set()
    try:
        if stale or dropped:
            staging = Path(tempfile.mkdtemp(prefix=".edgekit-staging-", dir=config.output))
        if stale:
            from edgekit.conversion import convert

            fresh = convert(source, [config.targets[n].target for n in stale], calibration=config.calibration,
                            calibration_samples=config.calibration_samples, output=staging / "out",
                            preprocess=config.preprocess, progress=progress, logs=config.output / "logs")
            source_log = config.output / "logs" / "source.log"
            source_log.write_bytes(load_log + (source_log.read_bytes() if source_log.exists() else b""))
            _note_irreproducible(fresh, keys, cache)
        manifest = _merge(config, old, fresh, stale)
        with interrupts_held():
            if staging is not None:
                _move_in(config.output, staging, stale, dropped, manifest)
            if old is None or _comparable(old) != _comparable(manifest):
                manifest.write(config.output / MANIFEST)
            for name in stale:
                cache.targets[name] = keys[name]
                cache.artifacts[name] = {a.format: a.sha256 for a in manifest.artifacts if a.target == name}
            for table in (cache.targets, cache.artifacts):
                for name in [n for n in table if n not in config.targets]:
                    del table[name]
            cache.save()
        return manifest
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _note_irreproducible(fresh: Manifest, keys: dict[str, dict[str, str]], cache: BuildCache) -> None:
    """Every converter was measured byte-stable; should one stop being, the manifest says so.

    Converting the same inputs again (--force, or a file changed on disk) must give the bytes
    the cache remembers; an artifact that does not gets a note an app build can see.
    """
    for artifact in fresh.artifacts:
        name = artifact.target
        before = cache.artifacts.get(name, {}).get(artifact.format)
        if cache.targets.get(name) == keys[name] and before and before != artifact.sha256:
            artifact.notes.append(f"not reproducible: converting the same inputs again gave different bytes "
                                  f"(sha256 {artifact.sha256[:12]}, before {before[:12]}); the converter is not deterministic here")


def _load_source(config: BuildConfig, verbose: bool = False):
    """The model, and what TensorFlow printed loading it (captured at the fd level, not on the terminal)."""
    from edgekit.converters.source import load_source
    from edgekit.toollog import capture

    with tempfile.TemporaryDirectory(prefix="edgekit-log-") as scratch:
        log = Path(scratch) / "source.log"
        try:
            with capture(log, tee=verbose):
                source = load_source(config.model)
        except InputError as exc:
            raise config.error("model.path", str(exc)) from None
        return source, log.read_bytes()


def _specs(manifest: Manifest):
    from edgekit.artifact import TensorSpec

    return ([TensorSpec.from_dict(t) for t in manifest.source["inputs"]],
            [TensorSpec.from_dict(t) for t in manifest.source["outputs"]])


def _check_data(config: BuildConfig, inputs, outputs) -> None:
    """Calibration, evaluation data and labels against the model, before any output changes."""
    from edgekit.data import load_dataset

    for key, path in (("data.calibration", config.calibration), ("data.evaluation", config.evaluation)):
        if path is None:
            continue
        try:
            load_dataset(path, inputs, limit=config.calibration_samples if key == "data.calibration" else None,
                         preprocess=config.preprocess)
        except InputError as exc:
            raise config.error(key, str(exc)) from None
    if config.labels is not None and outputs:
        classes = outputs[0].shape[-1] if outputs[0].shape else None
        if classes is not None and classes != len(config.labels):
            raise config.error("model.labels", f"{len(config.labels)} labels, but the model's output "
                               f"'{outputs[0].name}' has {classes} classes")


def _merge(config: BuildConfig, old: Manifest | None, fresh: Manifest | None, stale: dict[str, str]) -> Manifest:
    """Fresh entries for rebuilt targets, the previous ones for the rest, in config order."""
    base = fresh or old
    assert base is not None  # a first build converts every selected target
    manifest = Manifest(source=base.source, calibration=base.calibration)
    for name in config.targets:
        origin = fresh if name in stale else old
        if origin is None:
            continue  # never built and not selected this time
        manifest.artifacts += [a for a in origin.artifacts if a.target == name]
        manifest.skipped += [s for s in origin.skipped if s["target"] == name]
        manifest.errors += [e for e in origin.errors if e["target"] == name]
    manifest.preprocess = config.preprocess.model_dump(mode="json") if config.preprocess else None
    manifest.labels = config.labels
    manifest.path = (config.output / MANIFEST).resolve()
    return manifest


def _move_in(output: Path, staging: Path, stale: dict[str, str], dropped: set[str], manifest: Manifest) -> None:
    """Swap each rebuilt target's directory in; drop the directories of targets no longer configured."""
    output = output.resolve()
    converted = (staging / "out").resolve()
    trash = staging / "previous"
    trash.mkdir()
    for name in [*stale, *sorted(dropped)]:
        if (output / name).is_dir():
            (output / name).rename(trash / name)
    for name in stale:
        if (converted / name).is_dir():
            (converted / name).rename(output / name)
    for artifact in manifest.artifacts:
        if artifact.target in stale:
            artifact.path = output / artifact.path.resolve().relative_to(converted)


def _comparable(manifest: Manifest) -> dict[str, Any]:
    data = manifest.to_dict()
    data.pop("created")
    return data


def _write_reports(config: BuildConfig, report, cache: BuildCache, progress: Progress) -> dict[str, Path]:
    """Write the configured reports, unless the same report is already there (nothing changed)."""
    from edgekit import reports as writers

    folder = config.output / REPORTS_DIR
    files = {kind: folder / REPORT_FILES[kind] for kind in config.reports}
    content = report.to_dict()
    content.pop("created")
    key = digest([content, sorted(files)])
    if cache.reports == key and all(path.is_file() for path in files.values()):
        progress.info(f"reports: {UP_TO_DATE}")
        return files
    write = {"json": writers.write_json, "junit": writers.write_junit, "markdown": writers.write_markdown,
             "html": writers.write_html}
    for kind, path in files.items():
        write[kind](report, path)
    cache.reports = key
    if files:
        progress.info(f"reports: {', '.join(str(p) for p in files.values())}")
    return files
