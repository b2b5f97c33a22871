"""manifest.json: every artifact of a run and what an app needs to call it.

Schema `edgekit.manifest/1`, documented in the README. Paths are relative to the manifest.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.artifact import Artifact, TensorSpec, Verification
from edgekit.errors import InputError
from edgekit.fsutil import atomic_write_text

SCHEMA = "edgekit.manifest/1"


def edgekit_version() -> str:
    from edgekit import __version__

    return __version__


def _created() -> str:
    # SOURCE_DATE_EPOCH makes the manifest reproducible in builds that ask for it.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = time.gmtime(int(epoch)) if epoch and epoch.isdigit() else time.gmtime()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)


@dataclass
class Manifest:
    source: dict[str, Any]
    artifacts: list[Artifact] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)  # (target, format) not produced, and why
    errors: list[dict[str, str]] = field(default_factory=list)  # (target, format) whose conversion failed
    # For apps, from edgekit.toml: what to do to an image before calling the model, and class names.
    preprocess: dict[str, Any] | None = None  # size [h, w], layout, color, scale, mean, std
    labels: list[str] | None = None  # class names in output index order
    created: str = field(default_factory=_created)
    edgekit_version: str = field(default_factory=edgekit_version)
    path: Path | None = None  # where it was written or read
    timings: dict[str, float] | None = None  # seconds of the run's shared steps: load, export, reference, total

    @property
    def passed(self) -> bool:
        return not self.errors and all(a.passed for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        base = self.path.parent if self.path else None
        return {
            "schema": SCHEMA,
            "edgekit_version": self.edgekit_version,
            "created": self.created,
            "source": self.source,
            "calibration": self.calibration,
            "artifacts": [_artifact_dict(a, base) for a in self.artifacts],
            "skipped": self.skipped,
            "errors": self.errors,
            "preprocess": self.preprocess,
            "labels": self.labels,
            **({"timings": {k: round(v, 3) for k, v in self.timings.items()}} if self.timings else {}),
        }

    def write(self, path: Path) -> None:
        self.path = Path(path).resolve()
        atomic_write_text(self.path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> Manifest:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"manifest not found: {path}") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not a readable manifest: {exc}") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise InputError(f"{path}: not an edgekit manifest (schema {data.get('schema') if isinstance(data, dict) else None!r}, expected {SCHEMA!r})")
        base = path.resolve().parent
        manifest = cls(
            source=data["source"],
            artifacts=[_artifact_from(a, base) for a in data["artifacts"]],
            calibration=data.get("calibration"),
            skipped=data.get("skipped", []),
            errors=data.get("errors", []),
            preprocess=data.get("preprocess"),
            labels=data.get("labels"),
            timings=data.get("timings"),
            created=data["created"],
            edgekit_version=data["edgekit_version"],
        )
        manifest.path = path.resolve()
        return manifest


def _artifact_dict(artifact: Artifact, base: Path | None) -> dict[str, Any]:
    path = artifact.path
    if base is not None:
        path = Path(os.path.relpath(artifact.path, base))
    return {
        "target": artifact.target,
        "profile": artifact.profile,
        "format": artifact.format,
        "precision": artifact.precision,
        "path": path.as_posix(),
        "sha256": artifact.sha256,
        "bytes": artifact.bytes,
        "runtime": artifact.runtime,
        "device": artifact.device,
        "inputs": [t.to_dict() for t in artifact.inputs],
        "layout": artifact.layout,
        "outputs": [t.to_dict() for t in artifact.outputs],
        "verification": asdict(artifact.verification) if artifact.verification else None,
        "tools": artifact.tools,
        "seconds": round(artifact.seconds, 3),
        "notes": artifact.notes,
        "compatibility": artifact.compatibility,
        "accuracy_aware": artifact.accuracy_aware,
        "log": _relative(artifact.log, base),
        "timings": {k: round(v, 3) for k, v in artifact.timings.items()} if artifact.timings else None,
        "traits": artifact.traits,
        "repair": artifact.repair,
    }


def _relative(path: Path | None, base: Path | None) -> str | None:
    if path is None:
        return None
    return Path(os.path.relpath(path, base)).as_posix() if base is not None else str(path)


def _artifact_from(data: dict[str, Any], base: Path) -> Artifact:
    verification = data.get("verification")
    return Artifact(
        target=data["target"],
        format=data["format"],
        precision=data["precision"],
        path=base / data["path"],
        runtime=data["runtime"],
        device=data["device"],
        inputs=[TensorSpec.from_dict(t) for t in data["inputs"]],
        outputs=[TensorSpec.from_dict(t) for t in data["outputs"]],
        tools=data.get("tools", {}),
        seconds=data.get("seconds", 0.0),
        sha256=data["sha256"],
        bytes=data["bytes"],
        verification=Verification(**verification) if verification else None,
        notes=data.get("notes", []),
        profile=data.get("profile", ""),
        compatibility=data.get("compatibility"),
        accuracy_aware=data.get("accuracy_aware"),
        layout=data.get("layout"),
        log=base / data["log"] if data.get("log") else None,
        timings=data.get("timings"),
        traits=data.get("traits"),
        repair=data.get("repair"),
    )
