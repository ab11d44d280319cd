"""Sparse matrices across PETSc, scipy and torch (docs/design.md §2.2).

One module per job:

* :mod:`~fe_operators.sparse.petsc` — PETSc matrices as scipy CSR: an exact copy
  (:func:`petsc_to_scipy`) or a zero-copy view of a ``seqaij`` matrix's arrays
  (:func:`seqaij_csr`);
* :mod:`~fe_operators.sparse.maps` — :class:`SparseMap`, a fixed sparse map as CSR
  tensors (what mesh contexts and preconditioners hold), and :func:`scipy_to_torch`;
* :mod:`~fe_operators.sparse.spmm` — :func:`spmm`, ``A @ X`` for a fixed map,
  differentiable in ``X``, with the fastest kernel of the device;
* :mod:`~fe_operators.sparse.warnings` — :func:`csr_beta_warning_silenced`, torch's
  "beta" warning silenced where the library creates CSR tensors;
* :mod:`~fe_operators.sparse.kernels` — compiled (numba) CSR products and fused
  quadratic forms of a batch (the FE norms' CPU kernels).

Importing this package imports neither Firedrake nor PETSc (petsc4py and scipy load in
the functions that need them), and the numba kernels load on first use of their names.
"""

from __future__ import annotations

from typing import Any

from fe_operators.sparse.maps import SparseMap, scipy_to_torch
from fe_operators.sparse.petsc import petsc_to_scipy, seqaij_csr
from fe_operators.sparse.spmm import spmm
from fe_operators.sparse.warnings import csr_beta_warning_silenced

__all__ = [
    "SparseMap", "scipy_to_torch", "petsc_to_scipy", "seqaij_csr", "spmm", "csr_beta_warning_silenced",
    "csr_matmul_rows", "csr_quadratic", "csr_quadratic_diff", "csr_mm",
]

_KERNELS = ("csr_matmul_rows", "csr_quadratic", "csr_quadratic_diff", "csr_mm")


def __getattr__(name: str) -> Any:
    # numba compiles and loads on first use, so importing the package stays light
    if name in _KERNELS:
        from fe_operators.sparse import kernels

        return getattr(kernels, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
