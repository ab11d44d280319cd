"""Multigrid levels, hierarchies and cycles: the one home of every multigrid in the package.

* :mod:`~fe_operators.multigrid.hierarchy` — :class:`~fe_operators.multigrid.hierarchy.Level`
  and :class:`~fe_operators.multigrid.hierarchy.Hierarchy`, the one level type and the one
  hierarchy type (operators, transfers, boundary masks, coordinates, sizes) that the model
  processors (a mesh context's ``hierarchy``) and the preconditioners use;
* :mod:`~fe_operators.multigrid.galerkin` — the one Galerkin product ``Pᵀ A P`` (scipy or
  PETSc) and the masked Galerkin hierarchy of an assembled matrix;
* :mod:`~fe_operators.multigrid.aggregation` — levels by smoothed aggregation, with
  aggregates that do not depend on the node numbering (below a hierarchy's coarsest
  mesh, or all levels of a mesh that has no ``MeshHierarchy``);
* :mod:`~fe_operators.multigrid.levels` — :func:`~fe_operators.multigrid.levels.mesh_levels`:
  the levels of any mesh (geometric where the mesh is a level of a ``MeshHierarchy`` or a
  built-in structured spec, then aggregation down to a coarsest level of a few hundred
  nodes; the FE operators of a geometric level are assembled by
  :mod:`fe_operators.fem.hierarchy`);
* :mod:`~fe_operators.multigrid.cycle` — the learned multi-channel V-cycle
  (:class:`~fe_operators.multigrid.cycle.MultigridCycle`) of the multigrid processor and
  the DCDM network, its per-level data, and the level matching across hierarchies.

``levels`` imports Firedrake (through ``fem``); ``hierarchy``, ``galerkin``,
``aggregation`` and ``cycle`` do not, and this package's ``__init__`` imports nothing, so
torch-only code can name it without pulling Firedrake in.
"""
