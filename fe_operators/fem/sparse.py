"""Assembled bilinear forms as scipy and torch sparse CSR operators.

Firedrake assembles into PETSc matrices; models want torch tensors.  This module is the
one crossing point: ``PETSc.Mat`` → ``scipy.sparse.csr_matrix`` (float64, exact copy of
PETSc's values and sparsity) → ``torch.sparse_csr_tensor``.

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
from petsc4py import PETSc

from fe_operators.errors import SpaceMismatchError
from fe_operators.sparse_csr import csr_beta_warning_silenced

__all__ = [
    "petsc_to_scipy",
    "scipy_to_torch",
    "assemble_scipy",
    "assemble_torch",
    "mass_matrix",
    "node_weights",
    "stiffness_matrix",
]


def petsc_to_scipy(mat: PETSc.Mat) -> sp.csr_matrix:
    """Copy an assembled (serial, AIJ-family) PETSc matrix into scipy CSR.

    Parameters
    ----------
    mat
        An assembled PETSc matrix (``aij``, ``baij`` or ``seqaij`` types; a
        ``MATNEST`` or matrix-free matrix is rejected).

    Returns
    -------
    scipy.sparse.csr_matrix
        float64, the same sparsity pattern (explicit zeros kept) and values.
    """
    if mat.getType() in ("nest", "python", "shell"):
        raise TypeError(f"expected an assembled AIJ matrix, got PETSc type {mat.getType()!r}")
    if mat.getComm().getSize() > 1:
        raise NotImplementedError("sparse operators are built on one process; use COMM_SELF meshes")
    if mat.getType() not in ("seqaij", "aij"):
        mat = mat.convert("aij")
    indptr, indices, data = mat.getValuesCSR()
    shape = mat.getSize()
    # copies: PETSc owns those buffers
    return sp.csr_matrix(
        (np.array(data, dtype=np.float64), np.array(indices, dtype=np.int64),
         np.array(indptr, dtype=np.int64)),
        shape=shape,
    )


def scipy_to_torch(
    A: sp.spmatrix,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Convert a scipy sparse matrix to a torch sparse CSR tensor.

    Parameters
    ----------
    A
        Any scipy sparse matrix (converted to CSR first).
    dtype, device
        Of the result.

    Returns
    -------
    torch.Tensor
        ``torch.sparse_csr`` layout, int64 indices, shape ``A.shape``.
    """
    A = sp.csr_matrix(A)
    with csr_beta_warning_silenced():
        return torch.sparse_csr_tensor(
            torch.from_numpy(np.asarray(A.indptr, dtype=np.int64)),
            torch.from_numpy(np.asarray(A.indices, dtype=np.int64)),
            torch.from_numpy(np.asarray(A.data, dtype=np.float64)).to(dtype),
            size=A.shape,
            device=device,
        )


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
