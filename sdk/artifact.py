"""What a conversion produces: an artifact file and everything an app needs to call it."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Quantization:
    """Affine int8/uint8 mapping of a tensor: real = (q - zero_point) * scale."""

    scale: float
    zero_point: int


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model. Unknown dimensions are None."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str  # numpy dtype name: float32, float16, int8, uint8, int32, ...
    quantization: Quantization | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "quantization": asdict(self.quantization) if self.quantization else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        q = data.get("quantization")
        return cls(
            name=data["name"],
            shape=tuple(data["shape"]),
            dtype=data["dtype"],
            quantization=Quantization(**q) if q else None,
        )


@dataclass
class Verification:
    """How an artifact's outputs compared with the source model's on the same inputs."""

    passed: bool
    samples: int
    max_abs_error: float
    mean_abs_error: float
    cosine: float
    top1_agreement: float | None
    tolerances: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # which tolerance was missed, with numbers
    warnings: list[str] = field(default_factory=list)
    precision_ran: str | None = None  # e.g. OpenVINO's actual inference precision
    # On labelled evaluation data (--evaluation) where the target has an accuracy budget:
    accuracy: float | None = None
    source_accuracy: float | None = None
    accuracy_samples: int | None = None


@dataclass
class Artifact:
    """A model file produced for one target and format."""

    target: str
    format: str  # tflite | onnx | openvino
    precision: str
    path: Path  # absolute while in memory; relative to the manifest on disk
    runtime: str
    device: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tools: dict[str, str]
    seconds: float
    sha256: str = ""
    bytes: int = 0
    verification: Verification | None = None
    notes: list[str] = field(default_factory=list)
    profile: str = ""  # the target profile it was made from: a built-in name or a .toml path
    compatibility: dict | None = None  # which ops the target's accelerator runs (converters/compat.py)
    accuracy_aware: dict | None = None  # the accuracy-aware search: trials, float nodes, before/after
    layout: str | None = None  # NCHW or NHWC: what its 4-D inputs take (PyTorch sources); None: the source's
    log: Path | None = None  # the tools' own output while it was made: DIR/logs/<target>-<format>.log
    timings: dict[str, float] | None = None  # seconds by step: export, calibrate, quantize, verify
    traits: dict | None = None  # the graph's int8-relevant traits and the settings chosen for them
    repair: dict | None = None  # the automatic repair of a missed tolerance: trials, what stayed in float

    def files(self) -> list[Path]:
        """Every file that makes up the artifact (OpenVINO IR is .xml + .bin; a large ONNX model
        keeps its weights as external data in `<name>.onnx.data`)."""
        if self.format == "openvino":
            return [self.path, self.path.with_suffix(".bin")]
        external = self.path.with_name(self.path.name + ".data")
        if self.format == "onnx" and external.exists():
            return [self.path, external]
        return [self.path]

    def fingerprint(self) -> None:
        """Fill sha256 and bytes from the files on disk."""
        digest = hashlib.sha256()
        total = 0
        for file in self.files():
            data = file.read_bytes()
            digest.update(data)
            total += len(data)
        self.sha256 = digest.hexdigest()
        self.bytes = total

    @property
    def passed(self) -> bool:
        searched_ok = self.accuracy_aware is None or self.accuracy_aware.get("met", True)
        repaired_ok = self.repair is None or self.repair.get("met", True)
        return searched_ok and repaired_ok and (self.verification is None or self.verification.passed)


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of every file below a directory in sorted order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
