"""Fixed sparse maps on the torch side: :class:`SparseMap` and :func:`scipy_to_torch`.

A :class:`SparseMap` is a fixed FE operator (an input map, a prolongation, a stack of
level operators) held as three CSR tensors, float64 values, so that it travels in a
``state_dict`` and moves with ``.to(device)``; it makes the torch sparse CSR tensor, the
scipy matrix (per dtype) and its transpose once, on first use.  :func:`scipy_to_torch`
converts a scipy matrix into a torch sparse CSR tensor directly.

Nothing here imports Firedrake or PETSc.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import torch

from fe_operators.sparse.warnings import csr_beta_warning_silenced

if TYPE_CHECKING:  # pragma: no cover
    import scipy.sparse

__all__ = ["SparseMap", "row_indices", "scipy_to_torch"]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SparseMap:
    """A fixed sparse linear map between two node sets, applied to every channel.

    Parameters
    ----------
    crow, col, values
        CSR arrays of the ``(n_rows, n_cols)`` matrix: int64 ``(n_rows + 1,)``, int64
        ``(nnz,)``, float64 ``(nnz,)``.
    n_cols
        Number of columns (source nodes).

    Shapes
    ------
    :meth:`apply`: ``(batch, n_cols, c) -> (batch, n_rows, c)``.
    """

    crow: torch.Tensor
    col: torch.Tensor
    values: torch.Tensor
    n_cols: int

    def __post_init__(self) -> None:
        if self.crow.ndim != 1 or self.col.shape != self.values.shape or self.col.ndim != 1:
            raise ValueError(
                f"expected CSR arrays crow (rows + 1,), col and values (nnz,), got "
                f"{tuple(self.crow.shape)}, {tuple(self.col.shape)}, {tuple(self.values.shape)}"
            )
        object.__setattr__(self, "n_cols", int(self.n_cols))
        # derived matrices (per dtype, and the transpose), made once on first use
        object.__setattr__(self, "_cache", {})

    @property
    def n_rows(self) -> int:
        """Number of rows (target nodes)."""
        return int(self.crow.shape[0] - 1)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)``."""
        return self.n_rows, self.n_cols

    @property
    def device(self) -> torch.device:
        """Device of the arrays."""
        return self.values.device

    @classmethod
    def from_scipy(cls, A: "scipy.sparse.spmatrix") -> "SparseMap":
        """Copy a scipy sparse matrix (float64)."""
        import scipy.sparse as sp

        A = sp.csr_matrix(A)
        A.sort_indices()
        return cls(
            torch.from_numpy(np.asarray(A.indptr, dtype=np.int64)),
            torch.from_numpy(np.asarray(A.indices, dtype=np.int64)),
            torch.from_numpy(np.asarray(A.data, dtype=np.float64)),
            int(A.shape[1]),
        )

    def to_scipy(self) -> "scipy.sparse.csr_matrix":
        """The map as a scipy CSR matrix (float64, on the CPU)."""
        import scipy.sparse as sp

        return sp.csr_matrix((self.values.cpu().numpy(), self.col.cpu().numpy(), self.crow.cpu().numpy()),
                             shape=self.shape)

    def matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The map as a torch sparse CSR tensor of ``dtype`` (on the arrays' device), cached."""
        key = ("matrix", dtype)
        if key not in self._cache:
            with csr_beta_warning_silenced():
                self._cache[key] = torch.sparse_csr_tensor(
                    self.crow, self.col, self.values.to(dtype), self.shape, check_invariants=False)
        return self._cache[key]

    def scipy(self, dtype: torch.dtype = torch.float64) -> "scipy.sparse.csr_matrix":
        """The map as a scipy CSR matrix with values of ``dtype`` (CPU maps only), cached."""
        key = ("scipy", dtype)
        if key not in self._cache:
            import scipy.sparse as sp

            np_dtype = {torch.float32: np.float32, torch.float64: np.float64}[dtype]
            self._cache[key] = sp.csr_matrix(
                (self.values.numpy().astype(np_dtype), self.col.numpy(), self.crow.numpy()), shape=self.shape)
        return self._cache[key]

    def transpose(self) -> "SparseMap":
        """The transposed map (CSR of the transpose), cached."""
        if "T" not in self._cache:
            order = torch.argsort(self.col * self.n_rows + row_indices(self.crow), stable=True)
            rows = row_indices(self.crow)
            counts = torch.bincount(self.col, minlength=self.n_cols)
            crow = torch.zeros(self.n_cols + 1, dtype=torch.int64, device=self.device)
            crow[1:] = torch.cumsum(counts, 0)
            T = SparseMap(crow, rows[order], self.values[order], self.n_rows)
            T._cache["T"] = self
            self._cache["T"] = T
        return self._cache["T"]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the map to ``x`` of shape ``(batch, n_cols, c)``, in ``x``'s dtype."""
        b, n, c = x.shape
        cols = x.permute(1, 0, 2).reshape(n, b * c)
        return (self.matrix(x.dtype) @ cols).reshape(self.n_rows, b, c).permute(1, 0, 2)

    def to(self, device: torch.device | str | None) -> "SparseMap":
        """A copy on ``device``."""
        return SparseMap(self.crow.to(device), self.col.to(device), self.values.to(device), self.n_cols)

    def __repr__(self) -> str:
        return f"SparseMap({self.n_rows}x{self.n_cols}, nnz={int(self.values.numel())})"


def row_indices(crow: torch.Tensor) -> torch.Tensor:
    """Row index of every stored entry of a CSR row pointer."""
    n = crow.shape[0] - 1
    return torch.repeat_interleave(torch.arange(n, device=crow.device), crow.diff())


def scipy_to_torch(
    A: "scipy.sparse.spmatrix",
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
    import scipy.sparse as sp

    A = sp.csr_matrix(A)
    with csr_beta_warning_silenced():
        return torch.sparse_csr_tensor(
            torch.from_numpy(np.asarray(A.indptr, dtype=np.int64)),
            torch.from_numpy(np.asarray(A.indices, dtype=np.int64)),
            torch.from_numpy(np.asarray(A.data, dtype=np.float64)).to(dtype),
            size=A.shape,
            device=device,
        )
