"""Assembled bilinear forms as scipy and torch sparse CSR operators.

Firedrake assembles a form into a PETSc matrix; :func:`assemble_scipy` copies it into
scipy CSR (:func:`fe_operators.sparse.petsc_to_scipy`: float64, exact copy of PETSc's
values and sparsity) and :func:`assemble_torch` on into a ``torch.sparse_csr_tensor``
(:func:`fe_operators.sparse.scipy_to_torch`).  Mass and stiffness matrices and the
nodes' quadrature weights are built on them.

Vector-valued spaces follow PETSc's interleaved (node-major) numbering: row
``node * ncomp + component``, which is the flattening of the DOF-tensor layout
``(batch, n_nodes, ncomp)`` of docs/design.md §2.1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch

import firedrake as fd

from fe_operators.errors import SpaceMismatchError
from fe_operators.sparse.maps import scipy_to_torch
from fe_operators.sparse.petsc import petsc_to_scipy

__all__ = [
    "assemble_scipy",
    "assemble_torch",
    "mass_matrix",
    "node_weights",
    "stiffness_matrix",
]


def _free_block(A: sp.csr_matrix, bcs: Sequence[fd.DirichletBC], V) -> sp.csr_matrix:
    from fe_operators.fem.bcs import free_dofs

    free = free_dofs(V, bcs)
    return sp.csr_matrix(A[free][:, free])


def assemble_scipy(
    a: fd.Form,
    bcs: Sequence[fd.DirichletBC] | fd.DirichletBC | None = None,
    *,
    free_only: bool = False,
) -> sp.csr_matrix:
    """Assemble a bilinear form into scipy CSR.

    Parameters
    ----------
    a
        A bilinear UFL form ``a(u, v)`` with trial and test functions on the same space
        (or on two spaces: then the result is rectangular and ``free_only`` must be
        False).
    bcs
        Dirichlet conditions.  With ``free_only=False`` they are ignored: the raw
        operator is returned.  With ``free_only=True`` the rows and columns of the
        constrained DOFs are removed (the free-DOF block ``Z^T A Z``).
    free_only
        Return the free-DOF block.

    Returns
    -------
    scipy.sparse.csr_matrix
        float64.  Row/column order: PETSc's (interleaved for vector spaces).
    """
    test, trial = a.arguments()
    A = petsc_to_scipy(fd.assemble(a, mat_type="aij").petscmat)
    if free_only:
        V = test.function_space()
        if trial.function_space() != V:
            raise SpaceMismatchError("the free-DOF block needs the same trial and test space")
        bcs = [] if bcs is None else ([bcs] if isinstance(bcs, fd.DirichletBC) else list(bcs))
        A = _free_block(A, bcs, V)
    return A


def assemble_torch(
    a: fd.Form,
    bcs: Sequence[fd.DirichletBC] | fd.DirichletBC | None = None,
    *,
    free_only: bool = False,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Assemble a bilinear form into a torch sparse CSR tensor.

    See :func:`assemble_scipy` for the parameters; ``dtype`` and ``device`` are those of
    the result.
    """
    return scipy_to_torch(assemble_scipy(a, bcs, free_only=free_only), dtype, device)


def mass_matrix(V: fd.FunctionSpace) -> sp.csr_matrix:
    r"""The consistent mass matrix :math:`M_{ij} = \int_\Omega \phi_j\cdot\phi_i\,dx` (scipy CSR)."""
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    return assemble_scipy(fd.inner(u, v) * fd.dx)


def node_weights(V: fd.FunctionSpace) -> np.ndarray:
    r"""Positive quadrature weights of the DOF nodes of ``V``'s scalar element: each node's share of the domain.

    :math:`\sum_i w_i f(x_i) \approx \int_\Omega f\,dx`, with :math:`\sum_i w_i = |\Omega|`
    and every :math:`w_i > 0`, whatever the local mesh density (an area average, not a
    node count).  Chosen as

    * the lumped mass :math:`w_i = \int_\Omega \phi_i\,dx` (row sums of the mass matrix)
      where it is positive at every node (degree 1, and Q2); this is exact for constants
      and, on simplices, for affine functions;
    * otherwise (P2 on simplices, whose vertex row sums are zero in 2D and negative in
      3D) the diagonal of the mass matrix scaled to the domain's measure,
      :math:`w_i = M_{ii}\,|\Omega| / \operatorname{tr} M` (Hinton–Rock–Zienkiewicz
      lumping: on affine simplices :math:`M^T_{ii} / |T|` is the same in every cell, so
      the global scaling is the per-cell one; P2 on triangles then integrates affine
      functions exactly).

    Parameters
    ----------
    V
        A Lagrange-type (nodal) space; vector and tensor spaces give their scalar nodes.

    Returns
    -------
    numpy.ndarray
        ``(n_nodes,)`` float64, in DOF-node order.
    """
    elem = V.ufl_element()
    if V.value_shape != () and elem.sub_elements:
        V = fd.FunctionSpace(V.mesh(), elem.sub_elements[0])
    lumped = np.array(fd.assemble(fd.TestFunction(V) * fd.dx).dat.data_ro, dtype=np.float64)
    if lumped.min() > 0:
        return lumped
    diag = np.asarray(mass_matrix(V).diagonal(), dtype=np.float64)
    return diag * (lumped.sum() / diag.sum())


def stiffness_matrix(V: fd.FunctionSpace) -> sp.csr_matrix:
    r"""The H1-seminorm matrix :math:`K_{ij} = \int_\Omega \nabla\phi_j:\nabla\phi_i\,dx` (scipy CSR)."""
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    return assemble_scipy(fd.inner(fd.grad(u), fd.grad(v)) * fd.dx)
