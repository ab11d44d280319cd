"""The processor extension point of SPON: a base class, a registry, declared options.

A SPON is ``u = g_h + Z P_θ(E x)`` (docs/design.md §3); the processor ``P_θ`` maps the
encoded input channels on the output space's DOF nodes to the free output DOFs.  Adding
a processor is one step: subclass :class:`Processor`, declare its options as a
dataclass (:func:`fe_operators.options.option` fields), and decorate the class with
:func:`register_processor`::

    @dataclasses.dataclass
    class ChebOptions:
        order: int = option("Polynomial order.", positive, default=4)

    @register_processor
    class ChebProcessor(Processor):
        name = "cheb"
        Options = ChebOptions
        mesh_agnostic = True

        def __init__(self, in_channels, out_ncomp, gdim, *, order=4): ...
        @classmethod
        def for_context(cls, context, in_channels, out_ncomp, options): ...
        @property
        def config(self): ...
        def forward(self, h, context): ...

It is then ``SPON.from_context(ctx, inputs, "cheb", order=6)`` in Python,
``processor: cheb`` + ``order: 6`` in a run configuration, and listed with its keys by
``fe-operators train --print-config``.

Nothing here imports Firedrake: the Firedrake side (:mod:`fe_operators.models.build`)
builds the :class:`~fe_operators.models.context.MeshContext` a processor asks for
(:attr:`Processor.needs_hierarchy`).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar, Literal, Mapping

import torch

from fe_operators.errors import ConfigError, SpaceMismatchError
from fe_operators.models.context import MeshContext
from fe_operators.options import dataclass_from_dict

__all__ = ["Processor", "PROCESSORS", "register_processor", "processor_class", "processor_options", "ACTIVATIONS",
           "cost_report_text"]

#: activation names every processor accepts (the type of their ``act`` option)
ACTIVATIONS = Literal["gelu", "relu", "silu", "tanh"]


class Processor(torch.nn.Module, abc.ABC):
    """Base class of SPON processors: encoded node channels -> free output DOFs.

    Class attributes
    ----------------
    name
        The processor's name in configurations (``processor: <name>``).
    Options
        The dataclass of its user options (fields made with
        :func:`fe_operators.options.option`: type, default, doc, check; an optional
        ``validate(self, key)`` for cross-field checks).  Its fields are exactly the
        keyword arguments :meth:`for_context` takes.
    mesh_agnostic
        Whether the weights run on other meshes of the domain (given their context).
    needs_hierarchy
        Whether the mesh context must carry a mesh hierarchy
        (:class:`~fe_operators.multigrid.hierarchy.Hierarchy`).
    uses_boundary_data
        Whether :meth:`forward` takes the keyword ``boundary``: the per-sample Dirichlet
        data on the output nodes in the network's units, ``(batch, n, ncomp)`` (SPON
        passes its lifting).

    The contract SPON relies on: :meth:`for_context` builds the processor for a mesh
    context; :attr:`config` holds JSON-able constructor arguments so that
    ``type(p).from_config(p.config)`` rebuilds it (weights come from the state_dict);
    :meth:`check_context` raises :class:`~fe_operators.errors.SpaceMismatchError` for
    a context it cannot run on; :meth:`forward` maps ``(batch, n, C)`` node channels to
    ``(batch, n_free)`` free DOF values (the context's interleaved free order).
    """

    name: ClassVar[str]
    Options: ClassVar[type]
    mesh_agnostic: ClassVar[bool] = False
    needs_hierarchy: ClassVar[bool] = False
    uses_boundary_data: ClassVar[bool] = False

    @classmethod
    @abc.abstractmethod
    def for_context(cls, context: MeshContext, in_channels: int, out_ncomp: int, options: Any) -> "Processor":
        """Build for ``context`` from validated ``options`` (an instance of :attr:`Options`)."""

    @property
    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""

    @classmethod
    def context_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments for building the mesh context this processor needs.

        Given the processor's options (or its :attr:`config`), for
        :func:`fe_operators.models.build.context_from_problem`; by default
        ``{"hierarchy": needs_hierarchy}``.
        """
        return {"hierarchy": cls.needs_hierarchy}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Processor":
        """A processor with fresh weights from :attr:`config`."""
        return cls(**config)

    def check_context(self, context: MeshContext) -> None:
        """Raise :class:`SpaceMismatchError` unless the processor can run on ``context``."""
        if self.needs_hierarchy and context.hierarchy is None:
            raise SpaceMismatchError(
                f"the {self.name!r} processor needs a mesh context with a mesh hierarchy; build it with "
                "context_from_problem(problem, hierarchy=True) on a hierarchy mesh (e.g. 'plate_holes/r2')"
            )

    @abc.abstractmethod
    def forward(self, h: torch.Tensor, context: MeshContext) -> torch.Tensor:
        """Free DOF values ``(batch, n_free)`` of node channels ``h`` ``(batch, n, C)``."""

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Inference with constant weights (no autograd): a processor may reuse what depends
        on the weights and the mesh alone inside (same values).  Default: nothing to reuse."""
        yield


#: processor name -> class (filled by :func:`register_processor`)
PROCESSORS: dict[str, type[Processor]] = {}


def register_processor(cls: type[Processor]) -> type[Processor]:
    """Class decorator: make ``cls`` selectable as ``processor: cls.name``.

    Raises
    ------
    TypeError
        ``cls`` is not a :class:`Processor` subclass with a ``name`` and an ``Options``
        dataclass.
    ValueError
        Another class is registered under the same name.
    """
    if not (isinstance(cls, type) and issubclass(cls, Processor)):
        raise TypeError(f"expected a Processor subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a class attribute name (a non-empty string)")
    options = getattr(cls, "Options", None)
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        raise TypeError(f"{cls.__name__} needs a class attribute Options (a dataclass of its options)")
    old = PROCESSORS.get(name)
    if old is not None and old is not cls and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"processor name {name!r} is taken by {old.__module__}.{old.__qualname__}")
    PROCESSORS[name] = cls
    return cls


def processor_class(name: str, key: str = "processor") -> type[Processor]:
    """The registered processor class of ``name``.

    Raises
    ------
    ConfigError
        Unknown name (the message lists the registered ones), under ``key``.
    """
    cls = PROCESSORS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(key, f"unknown processor {name!r}; expected one of {sorted(PROCESSORS)}")
    return cls


def processor_options(name: str, options: Mapping[str, Any], key: str = "") -> Any:
    """Validate keyword options of processor ``name`` against its :attr:`Processor.Options`.

    Returns
    -------
    dataclass instance
        Defaults filled in.

    Raises
    ------
    ConfigError
        Unknown processor or key, wrong type or value (naming ``key.<option>``).
    """
    cls = processor_class(name, f"{key}.processor" if key else "processor")
    return dataclass_from_dict(cls.Options, dict(options), key)


def cost_report_text(title: str, rows: list[dict[str, Any]]) -> str:
    """Rows of a processor's ``cost_per_level`` (finest first) as the lines ``cost_report`` prints.

    Each row has ``level``, ``nodes``, ``width``, ``macs`` and optionally ``blocks``;
    the last line is the total.
    """
    lines = [f"  level {r['level']}: {r['nodes']:>8} nodes, width {r['width']:>3}, "
             + (f"{r['blocks']} blocks, " if "blocks" in r else "")
             + f"{r['macs'] / 1e6:9.2f} M multiply-adds" for r in rows]
    total = sum(r["macs"] for r in rows)
    return "\n".join([f"{title}, multiply-adds per sample by level (finest first):", *lines,
                      f"  total: {total / 1e6:.2f} M"])
