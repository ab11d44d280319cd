"""The mesh context of a model: everything mesh-dependent, as tensors.

A SPON's learned weights are separate from the mesh it runs on.  What depends on the
mesh — the DOF graph, node coordinates, the Dirichlet split of the output DOFs, the
fixed lifting and the sparse maps that bring each input field onto the processor's
nodes — is a :class:`MeshContext`: a frozen dataclass of tensors, built once from
Firedrake spaces by :mod:`fe_operators.models.build` (``MeshContext.from_spaces``) and
handed to the model.  A model keeps a default context as buffers
(:class:`ContextBuffers`), so it travels in the ``state_dict``; a mesh-agnostic model
(GNN processor) runs on another mesh of the domain when given that mesh's context.

Nothing here imports Firedrake.

Layouts (DESIGN.md §3): the processor's nodes are the DOF nodes of the output space
(``n`` of them, ``ncomp`` components each); flat DOF indices are interleaved,
``node * ncomp + component``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch


if TYPE_CHECKING:  # pragma: no cover
    import scipy.sparse

__all__ = ["SparseMap", "MeshContext", "ContextBuffers"]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SparseMap:
    """A fixed sparse linear map between two node sets, applied to every channel.

    Parameters
    ----------
    crow, col, values
        CSR arrays of the ``(n_rows, n_cols)`` matrix: int64 ``(n_rows + 1,)``, int64
        ``(nnz,)``, float64 ``(nnz,)``.
    n_cols
        Number of columns (source nodes).

    Shapes
    ------
    :meth:`apply`: ``(batch, n_cols, c) -> (batch, n_rows, c)``.
    """

    crow: torch.Tensor
    col: torch.Tensor
    values: torch.Tensor
    n_cols: int

    def __post_init__(self) -> None:
        if self.crow.ndim != 1 or self.col.shape != self.values.shape or self.col.ndim != 1:
            raise ValueError(
                f"expected CSR arrays crow (rows + 1,), col and values (nnz,), got "
                f"{tuple(self.crow.shape)}, {tuple(self.col.shape)}, {tuple(self.values.shape)}"
            )

    @property
    def n_rows(self) -> int:
        """Number of rows (target nodes)."""
        return int(self.crow.shape[0] - 1)

    @classmethod
    def from_scipy(cls, A: "scipy.sparse.spmatrix") -> "SparseMap":
        """Copy a scipy sparse matrix (float64)."""
        import numpy as np
        import scipy.sparse as sp

        A = sp.csr_matrix(A)
        A.sort_indices()
        return cls(
            torch.from_numpy(np.asarray(A.indptr, dtype=np.int64)),
            torch.from_numpy(np.asarray(A.indices, dtype=np.int64)),
            torch.from_numpy(np.asarray(A.data, dtype=np.float64)),
            int(A.shape[1]),
        )

    def matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The map as a torch sparse CSR tensor of ``dtype`` (on the arrays' device)."""
        return torch.sparse_csr_tensor(
            self.crow, self.col, self.values.to(dtype), (self.n_rows, self.n_cols), check_invariants=False
        )

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the map to ``x`` of shape ``(batch, n_cols, c)``, in ``x``'s dtype."""
        b, n, c = x.shape
        cols = x.permute(1, 0, 2).reshape(n, b * c)
        return (self.matrix(x.dtype) @ cols).reshape(self.n_rows, b, c).permute(1, 0, 2)

    def to(self, device: torch.device | str | None) -> "SparseMap":
        """A copy on ``device``."""
        return SparseMap(self.crow.to(device), self.col.to(device), self.values.to(device), self.n_cols)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class MeshContext:
    """Mesh-dependent tensors a SPON needs: graph, geometry, Dirichlet split, input maps.

    Build it from Firedrake spaces with :meth:`from_spaces` or :meth:`from_problem`;
    models only read its tensors.

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
        ``(n, ncomp)`` float64: the fixed lifting (boundary data on constrained DOFs,
        zero elsewhere), used when no per-sample lifting is given.
    free
        ``(n_free,)`` int64 flat (interleaved) indices of the free DOFs.
    input_maps
        One entry per input field, in the model's input order: a :class:`SparseMap`
        from the field's DOF nodes to the ``n`` processor nodes, or ``None`` when the
        field already lives on them.
    """

    coords: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    indptr: torch.Tensor
    mask: torch.Tensor
    lifting: torch.Tensor
    free: torch.Tensor
    input_maps: tuple[SparseMap | None, ...] = ()

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

    # ------------------------------------------------------------------ conversions
    def to(self, device: torch.device | str | None) -> "MeshContext":
        """A copy with every tensor on ``device`` (dtypes kept: FE data stay float64)."""
        return MeshContext.from_tensors({k: v.to(device) for k, v in self.tensors().items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat name -> tensor dictionary (the buffers of :class:`ContextBuffers`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "input_maps"}
        out["input_has_map"] = torch.tensor([m is not None for m in self.input_maps], dtype=torch.bool)
        for k, m in enumerate(self.input_maps):
            if m is not None:
                out[f"map{k}_crow"], out[f"map{k}_col"], out[f"map{k}_values"] = m.crow, m.col, m.values
                out[f"map{k}_ncols"] = torch.tensor(m.n_cols, dtype=torch.int64)
        return out

    @classmethod
    def from_tensors(cls, t: Mapping[str, torch.Tensor]) -> "MeshContext":
        """Inverse of :meth:`tensors`."""
        maps: list[SparseMap | None] = []
        for k, has in enumerate(t["input_has_map"].tolist()):
            maps.append(SparseMap(t[f"map{k}_crow"], t[f"map{k}_col"], t[f"map{k}_values"],
                                  int(t[f"map{k}_ncols"])) if has else None)
        names = [f.name for f in dataclasses.fields(cls) if f.name != "input_maps"]
        return cls(**{k: t[k] for k in names}, input_maps=tuple(maps))

    # ------------------------------------------------------------------ builders (Firedrake)
    @classmethod
    def from_spaces(cls, input_spaces: Any, output_space: Any, bcs: Any = None, *, method: str = "auto") -> "MeshContext":
        """Build from Firedrake spaces; see :func:`fe_operators.models.build.context_from_spaces`."""
        from fe_operators.models.build import context_from_spaces

        return context_from_spaces(input_spaces, output_space, bcs, method=method)

    @classmethod
    def from_problem(cls, problem: Any, *, method: str = "auto") -> "MeshContext":
        """Build from a Problem; see :func:`fe_operators.models.build.context_from_problem`."""
        from fe_operators.models.build import context_from_problem

        return context_from_problem(problem, method=method)

    def __repr__(self) -> str:
        return (f"MeshContext(n_nodes={self.n_nodes}, ncomp={self.ncomp}, n_free={self.n_free}, "
                f"n_edges={self.n_edges}, gdim={self.gdim}, inputs={len(self.input_maps)}, device={self.device})")


class ContextBuffers(torch.nn.Module):
    """Holds a :class:`MeshContext` as buffers, so it travels in the ``state_dict``.

    Loading a ``state_dict`` installs whatever context it holds (its shapes may differ
    from the current one: a model built by ``from_config`` has none yet).  Moving the
    module (``.to(device)``) moves the buffers; casting (``.float()``, ``.to(dtype)``)
    leaves them alone: FE data stay float64 (DESIGN.md §3).

    Parameters
    ----------
    context
        The initial context, or None.
    """

    def __init__(self, context: MeshContext | None = None) -> None:
        super().__init__()
        self._names: list[str] = []
        if context is not None:
            self.set(context)

    def set(self, context: MeshContext | None) -> None:
        """Replace the stored context (None removes it)."""
        for name in self._names:
            delattr(self, name)
        self._names = []
        if context is not None:
            for name, t in context.tensors().items():
                self.register_buffer(name, t)
                self._names.append(name)

    def get(self) -> MeshContext | None:
        """The stored context, or None."""
        if not self._names:
            return None
        return MeshContext.from_tensors({n: getattr(self, n) for n in self._names})

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any) -> None:
        incoming = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if incoming:
            # Adopt the incoming shapes and dtypes; the base class then copies the values.
            device = next((getattr(self, n).device for n in self._names), torch.device("cpu"))
            self.set(None)
            for name, t in incoming.items():
                self.register_buffer(name, torch.empty_like(t, device=device))
                self._names.append(name)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "ContextBuffers":
        # Follow device moves only: learn the target device from an empty probe tensor.
        for name in self._names:
            t = getattr(self, name)
            device = fn(torch.empty(0, device=t.device)).device
            if device != t.device:
                setattr(self, name, t.to(device))
        return self

    def extra_repr(self) -> str:
        ctx = self.get()
        return "empty" if ctx is None else repr(ctx)
