"""What decides that a target must be rebuilt or an artifact re-benchmarked, and where that is remembered.

Keys are sha256 digests of content, never timestamps: a fresh CI checkout or a restored
build cache has new mtimes but the same bytes, and must not rebuild. Each target's key is
kept as named parts so that a rebuild can say what changed.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.fsutil import atomic_write_text
from edgekit.targets.schema import Format, Target

CACHE_FILE = ".edgekit-cache.json"
SCHEMA = "edgekit.buildcache/1"

# The distributions whose code makes (and verifies) each format: a new version may make other bytes.
FORMAT_TOOLS: dict[Format, tuple[str, ...]] = {
    Format.TFLITE: ("tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert"),
    Format.ONNX: ("tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxconverter-common", "onnxruntime"),
    Format.OPENVINO: ("tensorflow", "tensorflow-cpu", "keras", "onnx", "openvino", "nncf"),
}


def digest(value: Any) -> str:
    """sha256 of a JSON-able value, independent of dict order."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def tool_versions(target: Target) -> dict[str, str | None]:
    from edgekit._deps import version_of

    names = sorted({name for fmt in target.recipes() for name in FORMAT_TOOLS[fmt]})
    return {name: version_of(name) for name in names}


def target_key(target: Target, *, model: str, calibration: str | None) -> dict[str, str]:
    """The parts that determine a target's artifacts: model bytes, calibration (when a recipe uses it),
    the resolved profile, and the versions of edgekit and of the converters it runs."""
    from edgekit import __version__

    profile = target.to_dict()
    for label in ("source", "extends"):  # where the profile came from is not what it says
        profile.pop(label, None)
    uses_calibration = any(r.precision.needs_calibration for r in target.recipes().values())
    return {
        "model": model,
        "calibration": (calibration or "none") if uses_calibration else "unused",
        "profile": digest(profile),
        "tools": digest(tool_versions(target)),
        "edgekit": __version__,
    }


def what_changed(old: dict[str, str] | None, new: dict[str, str]) -> str | None:
    """None when nothing did; else e.g. 'calibration changed'."""
    if old is None:
        return "not built yet"
    changed = [part for part in new if old.get(part) != new[part]]
    names = {"tools": "converter versions", "edgekit": "edgekit version"}
    return ", ".join(names.get(p, p) for p in changed) + " changed" if changed else None


@dataclass
class BuildCache:
    """`dist/.edgekit-cache.json`: target keys, cached measurements and the last reports' key."""

    path: Path
    targets: dict[str, dict[str, str]] = field(default_factory=dict)
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)  # target -> format -> sha256 it built
    bench: dict[str, dict[str, Any]] = field(default_factory=dict)  # bench key -> {measurement, settings}
    reports: str | None = None

    @classmethod
    def load(cls, directory: Path) -> BuildCache:
        """The cache of an output directory; an unreadable or foreign one counts as empty (a full rebuild)."""
        path = directory / CACHE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls(path)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            return cls(path)
        return cls(path, data.get("targets", {}), data.get("artifacts", {}), data.get("bench", {}), data.get("reports"))

    def save(self) -> None:
        data = {"schema": SCHEMA, "targets": self.targets, "artifacts": self.artifacts, "bench": self.bench,
                "reports": self.reports}
        text = json.dumps(data, indent=1, sort_keys=True, default=_plain) + "\n"
        try:
            if self.path.read_text(encoding="utf-8") == text:
                return  # an up-to-date build writes nothing
        except (OSError, UnicodeDecodeError):
            pass
        atomic_write_text(self.path, text)


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays in measurements, as JSON."""
    return value.tolist() if hasattr(value, "tolist") else str(value)
