"""The user's trained model: what it is, its signature, and how to run it for reference outputs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._deps import require
from edgekit.artifact import TensorSpec, sha256_of
from edgekit.errors import InputError

SOURCE_FORMATS = ("keras", "saved_model", "onnx", "tflite", "torch")


@dataclass
class SourceModel:
    format: str  # one of SOURCE_FORMATS
    path: Path | None  # None for an in-memory keras.Model
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    sha256: str
    handle: Any = field(default=None, repr=False)  # keras.Model, SavedModel, Backend, or TorchProgram

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Reference outputs, in output order, for feeds keyed by the source's input names."""
        ordered = [np.asarray(feeds[spec.name], dtype=spec.dtype) for spec in self.inputs]
        if self.format == "keras":
            # Keras's compiled predict step (a tf.function, no XLA): an eager call of MobileNetV2 at
            # 224x224 took 167 ms per sample against 26 ms, and reference outputs run one sample at a time.
            result = self.handle.predict_on_batch(ordered if len(ordered) > 1 else ordered[0])
            result = result if isinstance(result, (list, tuple)) else [result]
            return [np.asarray(r) for r in result]
        if self.format == "torch":  # the ExportedProgram, traced in eval mode
            return self.handle.run(ordered)
        if self.format == "saved_model":
            signature = self.handle.signatures["serving_default"]
            result = signature(**{spec.name: np.asarray(feeds[spec.name]) for spec in self.inputs})
            return [np.asarray(result[spec.name]) for spec in self.outputs]
        backend = self.handle
        names = [spec.name for spec in backend.inputs()]
        result = backend.infer(dict(zip(names, ordered, strict=True)))
        return [result[spec.name] for spec in backend.outputs()]

    @property
    def label(self) -> str:
        if self.path:
            return str(self.path)
        return "<in-memory torch program>" if self.format == "torch" else "<in-memory keras.Model>"


def load_source(model: Any, *, example_inputs: Any = None, input_names: list[str] | None = None) -> SourceModel:
    """A SourceModel from a path (.keras, .h5, SavedModel dir, .onnx, .tflite, .pt2), a keras.Model,
    an nn.Module with `example_inputs`, or a torch.export ExportedProgram.

    `input_names` renames a torch program's inputs (default: its signature's names).
    """
    from edgekit.converters import torch_source

    if not isinstance(model, (str, Path)):
        if torch_source.is_torch_object(model):
            return torch_source.from_object(model, example_inputs, input_names)
        return _from_keras_object(model)
    path = Path(model)
    if not path.exists():
        raise InputError(f"model not found: {path}")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise InputError(
                f"{path}: a directory is read as a SavedModel but has no saved_model.pb; "
                "pass a SavedModel directory, or a .keras, .h5, .onnx or .tflite file"
            )
        return _from_saved_model(path)
    if path.suffix.lower() in torch_source.CHECKPOINT_SUFFIXES:
        raise torch_source.refuse_checkpoint(path)
    loaders = {".keras": _from_keras_file, ".h5": _from_keras_file, ".onnx": _from_onnx, ".tflite": _from_tflite,
               ".pt2": lambda p: torch_source.load_pt2(p, input_names)}
    loader = loaders.get(path.suffix.lower())
    if loader is None:
        raise InputError(
            f"{path}: unknown model type '{path.suffix}' "
            "(accepted: .keras, .h5, .onnx, .tflite, .pt2, or a SavedModel directory)"
        )
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    if (example_inputs is not None or input_names) and path.suffix.lower() != ".pt2":
        raise InputError(f"{path}: example_inputs and input_names are for PyTorch sources (.pt2 or nn.Module)")
    return loader(path)


def _dims(shape: Any) -> tuple[int | None, ...]:
    return tuple(int(d) if d is not None and int(d) >= 0 else None for d in shape)


def _keras_specs(tensors: list[Any]) -> list[TensorSpec]:
    specs = []
    for index, tensor in enumerate(tensors):
        name = getattr(tensor, "name", None) or f"input_{index}"
        specs.append(TensorSpec(name=name.split(":")[0], shape=_dims(tensor.shape), dtype=str(tensor.dtype)))
    return specs


def _from_keras_object(model: Any, path: Path | None = None, digest: str = "") -> SourceModel:
    keras = require("keras")
    if not isinstance(model, keras.Model):
        raise InputError(f"expected a model path or a keras.Model, got {type(model).__name__}")
    if not model.inputs:
        raise InputError("the keras.Model has no defined inputs; build or call it on data first")
    inputs = _keras_specs(model.inputs)
    outputs = [
        TensorSpec(name=f"output_{i}", shape=_dims(t.shape), dtype=str(t.dtype)) for i, t in enumerate(model.outputs)
    ]
    if not digest:
        digest = _weights_digest(model)
    return SourceModel("keras", path, inputs, outputs, digest, handle=model)


def _weights_digest(model: Any) -> str:
    """A content hash of an in-memory model: its architecture and weights."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def _from_keras_file(path: Path) -> SourceModel:
    keras = require("keras")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises many types for a bad file
        raise InputError(f"{path}: not a loadable Keras model: {_first_line(exc)}") from None
    return _from_keras_object(model, path, sha256_of(path))


def _from_saved_model(path: Path) -> SourceModel:
    tf = require("tensorflow")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise InputError(f"{path}: not a loadable SavedModel: {_first_line(exc)}") from None
    if "serving_default" not in loaded.signatures:
        raise InputError(f"{path}: SavedModel has no 'serving_default' signature to convert")
    signature = loaded.signatures["serving_default"]
    _, kwargs = signature.structured_input_signature
    inputs = [
        TensorSpec(name=name, shape=_dims(spec.shape), dtype=spec.dtype.name) for name, spec in sorted(kwargs.items())
    ]
    outputs = [
        TensorSpec(name=name, shape=_dims(spec.shape), dtype=spec.dtype.name)
        for name, spec in sorted(signature.structured_outputs.items())
    ]
    return SourceModel("saved_model", path, inputs, outputs, sha256_of(path), handle=loaded)


def _from_onnx(path: Path) -> SourceModel:
    from edgekit.benchmarks.onnxruntime_backend import OnnxRuntimeBackend

    return _from_runtime_file("onnx", path, OnnxRuntimeBackend(path))


def _from_tflite(path: Path) -> SourceModel:
    from edgekit.benchmarks.tflite_backend import TFLiteBackend

    return _from_runtime_file("tflite", path, TFLiteBackend(path))


def _from_runtime_file(fmt: str, path: Path, backend: Any) -> SourceModel:
    backend.load()  # raises ArtifactLoadError (an InputError-like EdgekitError) on a corrupt file
    return SourceModel(fmt, path, backend.inputs(), backend.outputs(), sha256_of(path), handle=backend)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
