"""Load target profiles: built-in TOML files by name, or a user's file by path.

A profile may `extends` another (by built-in name or relative path); tables merge
key by key, the child winning. Every profile implicitly extends `_defaults.toml`.
"""
from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from edgekit.errors import ProfileError, did_you_mean
from edgekit.fsutil import read_toml
from edgekit.targets.listing import PROFILE_DIR, builtin_names
from edgekit.targets.schema import Target
from pydantic import BaseModel, ValidationError

__all__ = ["PROFILE_DIR", "builtin_names", "is_profile_path", "load_target"]
_DEFAULTS = "_defaults"


def is_profile_path(name_or_path: str | Path) -> bool:
    text = str(name_or_path)
    return text.endswith(".toml") or "/" in text or "\\" in text


def load_target(name_or_path: str | Path) -> Target:
    """A resolved, validated target profile, from a built-in name or a TOML path."""
    path = _locate(name_or_path, relative_to=Path.cwd())
    data, chain = _resolve(path, seen=())
    data.pop("extends", None)
    data.setdefault("name", path.stem)
    data["source"] = _label(path)
    data["extends"] = tuple(_label(p) for p in chain[1:])
    try:
        return Target.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(_explain(exc, _label(path))) from None


def _label(path: Path) -> str:
    return path.stem if path.parent == PROFILE_DIR else str(path)


def _locate(name_or_path: str | Path, relative_to: Path) -> Path:
    if is_profile_path(name_or_path):
        path = Path(name_or_path)
        path = path if path.is_absolute() else relative_to / path
        if not path.is_file():
            raise ProfileError(f"profile file not found: {path}")
        return path
    path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.is_file() or str(name_or_path).startswith("_"):
        raise ProfileError(
            f"unknown target '{name_or_path}'{did_you_mean(str(name_or_path), builtin_names())}; "
            "pass a built-in name (see `edgekit targets`) or a path to a .toml profile"
        )
    return path


def _resolve(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], list[Path]]:
    if path in seen:
        chain = " -> ".join(_label(p) for p in (*seen, path))
        raise ProfileError(f"{path}: 'extends' forms a cycle: {chain}")
    data = read_toml(path, str(path), ProfileError)
    parent_ref = data.get("extends")
    if parent_ref is None:
        if path.stem == _DEFAULTS:
            return data, [path]
        parent = PROFILE_DIR / f"{_DEFAULTS}.toml"
    elif not isinstance(parent_ref, str):
        raise ProfileError(f"{path}: 'extends' must be a profile name or path, got {parent_ref!r}")
    else:
        try:
            parent = _locate(parent_ref, relative_to=path.parent)
        except ProfileError as exc:
            raise ProfileError(f"{path}: extends: {exc}") from None
    base, chain = _resolve(parent, (*seen, path))
    for inherited in ("name", "description", "hardware"):
        base.pop(inherited, None)  # identity is never inherited
    return _merge(base, data), [path, *chain]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _explain(exc: ValidationError, where: str) -> str:
    """The first validation error as one line that names the key and what is accepted."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        known = _keys_at(Target, error["loc"][:-1])
        return f"{where}: unknown key '{key}'{did_you_mean(loc[-1], known)}"
    if error["type"] == "enum":
        expected = error.get("ctx", {}).get("expected", "")
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",") if c.strip(" '")]
        value = str(error.get("input"))
        return f"{where}: {key} = {value!r} is not accepted{did_you_mean(value, choices)}"
    if error["type"] == "missing":
        return f"{where}: missing required key '{key}'"
    return f"{where}: {key}: {error['msg']} (got {error.get('input')!r})"


def _keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model reached by following `loc` through models and dicts."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation
