"""The built-in profiles as `edgekit targets` lists them, validated once per content.

Validating the profiles means importing the pydantic schema and building its models: about
half the command's start-up time (issue 12 asks for 0.15 s). What the listing shows is a
pure function of the profile files and the code that reads them, so the validated rows are
kept in the user's cache under a digest of exactly those bytes; any edit to a profile, the
schema, the loader or this module is a new digest and a fresh validation. A cache that
cannot be read or written is ignored: the listing is then validated as before.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

PROFILE_DIR = Path(__file__).parent / "profiles"
_CODE = [Path(__file__).parent / name for name in ("schema.py", "loader.py", "listing.py")]


def builtin_names(profile_dir: Path = PROFILE_DIR) -> list[str]:
    return sorted(p.stem for p in profile_dir.glob("*.toml") if not p.stem.startswith("_"))


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "edgekit"


def builtin_listing(cache: Path | None = None) -> list[dict[str, Any]]:
    """One entry per built-in profile: `row` (the table's cells) and `profile` (its --json form)."""
    cache = cache_dir() if cache is None else cache
    path = cache / f"targets-{_digest()}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    listing = _validated()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps(listing))
        scratch.replace(path)  # readers see the old file or the whole new one
    except OSError:
        pass
    return listing


def _digest() -> str:
    from edgekit import __version__

    sha = hashlib.sha256(__version__.encode())
    for file in sorted(PROFILE_DIR.glob("*.toml")) + _CODE:
        sha.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return sha.hexdigest()[:20]


def _validated() -> list[dict[str, Any]]:
    from edgekit.targets.loader import load_target

    listing = []
    for name in builtin_names():
        profile = load_target(name)
        formats = [f"{fmt.value}: {r.precision.value}, {r.input_dtype.value} I/O, {r.runtime.value}:{device_label(r)}"
                   for fmt, r in profile.recipes().items()]
        parent = profile.extends[0] if profile.extends and profile.extends[0] != "_defaults" else ""
        row = {"name": profile.name, "class": profile.device_class.value, "extends": parent, "formats": formats}
        listing.append({"row": row, "profile": profile.to_dict()})
    return listing


def device_label(recipe) -> str:
    """What a recipe runs on: ONNX Runtime's providers, or the runtime's device name."""
    if recipe.runtime.value == "onnxruntime":
        return "/".join(p.removesuffix("ExecutionProvider") for p in recipe.providers)
    return recipe.device
