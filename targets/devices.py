"""The device inventory: `[devices.NAME]` tables in edgekit.toml or a devices.toml.

A device is data, like a target profile: how to reach it (ssh or adb), which profile it
realizes, and how to run a model there (a Python interpreter that runs edgekit's pushed
worker, or a vendor benchmark binary). Checked once at load with unknown keys forbidden;
every error is one line naming the file and the key.
"""
from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgekit.errors import InputError, did_you_mean
from edgekit.fsutil import read_toml

INVENTORY_NAME = "devices.toml"
CONFIG_NAME = "edgekit.toml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class TransportKind(str, Enum):
    SSH = "ssh"
    ADB = "adb"


class HostKeyPolicy(str, Enum):
    STRICT = "strict"  # the host's key must already be in known_hosts
    ACCEPT_NEW = "accept-new"  # an unknown host's key is recorded; a changed key is refused
    OFF = "off"  # no check (a lab network you trust); the report says so


class RunnerKind(str, Enum):
    PYTHON = "python"  # edgekit pushes its worker; the device needs NumPy and the runtime
    BENCHMARK_MODEL = "benchmark_model"  # LiteRT's benchmark tool (the Android route)
    BENCHMARK_APP = "benchmark_app"  # OpenVINO's
    ONNXRUNTIME_PERF_TEST = "onnxruntime_perf_test"  # ONNX Runtime's

    @property
    def formats(self) -> tuple[str, ...]:
        """Artifact formats this runner can run."""
        return {"python": ("tflite", "onnx", "openvino"), "benchmark_model": ("tflite",),
                "benchmark_app": ("openvino", "onnx"), "onnxruntime_perf_test": ("onnx",)}[self.value]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cooldown(_Strict):
    """Thermal honesty: wait before each artifact until the device is cool, or for a fixed time."""

    max_temperature_c: float | None = Field(None, gt=0, lt=150)  # wait until every sensor reads below it
    seconds: float = Field(0.0, ge=0)  # a fixed pause (where there is no sensor), or the poll cap's floor
    max_wait_s: float = Field(300.0, gt=0)  # give up waiting after this long and mark the run throttled


class Device(_Strict):
    """One `[devices.NAME]` table."""

    name: str = ""  # filled in from the table name
    transport: TransportKind
    target: str  # the profile this device realizes: its artifacts are the ones benchmarked there
    # ssh
    host: str | None = None
    port: int = Field(22, ge=1, le=65535)
    user: str | None = None
    key: str | None = None  # private key file; default: the SSH agent and ~/.ssh keys
    known_hosts: str | None = None  # default ~/.ssh/known_hosts
    host_key_policy: HostKeyPolicy = HostKeyPolicy.STRICT
    connect_timeout: float = Field(10.0, gt=0)
    # adb
    serial: str | None = None  # default: the only device attached
    adb_server: str | None = None  # HOST:PORT of the adb server; default 127.0.0.1:5037
    # how to run there
    runner: RunnerKind = RunnerKind.PYTHON
    python: str = "python3"  # the interpreter on the device (a venv's bin/python works)
    binary: str | None = None  # a local vendor binary, pushed (content-addressed)
    binary_on_device: str | None = None  # or one already installed there
    workdir: str = "/tmp/edgekit"  # on the device; artifacts are kept there by sha256
    timeout: float = Field(600.0, gt=0)  # seconds one artifact may run there
    cooldown: Cooldown = Field(default_factory=Cooldown)
    source: str = ""  # the file this came from (for messages)

    @model_validator(mode="after")
    def _transport_fields(self) -> Device:
        if self.transport is TransportKind.SSH and not self.host:
            raise ValueError("host: required for transport = 'ssh'")
        if self.transport is TransportKind.ADB and self.host:
            raise ValueError("host: not used with transport = 'adb' (use serial, or adb_server)")
        if self.runner is not RunnerKind.PYTHON and not (self.binary or self.binary_on_device):
            raise ValueError(f"binary: required for runner = '{self.runner.value}' (a local file to push, "
                             "or binary_on_device)")
        if self.binary and self.binary_on_device:
            raise ValueError("binary and binary_on_device conflict: give one")
        return self

    def describe(self) -> str:
        if self.transport is TransportKind.SSH:
            return f"ssh {self.user + '@' if self.user else ''}{self.host}:{self.port}"
        return f"adb {self.serial or '(only device)'}"


def find_inventory(start: Path | None = None) -> list[Path]:
    """devices.toml and edgekit.toml (when it has [devices]) in `start`, the working directory by default."""
    folder = start or Path.cwd()
    found = []
    if (folder / INVENTORY_NAME).is_file():
        found.append(folder / INVENTORY_NAME)
    config = folder / CONFIG_NAME
    if config.is_file() and "devices" in read_toml(config, str(config), InputError):
        found.append(config)
    return found


def load_inventory(paths: list[str | Path] | str | Path | None = None) -> dict[str, Device]:
    """Devices by name from the given files (default: find_inventory()); raises InputError on any problem."""
    if paths is None:
        files = find_inventory()
        if not files:
            raise InputError(f"no device inventory: no {INVENTORY_NAME}, and no [devices] in {CONFIG_NAME} here; "
                             "pass --inventory FILE (see README: Benchmark on your devices)")
    else:
        files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    devices: dict[str, Device] = {}
    for path in files:
        label = str(path)
        if not path.is_file():
            raise InputError(f"{label}: inventory file not found")
        tables = read_toml(path, label, InputError).get("devices")
        if tables is None:
            raise InputError(f"{label}: no [devices.NAME] table")
        for name, device in devices_from_dict(tables, path, label).items():
            if name in devices:
                raise InputError(f"{label}: devices.{name}: defined twice (also in {devices[name].source})")
            devices[name] = device
    return devices


