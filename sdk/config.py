"""`edgekit.toml` (or `[tool.edgekit]` in pyproject.toml): the one checked-in file that drives `edgekit build`.

A pydantic schema with unknown keys forbidden checks it once, at load. Every error is one
line naming the file, the key path (`targets.cpu.budgets.latency_p90_ms`) and what is
accepted. Relative paths resolve against the config file's folder, so the same file works
from Gradle, Xcode, fastlane or CI whatever their working directory.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from edgekit.benchmarks.budgets import Budget, make_budget
from edgekit.errors import EdgekitError, InputError, did_you_mean
from edgekit.fsutil import read_toml
from edgekit.targets.schema import Format, Preprocess, Target
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONFIG_NAME = "edgekit.toml"
MODEL_SUFFIXES = (".keras", ".h5", ".onnx", ".tflite")
RESERVED_TARGET_NAMES = ("reports",)  # dist/reports/ holds the reports
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # it becomes a directory name


class ReportKind(str, Enum):
    JSON = "json"
    JUNIT = "junit"
    MARKDOWN = "markdown"
    HTML = "html"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(_Strict):
    path: str
    labels: list[str] | str | None = None  # class names in output order, or a text file with one per line
    preprocess: Preprocess | None = None  # what an app does to an image first; copied into the manifest


class DataSection(_Strict):
    calibration: str | None = None  # .npz/.npy or an image folder
    evaluation: str | None = None  # .npz with inputs and optional `labels`
    calibration_samples: int = Field(200, ge=1)


class TargetSection(_Strict):
    profile: str | None = None  # a built-in name or a .toml path; default: the table's own name
    formats: list[Format] | None = None  # default: every format the profile defines
    budgets: dict[str, Any] = Field(default_factory=dict)  # override the profile's, key by key


class OutputSection(_Strict):
    dir: str = "dist"
    reports: list[ReportKind] = Field(default_factory=lambda: list(ReportKind))


class BenchSection(_Strict):
    warmup: int = Field(10, ge=0)
    min_runs: int = Field(50, ge=1)
    min_time: float = Field(1.0, ge=0)
    max_time: float = Field(60.0, gt=0)
    threads: int | None = Field(None, ge=1)
    batch: int = Field(1, ge=1)
    timeout: float = Field(600.0, gt=0)
    strict: bool = False  # a budget that could not be measured fails
    devices: list[str] = Field(default_factory=list)  # also measure on these inventory devices ([devices.NAME])


class ConfigFile(_Strict):
    """The file as written."""

    model: ModelSection
    data: DataSection = Field(default_factory=DataSection)
    targets: dict[str, TargetSection]
    output: OutputSection = Field(default_factory=OutputSection)
    bench: BenchSection = Field(default_factory=BenchSection)
    devices: dict[str, Any] = Field(default_factory=dict)  # [devices.NAME], checked by edgekit.targets.devices


@dataclass
class TargetConfig:
    """One `[targets.NAME]` table, resolved: the profile loaded, formats chosen, budgets checked."""

    name: str
    target: Target  # named after the table, with only the chosen formats enabled
    budgets: dict[str, Budget]  # the config's own; the profile's are in `target.budgets`


@dataclass
class BuildConfig:
    """A loaded, validated config with absolute paths. `edgekit.build` takes one or a file path."""

    path: Path  # the config file
    label: str  # how errors name it: the path as given
    prefix: str  # key prefix: "" for edgekit.toml, "tool.edgekit." for pyproject.toml
    model: Path
    calibration: Path | None
    evaluation: Path | None
    calibration_samples: int
    labels: list[str] | None
    preprocess: Preprocess | None
    targets: dict[str, TargetConfig]
    output: Path
    reports: list[str]
    bench: BenchSection
    devices: dict[str, Any] = field(default_factory=dict)  # name -> edgekit.targets.devices.Device

    def error(self, key: str, message: str) -> InputError:
        """An error naming this file and `key`, as every config error does."""
        return InputError(f"{self.label}: {self.prefix}{key}: {message}")


def find_config(start: Path | None = None) -> Path:
    """edgekit.toml in `start` (default: the working directory), else a pyproject.toml with [tool.edgekit]."""
    folder = start or Path.cwd()
    if (folder / CONFIG_NAME).is_file():
        return folder / CONFIG_NAME
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file() and "edgekit" in read_toml(pyproject, str(pyproject), InputError).get("tool", {}):
        return pyproject
    raise InputError(
        f"{CONFIG_NAME}: not found in {folder} (and no [tool.edgekit] in pyproject.toml); "
        "pass -c FILE, or write one with `edgekit init MODEL`"
    )


def load_config(path: str | Path | None = None) -> BuildConfig:
    """Read and validate a config file; raises InputError naming the file and key on any problem."""
    config_path = find_config() if path is None else Path(path)
    label = str(config_path)
    if not config_path.is_file():
        raise InputError(f"{label}: config file not found" + (" (it is a directory)" if config_path.is_dir() else ""))
    data = read_toml(config_path, label, InputError)
    prefix = ""
    if config_path.name == "pyproject.toml":
        prefix = "tool.edgekit."
        data = data.get("tool", {}).get("edgekit")
        if not isinstance(data, dict):
            raise InputError(f"{label}: has no [tool.edgekit] table; add one, or use an {CONFIG_NAME}")
    return from_dict(data, config_path, label=label, prefix=prefix)


def from_dict(data: dict[str, Any], path: Path, *, label: str | None = None, prefix: str = "") -> BuildConfig:
    """A BuildConfig from parsed TOML; relative paths resolve against `path`'s folder."""
    label = label or str(path)
    try:
        raw = ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise InputError(_explain(exc, label, prefix)) from None
    base = path.resolve().parent
    config = BuildConfig(
        path=path.resolve(), label=label, prefix=prefix, model=_under(base, raw.model.path),
        calibration=_under(base, raw.data.calibration), evaluation=_under(base, raw.data.evaluation),
        calibration_samples=raw.data.calibration_samples, labels=None, preprocess=raw.model.preprocess,
        targets={}, output=_under(base, raw.output.dir), reports=[k.value for k in raw.output.reports],
        bench=raw.bench,
    )
    _check_model(config)
    _check_data(config)
    config.labels = _labels(config, raw.model.labels, base)
    if not raw.targets:
        raise config.error("targets", "no target defined; add a [targets.NAME] table (e.g. [targets.cpu])")
    config.targets = {name: _target(config, name, section, base) for name, section in raw.targets.items()}
    config.devices = _devices(config, raw)
    return config


