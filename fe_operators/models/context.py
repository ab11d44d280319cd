"""The mesh context of a model: everything mesh-dependent, as tensors.

A SPON's learned weights are separate from the mesh it runs on.  What depends on the
mesh — the DOF graph, node coordinates, the Dirichlet split of the output DOFs, the
lifting (a fixed part and, for input-dependent boundary data, sparse maps of the
inputs), the sparse maps that bring each input field onto the processor's nodes and, for
multigrid processors, the levels of the mesh
(:class:`~fe_operators.multigrid.hierarchy.Hierarchy`: per-level FE operators and
prolongations) — is a :class:`MeshContext`: a frozen dataclass of tensors (and nested
dataclasses of tensors), built once from Firedrake spaces by
:mod:`fe_operators.models.build` (:func:`~fe_operators.models.build.context_from_problem`,
:func:`~fe_operators.models.build.context_from_spaces`) and handed to the model.
A model keeps a default context as buffers
(:class:`~fe_operators.models.context_buffers.ContextBuffers`); a mesh-agnostic model
runs on another mesh of the domain when given that mesh's context.

Nothing here imports Firedrake.

Layouts (docs/design.md §2.1): the processor's nodes are the DOF nodes of the output space
(``n`` of them, ``ncomp`` components each); flat DOF indices are interleaved,
``node * ncomp + component``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Union

import torch

from fe_operators.multigrid.hierarchy import Hierarchy
from fe_operators.sparse.maps import SparseMap

__all__ = ["MeshContext"]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class MeshContext:
    """Mesh-dependent tensors a SPON needs: graph, geometry, Dirichlet split, input maps.

    Build it from Firedrake spaces with :func:`fe_operators.models.build.context_from_spaces`
    or :func:`~fe_operators.models.build.context_from_problem`; models only read its tensors.

    Attributes
    ----------
    coords
        ``(n, gdim)`` float64 coordinates of the output space's DOF nodes.
    edge_index
        ``(2, E)`` int64 DOF-adjacency edges, PyG ``source_to_target`` convention
        (row 0 source *j*, row 1 target *i*), sorted by target (CSR order).
    edge_attr
        ``(E, gdim + 1)`` float64: ``x_j - x_i`` and its length.
    indptr
        ``(n + 1,)`` int64 CSR row pointer of the edges (incoming edges of node *i* are
        ``indptr[i]:indptr[i + 1]``).
    mask
        ``(n, ncomp)`` bool: True on Dirichlet-constrained DOFs.
    lifting
        ``(n, ncomp)`` float64: the fixed part ``g_0`` of the lifting (boundary data on
        constrained DOFs for zero inputs, zero elsewhere).
    free
        ``(n_free,)`` int64 flat (interleaved) indices of the free DOFs.
    input_maps
        One entry per input field, in the model's input order: a :class:`SparseMap`
        from the field's DOF nodes to the ``n`` processor nodes, or ``None`` when the
        field already lives on them.
    hierarchy
        The levels of the output's mesh (:class:`~fe_operators.multigrid.hierarchy.Hierarchy`;
        multigrid processors), or None.
    lifting_maps
        Input-dependent boundary data, ``g_h = g_0 + Σ_k L_k x_k``: empty when the data
        do not depend on the inputs, else one entry per input field: a :class:`SparseMap`
        ``L_k`` of shape ``(n ncomp, n_in_k ncomp_k)`` from the field's flat
        (interleaved) DOFs to the output's, non-zero only in constrained rows (float64),
        or None where the data do not depend on that field.
    node_weights
        ``(n,)`` float64 positive quadrature weights of the nodes, each node's share of
        the domain (:func:`fe_operators.fem.node_weights`; sum ``|Ω|``): averages over
        nodes weighted by them are area averages, the same on any mesh of the domain.
        None in contexts stored before they existed (a processor that needs them then
        says what it does instead).
    """

    coords: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    indptr: torch.Tensor
    mask: torch.Tensor
    lifting: torch.Tensor
    free: torch.Tensor
    input_maps: tuple[SparseMap | None, ...] = ()
    hierarchy: Union[Hierarchy, None] = None
    lifting_maps: tuple[SparseMap | None, ...] = ()
    node_weights: Union[torch.Tensor, None] = None

    def __post_init__(self) -> None:
        # O(1) shape checks: contexts come from the builder or from a state_dict
        n, gdim = self.coords.shape
        e = self.edge_index.shape[1]
        checks = [
            ("edge_index", self.edge_index.shape, (2, e)),
            ("edge_attr", self.edge_attr.shape, (e, gdim + 1)),
            ("indptr", self.indptr.shape, (n + 1,)),
            ("lifting", self.lifting.shape, tuple(self.mask.shape)),
        ]
        if self.node_weights is not None:
            checks.append(("node_weights", self.node_weights.shape, (n,)))
        for name, got, want in checks:
            if tuple(got) != want:
                raise ValueError(f"MeshContext.{name}: expected shape {want}, got {tuple(got)}")
        if self.mask.ndim != 2 or self.mask.shape[0] != n or self.mask.dtype != torch.bool:
            raise ValueError(f"MeshContext.mask: expected a bool tensor ({n}, ncomp), got {self.mask.dtype} "
                             f"{tuple(self.mask.shape)}")
        for k, m in enumerate(self.input_maps):
            if m is not None and m.n_rows != n:
                raise ValueError(f"MeshContext.input_maps[{k}]: expected {n} rows, got {m.n_rows}")
        object.__setattr__(self, "input_maps", tuple(self.input_maps))
        object.__setattr__(self, "lifting_maps", tuple(self.lifting_maps))
        if self.lifting_maps and len(self.lifting_maps) != len(self.input_maps):
            raise ValueError(f"MeshContext.lifting_maps: expected none or one per input field "
                             f"({len(self.input_maps)}), got {len(self.lifting_maps)}")
        for k, m in enumerate(self.lifting_maps):
            if m is not None and (m.n_rows != self.mask.numel() or m.n_cols % max(self.input_nodes(k), 1)):
                raise ValueError(f"MeshContext.lifting_maps[{k}]: expected shape ({self.mask.numel()}, "
                                 f"{self.input_nodes(k)} * ncomp_{k}), got {m.shape}")
        if self.hierarchy is not None:
            h = self.hierarchy
            want = (h.finest.n_nodes, n) if h.to_finest is not None else None
            if want is None and h.finest.n_nodes != n:
                raise ValueError(f"MeshContext.hierarchy: the finest level has {h.finest.n_nodes} nodes, the "
                                 f"output {n}, and there is no to_finest map")
            if want is not None and (h.to_finest.shape != want or h.from_finest is None
                                     or h.from_finest.shape != want[::-1]):
                raise ValueError(f"MeshContext.hierarchy: expected to_finest {want} and from_finest {want[::-1]}")

    # ------------------------------------------------------------------ sizes
    @property
    def n_nodes(self) -> int:
        """Number of processor nodes (DOF nodes of the output space)."""
        return int(self.coords.shape[0])

    @property
    def gdim(self) -> int:
        """Geometric dimension."""
        return int(self.coords.shape[1])

    @property
    def ncomp(self) -> int:
        """Output components per node."""
        return int(self.mask.shape[1])

    @property
    def n_free(self) -> int:
        """Number of free output DOFs."""
        return int(self.free.shape[0])

    @property
    def n_edges(self) -> int:
        """Number of directed edges."""
        return int(self.edge_index.shape[1])

    @property
    def device(self) -> torch.device:
        """Device of the tensors."""
        return self.coords.device

    def degree(self) -> torch.Tensor:
        """In-degree of every node, ``(n,)`` int64."""
        return self.indptr.diff()

    def length_scale(self) -> torch.Tensor:
        """Mean edge length (0-d float64): the mesh's characteristic length ``h``."""
        return self.edge_attr[:, -1].mean()

    def input_nodes(self, k: int) -> int:
        """Number of DOF nodes input field ``k`` is given on."""
        m = self.input_maps[k]
        return self.n_nodes if m is None else m.n_cols

    @property
    def lifting_inputs(self) -> tuple[int, ...]:
        """Indices of the input fields the boundary data depend on (empty: fixed data)."""
        return tuple(k for k, m in enumerate(self.lifting_maps) if m is not None)

    def with_lifting_input(self, k: int) -> "MeshContext":
        """A copy whose boundary data are input field ``k``'s values on the constrained DOFs.

        ``L_k`` is the field's input map (the identity on the output's nodes) applied
        per component and kept on the constrained rows: Poisson's ``u = g`` where ``g``
        is an input with the output's components.  Other fields get no map.
        """
        import numpy as np
        import scipy.sparse as sp

        n, ncomp = self.mask.shape
        m = self.input_maps[k]
        nodes = sp.identity(n, format="csr") if m is None else m.to_scipy()
        rows = sp.diags(self.mask.reshape(-1).cpu().numpy().astype(np.float64))
        L = sp.csr_matrix(rows @ sp.kron(nodes, sp.identity(ncomp), format="csr"))
        L.eliminate_zeros()
        maps = [None] * len(self.input_maps)
        maps[k] = SparseMap.from_scipy(L).to(self.device)
        return dataclasses.replace(self, lifting_maps=tuple(maps))

    # ------------------------------------------------------------------ conversions
    def to(self, device: torch.device | str | None) -> "MeshContext":
        """A copy with every tensor on ``device`` (dtypes kept: FE data stay float64)."""
        return _map_tensors(self, lambda t: t.to(device))

    def __repr__(self) -> str:
        extra = "" if self.hierarchy is None else f", hierarchy={self.hierarchy!r}"
        extra += f", lifting_inputs={list(self.lifting_inputs)}" if self.lifting_maps else ""
        return (f"MeshContext(n_nodes={self.n_nodes}, ncomp={self.ncomp}, n_free={self.n_free}, "
                f"n_edges={self.n_edges}, gdim={self.gdim}, inputs={len(self.input_maps)}{extra}, "
                f"device={self.device})")


# ----------------------------------------------------------------------------- copies

def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """A copy of the context tree ``obj`` with ``fn`` applied to every tensor."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple):
        return tuple(_map_tensors(v, fn) for v in obj)
    if dataclasses.is_dataclass(obj):
        return type(obj)(**{f.name: _map_tensors(getattr(obj, f.name), fn) for f in dataclasses.fields(obj)})
    return obj
