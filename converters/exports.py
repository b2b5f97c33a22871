"""Float32 intermediates of a source model, made once per run and shared by converters.

A Keras model becomes a SavedModel once; the fp32 ONNX export is made once and
quantized per target. Everything lives in a scratch directory removed after the run.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from edgekit.converters.source import SourceModel
from edgekit.errors import ConversionError


class Exports:
    def __init__(self, source: SourceModel, workdir: Path):
        self.source = source
        self.workdir = Path(workdir)
        self._saved_model: Path | None = None
        self._onnx: Path | None = None

    def saved_model(self, batch: int | None = None) -> Path:
        """A SavedModel directory of the source (Keras and SavedModel sources only).

        With `batch`, a Keras source is exported with its serving signature traced at that
        batch size (static shapes all through, which TFLite needs for recurrent layers).
        """
        if batch is not None:
            return self._static_saved_model(batch)
        if self.source.format == "saved_model":
            return self.source.path  # type: ignore[return-value]
        if self.source.format != "keras":
            raise ConversionError(f"a {self.source.format} source has no SavedModel form")
        if self._saved_model is None:
            target = self.workdir / "saved_model"
            self.source.handle.export(str(target), format="tf_saved_model", verbose=False)
            self._saved_model = target
        return self._saved_model

    def _static_saved_model(self, batch: int) -> Path:
        if self.source.format != "keras":
            raise ConversionError(f"a {self.source.format} source cannot be re-traced at batch {batch}")
        target = self.workdir / f"saved_model_batch{batch}"
        if not target.exists():
            import tensorflow as tf

            specs = [tf.TensorSpec([batch, *s.shape[1:]], s.dtype, name=s.name) for s in self.source.inputs]
            signature = specs if len(specs) == 1 else [specs]  # a multi-input model takes one list
            self.source.handle.export(str(target), format="tf_saved_model", verbose=False, input_signature=signature)
        return target

    def unrolled_saved_model(self, batch: int = 1) -> Path:
        """A SavedModel of the Keras source with every recurrent layer unrolled (`unroll=True`) and
        its signature traced at `batch`: the same weights and arithmetic, but the time steps are
        plain ops instead of a While loop over TensorLists, which TF's int8 calibrator cannot take.
        Needs a static sequence length."""
        if self.source.format != "keras":
            raise ConversionError(f"a {self.source.format} source cannot be unrolled: convert from the Keras model")
        target = self.workdir / f"saved_model_unrolled_batch{batch}"
        if not target.exists():
            import keras
            import tensorflow as tf

            model = self.source.handle
            specs = [tf.TensorSpec([batch, *s.shape[1:]], s.dtype, name=s.name) for s in self.source.inputs]
            signature = specs if len(specs) == 1 else [specs]
            try:
                clone = keras.models.clone_model(model, clone_function=_unrolled, recursive=True)
                clone.set_weights(model.get_weights())
                clone.export(str(target), format="tf_saved_model", verbose=False, input_signature=signature)
            except (ValueError, TypeError) as exc:  # Keras: "Cannot unroll a RNN if the time dimension is undefined"
                shutil.rmtree(target, ignore_errors=True)
                raise ConversionError(f"the recurrent layers could not be unrolled ({_first_line(exc)})") from None
        return target

    def onnx_fp32(self) -> Path:
        """An fp32 ONNX file of the source, for quantization and for OpenVINO."""
        if self.source.format == "onnx":
            return self.source.path  # type: ignore[return-value]
        if self._onnx is None:
            if self.source.format == "torch":
                from edgekit.converters.torch_onnx import export_fp32
            else:
                from edgekit.converters.onnx import export_fp32

            target = self.workdir / "fp32.onnx"
            export_fp32(self, target)
            self._onnx = target
        return self._onnx


def _unrolled(layer):
    """The layer again with `unroll=True` on it (LSTM, GRU, SimpleRNN) or on what it wraps (Bidirectional)."""
    config = layer.get_config()
    changed = "unroll" in config
    if changed:
        config["unroll"] = True
    for wrapped in ("layer", "backward_layer"):  # Bidirectional keeps its layers' configs inside its own
        inner = config.get(wrapped)
        if isinstance(inner, dict) and "unroll" in inner.get("config", {}):
            inner["config"]["unroll"] = True
            changed = True
    if not changed:
        return layer.__class__.from_config(layer.get_config())  # what clone_model does by default
    return layer.__class__.from_config(config)


def _first_line(exc: Exception) -> str:
    """Keras wraps the layer's error in a multi-line 'Exception encountered when calling ...' message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # Keras bolds parts of its messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception encountered", "Arguments received", "•"))]
    return (useful or lines or [type(exc).__name__])[0][:200]
