"""Zero-copy CSR views of a sequential PETSc AIJ matrix.

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
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Any

import numpy as np

__all__ = ["seqaij_csr"]

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
