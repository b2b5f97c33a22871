"""A runtime backend has a lifecycle and nothing else: load, infer, close.

Backends only consume artifact files; converters produce them. Each concrete
backend lives in its own module and imports its runtime inside `load`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifact import TensorSpec
from edgekit.errors import EdgekitError


class DeviceUnavailable(EdgekitError):
    """The requested device, delegate or execution provider is not present on this host."""

    def __init__(self, requested: str, available: list[str]):
        self.requested = requested
        self.available = available
        super().__init__(f"{requested} not present (available: {', '.join(available) or 'none'})")


class ArtifactLoadError(EdgekitError):
    """The runtime could not load the file: corrupt, truncated, or not a model of this format."""


class Backend(ABC):
    """Runs one artifact file on one runtime.

    `device` is the runtime's own name for where to run: an OpenVINO device ("CPU",
    "GPU", "NPU", "AUTO"), a LiteRT delegate ("CPU" means the built-in XNNPACK path),
    or, for ONNX Runtime, ignored in favour of `providers`, tried in order.
    Asking for a device the host lacks raises DeviceUnavailable from `load`:
    callers decide, and say, whether to fall back to the CPU.
    """

    runtime: str = ""

    def __init__(
        self,
        path: Path,
        *,
        device: str = "CPU",
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        threads: int | None = None,
        precision: str | None = None,
    ):
        self.path = Path(path)
        self.device = device
        self.providers = tuple(providers)
        self.threads = threads
        # The precision the artifact was built for: lets OpenVINO run fp32 as f32, not bf16.
        self.precision = precision

    @abstractmethod
    def load(self) -> None:
        """Create the session/interpreter/compiled model. Heavy imports happen here."""

    @abstractmethod
    def inputs(self) -> list[TensorSpec]:
        """Inputs as the runtime sees them (quantization filled in where the format stores it)."""

    @abstractmethod
    def outputs(self) -> list[TensorSpec]:
        """Outputs as the runtime sees them."""

    @abstractmethod
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. `feeds` are keyed by this artifact's input names, already in its dtypes."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What actually ran: package and version, device or providers used, precision."""

    # What runtime_latency_ns() reads, for the report; None where the runtime keeps no timer.
    runtime_timer: str | None = None

    def runtime_latency_ns(self) -> int | None:
        """The last infer() as the runtime timed it inside itself, where it does (see runtime_timer)."""
        return None

    def close(self) -> None:
        """Release the runtime's resources."""

    def __enter__(self) -> Backend:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
