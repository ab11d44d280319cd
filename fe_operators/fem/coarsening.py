r"""Levels below a hierarchy's coarsest mesh, by smoothed aggregation.

A ``MeshHierarchy`` refines its base mesh; it cannot coarsen it.  A shipped gmsh mesh
such as ``plate_holes`` is its own coarsest level (867 nodes), too fine for a V-cycle to
reach across the domain.  :func:`coarsen_level` adds a level below it the algebraic way
(smoothed-aggregation multigrid), with the same operators a refined level has:

1. **aggregates** — the free (non-Dirichlet) nodes are binned into boxes of side
   ``factor · h`` over the bounding box, and each box is split into the connected
   pieces of the node graph within it (so a box that straddles a hole gives one
   aggregate per side); vectorised with ``scipy.sparse.csgraph``;
2. **prolongation** — the tentative piecewise-constant ``P̂`` smoothed by one damped
   Jacobi step of the Laplacian, ``P = (I − ω D⁻¹K) P̂`` restricted to free rows
   (Dirichlet rows are zero, so the coarse space satisfies the zero Dirichlet condition
   and needs no mask);
3. **operators** — the Galerkin products ``Pᵀ Φ_k P`` of every FE operator, which is what
   a coarser nested FE space would give (for nested spaces Galerkin coarse operators and
   rediscretisation agree), all on one pattern; coordinates are the aggregates'
   centroids, the mesh size ``h (n_free / n_coarse)^{1/d}``.

The new levels depend only on the coarsest mesh, so every refinement ``/rK`` of the same
base mesh gets the same ones (a model moves between them).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from fe_operators.fem.hierarchy import HierarchyOperators, LevelOperators, _on_common_pattern

__all__ = ["coarsen_level", "extend_hierarchy", "JACOBI_DAMPING"]

#: damping of the Jacobi step that smooths the tentative prolongation (``4/3 / λ_max``
#: with ``λ_max(D⁻¹K) ≈ 2``, the usual smoothed-aggregation choice)
JACOBI_DAMPING = 2.0 / 3.0


def _aggregates(level: LevelOperators, factor: float) -> tuple[np.ndarray, int]:
    """Aggregate index of every node (-1 on Dirichlet nodes) and the number of aggregates."""
    free = ~level.boundary
    x = level.coords
    side = factor * level.h
    cell = np.floor((x - x.min(axis=0)) / side).astype(np.int64)
    _, box = np.unique(cell, axis=0, return_inverse=True)
    box = box.ravel()
    K = level.stiffness.tocoo()
    same = (box[K.row] == box[K.col]) & free[K.row] & free[K.col]
    n = level.n_nodes
    graph = sp.csr_matrix((np.ones(int(same.sum())), (K.row[same], K.col[same])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    ids = np.full(n, -1, dtype=np.int64)
    _, ids[free] = np.unique(comp[free], return_inverse=True)
    return ids, int(ids.max()) + 1


def coarsen_level(level: LevelOperators, factor: float = 2.0) -> tuple[LevelOperators, sp.csr_matrix]:
    """One level below ``level`` by smoothed aggregation (see the module docstring).

    Parameters
    ----------
    level
        The level to coarsen (its Dirichlet nodes are left out of the coarse space).
    factor
        Box side in units of the level's mesh size (2: about ``2^d`` nodes per aggregate).

    Returns
    -------
    coarse : LevelOperators
        The new level (``boundary`` all False: its space already vanishes there).
    P : scipy.sparse.csr_matrix
        ``(n_level, n_coarse)`` prolongation.
    """
    ids, n_agg = _aggregates(level, factor)
    n = level.n_nodes
    free = ids >= 0
    rows = np.flatnonzero(free)
    tentative = sp.csr_matrix((np.ones(rows.size), (rows, ids[free])), shape=(n, n_agg))
    K = level.stiffness
    keep = sp.diags(free.astype(np.float64))
    jacobi = keep @ (sp.identity(n, format="csr") - JACOBI_DAMPING * sp.diags(1.0 / level.stiffness_diag) @ K)
    P = (jacobi @ tentative).tocsr()
    P.eliminate_zeros()
    names = list(level.operators)
    coarse_ops = _on_common_pattern([(P.T @ level.operators[k] @ P).tocsr() for k in names])
    counts = np.bincount(ids[free], minlength=n_agg).astype(np.float64)
    centroids = np.stack([np.bincount(ids[free], weights=level.coords[free, a], minlength=n_agg)
                          for a in range(level.coords.shape[1])], axis=1) / counts[:, None]
    ops = dict(zip(names, coarse_ops))
    gdim = level.coords.shape[1]
    coarse = LevelOperators(
        coords=centroids,
        lumped_mass=np.asarray(ops["mass"].sum(axis=1)).ravel(),
        stiffness_diag=sum(ops[f"K_{a}{a}"].diagonal() for a in "xyz"[:gdim]),
        h=float(level.h * (rows.size / n_agg) ** (1.0 / gdim)),
        operators=ops,
        boundary=np.zeros(n_agg, dtype=bool),
    )
    return coarse, P


def extend_hierarchy(ops: HierarchyOperators, coarsest_nodes: int, factor: float = 2.0) -> HierarchyOperators:
    """``ops`` with aggregated levels added below its coarsest until that has at most ``coarsest_nodes``.

    Stops early when an aggregation step no longer halves the node count (a level
    that small gains nothing from another one).

    Parameters
    ----------
    ops
        The hierarchy's operators (coarsest first).
    coarsest_nodes
        Target size of the coarsest level; 0 or more than the coarsest's size: no change.
    factor
        See :func:`coarsen_level`.
    """
    levels, prolongations = list(ops.levels), list(ops.prolongations)
    while coarsest_nodes > 0 and levels[0].n_nodes > coarsest_nodes:
        coarse, P = coarsen_level(levels[0], factor)
        if coarse.n_nodes == 0 or coarse.n_nodes > levels[0].n_nodes // 2:
            break
        levels.insert(0, coarse)
        prolongations.insert(0, P)
    return dataclasses.replace(ops, levels=tuple(levels), prolongations=tuple(prolongations))
