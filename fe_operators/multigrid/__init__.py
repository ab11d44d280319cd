"""Multigrid levels and hierarchies (the home issue 15 item 1 consolidates into).

* :mod:`~fe_operators.multigrid.aggregation` — levels by smoothed aggregation, with
  aggregates that do not depend on the node numbering (below a hierarchy's coarsest
  mesh, or all levels of a mesh that has no ``MeshHierarchy``);
* :mod:`~fe_operators.multigrid.levels` — :func:`~fe_operators.multigrid.levels.mesh_levels`:
  the levels of any mesh (geometric where the mesh is a level of a ``MeshHierarchy`` or a
  built-in structured spec, then aggregation down to a coarsest level of a few hundred
  nodes).

The submodules import Firedrake; this package's ``__init__`` imports nothing, so torch-only
code can name it without pulling Firedrake in.
"""
