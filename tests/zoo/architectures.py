"""The zoo's architectures: each builder trains a model on generated data and saves it as the
source format it stands for. Trained models are cached in ~/.cache/edgekit-zoo, keyed by a
hash of the builder's code (and of the data and training code it uses)."""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.zoo import data
from tests.zoo.data import Split

CACHE = Path(os.environ.get("EDGEKIT_ZOO_CACHE", Path.home() / ".cache" / "edgekit-zoo"))


@dataclass
class Built:
    model: Path  # the source: .keras, SavedModel directory, .onnx, .tflite or .pt2
    calibration: Path  # .npz keyed by input names
    evaluation: Path  # .npz: inputs + labels
    source_accuracy: float  # the trained source on the evaluation data


@dataclass(frozen=True)
class Architecture:
    name: str
    kind: str  # what it stands for, for the table
    build: Callable[[Path], tuple[Path, Split, Split, float]]
    depends: tuple[str, ...] = ()  # other files under tests/ whose code the builder runs (for the cache key)


def _compile_fit(model, train: Split, epochs: int, batch_size: int = 64, extra_losses=(),
                 learning_rate: float = 1e-3) -> None:
    import keras

    losses = [keras.losses.SparseCategoricalCrossentropy(from_logits=True), *extra_losses]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses if len(losses) > 1 else losses[0])
    inputs = [train.inputs[t.name] for t in model.inputs]
    targets = [train.labels, *train.targets] if extra_losses else train.labels
    model.fit(inputs if len(inputs) > 1 else inputs[0], targets, epochs=epochs, batch_size=batch_size,
              verbose=0, shuffle=True)


def reestimate_batchnorm(model, train: Split, samples: int = 512) -> None:
    """keras.applications use BatchNorm momentum 0.99-0.999: after a short training the moving
    statistics are still near their initial values. Momentum 0 and one pass in training mode
    set them to the statistics of these samples."""
    import keras

    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = 0.0
    inputs = [train.inputs[t.name][:samples] for t in model.inputs]
    model(inputs if len(inputs) > 1 else inputs[0], training=True)
    for layer in layers:
        layer.momentum = 0.99


def _accuracy(model, split: Split) -> float:
    inputs = [split.inputs[t.name] for t in model.inputs]
    out = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0, batch_size=64)
    first = out[0] if isinstance(out, (list, tuple)) else out
    return float((np.asarray(first).argmax(axis=1) == split.labels).mean())


def _keras_result(folder: Path, model, train: Split, test: Split) -> tuple[Path, Split, Split, float]:
    path = folder / "model.keras"
    model.save(path)
    return path, train, test, _accuracy(model, test)


# --- keras.applications at 32x32 -------------------------------------------------------------


def _application(constructor: str, epochs: int, scale: float, *, learning_rate: float = 1e-3, batch_size: int = 64,
                 **options) -> Callable[[Path], tuple]:
    """options go to the constructor. The EfficientNets learn slowly from scratch at 32x32 with Adam 1e-3
    in batches of 64 (EfficientNetB0: 0.60 after 12 epochs, 0.77 after 60); 3e-3 in batches of 32
    reached 0.93 after 12 and 0.95 after 24; EfficientNetV2B0 0.97 after 18 (2026-12-04)."""

    def build(folder: Path) -> tuple[Path, Split, Split, float]:
        import keras

        keras.utils.set_random_seed(0)
        model = getattr(keras.applications, constructor)(
            weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None, **options
        )
        train, test = data.images32(model.inputs[0].name, scale)
        _compile_fit(model, train, epochs, batch_size=batch_size, learning_rate=learning_rate)
        reestimate_batchnorm(model, train)
        return _keras_result(folder, model, train, test)

    training = "" if (learning_rate, batch_size) == (1e-3, 64) else f"_lr{learning_rate}_b{batch_size}"
    build.__qualname__ = f"application_{constructor}_{epochs}_{scale}_{sorted(options.items())}{training}"
    return build


# --- sequence and other Keras models ------------------------------------------------------------


def lstm(folder: Path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8), name="rows")
    x = keras.layers.LSTM(32)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    train, test = data.sequences("rows")
    _compile_fit(model, train, epochs=30)
    return _keras_result(folder, model, train, test)


def stacked_lstm(folder: Path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8), name="rows")
    x = keras.layers.LSTM(32, return_sequences=True)(inputs)
    x = keras.layers.LSTM(32)(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    train, test = data.sequences("rows")
    _compile_fit(model, train, epochs=30)
    return _keras_result(folder, model, train, test)


def gru(folder: Path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8), name="rows")
    x = keras.layers.GRU(32)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    train, test = data.sequences("rows")
    _compile_fit(model, train, epochs=30)
    return _keras_result(folder, model, train, test)


def bidirectional_gru(folder: Path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8), name="rows")
    x = keras.layers.Bidirectional(keras.layers.GRU(16))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    train, test = data.sequences("rows")
    _compile_fit(model, train, epochs=30)
    return _keras_result(folder, model, train, test)


def conv1d_audio(folder: Path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((256, 1), name="waveform")
    x = keras.layers.Conv1D(16, 9, strides=2, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv1D(32, 9, strides=2, activation="relu")(x)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Conv1D(32, 5, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    train, test = data.tones("waveform")
    _compile_fit(model, train, epochs=20)
    return _keras_result(folder, model, train, test)


def transformer_encoder(folder: Path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8), name="rows")
    x = keras.layers.Dense(32)(inputs)
    x = x + keras.layers.Embedding(8, 32)(keras.ops.arange(8))  # learned positions
    for _ in range(2):
        attended = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)(x, x)
        x = keras.layers.LayerNormalization()(x + attended)
        hidden = keras.layers.Dense(64, activation="gelu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(32)(hidden))
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    train, test = data.sequences("rows")
    _compile_fit(model, train, epochs=30)
    return _keras_result(folder, model, train, test)


def multi_io(folder: Path):
    import keras

    keras.utils.set_random_seed(0)
    image, row_sums = keras.Input((8, 8, 1), name="image"), keras.Input((8,), name="row_sums")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(image)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    x = keras.layers.Concatenate()([x, keras.layers.Dense(16, activation="relu")(row_sums)])
    x = keras.layers.Dense(64, activation="relu")(x)
    model = keras.Model([image, row_sums], [keras.layers.Dense(10, name="digit")(x), keras.layers.Dense(1, name="ink")(x)])
    train, test = data.image_and_meta()
    _compile_fit(model, train, epochs=20, extra_losses=[keras.losses.MeanSquaredError()])
    return _keras_result(folder, model, train, test)


def detection_head(folder: Path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 1), name="canvas")
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    scores = keras.layers.Dense(10, name="class_scores")(x)
    boxes = keras.layers.Dense(4, activation="sigmoid", name="boxes")(x)
    model = keras.Model(inputs, [scores, boxes])
    train, test = data.canvases("canvas")
    _compile_fit(model, train, epochs=20, extra_losses=[keras.losses.MeanSquaredError()])
    return _keras_result(folder, model, train, test)


def in_model_preprocessing(folder: Path):
    import keras

    keras.utils.set_random_seed(0)
    train, test = data.images8("pixels", scale=16.0)  # raw digit values 0..16
    inputs = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Rescaling(1 / 16)(inputs)
    normalization = keras.layers.Normalization()
    normalization.adapt(train.inputs["pixels"] / 16)
    x = normalization(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    _compile_fit(model, train, epochs=20)
    return _keras_result(folder, model, train, test)


# --- other source formats ---------------------------------------------------------------------


def tf_module_saved_model(folder: Path):
    """A SavedModel written from a tf.Module with its own signature (names 'pixels' -> 'scores'),
    its weights from a small Keras MLP trained on the digits."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    train, test = data.images8("pixels")
    train = Split({"pixels": train.inputs["pixels"].reshape(-1, 64)}, train.labels, [])
    test = Split({"pixels": test.inputs["pixels"].reshape(-1, 64)}, test.labels, [])
    mlp = keras.Sequential([keras.Input((64,), name="pixels"), keras.layers.Dense(64, activation="relu"),
                            keras.layers.Dense(10)])
    _compile_fit(mlp, train, epochs=30)
    (w1, b1), (w2, b2) = mlp.layers[0].get_weights(), mlp.layers[1].get_weights()

    class Classifier(tf.Module):
        def __init__(self):
            super().__init__()
            self.w1, self.b1 = tf.Variable(w1), tf.Variable(b1)
            self.w2, self.b2 = tf.Variable(w2), tf.Variable(b2)

        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="pixels")])
        def serve(self, pixels):
            hidden = tf.nn.relu(pixels @ self.w1 + self.b1)
            return {"scores": hidden @ self.w2 + self.b2}

    module = Classifier()
    path = folder / "saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path, train, test, _accuracy(mlp, test)


def pytorch_onnx(folder: Path):
    """A small CNN written and trained in PyTorch, exported by torch.onnx (dynamo) with a dynamic batch."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    train, test = data.images8("image")
    to_nchw = lambda split: torch.from_numpy(split.inputs["image"].transpose(0, 3, 1, 2).copy())  # noqa: E731
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    x, y = to_nchw(train), torch.from_numpy(train.labels).long()
    for _ in range(30):
        for index in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(to_nchw(test)).argmax(1).numpy() == test.labels).mean())
    path = folder / "model.onnx"
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(model, (x[:2],), str(path), dynamo=True, input_names=["image"], output_names=["logits"],
                      dynamic_shapes=({0: batch},), verbose=False)
    nchw = lambda split: Split({"image": split.inputs["image"].transpose(0, 3, 1, 2).copy()}, split.labels, [])  # noqa: E731
    return path, nchw(train), nchw(test), accuracy


