"""PyTorch sources: a `.pt2` ExportedProgram, an in-memory one, or an nn.Module with example inputs.

Everything becomes one `torch.export` ExportedProgram (the module in eval mode), which the
three torch converters read: torch.onnx (dynamo), openvino.convert_model and litert-torch.
Input names come from the program's signature unless `input_names=` renames them;
a dimension the program marks dynamic is None in the TensorSpec.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._deps import require
from edgekit.artifact import TensorSpec, sha256_of
from edgekit.errors import InputError

# torch.save checkpoints: a state dict or a pickled module. Loading one runs arbitrary pickle.
CHECKPOINT_SUFFIXES = (".pt", ".pth")
HOW_TO_EXPORT = (
    "export a program instead: torch.export.save(torch.export.export(model.eval(), (x,)), 'model.pt2'), "
    "or pass the nn.Module with example_inputs=(x,) to edgekit.convert"
)


@dataclass
class TorchProgram:
    """The handle of a torch SourceModel: the program, its example inputs, and the I/O names used."""

    program: Any  # torch.export.ExportedProgram
    example_inputs: tuple[Any, ...]  # torch tensors, positional, in input order
    input_names: list[str]
    output_names: list[str]

    def module(self) -> Any:
        """The program as a callable nn.Module (positional inputs)."""
        return self.program.module()

    def run(self, ordered: list[np.ndarray]) -> list[np.ndarray]:
        torch = require("torch")
        with torch.no_grad():
            result = self.module()(*(torch.from_numpy(np.ascontiguousarray(a)) for a in ordered))
        flat = result if isinstance(result, (list, tuple)) else [result]
        return [r.detach().numpy() for r in flat]


def is_torch_object(model: Any) -> bool:
    """True for an nn.Module or an ExportedProgram, checked without importing torch."""
    return any(cls.__module__.startswith("torch") for cls in type(model).__mro__)


def refuse_checkpoint(path: Path) -> InputError:
    return InputError(
        f"{path}: a PyTorch checkpoint ({path.suffix}: a state dict or a pickled module) is not a model edgekit "
        f"loads, since unpickling it runs arbitrary code; {HOW_TO_EXPORT}"
    )


def load_pt2(path: Path, input_names: list[str] | None = None) -> Any:
    torch = require("torch")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch raises many types for a file that is not an export archive
        raise InputError(f"{path}: not a torch.export program saved with torch.export.save: {_first_line(exc)}; "
                         f"{HOW_TO_EXPORT}") from None
    return _source(program, path, sha256_of(path), input_names)


def from_object(model: Any, example_inputs: Any = None, input_names: list[str] | None = None) -> Any:
    """A SourceModel from an nn.Module (needs example_inputs) or an ExportedProgram."""
    torch = require("torch")
    if isinstance(model, torch.export.ExportedProgram):
        if example_inputs is not None:
            raise InputError("example_inputs are for an nn.Module; an ExportedProgram carries its own")
        program = model
    elif isinstance(model, torch.nn.Module):
        if example_inputs is None:
            raise InputError(
                f"an nn.Module ({type(model).__name__}) needs example_inputs=(x,) to be exported with torch.export"
            )
        args = tuple(example_inputs) if isinstance(example_inputs, (list, tuple)) else (example_inputs,)
        if not all(isinstance(a, torch.Tensor) for a in args):
            kinds = ", ".join(type(a).__name__ for a in args)
            raise InputError(f"example_inputs must be torch tensors, got: {kinds}")
        try:
            program = torch.export.export(model.eval(), args)
        except Exception as exc:  # export raises many types (UserError, Unsupported, ...)
            raise InputError(f"torch.export could not export {type(model).__name__}: {_first_line(exc)}") from None
    else:
        raise InputError(f"expected an nn.Module or a torch.export.ExportedProgram, got {type(model).__name__}")
    return _source(program, None, _program_digest(program), input_names)


def _source(program: Any, path: Path | None, digest: str, input_names: list[str] | None) -> Any:
    from edgekit.converters.source import SourceModel

    torch = require("torch")
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    user_inputs = list(program.graph_signature.user_inputs)
    names = list(input_names) if input_names else user_inputs
    if len(names) != len(user_inputs):
        raise InputError(f"input_names has {len(names)} name(s) but the program takes {len(user_inputs)} input(s): "
                         f"{', '.join(user_inputs)}")
    if len(set(names)) != len(names):
        raise InputError(f"input_names must be unique, got {', '.join(names)}")
    inputs, examples = [], []
    for name, placeholder in zip(names, user_inputs):
        value = placeholders[placeholder].meta.get("val")
        if not isinstance(value, torch.Tensor):
            raise InputError(f"program input '{placeholder}' is not a tensor ({type(value).__name__}); "
                             "edgekit converts programs whose inputs are tensors")
        inputs.append(TensorSpec(name, _dims(value.shape), _dtype(value.dtype)))
        examples.append(_example(value))
    output_node = next(node for node in program.graph.nodes if node.op == "output")
    values = [getattr(arg, "meta", {}).get("val") for arg in output_node.args[0]]
    values = values[: len(program.graph_signature.user_outputs)]
    outputs = [TensorSpec(f"output_{i}", _dims(v.shape), _dtype(v.dtype)) for i, v in enumerate(values)]
    handle = TorchProgram(program, tuple(examples), names, [s.name for s in outputs])
    return SourceModel("torch", path, inputs, outputs, digest, handle=handle)


def _dims(shape: Any) -> tuple[int | None, ...]:
    """Static sizes as ints; a symbolic (dynamic) size is None."""
    return tuple(int(d) if isinstance(d, int) or str(d).isdigit() else None for d in shape)


def _dtype(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _example(value: Any) -> Any:
    """A real tensor shaped like the placeholder's fake one (dynamic sizes at their example hint)."""
    torch = require("torch")
    shape = [d if isinstance(d, int) else int(d.node.hint or 2) for d in value.shape]
    if value.dtype.is_floating_point:
        return torch.rand(shape, dtype=value.dtype, generator=torch.Generator().manual_seed(0))
    return torch.zeros(shape, dtype=value.dtype)


def _program_digest(program: Any) -> str:
    """A content hash of an in-memory program: its graph and its weights."""
    digest = hashlib.sha256(str(program.graph).encode())
    for name, tensor in sorted(program.state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
