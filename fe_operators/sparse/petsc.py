"""PETSc matrices as scipy CSR: a copy (:func:`petsc_to_scipy`) or a zero-copy view (:func:`seqaij_csr`);
and back: a direct solver of a scipy matrix (:func:`direct_lu`).

Firedrake assembles into PETSc matrices; models and preconditioners want scipy or torch
ones.  :func:`petsc_to_scipy` is the crossing point: an exact float64 copy of PETSc's
values and sparsity (vector spaces keep PETSc's interleaved numbering,
``node * ncomp + component``, docs/design.md §2.1).

``Mat.getValuesCSR()`` of petsc4py copies a matrix row by row (two ``MatGetRow`` passes):
about 0.2 s for the 1.05M-row CG1 stiffness matrix here, idle, and several times that on
a loaded machine — more than the rest of a learned smoother's set-up.  A ``seqaij``
matrix keeps its rows as three arrays; :func:`seqaij_csr` returns numpy views of them
through PETSc's ``MatSeqAIJGetCSRAndMemType`` (called with ctypes on the ``libpetsc``
that petsc4py was built against).  The views are read-only and valid while the matrix
keeps its storage (until it is destroyed or its non-zero pattern changes); read them
within one set-up, never keep them.

Anything else — a parallel matrix, another type, a PETSc built with 64-bit indices or
complex scalars we did not expect, no ``libpetsc`` to load — gives None, and callers fall
back to ``getValuesCSR``.

petsc4py and scipy are imported on first use, so importing :mod:`fe_operators.sparse`
initialises no PETSc (entry points do that through :mod:`fe_operators.petsc_argv`).
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import scipy.sparse

__all__ = ["petsc_to_scipy", "seqaij_csr", "direct_lu"]

_HOST = 0  # PETSC_MEMTYPE_HOST


@functools.lru_cache(maxsize=1)
def _function() -> Any:
    """``MatSeqAIJGetCSRAndMemType`` from libpetsc, or None."""
    try:
        import petsc4py

        cfg = petsc4py.get_config()
        lib = os.path.join(cfg["PETSC_DIR"], cfg["PETSC_ARCH"], "lib", "libpetsc.so")
        fn = ctypes.CDLL(lib).MatSeqAIJGetCSRAndMemType
    except (ImportError, OSError, KeyError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    return fn


def seqaij_csr(A: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(indptr, indices, data)`` of a ``seqaij`` matrix as read-only views, or None.

    Parameters
    ----------
    A
        A petsc4py ``Mat``.

    Returns
    -------
    tuple or None
        ``indptr`` ``(n + 1,)`` and ``indices`` ``(nnz,)`` of PETSc's index type,
        ``data`` ``(nnz,)`` float64 — the matrix's own storage — or None when ``A`` is
        not an assembled ``seqaij`` matrix on one process or the views cannot be made.
    """
    from petsc4py import PETSc

    if A.getType() != PETSc.Mat.Type.SEQAIJ or not A.isAssembled() or PETSc.ScalarType != np.float64:
        return None
    fn = _function()
    if fn is None:
        return None
    ip, jp, ap = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    mtype = ctypes.c_int(-1)
    if fn(ctypes.c_void_p(A.handle), ctypes.byref(ip), ctypes.byref(jp), ctypes.byref(ap), ctypes.byref(mtype)):
        return None
    if mtype.value != _HOST or not ip.value:
        return None
    n = A.getSize()[0]
    int_c = {4: ctypes.c_int32, 8: ctypes.c_int64}[np.dtype(PETSc.IntType).itemsize]
    indptr = np.ctypeslib.as_array(ctypes.cast(ip, ctypes.POINTER(int_c)), shape=(n + 1,))
    nnz = int(indptr[n])
    if nnz == 0:
        return indptr, np.zeros(0, PETSc.IntType), np.zeros(0)
    indices = np.ctypeslib.as_array(ctypes.cast(jp, ctypes.POINTER(int_c)), shape=(nnz,))
    data = np.ctypeslib.as_array(ctypes.cast(ap, ctypes.POINTER(ctypes.c_double)), shape=(nnz,))
    for arr in (indptr, indices, data):
        arr.flags.writeable = False
    return indptr, indices, data


def petsc_to_scipy(mat: Any) -> "scipy.sparse.csr_matrix":
    """Copy an assembled (serial, AIJ-family) PETSc matrix into scipy CSR.

    Parameters
    ----------
    mat
        An assembled petsc4py ``Mat`` (``aij``, ``baij`` or ``seqaij`` types; a
        ``MATNEST`` or matrix-free matrix is rejected).

    Returns
    -------
    scipy.sparse.csr_matrix
        float64, the same sparsity pattern (explicit zeros kept) and values.
    """
    import scipy.sparse as sp

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


def direct_lu(K: "scipy.sparse.spmatrix", prefix: str, solver_type: str, ordering: str | None = None) -> Any:
    """A one-process ``preonly`` KSP with an LU preconditioner on a scipy matrix, not yet set up.

    Parameters
    ----------
    K
        The square matrix (copied into a ``seqaij`` matrix with sorted indices).
    prefix
        The KSP's options prefix (so ``-{prefix}pc_factor_...`` options reach it).
    solver_type
        The factorisation package: ``"mumps"``, ``"petsc"``, ...
    ordering
        A PETSc ordering (``"nd"``, ``"rcm"``, ...) or None for the package's own.

    Returns
    -------
    petsc4py.PETSc.KSP
        Its operator is the matrix; call ``setUp()`` (after setting any factor options on
        ``getPC().getFactorMatrix()``, with ``setFactorSetUpSolverType()`` first) and use
        ``getPC().getFactorMatrix()`` to solve.
    """
    import scipy.sparse as sp
    from petsc4py import PETSc

    K = sp.csr_matrix(K)
    K.sort_indices()
    comm = PETSc.COMM_SELF
    A = PETSc.Mat().createAIJ(size=K.shape, csr=(K.indptr.astype(PETSc.IntType), K.indices.astype(PETSc.IntType),
                                                 K.data.astype(np.float64)), comm=comm)
    A.assemble()
    ksp = PETSc.KSP().create(comm=comm)
    ksp.setOptionsPrefix(prefix)
    ksp.setOperators(A)
    ksp.setType("preonly")
    pc = ksp.getPC()
    pc.setType("lu")
    pc.setFactorSolverType(solver_type)
    if ordering is not None:
        pc.setFactorOrdering(ordering)
    return ksp
