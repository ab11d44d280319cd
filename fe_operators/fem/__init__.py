"""The bridge between Firedrake and torch.

Everything a model needs from a finite element space is turned into tensors and sparse
operators by this subpackage, so the torch side of :mod:`fe_operators.models` never
sees a Firedrake type (docs/design.md §2).

* :mod:`~fe_operators.fem.spaces` — plain-data space descriptions
* :mod:`~fe_operators.fem.tensors` — Functions ↔ batched DOF tensors
* :mod:`~fe_operators.fem.assembly` — assembled forms as scipy/torch CSR, mass and stiffness
  matrices, node weights (the PETSc → scipy → torch conversions are :mod:`fe_operators.sparse`)
* :mod:`~fe_operators.fem.norms` — FE norms and relative losses
* :mod:`~fe_operators.fem.bcs` — Dirichlet DOFs, liftings, free-DOF injection
* :mod:`~fe_operators.fem.lifting` — input-dependent Dirichlet data as an affine sparse map
* :mod:`~fe_operators.fem.transfer` — interpolation, prolongation, restriction matrices
* :mod:`~fe_operators.fem.graph` — DOF adjacency graphs with geometric features
* :mod:`~fe_operators.fem.divergence` — continuous and discrete divergence of a velocity
* :mod:`~fe_operators.fem.hierarchy` — per-level FE operators and prolongations of a mesh hierarchy, assembled
  into a :class:`fe_operators.multigrid.hierarchy.Hierarchy`
"""

from fe_operators.fem.graph import DofGraph, dof_graph
from fe_operators.fem.hierarchy import find_hierarchy, hierarchy_operators
from fe_operators.fem.transfer import (
    interpolation_matrix, interpolation_matrix_torch, prolongation_matrix, prolongation_matrix_torch,
    restriction_matrix, restriction_matrix_torch,
)
from fe_operators.fem.bcs import DirichletDofs, boundary_nodes, check_markers, free_dofs
from fe_operators.fem.lifting import DirichletMap, dirichlet_map
from fe_operators.fem.norms import FENorm, RelativeLoss
from fe_operators.fem.assembly import assemble_scipy, assemble_torch, mass_matrix, node_weights, stiffness_matrix
from fe_operators.fem.spaces import SpaceInfo, check_supported, space_info
from fe_operators.fem.tensors import dof_shape, function_view, functions_to_tensor, tensor_to_functions

__all__ = [
    "SpaceInfo", "space_info", "check_supported",
    "dof_shape", "functions_to_tensor", "tensor_to_functions", "function_view",
    "assemble_scipy", "assemble_torch",
    "mass_matrix", "node_weights", "stiffness_matrix",
    "FENorm", "RelativeLoss",
    "DirichletDofs", "boundary_nodes", "check_markers", "free_dofs", "DirichletMap", "dirichlet_map",
    "interpolation_matrix", "interpolation_matrix_torch", "prolongation_matrix",
    "prolongation_matrix_torch", "restriction_matrix", "restriction_matrix_torch",
    "DofGraph", "dof_graph",
    "find_hierarchy", "hierarchy_operators",
]
