"""The one level type and the one hierarchy type of every multigrid in the package.

A :class:`Level` holds what a level of a multigrid is, as tensors: its operators stacked
by rows (the FE operators of :func:`operator_names` for a level of a mesh, or the single
Galerkin operator of an algebraic hierarchy), its Dirichlet mask, and, for mesh levels,
coordinates, lumped mass, mesh size and the coefficient-stiffness map.  A
:class:`Hierarchy` is its levels (coarsest first), the transfers between them and the
maps between the output's nodes and the finest level's.

Who makes them: :func:`fe_operators.fem.hierarchy.hierarchy_operators` (the levels of a
``MeshHierarchy``), :mod:`~fe_operators.multigrid.aggregation` (levels by smoothed
aggregation), :func:`~fe_operators.multigrid.galerkin.galerkin_hierarchy` (the masked
Galerkin hierarchy of an assembled matrix).  Who reads them: the model processors (the
hierarchy of a :class:`~fe_operators.models.context.MeshContext`, stored in checkpoints
under its field names), the learned cycles (:mod:`~fe_operators.multigrid.cycle`) and the
learned-smoother preconditioner (:mod:`fe_operators.precond.vcycle`).

Values are float64 (the FE data of a model stay float64; a processor casts what it needs
once per dtype).  Nothing here imports Firedrake.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence, Union

import numpy as np
import scipy.sparse as sp
import torch

from fe_operators.sparse.maps import SparseMap, row_indices

__all__ = ["Level", "Hierarchy", "operator_names", "block_rows", "block_diagonals", "block_row_sums", "side_by_side",
           "on_common_pattern"]

_AXES = "xyz"


def operator_names(gdim: int) -> tuple[str, ...]:
    """The FE operators of a mesh level, in their order, for dimension ``gdim``.

    ``("mass", "K_xx", "K_yy", "K_xy", "C_x", "C_y")`` in 2D;
    ``("mass", "K_xx", "K_yy", "K_zz", "K_xy", "K_xz", "K_yz", "C_x", "C_y", "C_z")`` in 3D
    (:func:`fe_operators.fem.hierarchy.hierarchy_operators` says what each is).
    """
    if gdim not in (1, 2, 3):
        raise ValueError(f"expected a geometric dimension 1, 2 or 3, got {gdim}")
    ax = _AXES[:gdim]
    return (("mass",) + tuple(f"K_{a}{a}" for a in ax)
            + tuple(f"K_{ax[i]}{ax[j]}" for i in range(gdim) for j in range(i + 1, gdim))
            + tuple(f"C_{a}" for a in ax))


# ----------------------------------------------------------------- row-stacked operators


def block_rows(ops: SparseMap, start: int, stop: int) -> SparseMap:
    """Rows ``start:stop`` of a CSR map (block ``k`` of a stack: ``k n:(k+1) n``)."""
    lo, hi = int(ops.crow[start]), int(ops.crow[stop])
    return SparseMap(ops.crow[start:stop + 1] - lo, ops.col[lo:hi], ops.values[lo:hi], ops.n_cols)


def block_diagonals(ops: SparseMap, n: int) -> torch.Tensor:
    """``(K, n)``: the diagonal of every ``(n, n)`` block of a row-stacked operator."""
    k = ops.n_rows // n
    rows = row_indices(ops.crow)
    on_diag = ops.col == rows % n
    out = torch.zeros(k * n, dtype=ops.values.dtype, device=ops.device)
    out.index_add_(0, rows[on_diag], ops.values[on_diag])
    return out.reshape(k, n)


def block_row_sums(ops: SparseMap, k: int, n: int) -> torch.Tensor:
    """Row sums of block ``k`` of a row-stacked operator."""
    block = block_rows(ops, k * n, (k + 1) * n)
    sums = torch.zeros(n, dtype=ops.values.dtype, device=ops.device)
    return sums.index_add_(0, row_indices(block.crow), block.values)


def side_by_side(ops: SparseMap, scale: torch.Tensor) -> SparseMap:
    """``diag(scale) @ ops`` of a row-stacked ``(K n, n)`` operator, laid out side by side.

    Returns the ``(n, n K)`` map whose column ``j K + k`` is column ``j`` of block ``k``
    (node-major, so that ``[Φ_1 … Φ_K]`` multiplies channels laid out ``(n, K, batch, C)``).
    """
    n = ops.n_cols
    k = ops.n_rows // n
    rows = row_indices(ops.crow)
    block, row = rows // n, rows % n
    col = ops.col * k + block
    order = torch.argsort(row * (n * k) + col, stable=True)
    crow = torch.zeros(n + 1, dtype=torch.int64, device=ops.device)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=n), 0)
    return SparseMap(crow, col[order], (ops.values * scale[rows])[order], n * k)


def on_common_pattern(mats: Sequence[sp.spmatrix]) -> list[sp.csr_matrix]:
    """The matrices on the union of their patterns: one ``indptr``/``indices`` for all.

    Entries of the union that a matrix does not store become explicit zeros; indices
    are sorted.
    """
    canon = []
    for A in mats:
        A = sp.csr_matrix(A, copy=True)
        A.sum_duplicates()  # also sorts the indices
        canon.append(A)
    n_rows, n_cols = canon[0].shape
    keys = [np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(A.indptr)) * n_cols
            + A.indices.astype(np.int64) for A in canon]
    union = np.unique(np.concatenate(keys))  # sorted: row-major, sorted columns
    rows, cols = np.divmod(union, n_cols)
    indptr = np.searchsorted(rows, np.arange(n_rows + 1)).astype(np.int64)
    out = []
    for A, key in zip(canon, keys):
        data = np.zeros(union.size)
        data[np.searchsorted(union, key)] = A.data
        B = sp.csr_matrix((data, cols.copy(), indptr.copy()), shape=(n_rows, n_cols))
        B.has_sorted_indices = True
        out.append(B)
    return out


def _tensor(x: np.ndarray | None, dtype: type) -> torch.Tensor | None:
    return None if x is None else torch.from_numpy(np.array(x, dtype=dtype))


# ----------------------------------------------------------------------------- types


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Level:
    """One level of a multigrid: operators, Dirichlet mask and (mesh levels) geometry.

    Attributes
    ----------
    operators
        The level's fixed operators stacked by rows, ``(K n, n)`` float64, all on one
        pattern; block ``k`` (rows ``k n : (k+1) n``) is operator ``k``: on a mesh level
        the FE operators of :func:`operator_names`, on an algebraic (Galerkin) level the
        one operator ``A_l``.
    boundary
        ``(n,)`` bool: Dirichlet-constrained nodes (on an algebraic level: decoupled rows).
    operator_orders
        ``(K,)`` int64: derivative order of each operator (0: mass-type ``∫φ_jφ_i``;
        1: first-order ``∫∂φ_jφ_i``; 2: stiffness-type ``∫∂φ_j∂φ_i``).
    laplacian
        ``(K,)`` float64: the combination of the blocks that is the Laplacian stiffness
        matrix (the operator itself on an algebraic level).
    stiffness_diag
        ``(n,)`` float64 diagonal of that combination.
    coords
        ``(n, gdim)`` float64 node coordinates (aggregated levels: centroids), or None
        (algebraic levels of a matrix).
    lumped_mass
        ``(n,)`` float64 row sums of the mass matrix, or None.
    h
        The level's mesh size (mean cell diameter; aggregated levels: the size their
        node count implies), or None.
    coefficient_map
        ``(nnz, n)``: the values of the stiffness matrix ``∫ a ∇φ_j·∇φ_i`` of a nodal
        coefficient ``a`` on the operators' block pattern, as a linear map of ``a``
        (:func:`fe_operators.fem.coefficient.coefficient_stiffness_map`; P1 levels of a
        mesh), or None.
    """

    operators: SparseMap
    boundary: torch.Tensor
    operator_orders: torch.Tensor
    laplacian: torch.Tensor
    stiffness_diag: torch.Tensor
    coords: Union[torch.Tensor, None] = None
    lumped_mass: Union[torch.Tensor, None] = None
    h: Union[float, None] = None
    coefficient_map: Union[SparseMap, None] = None

    def __post_init__(self) -> None:
        n = self.operators.n_cols
        if self.operators.n_rows % max(n, 1):
            raise ValueError(f"Level.operators: expected shape (K * {n}, {n}), got {self.operators.shape}")
        k = self.operators.n_rows // max(n, 1)
        for name in ("operator_orders", "laplacian"):
            if tuple(getattr(self, name).shape) != (k,):
                raise ValueError(f"Level.{name}: expected shape ({k},), got {tuple(getattr(self, name).shape)}")
        for name in ("lumped_mass", "stiffness_diag", "boundary"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (n,):
                raise ValueError(f"Level.{name}: expected shape ({n},), got {tuple(value.shape)}")
        if self.coords is not None and self.coords.shape[0] != n:
            raise ValueError(f"Level.coords: expected {n} rows, got {tuple(self.coords.shape)}")
        if self.h is not None:
            object.__setattr__(self, "h", float(self.h))
        if self.coefficient_map is not None:
            nnz = int(self.operators.crow[n])
            if self.coefficient_map.shape != (nnz, n):
                raise ValueError(f"Level.coefficient_map: expected shape ({nnz}, {n}) (one row per entry "
                                 f"of the block pattern), got {self.coefficient_map.shape}")

    @classmethod
    def from_scipy(cls, operators: Mapping[str, sp.spmatrix], boundary: np.ndarray, *,
                   stiffness_diag: np.ndarray | None = None, coords: np.ndarray | None = None,
                   lumped_mass: np.ndarray | None = None, h: float | None = None,
                   coefficient_stiffness: sp.spmatrix | None = None,
                   orders: Sequence[int] | None = None, laplacian: Sequence[float] | None = None) -> "Level":
        """A level of scipy/numpy pieces (``operators`` on one pattern, see :func:`on_common_pattern`).

        ``orders`` and ``laplacian`` default to those of the FE operator names (``mass``:
        0, ``C_a``: 1, ``K_ab``: 2; the Laplacian is the sum of the ``K_aa``);
        ``stiffness_diag`` to the diagonal of the Laplacian.
        """
        names = list(operators)
        if orders is None:
            orders = [0 if name == "mass" else 1 if name.startswith("C_") else 2 for name in names]
        if laplacian is None:
            laplacian = [1.0 if name in ("K_xx", "K_yy", "K_zz") else 0.0 for name in names]
        if stiffness_diag is None:
            stiffness_diag = sum(c * operators[k].diagonal() for k, c in zip(names, laplacian) if c)
        stacked = sp.vstack([operators[name] for name in names], format="csr")
        return cls(
            operators=SparseMap.from_scipy(stacked),
            boundary=_tensor(boundary, bool),
            operator_orders=torch.tensor(list(orders), dtype=torch.int64),
            laplacian=torch.tensor(list(laplacian), dtype=torch.float64),
            stiffness_diag=_tensor(stiffness_diag, np.float64),
            coords=None if coords is None else _tensor(np.ascontiguousarray(coords), np.float64),
            lumped_mass=_tensor(lumped_mass, np.float64),
            h=h,
            coefficient_map=None if coefficient_stiffness is None else SparseMap.from_scipy(coefficient_stiffness),
        )

    @property
    def n_nodes(self) -> int:
        """Nodes (rows of each operator) of the level."""
        return int(self.operators.n_cols)

    @property
    def n_operators(self) -> int:
        """Number of stacked operators ``K``."""
        return self.operators.n_rows // max(self.n_nodes, 1)

    @property
    def names(self) -> tuple[str, ...]:
        """Operator names: :func:`operator_names` on a mesh level, ``("A",)`` on an algebraic one."""
        if self.coords is not None and self.coords.ndim == 2:
            names = operator_names(int(self.coords.shape[1]))
            if len(names) == self.n_operators:
                return names
        return ("A",) if self.n_operators == 1 else tuple(f"op{k}" for k in range(self.n_operators))

    def block(self, k: int) -> SparseMap:
        """Operator ``k`` as an ``(n, n)`` map."""
        n = self.n_nodes
        return block_rows(self.operators, k * n, (k + 1) * n)

    def scipy_operators(self) -> dict[str, sp.csr_matrix]:
        """``{name: (n, n) csr_matrix}`` of the operators (float64, one sorted pattern)."""
        return {name: self.block(k).to_scipy() for k, name in enumerate(self.names)}

    def stiffness(self) -> sp.csr_matrix:
        """The Laplacian stiffness matrix (the algebraic operator) as scipy, on the operators' pattern."""
        parts = [(c, self.block(k).to_scipy()) for k, c in enumerate(self.laplacian.tolist()) if c]
        K = parts[0][1].copy()
        K.data = parts[0][0] * K.data  # the same bits for the FE Laplacian's weights 1
        for c, B in parts[1:]:
            K.data += c * B.data
        return K

    def __repr__(self) -> str:
        return f"Level({self.n_nodes} nodes, {self.n_operators} operators)"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Hierarchy:
    """Levels (coarsest first), the prolongations between them, and the output's node maps.

    Attributes
    ----------
    levels
        The levels, coarsest first; the last one is the finest.
    prolongations
        ``prolongations[l - 1]``: ``(n_l, n_{l-1})``, the prolongation from level
        ``l - 1`` to level ``l`` (the exact FE prolongation on geometric levels, the
        smoothed aggregation on aggregated ones, the masked ``P̃_l`` in a Galerkin
        hierarchy); its transpose restricts dual vectors (residuals).
    to_finest
        ``(n_finest, n)``: the output's nodes onto the finest level's (a permutation), or
        None when they are the same nodes in the same order.  For a vector output apply
        it to each component.
    from_finest
        ``(n, n_finest)``: back (``to_finest``'s transpose), or None.
    """

    levels: tuple[Level, ...]
    prolongations: tuple[SparseMap, ...]
    to_finest: Union[SparseMap, None] = None
    from_finest: Union[SparseMap, None] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "prolongations", tuple(self.prolongations))
        if not self.levels:
            raise ValueError("Hierarchy: expected at least one level")
        if len(self.prolongations) != len(self.levels) - 1:
            raise ValueError(f"Hierarchy: expected {len(self.levels) - 1} prolongations for "
                             f"{len(self.levels)} levels, got {len(self.prolongations)}")
        for k, P in enumerate(self.prolongations):
            want = (self.levels[k + 1].n_nodes, self.levels[k].n_nodes)
            if P.shape != want:
                raise ValueError(f"Hierarchy.prolongations[{k}]: expected shape {want}, got {P.shape}")

    @property
    def n_levels(self) -> int:
        """Number of levels."""
        return len(self.levels)

    @property
    def finest(self) -> Level:
        """The finest level."""
        return self.levels[-1]

    @property
    def sizes(self) -> list[int]:
        """Nodes per level, coarsest first."""
        return [lv.n_nodes for lv in self.levels]

    def __repr__(self) -> str:
        sizes = " -> ".join(str(n) for n in self.sizes)
        return f"Hierarchy({self.n_levels} levels: {sizes} nodes)"
