"""edgekit: convert, quantize, verify and benchmark models for edge targets.

The public API is imported lazily so that `import edgekit` stays light.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from edgekit.benchmarks.runner import Settings as BenchSettings
    from edgekit.benchmarks.runner import benchmark
    from edgekit.building import BuildResult, build
    from edgekit.config import BuildConfig, load_config
    from edgekit.conversion import convert
    from edgekit.targets.loader import load_target

_LAZY = {
    "convert": ("edgekit.conversion", "convert"),
    "benchmark": ("edgekit.benchmarks.runner", "benchmark"),
    "build": ("edgekit.building", "build"),
    "BuildResult": ("edgekit.building", "BuildResult"),
    "BuildConfig": ("edgekit.config", "BuildConfig"),
    "load_config": ("edgekit.config", "load_config"),
    "BenchSettings": ("edgekit.benchmarks.runner", "Settings"),
    "load_target": ("edgekit.targets.loader", "load_target"),
    "Manifest": ("edgekit.manifest", "Manifest"),
    "EdgekitError": ("edgekit.errors", "EdgekitError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
