r"""Levels by smoothed aggregation, independent of the node numbering.

A ``MeshHierarchy`` refines its base mesh; it cannot coarsen it.  A shipped gmsh mesh such
as ``plate_holes`` (867 nodes) or a user's ``.msh`` file is its own finest and only
geometric level.  :func:`coarsen_level` adds a level below a level the algebraic way
(smoothed-aggregation multigrid), with the same operators a refined level has:

1. **aggregates** — the free (non-Dirichlet) nodes are binned into boxes of side
   ``factor · h`` over the bounding box, and each box is split into the connected pieces
   of the node graph within it (so a box that straddles a hole gives one aggregate per
   side); vectorised with ``scipy.sparse.csgraph``.  Aggregates are numbered by their box
   (lexicographic box index) and, within a box, by their centroid, so the coarse levels
   depend on the mesh and not on how its nodes are numbered: permuting the fine nodes
   leaves the coarse levels' numbering and operators unchanged (to round-off);
2. **prolongation** — the tentative piecewise-constant ``P̂`` smoothed by one damped Jacobi
   step of the Laplacian, ``P = (I − ω D⁻¹K) P̂`` restricted to free rows (Dirichlet rows
   are zero, so the coarse space satisfies the zero Dirichlet condition and needs no mask);
3. **operators** — the Galerkin products ``Pᵀ Φ_k P`` of every FE operator
   (:func:`~fe_operators.multigrid.galerkin.galerkin_product`), which is what a coarser
   nested FE space would give, all on one pattern; coordinates are the aggregates'
   centroids, the mesh size ``h (n_free / n_coarse)^{1/d}``.

The new levels depend only on the level they start from, so every refinement ``/rK`` of
the same base mesh gets the same ones (a model moves between them).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from fe_operators.multigrid.galerkin import galerkin_product
from fe_operators.multigrid.hierarchy import Hierarchy, Level, on_common_pattern
from fe_operators.sparse.maps import SparseMap

__all__ = ["coarsen_level", "extend_hierarchy", "aggregates", "JACOBI_DAMPING", "COARSEST_NODES"]

#: damping of the Jacobi step that smooths the tentative prolongation (``4/3 / λ_max``
#: with ``λ_max(D⁻¹K) ≈ 2``, the usual smoothed-aggregation choice)
JACOBI_DAMPING = 2.0 / 3.0

#: default size of the coarsest level: aggregation stops once a level has at most this
#: many nodes (a dense or attention layer over them is cheap; a V-cycle's coarse solve too)
COARSEST_NODES = 300


def aggregates(level: Level, factor: float = 2.0) -> tuple[np.ndarray, int]:
    """Aggregate index of every node (-1 on Dirichlet nodes) and the number of aggregates.

    The numbering of the aggregates is by box (lexicographic in the box's integer
    position) and, inside a box, by centroid (lexicographic): it does not depend on the
    numbering of the nodes.
    """
    free = ~level.boundary.numpy()
    x = level.coords.numpy()
    n = level.n_nodes
    if not free.any():
        return np.full(n, -1, dtype=np.int64), 0
    side = factor * level.h
    cell = np.floor((x - x.min(axis=0)) / side).astype(np.int64)
    _, box = np.unique(cell, axis=0, return_inverse=True)  # box ids in lexicographic box order
    box = box.ravel()
    K = level.stiffness().tocoo()
    same = (box[K.row] == box[K.col]) & free[K.row] & free[K.col] & (K.row != K.col)
    graph = sp.csr_matrix((np.ones(int(same.sum())), (K.row[same], K.col[same])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    # components of free nodes, renumbered 0..m-1 (still in an order that depends on the numbering)
    labels, local = np.unique(comp[free], return_inverse=True)
    local = local.ravel()
    m = labels.size
    xf = x[free]
    counts = np.bincount(local, minlength=m).astype(np.float64)
    centroid = np.stack([np.bincount(local, weights=xf[:, a], minlength=m) for a in range(x.shape[1])],
                        axis=1) / counts[:, None]
    comp_box = np.zeros(m, dtype=np.int64)
    comp_box[local] = box[free]
    # numbering-independent order: box first, then the centroid rounded well above round-off
    scale = float(np.abs(x).max()) or 1.0
    key = np.round(centroid / scale, 9)
    order = np.lexsort(tuple(key[:, a] for a in reversed(range(x.shape[1]))) + (comp_box,))
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m)
    ids = np.full(n, -1, dtype=np.int64)
    ids[free] = rank[local]
    return ids, m


def coarsen_level(level: Level, factor: float = 2.0) -> tuple[Level, sp.csr_matrix]:
    """One level below ``level`` by smoothed aggregation (see the module docstring).

    Parameters
    ----------
    level
        The level to coarsen (its Dirichlet nodes are left out of the coarse space).
    factor
        Box side in units of the level's mesh size (2: about ``2^d`` nodes per aggregate).

    Returns
    -------
    coarse : Level
        The new level (``boundary`` all False: its space already vanishes there).
    P : scipy.sparse.csr_matrix
        ``(n_level, n_coarse)`` prolongation.
    """
    ids, n_agg = aggregates(level, factor)
    n = level.n_nodes
    free = ids >= 0
    rows = np.flatnonzero(free)
    tentative = sp.csr_matrix((np.ones(rows.size), (rows, ids[free])), shape=(n, n_agg))
    keep = sp.diags(free.astype(np.float64))
    inv_diag = sp.diags(1.0 / level.stiffness_diag.numpy())
    jacobi = keep @ (sp.identity(n, format="csr") - JACOBI_DAMPING * inv_diag @ level.stiffness())
    P = (jacobi @ tentative).tocsr()
    P.eliminate_zeros()
    P.sort_indices()
    fine_ops = level.scipy_operators()
    names = list(fine_ops)
    ops = dict(zip(names, on_common_pattern([galerkin_product(fine_ops[k], P) for k in names])))
    coords = level.coords.numpy()
    counts = np.bincount(ids[free], minlength=n_agg).astype(np.float64)
    centroids = np.stack([np.bincount(ids[free], weights=coords[free, a], minlength=n_agg)
                          for a in range(coords.shape[1])], axis=1) / counts[:, None]
    gdim = coords.shape[1]
    coarse = Level.from_scipy(
        ops, np.zeros(n_agg, dtype=bool),
        coords=centroids,
        lumped_mass=np.asarray(ops["mass"].sum(axis=1)).ravel(),
        stiffness_diag=sum(ops[f"K_{a}{a}"].diagonal() for a in "xyz"[:gdim]),
        h=float(level.h * (rows.size / n_agg) ** (1.0 / gdim)),
    )
    return coarse, P


def extend_hierarchy(ops: Hierarchy, coarsest_nodes: int = COARSEST_NODES, factor: float = 2.0) -> Hierarchy:
    """``ops`` with aggregated levels added below its coarsest until that has at most ``coarsest_nodes``.

    Stops early when an aggregation step no longer halves the node count (a level that
    small gains nothing from another one), or would leave no node.

    Parameters
    ----------
    ops
        The hierarchy's operators (coarsest first); one level is enough (a mesh without
        a ``MeshHierarchy``: all coarser levels come from aggregation).
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
        prolongations.insert(0, SparseMap.from_scipy(P))
    return dataclasses.replace(ops, levels=tuple(levels), prolongations=tuple(prolongations))
