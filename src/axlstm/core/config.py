"""Typed configuration shared by every config class of the package.

Values are checked and converted against dataclass field types (``int``, ``float``, ``bool``,
``str``, ``Literal[...]``, ``X | None``, ``list[X]``, ``tuple[X, Y]``, ``dict[str, X]`` and
nested dataclasses); unknown keys are errors that name the closest known key; sections whose
config has a ``validate()`` method are validated after every change.

:class:`ConfigBase` gives a flat config dataclass (a model or front-end config) ``to_dict``,
``from_dict`` (unknown keys refused), ``replace`` and ``parse_set`` (``key=value`` strings, as
``--set`` gives them). The pretraining config tree uses the functions below directly.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from axlstm.core.errors import ConfigError

__all__ = [
    "ConfigBase",
    "apply_overrides",
    "coerce_value",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "diff_configs",
    "parse_value",
    "set_value",
    "validate_tree",
]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` converted to type ``tp``, or a :class:`ConfigError` naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        is_null = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_null and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {tp}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return config_from_dict(tp, value, key)
        raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    f = None
                if f is not None and f.is_integer():
                    return int(f)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is list:
        if isinstance(value, str):
            value = [value]  # `--set data.paths=/x` means a one-element list
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = args or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}: {value!r}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: cannot convert {value!r} to {_type_name(tp)}")


def coerce_value(value: Any, tp: Any, key: str = "value") -> Any:
    """``value`` converted to type ``tp`` (a field annotation), or a :class:`ConfigError`
    naming ``key``; the conversion the config tree applies to every field."""
    return _coerce(value, tp, key)


def _unknown_key(cls: type, name: str, prefix: str) -> ConfigError:
    known = [f.name for f in dataclasses.fields(cls)]
    where = f"{prefix}.{name}" if prefix else name
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {where!r}{hint} (known: {', '.join(known)})")


def validate_tree(cfg: Any) -> None:
    """Call ``validate()`` on every dataclass in the tree that has one; wrap its errors."""
    for f in dataclasses.fields(cfg):
        sub = getattr(cfg, f.name)
        if dataclasses.is_dataclass(sub):
            validate_tree(sub)
    check = getattr(cfg, "validate", None)
    if callable(check):
        try:
            check()
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(str(err)) from err


def config_from_dict(cls: type, data: dict[str, Any] | None, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (possibly partial) nested mapping; defaults fill gaps."""
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        if k not in names:
            raise _unknown_key(cls, str(k), prefix)
        kwargs[k] = _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k)
    obj = cls(**kwargs)
    if not prefix:
        validate_tree(obj)
    return obj


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (lists, not tuples), ready for YAML/JSON or a weights-only checkpoint."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def config_to_yaml(cfg: Any, path: str | Path | None = None) -> str:
    """The config as YAML text; also written to ``path`` when given."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)
    if path is not None:
        Path(path).write_text(text)
    return text


def parse_value(text: str) -> Any:
    """A command-line value read as YAML (``3``, ``1.5e-4``, ``true``, ``null``, ``[a, b]``,
    ``{depth: 4}``); anything YAML cannot read stays a string."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def set_value(cfg: Any, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a config tree; ``value`` is converted to the field's type.

    Dict-typed fields accept sub-keys: ``model.overrides.depth=4`` sets one entry.
    """
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"invalid config key {dotted!r}")
    obj, prefix = cfg, ""
    for i, name in enumerate(parts):
        if not dataclasses.is_dataclass(obj):
            raise ConfigError(f"{prefix} is not a section; cannot set {dotted!r}")
        if name not in {f.name for f in dataclasses.fields(obj)}:
            raise _unknown_key(type(obj), name, prefix)
        tp = _hints(type(obj))[name]
        key = f"{prefix}.{name}" if prefix else name
        rest = parts[i + 1 :]
        if not rest:
            setattr(obj, name, _coerce(value, tp, key))
            return
        current = getattr(obj, name)
        if isinstance(current, dict) and typing.get_origin(tp) is dict:
            node = current
            for sub in rest[:-1]:
                node = node.setdefault(sub, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{key}: {sub!r} is not a mapping")
            node[rest[-1]] = value
            setattr(obj, name, _coerce(current, tp, key))
            return
        obj, prefix = current, key
    raise ConfigError(f"invalid config key {dotted!r}")


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply ``key.sub=value`` strings in order, then validate the tree; returns ``cfg``."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, text = item.split("=", 1)
        set_value(cfg, key.strip(), parse_value(text))
    validate_tree(cfg)
    return cfg


def diff_configs(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two plain config dicts."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(diff_configs(a, b, key))
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


class ConfigBase:
    """Base of every config dataclass of the package: dict round trip with values converted to
    the field types, unknown keys refused (naming the closest known one), ``replace``, and
    ``--set`` parsing. ``CONFIG_LABEL`` names the class in error messages."""

    CONFIG_LABEL: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples), ready for JSON."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Build from a dict; missing fields take their defaults, unknown keys are refused."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.CONFIG_LABEL}: expected a mapping, got {data!r}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            close = [m for k in unknown for m in difflib.get_close_matches(k, known, n=1)]
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown {cls.CONFIG_LABEL} keys {unknown}{hint}; known keys: {sorted(known)}"
            )
        try:
            return config_from_dict(cls, data)  # values converted to the field types
        except ConfigError:
            raise
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{cls.CONFIG_LABEL}: {err}") from err

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied (and validated)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def parse_set(cls, items: list[str], what: str = "--set") -> dict[str, Any]:
        """``key=value`` strings -> field values converted to the field types.

        Values are read as YAML; a comma-separated list (``patch_stride=10,10``) is accepted
        for list and tuple fields.
        """
        known = [f.name for f in dataclasses.fields(cls)]
        hints = typing.get_type_hints(cls)
        out: dict[str, Any] = {}
        for item in items:
            if "=" not in item:
                raise ConfigError(f"{what} {item!r} is not of the form key=value")
            key, text = (part.strip() for part in item.split("=", 1))
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"{what}: unknown config key {key!r} for {cls.__name__}{hint}; known "
                    f"keys: {', '.join(known)}"
                )
            value = parse_value(text)
            try:
                out[key] = coerce_value(value, hints[key], key)
            except ConfigError:
                if not (isinstance(value, str) and "," in value):
                    raise
                parts = [parse_value(v.strip()) for v in value.split(",")]  # "10,10" -> [10, 10]
                out[key] = coerce_value(parts, hints[key], key)
        return out
