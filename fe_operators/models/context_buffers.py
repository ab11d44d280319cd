"""A mesh context as buffers of a module, so that it travels in the ``state_dict``.

:class:`ContextBuffers` holds a :class:`~fe_operators.models.context.MeshContext` as a
module tree that mirrors the dataclasses, so the ``state_dict`` keys are the attribute
paths (``coords``, ``input_maps.0.crow``, ``hierarchy.levels.2.operators.values``, ...),
and rebuilds the context from whatever tree a ``state_dict`` brings.

Nothing here imports Firedrake.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable, Mapping, Union

import torch

from fe_operators.models.context import MeshContext
from fe_operators.multigrid.hierarchy import Hierarchy, Level
from fe_operators.sparse.maps import SparseMap

__all__ = ["ContextBuffers"]


# ----------------------------------------------------------------------------- trees
# A context is a tree: dataclasses (fields by name), tuples (entries "0", "1", ... and a
# "length"), tensors and numbers (leaves; numbers as 0-d tensors), None (absent).  The
# field type hints say how to rebuild it, so the storage needs no per-class code.

_NODES = (SparseMap, Level, Hierarchy, MeshContext)


def _to_tree(obj: Any) -> Any:
    """The context tree ``obj`` as nested dicts of tensors (numbers become 0-d tensors)."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, bool):
        return torch.tensor(obj)
    if isinstance(obj, int):
        return torch.tensor(obj, dtype=torch.int64)
    if isinstance(obj, float):
        return torch.tensor(obj, dtype=torch.float64)
    if isinstance(obj, tuple):
        out: dict[str, Any] = {str(k): _to_tree(v) for k, v in enumerate(obj) if v is not None}
        out["length"] = torch.tensor(len(obj), dtype=torch.int64)
        return out
    if isinstance(obj, _NODES):
        return {f.name: _to_tree(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    raise TypeError(f"cannot store a {type(obj).__name__} in a mesh context")


def _from_tree(tp: Any, tree: Any, where: str) -> Any:
    """Inverse of :func:`_to_tree` for the type hint ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):  # X | None
        inner = [a for a in args if a is not type(None)]
        return None if tree is None else _from_tree(inner[0], tree, where)
    if tree is None:
        raise ValueError(f"mesh context: {where} is missing")
    if tp is torch.Tensor:
        return tree
    if tp in (int, float, bool):
        return tp(tree.item())
    if origin is tuple:
        n = int(tree["length"].item())
        return tuple(_from_tree(args[0], tree.get(str(k)), f"{where}.{k}") for k in range(n))
    if isinstance(tp, type) and issubclass(tp, _NODES):
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in tree or f.default is dataclasses.MISSING:
                kwargs[f.name] = _from_tree(hints[f.name], tree.get(f.name), f"{where}.{f.name}")
        return tp(**kwargs)
    raise TypeError(f"unsupported context field type {tp!r} ({where})")


def _nest(flat: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``{"a.b.c": t}`` -> ``{"a": {"b": {"c": t}}}``."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *path, leaf = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


class _Node(torch.nn.Module):
    """A plain container of buffers and child nodes (one per tree node)."""


def _fill(module: torch.nn.Module, tree: Mapping[str, Any], make: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Register the tensors of ``tree`` as buffers (``make`` of each) and sub-trees as children."""
    for name, value in tree.items():
        if isinstance(value, torch.Tensor):
            module.register_buffer(name, make(value))
        else:
            child = _Node()
            _fill(child, value, make)
            module.add_module(name, child)


def _tree_of(module: torch.nn.Module) -> dict[str, Any]:
    """The nested dict of buffers of a module tree."""
    tree: dict[str, Any] = dict(module._buffers)
    for name, child in module._modules.items():
        tree[name] = _tree_of(child)
    return tree


class ContextBuffers(torch.nn.Module):
    """Holds a :class:`MeshContext` as a tree of buffers, so it travels in the ``state_dict``.

    The buffers mirror the context's attributes: ``coords``, ``input_maps.0.crow``,
    ``hierarchy.levels.1.operators.values``, ... Loading a ``state_dict`` installs
    whatever context it holds (its shapes may differ from the current one: a model built
    by ``from_config`` has none yet).  Moving the module (``.to(device)``) moves the
    buffers; casting (``.float()``, ``.to(dtype)``) leaves them alone: FE data stay
    float64 (docs/design.md §2.1).  :meth:`get` returns the same :class:`MeshContext` object
    until the buffers change, so derived data a processor caches per context survive.

    Parameters
    ----------
    context
        The initial context, or None.
    """

    def __init__(self, context: MeshContext | None = None) -> None:
        super().__init__()
        self._context: MeshContext | None = None
        if context is not None:
            self.set(context)

    def _clear(self) -> None:
        self._buffers.clear()
        self._modules.clear()
        self._context = None

    def set(self, context: MeshContext | None) -> None:
        """Replace the stored context (None removes it)."""
        self._clear()
        if context is not None:
            _fill(self, _to_tree(context), lambda t: t)
            self._context = context

    def get(self) -> MeshContext | None:
        """The stored context, or None."""
        if self._context is None and self._buffers:
            self._context = _from_tree(MeshContext, _tree_of(self), "context")
        return self._context

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any) -> None:
        incoming = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if incoming:
            # Adopt the incoming structure, shapes and dtypes; torch then copies the values
            # into this module's buffers and recurses into the children made here.
            device = next((b.device for b in self.buffers()), torch.device("cpu"))
            self._clear()
            _fill(self, _nest(incoming), lambda t: torch.empty_like(t, device=device))
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._context = None

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "ContextBuffers":
        # Follow device moves only: learn the target device from an empty probe tensor.
        for module in self.modules():
            for name, t in module._buffers.items():
                if t is None:
                    continue
                device = fn(torch.empty(0, device=t.device)).device
                if device != t.device:
                    module._buffers[name] = t.to(device)
                    self._context = None
        return self

    def extra_repr(self) -> str:
        ctx = self.get()
        return "empty" if ctx is None else repr(ctx)