def _devices(config: BuildConfig, raw: ConfigFile) -> dict[str, Any]:
    """[devices.NAME] of this file and of a devices.toml beside it; [bench] devices must name them."""
    from edgekit.targets.devices import INVENTORY_NAME, devices_from_dict, load_inventory

    devices = devices_from_dict(raw.devices, config.path, config.label, config.prefix) if raw.devices else {}
    beside = config.path.parent / INVENTORY_NAME
    if beside.is_file():
        for name, device in load_inventory(beside).items():
            if name in devices:
                raise config.error(f"devices.{name}", f"defined twice (also in {beside})")
            devices[name] = device
    for index, name in enumerate(raw.bench.devices):
        if name not in devices:
            where = f"no [devices.{name}] here or in {INVENTORY_NAME} beside it"
            raise config.error(f"bench.devices[{index}]", f"unknown device '{name}'{did_you_mean(name, devices)}; {where}")
    return devices


def _under(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _check_model(config: BuildConfig) -> None:
    """The path's kind, before anything loads it: a missing file or one that changed type is bad input."""
    path = config.model
    accepted = "accepted: a .keras, .h5, .onnx or .tflite file, or a SavedModel directory"
    if not path.exists():
        raise config.error("model.path", f"file not found: {path}")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise config.error("model.path", f"{path} is a directory but not a SavedModel (no saved_model.pb); {accepted}")
    elif path.suffix.lower() not in MODEL_SUFFIXES:
        raise config.error("model.path", f"{path}: unknown model type '{path.suffix}' ({accepted})")
    elif path.stat().st_size == 0:
        raise config.error("model.path", f"{path}: file is empty")


def _check_data(config: BuildConfig) -> None:
    for key, path, kinds in (("data.calibration", config.calibration, (".npz", ".npy")), ("data.evaluation", config.evaluation, (".npz",))):
        if path is None:
            continue
        if not path.exists():
            raise config.error(key, f"file not found: {path}")
        if key == "data.calibration" and path.is_dir():
            continue  # an image folder
        if path.is_dir() or path.suffix.lower() not in kinds:
            what = "an .npz or .npy file, or a folder of images" if key == "data.calibration" else "an .npz file with inputs and optional 'labels'"
            raise config.error(key, f"{path}: expected {what}")


def _labels(config: BuildConfig, labels: list[str] | str | None, base: Path) -> list[str] | None:
    if labels is None or isinstance(labels, list):
        return labels
    path = _under(base, labels)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise config.error("model.labels", f"file not found: {path} (give a list of names, or a text file with one per line)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise config.error("model.labels", f"{path}: cannot read: {exc}") from None
    return [line.strip() for line in lines if line.strip()]


def _target(config: BuildConfig, name: str, section: TargetSection, base: Path) -> TargetConfig:
    from edgekit.targets.loader import is_profile_path, load_target

    key = f"targets.{name}"
    if not _TARGET_NAME.match(name) or name in RESERVED_TARGET_NAMES:
        raise config.error(key, f"'{name}' cannot name a target: it becomes dist/{name}/; use letters, digits, '.', '_' and '-', not {', '.join(RESERVED_TARGET_NAMES)}")
    reference: str | Path = section.profile or name
    if section.profile is not None and is_profile_path(section.profile):
        reference = _under(base, section.profile)
    try:
        target = load_target(reference)
    except EdgekitError as exc:
        raise config.error(f"{key}.profile" if section.profile else key, str(exc)) from None
    defined = target.recipes()
    if section.formats is not None:
        if not section.formats:
            raise config.error(f"{key}.formats", "is empty; list at least one of " + ", ".join(f.value for f in defined))
        for fmt in section.formats:
            if fmt not in defined:
                names = ", ".join(f.value for f in defined) or "none"
                raise config.error(f"{key}.formats", f"profile '{target.name}' defines no {fmt.value} recipe (it defines: {names})")
        chosen = set(section.formats)
        target = target.model_copy(update={"formats": {f: r.model_copy(update={"enabled": r.enabled and f in chosen})
                                                       for f, r in target.formats.items()}})
    budgets = {k: make_budget(k, v, f"{config.label}: {config.prefix}{key}.budgets.{k}") for k, v in section.budgets.items()}
    for k, v in target.budgets.items():  # the profile's own, checked now rather than at bench time
        make_budget(k, v, f"{target.source}: budgets.{k}")
    return TargetConfig(name, target.model_copy(update={"name": name}), budgets)


def _explain(exc: ValidationError, label: str, prefix: str) -> str:
    """The first validation error as one line naming the file, the key and what is accepted."""
    from edgekit.targets.loader import _keys_at

    error = exc.errors()[0]
    loc = error["loc"]
    key = prefix + "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _keys_at(ConfigFile, loc[:-1])
        return f"{label}: {key}: unknown key{did_you_mean(str(loc[-1]), known)}"
    if kind == "missing":
        return f"{label}: {key}: missing (required)"
    if kind == "enum":
        expected = error.get("ctx", {}).get("expected", "")
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",") if c.strip(" '")]
        value = str(error.get("input"))
        return f"{label}: {key}: {value!r} is not accepted{did_you_mean(value, choices)}"
    if kind in ("model_type", "dict_type") and isinstance(error.get("input"), str | int | float | bool | list):
        return f"{label}: {key}: expected a table, got {error.get('input')!r}"
    if kind == "value_error":  # our validators' messages already name the value
        return f"{label}: {key}: {error['msg'].removeprefix('Value error, ')}"
    return f"{label}: {key}: {error['msg']} (got {error.get('input')!r})"
