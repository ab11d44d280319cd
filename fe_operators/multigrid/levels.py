"""The levels of any mesh: geometric where there is a mesh hierarchy, aggregation below and otherwise.

:func:`mesh_levels` is what a hierarchical processor builds its levels from:

* ``geometric=True`` and the output's mesh has a ``MeshHierarchy`` (a ``/rK`` mesh spec,
  or a built-in structured spec such as ``unitsquare:64``, see
  :func:`fe_operators.fem.hierarchy.find_hierarchy`): its levels, then smoothed
  aggregation below the coarsest mesh;
* otherwise (every shipped mesh as it is, a user's ``.msh`` file, or ``geometric=False``):
  the output's mesh is the only geometric level and every coarser level comes from smoothed
  aggregation (:mod:`fe_operators.multigrid.aggregation`), which does not depend on the
  node numbering.

Aggregation stops at a coarsest level of at most ``coarsest_nodes`` nodes
(:data:`~fe_operators.multigrid.aggregation.COARSEST_NODES` = 300 by default).  A user
never needs to regenerate data on a refined spec to use a hierarchical processor.
"""

from __future__ import annotations

from typing import Sequence

import firedrake as fd

from fe_operators.errors import NoHierarchyError, UnsupportedSpaceError
from fe_operators.fem.hierarchy import _check_dirichlet, _scalar_element, hierarchy_operators, level_operators
from fe_operators.multigrid.aggregation import COARSEST_NODES, extend_hierarchy
from fe_operators.multigrid.hierarchy import Hierarchy

__all__ = ["mesh_levels", "single_level"]


def single_level(output_space: fd.FunctionSpace, bcs: Sequence[fd.DirichletBC] | fd.DirichletBC = ()
                 ) -> Hierarchy:
    """The output's mesh as a one-level hierarchy (its nodes, in their order)."""
    elem = _scalar_element(output_space)
    mesh = output_space.mesh().unique()
    if mesh.comm.size > 1:
        raise NotImplementedError("mesh levels are built on one process; use COMM_SELF meshes")
    if mesh.topological_dimension != mesh.geometric_dimension:
        raise UnsupportedSpaceError("mesh levels need a mesh of full dimension, "
                                    "not a manifold immersed in a higher dimension")
    bcs = _check_dirichlet(bcs, output_space)
    return Hierarchy((level_operators(fd.FunctionSpace(mesh, elem), bcs),), ())


def mesh_levels(output_space: fd.FunctionSpace, bcs: Sequence[fd.DirichletBC] | fd.DirichletBC = (), *,
                mesh_spec: str | None = None, geometric: bool = True,
                coarsest_nodes: int = COARSEST_NODES) -> Hierarchy:
    """The levels of the output space's mesh, coarsest first (see the module docstring).

    Parameters
    ----------
    output_space, bcs, mesh_spec
        As :func:`fe_operators.fem.hierarchy.hierarchy_operators`.
    geometric
        Use the mesh's ``MeshHierarchy`` where it has one; False: aggregation only.
    coarsest_nodes
        Aggregate until the coarsest level has at most this many nodes (0: no aggregation).
    """
    ops = None
    if geometric:
        try:
            ops = hierarchy_operators(output_space, bcs, mesh_spec=mesh_spec)
        except NoHierarchyError:
            ops = None
    if ops is None:
        ops = single_level(output_space, bcs)
    return extend_hierarchy(ops, coarsest_nodes)
