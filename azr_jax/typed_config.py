"""Typed configuration: frozen dataclasses filled from YAML and `dotted.key=value` overrides.

Every field is declared with `option(...)`, which carries its help text and constraints, so one
declaration drives parsing, validation, `--help` and the resolved-config dump. Unknown keys and
bad values raise `ConfigError` naming the full dotted key.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from azr_jax.errors import ConfigError


def option(default: Any, help: str, *, choices: tuple | None = None, min: float | None = None,
           max: float | None = None, greater_than: float | None = None) -> Any:
    """A config field: default, one-line help and optional constraints checked at load time."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "greater_than": greater_than}
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type, help: str) -> Any:
    """A nested config section with its default instance."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


def check_choice(what: str, value: str, allowed: typing.Sequence[str]) -> None:
    """ConfigError unless ``value`` is one of ``allowed`` (for code called without a config)."""
    if value not in allowed:
        raise ConfigError(f"{what} must be one of {tuple(allowed)}, got {value!r}")


def check_at_least(what: str, value: int, minimum: int) -> None:
    """ConfigError unless ``value >= minimum``."""
    if value < minimum:
        raise ConfigError(f"{what} must be >= {minimum}, got {value}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the declared type, or raise ConfigError naming `key`."""
    optional, tp = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: null is not allowed (expected {_type_name(tp)})")
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return build(tp, value, key)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin is tuple:
        item_tp = get_args(tp)[0]
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        # YAML 1.1 reads `1e-6` (no dot) as a string; accept any numeric spelling.
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(out):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a schema bug, not user input


def _check_constraints(value: Any, meta: typing.Mapping, key: str) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if choices is not None and v not in choices:
            raise ConfigError(f"{key}: {v!r} is not one of {list(choices)}")
        if meta.get("min") is not None and v < meta["min"]:
            raise ConfigError(f"{key}: must be >= {meta['min']}, got {v!r}")
        if meta.get("max") is not None and v > meta["max"]:
            raise ConfigError(f"{key}: must be <= {meta['max']}, got {v!r}")
        if meta.get("greater_than") is not None and not v > meta["greater_than"]:
            raise ConfigError(f"{key}: must be > {meta['greater_than']}, got {v!r}")


def build(cls: type, values: typing.Mapping[str, Any], prefix: str = "") -> Any:
    """Instantiate dataclass `cls` from a nested mapping, validating every key and value."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            close = difflib.get_close_matches(str(name), list(fields), n=1)
            hint = f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{key}'{hint}")
        kwargs[name] = _coerce(value, hints[name], key)
        _check_constraints(kwargs[name], fields[name].metadata, key)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required config key '{prefix + '.' if prefix else ''}{name}'")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) that `build` accepts back."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):
            v = [to_dict(x) if dataclasses.is_dataclass(x) else x for x in v]
        out[f.name] = v
    return out


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set '{dotted}': '{'.'.join(parts[: i + 1])}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", parsed value); the value is read as YAML (`[1, 2]`, `true`, `null`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not p for p in key.split(".")):
        raise ConfigError(f"bad override {text!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"bad override {text!r}: value is not valid YAML ({e})") from None
    return key, value


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level")
    return data


def _merge(base: dict[str, Any], update: typing.Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: sections merge key by key, any other value replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load(cls: type, paths: typing.Sequence[str | Path] = (), overrides: typing.Sequence[str] = ()) -> Any:
    """Defaults <- YAML files (later ones override earlier) <- overrides, validated into `cls`."""
    tree: dict[str, Any] = {}
    for path in paths:
        tree = _merge(tree, read_yaml(path))
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    return build(cls, tree)


def _type_name(tp: Any) -> str:
    optional, tp = _is_optional(tp)
    origin = get_origin(tp)
    if origin is Literal:
        name = "|".join(str(a) for a in get_args(tp))
    elif origin is tuple:
        name = f"list[{_type_name(get_args(tp)[0])}]"
    elif dataclasses.is_dataclass(tp):
        name = tp.__name__
    else:
        name = getattr(tp, "__name__", str(tp))
    return f"{name} or null" if optional else name


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, help) for every leaf field, for `--help`."""
    rows = []
    defaults = cls()
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, key))
            continue
        shown = yaml.safe_dump(to_dict(default) if dataclasses.is_dataclass(default) else
                               ([to_dict(x) if dataclasses.is_dataclass(x) else x for x in default]
                                if isinstance(default, tuple) else default),
                               default_flow_style=True, width=10**6).strip()
        shown = shown.removesuffix("\n...").removesuffix("...").strip()
        rows.append((key, _type_name(tp), shown, f.metadata.get("help", "")))
    return rows