def tflite_source(folder: Path):
    """A trained Keras CNN converted to an fp32 .tflite by TFLiteConverter: the .tflite is the source."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    train, test = data.images8("image")
    _compile_fit(model, train, epochs=20)
    saved = folder / "export"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    path = folder / "model.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
    shutil.rmtree(saved)
    return path, train, test, _accuracy(model, test)


# --- PyTorch programs (.pt2) ------------------------------------------------------------------


def _nchw(split: Split, names: list[str]) -> Split:
    """The split keyed by `names`, 4-D NHWC images moved to PyTorch's NCHW (once: a 3-channel
    last axis is what marks them NHWC)."""
    arrays = [a.transpose(0, 3, 1, 2).copy() if a.ndim == 4 and a.shape[-1] == 3 else a
              for a in split.inputs.values()]
    return Split(dict(zip(names, arrays)), split.labels, [])


def _torch_result(folder: Path, model, train: Split, test: Split) -> tuple[Path, Split, Split, float]:
    """Exports the trained module (eval mode, batch 1: litert-torch converts at the example shapes),
    saves it with torch.export.save, and scores the exported program, which is what edgekit loads."""
    import torch

    train, test = _nchw(train, list(train.inputs)), _nchw(test, list(test.inputs))
    program = torch.export.export(model.eval(), tuple(torch.from_numpy(a[:1]) for a in train.inputs.values()))
    names = list(program.graph_signature.user_inputs)  # the forward's argument names: what edgekit calls them
    train, test = _nchw(train, names), _nchw(test, names)
    path = folder / "model.pt2"
    torch.export.save(program, path)
    module, logits = program.module(), []
    with torch.no_grad():
        for index in range(len(test.labels)):
            logits.append(module(*(torch.from_numpy(a[index : index + 1]) for a in test.inputs.values())).numpy())
    return path, train, test, float((np.concatenate(logits).argmax(1) == test.labels).mean())


def _torch_vision(constructor: str, epochs: int) -> Callable[[Path], tuple]:
    """torchvision's MobileNetV3-small / ResNet-18 (weights=None) as written in tests/torch_models.py
    (torchvision 0.28 does not import beside torch 2.13 here), trained there on the 32x32 digits with
    BatchNorm statistics re-estimated on the final weights."""

    def build(folder: Path) -> tuple[Path, Split, Split, float]:
        import torch

        from tests import torch_models

        torch.manual_seed(0)
        train, test = data.images32("image")
        images = train.inputs["image"].transpose(0, 3, 1, 2).copy()
        model = torch_models.train_briefly(getattr(torch_models, constructor)(num_classes=10), images,
                                           train.labels.astype(np.int64), epochs=epochs)
        return _torch_result(folder, model, train, test)

    build.__qualname__ = f"torch_vision_{constructor}_{epochs}"
    return build


def torch_two_inputs(folder: Path):
    """tests/torch_models.py's TwoInputs (conv + BatchNorm branch on a 3x32x32 image, linear branch on
    5 features, summed) trained on the digits; the features: the ink in 5 bands of rows."""
    import torch
    from torch.nn import functional as F

    from tests import torch_models

    torch.manual_seed(0)
    train, test = data.images32("image")

    def with_bands(split: Split) -> Split:
        rows = split.inputs["image"][..., 0].mean(axis=2)  # (N, 32) row means
        bands = np.stack([rows[:, i * 6 : i * 6 + 8].mean(axis=1) for i in range(5)], axis=1)
        return Split({"image": split.inputs["image"], "features": bands.astype(np.float32)}, split.labels, [])

    train, test = with_bands(train), with_bands(test)
    model = torch_models.TwoInputs()
    image = torch.from_numpy(train.inputs["image"].transpose(0, 3, 1, 2).copy())
    features, labels = torch.from_numpy(train.inputs["features"]), torch.from_numpy(train.labels.astype(np.int64))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        for batch in torch.randperm(len(labels)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(image[batch], features[batch]), labels[batch]).backward()
            optimizer.step()
    return _torch_result(folder, model, train, test)


# Small models first: a partial run already covers every kind of model; the PyTorch programs
# last, so that adding them left the keras rows' order (and a running zoo's) as it was.
ARCHITECTURES = [
    Architecture("GRU", "recurrent", gru),
    Architecture("InModelPreprocessing", "Rescaling + Normalization layers", in_model_preprocessing),
    Architecture("TFLiteSource", "an fp32 .tflite as the source", tflite_source),
    Architecture("LSTM", "recurrent", lstm),
    Architecture("StackedLSTM", "recurrent, 2 layers", stacked_lstm),
    Architecture("BidirectionalGRU", "recurrent, bidirectional", bidirectional_gru),
    Architecture("Conv1DAudio", "1-D convolutions on a waveform", conv1d_audio),
    Architecture("TransformerEncoder", "attention, LayerNorm, GELU, positional embedding", transformer_encoder),
    Architecture("MultiInputOutput", "2 inputs, 2 outputs (class + regression)", multi_io),
    Architecture("DetectionHead", "class scores + boxes", detection_head),
    Architecture("TFModuleSavedModel", "SavedModel from a tf.Module, own signature", tf_module_saved_model),
    Architecture("PyTorchONNX", "ONNX exported by torch.onnx (dynamo), external data", pytorch_onnx),
    Architecture("MobileNetV2", "keras.applications CNN", _application("MobileNetV2", 8, 1.0)),
    Architecture("MobileNetV3Small", "keras.applications CNN (hard-swish, SE)", _application("MobileNetV3Small", 6, 255.0)),
    Architecture("EfficientNetB0", "keras.applications CNN (in-model Normalization)",
                 _application("EfficientNetB0", 24, 255.0, learning_rate=3e-3, batch_size=32)),
    Architecture("EfficientNetV2B0", "keras.applications CNN (fused MBConv)",
                 _application("EfficientNetV2B0", 18, 255.0, learning_rate=3e-3, batch_size=32)),
    Architecture("MobileNetV3Large", "keras.applications CNN (hard-swish, SE)", _application("MobileNetV3Large", 4, 255.0)),
    Architecture("ResNet50", "keras.applications CNN", _application("ResNet50", 3, 1.0)),
    Architecture("DenseNet121", "keras.applications CNN", _application("DenseNet121", 3, 1.0)),
    Architecture("NASNetMobile", "keras.applications CNN (NAS cells)", _application("NASNetMobile", 3, 1.0)),
    Architecture("ConvNeXtTiny", "keras.applications CNN (LayerNorm, GELU)", _application("ConvNeXtTiny", 3, 255.0)),
    Architecture("TorchTwoInputs", "PyTorch nn.Module, 2 inputs (image + features), .pt2", torch_two_inputs,
                 depends=("torch_models.py",)),
    Architecture("TorchMobileNetV3Small", "PyTorch MobileNetV3-small (torchvision's), .pt2",
                 _torch_vision("MobileNetV3Small", 3), depends=("torch_models.py",)),
    Architecture("TorchResNet18", "PyTorch ResNet-18 (torchvision's), .pt2", _torch_vision("ResNet18", 3),
                 depends=("torch_models.py",)),
]
BY_NAME = {a.name: a for a in ARCHITECTURES}


def code_hash(architecture: Architecture) -> str:
    """Changes when the builder, the data or the training code changes."""
    build = architecture.build
    parts = [build.__qualname__, inspect.getsource(build), inspect.getsource(data),
             inspect.getsource(_compile_fit), inspect.getsource(reestimate_batchnorm), inspect.getsource(_application)]
    if architecture.depends:  # only then: the keras rows' keys (and their cached models) stay as they were
        tests = Path(__file__).resolve().parents[1]
        parts += [inspect.getsource(_torch_result), inspect.getsource(_nchw)]
        parts += [(tests / name).read_text() for name in architecture.depends]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def built(architecture: Architecture, calibration_samples: int = 200) -> Built:
    """The trained model and its data, from the cache or trained now.

    calibration.npz holds 200 training samples: the zoo and the int8 harness calibrate on 100, and
    edgekit verifies (and repairs) on the next 100, which calibration did not see."""
    folder = CACHE / f"{architecture.name}-{code_hash(architecture)}"
    info = folder / "built.json"
    if not info.exists():
        scratch = folder.with_name(folder.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        path, train, test, accuracy = architecture.build(scratch)
        np.savez(scratch / "calibration.npz", **train.head(calibration_samples).inputs)
        np.savez(scratch / "evaluation.npz", **test.inputs, labels=test.labels)
        (scratch / "built.json").write_text(json.dumps({"model": path.name, "source_accuracy": accuracy}))
        shutil.rmtree(folder, ignore_errors=True)
        scratch.rename(folder)
    record = json.loads(info.read_text())
    return Built(folder / record["model"], folder / "calibration.npz", folder / "evaluation.npz",
                 record["source_accuracy"])