def devices_from_dict(tables: Any, path: Path, label: str | None = None, prefix: str = "") -> dict[str, Device]:
    """Devices from a parsed `devices` table; relative key/binary paths resolve against `path`'s folder."""
    label = label or str(path)
    if not isinstance(tables, dict):
        raise InputError(f"{label}: {prefix}devices: expected tables [devices.NAME], got {tables!r}")
    base = path.resolve().parent
    devices = {}
    for name, table in tables.items():
        key = f"{prefix}devices.{name}"
        if not _NAME.match(name):
            raise InputError(f"{label}: {key}: a device name is letters, digits, '.', '_' and '-'")
        if not isinstance(table, dict):
            raise InputError(f"{label}: {key}: expected a table, got {table!r}")
        for internal in ("name", "source"):  # filled in by edgekit, not keys a table may set
            if internal in table:
                known = [f for f in Device.model_fields if f not in ("name", "source")]
                raise InputError(f"{label}: {key}.{internal}: unknown key (the table's name is the device's name; "
                                 f"accepted: {', '.join(known)})")
        try:
            device = Device.model_validate({**table, "name": name, "source": label})
        except ValidationError as exc:
            raise InputError(_explain(exc, label, key)) from None
        updates = {field: str(_local(base, getattr(device, field))) for field in ("key", "binary", "known_hosts")
                   if getattr(device, field)}
        device = device.model_copy(update=updates)
        if device.binary and not Path(device.binary).is_file():
            raise InputError(f"{label}: {key}.binary: file not found: {device.binary}")
        _check_target(device, label, key)
        devices[name] = device
    return devices


def _local(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _check_target(device: Device, label: str, key: str) -> None:
    """A profile given as a file is loaded now; a name may be a build's own [targets.NAME], checked at bench."""
    from edgekit.errors import EdgekitError
    from edgekit.targets.loader import is_profile_path, load_target

    if is_profile_path(device.target):
        try:
            load_target(device.target)
        except EdgekitError as exc:
            raise InputError(f"{label}: {key}.target: {exc}") from None


def _explain(exc: ValidationError, label: str, key: str) -> str:
    error = exc.errors()[0]
    loc = [str(p) for p in error["loc"]]
    where = ".".join([key, *loc]) if loc else key
    kind = error["type"]
    if kind == "extra_forbidden":
        model: type[BaseModel] = Cooldown if loc[:1] == ["cooldown"] else Device
        known = [f for f in model.model_fields if f not in ("name", "source")]
        return f"{label}: {where}: unknown key{did_you_mean(loc[-1], known)}"
    if kind == "missing":
        return f"{label}: {where}: missing (required)"
    if kind == "enum":
        expected = error.get("ctx", {}).get("expected", "")
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",") if c.strip(" '")]
        value = str(error.get("input"))
        return f"{label}: {where}: {value!r} is not accepted{did_you_mean(value, choices)}"
    if kind == "value_error":
        return f"{label}: {key}.{error['msg'].removeprefix('Value error, ')}"
    return f"{label}: {where}: {error['msg']} (got {error.get('input')!r})"


def select(devices: dict[str, Device], names: list[str] | None) -> list[Device]:
    """The named devices in the order given (all of them when `names` is empty); unknown names are exit 2."""
    if not names:
        return list(devices.values())
    for name in names:
        if name not in devices:
            raise InputError(f"unknown device '{name}'{did_you_mean(name, devices)}")
    return [devices[name] for name in dict.fromkeys(names)]


# What a runtime calls its devices (bench's --accelerator); a --device value like these, with no
# inventory device of that name, is taken as one, as bench's --device meant before devices existed.
_ACCELERATOR_WORDS = {"CPU", "GPU", "NPU", "AUTO", "MULTI", "HETERO", "BATCH", "EDGETPU", "QNN", "CUDA", "TENSORRT",
                      "OPENVINO", "DML", "COREML", "NNAPI", "XNNPACK", "ROCM", "MIGRAPHX"}


def looks_like_accelerator(value: str) -> bool:
    head = value.split(":")[0].split(".")[0].upper()
    return (head in _ACCELERATOR_WORDS or value.endswith("ExecutionProvider") or ".so" in value
            or value.endswith((".dylib", ".dll")))


def bench_devices(names: list[str], inventory: list[str | Path] | None) -> tuple[list[Device], list[str]]:
    """(inventory devices, values meant as --accelerator) for `bench --device NAME...`.

    Without an inventory, a --device value is the runtime's device (the option's meaning
    before inventories): returned as an accelerator, and the CLI says so.
    """
    if inventory is None and not find_inventory():
        return [], list(names)
    devices = load_inventory(inventory)
    chosen, accelerators = [], []
    for name in dict.fromkeys(names):
        if name in devices:
            chosen.append(devices[name])
        elif looks_like_accelerator(name):
            accelerators.append(name)
        else:
            raise InputError(f"--device {name}: unknown device{did_you_mean(name, devices)} "
                             f"(inventory: {', '.join(sorted({d.source for d in devices.values()}))})")
    return chosen, accelerators
