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

    def depthwise_saved_model(self) -> Path:
        """A SavedModel of the Keras source with each grouped Conv2D whose groups equal its channels
        (a depthwise convolution written as Conv2D, as in ConvNeXt) rebuilt as DepthwiseConv2D with
        the same weights: the same arithmetic, without the XLA function Keras runs grouped
        convolutions through, which tf2onnx cannot inline."""
        if self.source.format != "keras":
            raise ConversionError(f"a {self.source.format} source cannot be rewritten: convert from the Keras model")
        target = self.workdir / "saved_model_depthwise"
        if not target.exists():
            import keras

            model = self.source.handle
            clone = keras.models.clone_model(model, clone_function=_as_depthwise, recursive=True)
            for old, new in zip(walk_layers(model), walk_layers(clone)):
                weights = old.get_weights()
                if isinstance(new, keras.layers.DepthwiseConv2D) and not isinstance(old, keras.layers.DepthwiseConv2D):
                    weights[0] = weights[0].transpose(0, 1, 3, 2)  # (kh, kw, 1, C) -> (kh, kw, C, 1)
                new.set_weights(weights)
            clone.export(str(target), format="tf_saved_model", verbose=False)
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
    config = layer.get_config()  # any other layer is rebuilt from it unchanged, as clone_model does
    if "unroll" in config:
        config["unroll"] = True
    for wrapped in ("layer", "backward_layer"):  # Bidirectional keeps its layers' configs inside its own
        inner = config.get(wrapped)
        if isinstance(inner, dict) and "unroll" in inner.get("config", {}):
            inner["config"]["unroll"] = True
    return layer.__class__.from_config(config)


def _first_line(exc: Exception) -> str:
    """Keras wraps the layer's error in a multi-line 'Exception encountered when calling ...' message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # Keras bolds parts of its messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception encountered", "Arguments received", "•"))]
    return (useful or lines or [type(exc).__name__])[0][:200]


def walk_layers(model):
    """Every layer of a Keras model, nested models' layers included, in a stable order."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from walk_layers(layer)


def _as_depthwise(layer):
    """A Conv2D with groups == channels as the DepthwiseConv2D it is; any other layer cloned as is."""
    import keras

    config = layer.get_config()
    groups = config.get("groups", 1)
    if not isinstance(layer, keras.layers.Conv2D) or isinstance(layer, keras.layers.DepthwiseConv2D) or groups == 1:
        return layer.__class__.from_config(config)
    channels = layer.kernel.shape[-2] * groups
    if groups != channels or config["filters"] != channels:
        raise ConversionError(
            f"layer '{layer.name}': a grouped Conv2D ({groups} groups of {channels} channels) goes through an XLA "
            "function tf2onnx cannot convert; only depthwise ones (groups = channels = filters) are rewritten"
        )
    return keras.layers.DepthwiseConv2D(
        kernel_size=config["kernel_size"], strides=config["strides"], padding=config["padding"],
        data_format=config["data_format"], dilation_rate=config["dilation_rate"], depth_multiplier=1,
        activation=config["activation"], use_bias=config["use_bias"], name=config["name"], dtype=config.get("dtype"),
    )
