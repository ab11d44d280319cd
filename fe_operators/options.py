"""Typed, documented option schemas: one dataclass per set of options, checked once.

Run configurations (:mod:`fe_operators.train.config`), SPON processors
(:mod:`fe_operators.models.processors.base`) and every other set of user options are plain
dataclasses whose fields are made with :func:`option`: a type hint, a default, a
one-sentence ``doc`` and an optional value check.  From that one declaration come

* validation — :func:`dataclass_from_dict` checks a mapping key by key (unknown keys,
  wrong types, bad values, then the dataclass's own cross-field ``validate``) and raises
  :class:`~fe_operators.errors.ConfigError` naming the dotted key, e.g.
  ``model.width: expected int, got str 'wide'``;
* documentation — :func:`option_rows` lists every key with its type, default and doc
  (``fe-operators train --print-config`` and the README tables are made from it);
* plain data — :func:`config_to_dict` turns an instance back into YAML/JSON-able data.

Nothing here imports torch or Firedrake.

Example
-------
>>> @dataclasses.dataclass
... class Options:
...     width: int = option("Hidden features.", positive, default=32)
>>> dataclass_from_dict(Options, {"width": 8}, "model").width
8
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Callable, Literal, NamedTuple, Union

from fe_operators.errors import ConfigError
from fe_operators.quoting import short

__all__ = [
    "Check", "option", "positive", "non_negative", "finite_positive", "fraction", "optional", "sizes",
    "dataclass_from_dict", "config_to_dict", "type_name", "describe", "unknown_key", "OptionRow", "option_rows",
    "defaults",
]

#: ``check(value) -> None`` when the (type-checked) value is valid, else the reason
Check = Callable[[Any], Union[str, None]]


def option(doc: str, check: Check | None = None, **kwargs: Any) -> Any:
    """A dataclass field documented by ``doc``, with an optional value check.

    Parameters
    ----------
    doc
        One or two sentences; ``"(required) ..."`` marks a key without default.
    check
        ``value -> None | reason``, e.g. :func:`positive`.
    **kwargs
        ``default=`` or ``default_factory=`` (as for :func:`dataclasses.field`).
    """
    return dataclasses.field(metadata={"doc": doc, "check": check}, **kwargs)


def positive(v: Any) -> str | None:
    """Check: ``v > 0``."""
    return None if v > 0 else "expected a positive number"


def non_negative(v: Any) -> str | None:
    """Check: ``v >= 0``."""
    return None if v >= 0 else "expected a number >= 0"


def finite_positive(v: Any) -> str | None:
    """Check: finite and ``> 0``."""
    return None if math.isfinite(v) and v > 0 else "expected a finite positive number"


def fraction(v: Any) -> str | None:
    """Check: ``0 < v <= 1``."""
    return None if 0 < v <= 1 else "expected a number in (0, 1]"


def sizes(v: list) -> str | None:
    """Check: a non-empty list of positive sizes."""
    return None if v and all(s > 0 for s in v) else f"expected a non-empty list of positive sizes, got {short(v)}"


def optional(check: Check) -> Check:
    """``check`` that lets ``None`` through."""
    return lambda v: None if v is None else check(v)


# ----------------------------------------------------------------------------- validation
def describe(value: Any) -> str:
    """``"type repr"`` of a value for messages (``null`` for None), shortened (without
    building the whole ``repr`` of a huge value)."""
    text = short(value, 60)
    return f"{type(value).__name__} {text}" if value is not None else "null"


def type_name(tp: Any) -> str:
    """A type hint in words: ``int``, ``one of 'a', 'b'``, ``list of int``, ``int or null``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the type ``tp``; return it (ints widened to float where asked)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return dataclass_from_dict(tp, value, key)
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise ConfigError(key, f"expected {type_name(tp)}, got {describe(value)}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:  # exact type first: keep int counts as ints in list[int | float]
            if a is not type(None) and type(value) is a:
                return value
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError:
                continue
        raise ConfigError(key, f"expected {type_name(tp)}, got {describe(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"expected {type_name(tp)}, got {describe(value)}")
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(key, f"expected a mapping with string keys, got {describe(value)}")
        return {k: _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported type {tp!r} in an option schema ({key})")
    raise ConfigError(key, f"expected {type_name(tp)}, got {describe(value)}")


def convert(value: Any, tp: Any, key: str) -> Any:
    """Check one value against a type hint (see :func:`dataclass_from_dict`)."""
    return _convert(value, tp, key)


def unknown_key(key: str, name: str, known: list[str]) -> ConfigError:
    """The error for an unknown key ``name`` under ``key``, suggesting the closest known one."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{key}.{name}" if key else name, f"unknown key{hint} (known keys: {', '.join(known)})")


def dataclass_from_dict(cls: type, data: Any, key: str = "") -> Any:
    """Build the dataclass ``cls`` from a mapping, checking every key, type and value.

    Parameters
    ----------
    cls
        A dataclass whose fields are made with :func:`option`.  If it defines
        ``validate(self, key: str) -> None``, that is called last (cross-field checks,
        raising :class:`~fe_operators.errors.ConfigError` with the dotted key).
    data
        The mapping (``None`` counts as empty).
    key
        Dotted path of ``data`` in the configuration, for messages.

    Raises
    ------
    ConfigError
        An unknown key, a missing required key, a wrong type or an invalid value.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(key, f"expected a mapping, got {describe(data)}")
    hook = getattr(cls, "__from_dict__", None)
    if hook is not None:
        return hook(data, key)
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    known = [f.name for f in fields]
    for name in data:
        if name not in known:
            raise unknown_key(key, str(name), known)
    kwargs = {}
    for f in fields:
        sub = f"{key}.{f.name}" if key else f.name
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in data:
            if required and not dataclasses.is_dataclass(hints[f.name]):
                raise ConfigError(sub, "required key missing")
            if dataclasses.is_dataclass(hints[f.name]):
                # an absent section is an empty one: its required keys are reported, its
                # schema's defaults filled in
                kwargs[f.name] = _convert({}, hints[f.name], sub)
            continue
        if data[f.name] is None and required and not dataclasses.is_dataclass(hints[f.name]):
            raise ConfigError(sub, "required key missing (got null)")
        value = _convert(data[f.name], hints[f.name], sub)
        check = f.metadata.get("check")
        if check is not None:
            reason = check(value)
            if reason:
                raise ConfigError(sub, f"{reason}, got {short(value)}" if "got" not in reason else reason)
        kwargs[f.name] = value
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(key)
    return obj


def config_to_dict(cfg: Any) -> Any:
    """A dataclass instance (nested) as plain YAML/JSON-able data.

    An instance may define ``__to_dict__(self)`` to control its own form.
    """
    hook = getattr(cfg, "__to_dict__", None)
    if hook is not None and not isinstance(cfg, type):
        return hook()
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    return cfg


def defaults(cls: type) -> dict[str, Any]:
    """The default of every field of ``cls`` that has one, as plain data."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = config_to_dict(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = config_to_dict(f.default_factory())
    return out


# ----------------------------------------------------------------------------- documentation
class OptionRow(NamedTuple):
    """One documented key: dotted name, type hint, default (plain data), doc, and whether
    it is a section heading (a nested dataclass) or a commented-out alternative."""

    key: str
    type: Any
    default: Any
    doc: str
    section: bool = False
    commented: bool = False


def option_rows(cls: type, prefix: str = "") -> list[OptionRow]:
    """Every key of the dataclass ``cls`` (nested ones depth first), for documentation.

    A class may define ``__option_rows__(prefix)`` to list its own keys (e.g. options
    whose keys depend on a choice among registered plug-ins).
    """
    hook = getattr(cls, "__option_rows__", None)
    if hook is not None:
        return hook(prefix)
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        doc = f.metadata.get("doc", "")
        if dataclasses.is_dataclass(tp):
            rows.append(OptionRow(key, tp, None, doc, True))
            rows.extend(option_rows(tp, key + "."))
        else:
            rows.append(OptionRow(key, tp, config_to_dict(default), doc))
    return rows
