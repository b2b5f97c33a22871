"""`edgekit init`: write a commented edgekit.toml for a model, with its inputs and outputs filled in."""
from __future__ import annotations

import json
import os
from pathlib import Path

from edgekit.config import CONFIG_NAME, MODEL_SUFFIXES, from_dict
from edgekit.errors import InputError
from edgekit.fsutil import tomllib

# Looked for beside the model when no data file is given.
CALIBRATION_NAMES = ("calib.npz", "calibration.npz", "data/calib.npz", "data/calibration.npz")
EVALUATION_NAMES = ("eval.npz", "evaluation.npz", "data/eval.npz", "data/evaluation.npz")


def init_config(
    model: str | Path | None = None,
    config: str | Path = CONFIG_NAME,
    *,
    calibration: str | Path | None = None,
    evaluation: str | Path | None = None,
    targets: list[str] | None = None,
    force: bool = False,
) -> Path:
    """Write `config` for `model` (default: the one model file in the config's folder); returns its path.

    Refuses to replace an existing file unless `force`. Data files default to calib.npz / eval.npz
    (or data/...) beside the model when they exist.
    """
    config = Path(config)
    if config.exists() and not force:
        raise InputError(f"{config} already exists; pass --force to overwrite it")
    folder = config.resolve().parent
    model = Path(model) if model is not None else _find_model(folder)
    from edgekit.converters.source import load_source

    source = load_source(model)
    calibration = _data(calibration, model, CALIBRATION_NAMES)
    evaluation = _data(evaluation, model, EVALUATION_NAMES)
    text = render(source, _rel(model, folder), _rel(calibration, folder), _rel(evaluation, folder), targets or ["cpu"])
    from_dict(tomllib.loads(text), config, label=str(config))  # what we write must load
    folder.mkdir(parents=True, exist_ok=True)
    config.write_text(text, encoding="utf-8")
    return config


def _find_model(folder: Path) -> Path:
    found = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in MODEL_SUFFIXES or (p.is_dir() and (p / "saved_model.pb").is_file()))
    if len(found) != 1:
        what = f"several ({', '.join(p.name for p in found)})" if found else "none"
        raise InputError(f"no MODEL given and {folder} holds {what} of .keras, .h5, .onnx, .tflite or a SavedModel; "
                         "pass the model: edgekit init MODEL")
    return found[0]


def _data(given: str | Path | None, model: Path, names: tuple[str, ...]) -> Path | None:
    if given is not None:
        if not Path(given).exists():
            raise InputError(f"data file not found: {given}")
        return Path(given)
    return next((model.parent / n for n in names if (model.parent / n).is_file()), None)


def _rel(path: Path | None, folder: Path) -> str | None:
    return None if path is None else Path(os.path.relpath(path.resolve(), folder)).as_posix()


def _q(value: str) -> str:
    return json.dumps(value)  # a TOML basic string


def render(source, model: str, calibration: str | None, evaluation: str | None, targets: list[str]) -> str:
    """The config text: what is known filled in, the rest as commented examples."""
    def io(specs):
        return ", ".join(f"{s.name} {list(s.shape)} {s.dtype}".replace("None", "?") for s in specs)

    names = ", ".join(s.name for s in source.inputs)
    first = source.inputs[0]
    image = len(first.shape) == 4
    lines = [
        "# edgekit.toml: `edgekit build` converts, benchmarks and gates this model (written by `edgekit init`).",
        "# Paths are relative to this file. Reference: the README's \"edgekit build\" section.",
        "",
        "[model]",
        f"path = {_q(model)}",
        f"# inputs:  {io(source.inputs)}",
        f"# outputs: {io(source.outputs)}",
        "# labels = [\"cat\", \"dog\"]     # class names in output order (or a file: labels = \"labels.txt\"), for apps",
        "",
    ]
    if image:
        nhwc = first.shape[-1] in (1, 3)
        height, width = (first.shape[1], first.shape[2]) if nhwc else (first.shape[2], first.shape[3])
        channels = first.shape[-1] if nhwc else first.shape[1]
        lines += [
            "# What an app does to an image before calling the model; copied into dist/manifest.json.",
            "# [model.preprocess]",
            f"# size = [{height or 224}, {width or 224}]",
            f"# layout = {_q('NHWC' if nhwc else 'NCHW')}",
            f"# color = {_q('L' if channels == 1 else 'RGB')}",
            "# scale = 0.00392156862745098   # 1/255",
            "# mean = [0.0]",
            "# std = [1.0]",
            "",
        ]
    lines.append("[data]")
    lines.append(f"calibration = {_q(calibration)}   # int8 calibration: .npz arrays named {names}, an .npy, or an image folder"
                 if calibration else f"# calibration = \"data/calib.npz\"   # needed by int8 targets: arrays named {names}")
    lines.append(f"evaluation = {_q(evaluation)}   # inputs + 'labels', for accuracy budgets"
                 if evaluation else "# evaluation = \"data/eval.npz\"     # inputs + 'labels', for accuracy budgets")
    lines += ["# calibration_samples = 200", ""]
    for name in targets:
        lines += [
            f"[targets.{name}]                 # a built-in profile (`edgekit targets {name}` shows it)",
            "# formats = [\"tflite\", \"onnx\", \"openvino\"]   # default: every format the profile defines",
            "# budgets = { latency_p90_ms = 5.0, size_mb = 4, max_accuracy_drop = 0.01 }   # override the profile's",
            "",
        ]
    lines += [
        "# [targets.my-board]",
        "# profile = \"profiles/my-board.toml\"   # your own profile file (extends = \"npu\", ...)",
        "# budgets = { size_mb = 4 }",
        "",
        "[output]",
        "dir = \"dist\"                     # dist/<target>/..., dist/manifest.json, dist/reports/",
        "reports = [\"json\", \"junit\", \"markdown\", \"html\"]",
        "",
        "[bench]                          # how `edgekit build` measures each artifact",
        "# warmup = 10",
        "# min_runs = 50",
        "min_time = 1.0",
        "# threads = 2",
        "# strict = false                 # true: a budget that could not be measured fails",
        "",
    ]
    return "\n".join(lines)
