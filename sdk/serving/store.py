"""A model store laid out as TensorFlow Serving's: `STORE/NAME/<version>/manifest.json` plus artifacts.

Versions are positive integers (directory names); anything else in a model's folder is
ignored, as TF Serving does, so a publish in progress (a hidden staging folder) is never
seen. `publish` copies a build's verified artifacts into the next version and makes it
appear with one rename, so a server polling the store sees a version whole or not at all.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import InputError
from edgekit.manifest import Manifest

MANIFEST = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a model name is a directory name and a URL segment


@dataclass(frozen=True)
class ModelSource:
    """Where one served model's versions come from: a store folder, or a single build directory (version 1)."""

    name: str
    folder: Path  # STORE/NAME, or the build directory itself
    single: bool = False  # a build directory: one version, numbered 1

    def versions(self) -> dict[int, Path]:
        """version -> its folder (holding manifest.json), every complete version on disk."""
        if self.single:
            return {1: self.folder}
        found = {}
        for entry in self.folder.iterdir() if self.folder.is_dir() else []:
            if entry.name.isdigit() and int(entry.name) > 0 and (entry / MANIFEST).is_file():
                found[int(entry.name)] = entry
        return dict(sorted(found.items()))


def discover(path: Path) -> list[ModelSource]:
    """The models under PATH: a build directory (manifest.json inside) or a store (NAME/<version>/ folders)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found (pass a build directory with a manifest.json, or a model store)")
    if not path.is_dir():
        raise InputError(f"{path}: not a directory (pass a build directory with a manifest.json, or a model store)")
    if (path / MANIFEST).is_file():
        return [ModelSource(model_name(Manifest.read(path / MANIFEST)), path.resolve(), single=True)]
    models = [ModelSource(entry.name, entry.resolve()) for entry in sorted(path.iterdir())
              if entry.is_dir() and _NAME.match(entry.name) and ModelSource(entry.name, entry).versions()]
    if not models:
        raise InputError(f"{path}: neither a build directory (no manifest.json) nor a model store "
                         "(no NAME/<version>/manifest.json inside); build one with `edgekit build --publish STORE`")
    return models


def model_name(manifest: Manifest) -> str:
    """A model's name: its source file's stem (digits.keras -> digits)."""
    source = manifest.source.get("path") or "model"
    stem = Path(source).name.split(".")[0] or "model"
    return re.sub(r"[^A-Za-z0-9._-]", "-", stem).lstrip("._-") or "model"


def publish(manifest: Manifest | Path, store: Path, name: str | None = None) -> Path:
    """Copy a build's verified artifacts into STORE/NAME/<next version>/; return that folder.

    Only artifacts that passed verification are published; a manifest with none is an error.
    The version appears with one rename: readers never see it half-copied.
    """
    if not isinstance(manifest, Manifest):
        path = Path(manifest)
        manifest = Manifest.read(path / MANIFEST if path.is_dir() else path)
    name = name or model_name(manifest)
    if not _NAME.match(name):
        raise InputError(f"model name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder and a URL)")
    passed = [a for a in manifest.artifacts if a.passed]
    if not passed:
        raise InputError(f"{manifest.path}: no artifact passed verification; nothing to publish")
    assert manifest.path is not None
    base = manifest.path.parent
    folder = Path(store) / name
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".publishing-", dir=folder))
    try:
        copied = Manifest(source=manifest.source, calibration=manifest.calibration, preprocess=manifest.preprocess,
                          labels=manifest.labels, created=manifest.created, edgekit_version=manifest.edgekit_version)
        for artifact in passed:
            relative = artifact.path.resolve().relative_to(base.resolve())
            for file in artifact.files():
                target = staging / file.resolve().relative_to(base.resolve())
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)
            copied.artifacts.append(_moved(artifact, staging / relative))
        copied.write(staging / MANIFEST)
        return _claim_next_version(folder, staging, copied)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _moved(artifact, path: Path):
    from dataclasses import replace

    return replace(artifact, path=path)


def _claim_next_version(folder: Path, staging: Path, manifest: Manifest) -> Path:
    """Rename staging to the next free version number; a concurrent publisher gets the one after."""
    for _ in range(100):
        existing = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
        version = folder / str(max(existing, default=0) + 1)
        try:
            os.rename(staging, version)  # fails when another publisher took this number first
        except OSError:
            continue
        return version
    raise InputError(f"{folder}: could not claim a version number (another process keeps publishing)")
