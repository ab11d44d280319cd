"""Dirichlet boundary DOFs, liftings and the injection of free DOFs.

With ``n = n_nodes * ncomp`` scalar DOFs in PETSc's interleaved order (``node * ncomp +
component``, the flattening of the DOF-tensor layout), a set of Dirichlet conditions
splits ``range(n)`` into *constrained* and *free* DOFs.  A function satisfying the
conditions is ``u = g_h + Z z``: ``g_h`` (the lifting) holds the boundary data on the
constrained DOFs and zero elsewhere, ``Z`` (the injection) places the free values ``z``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

import firedrake as fd

from fe_operators.errors import BoundaryMarkerError, SpaceMismatchError
from fe_operators.fem.spaces import check_supported
from fe_operators.fem.tensors import dof_shape

__all__ = [
    "check_markers",
    "boundary_nodes",
    "DirichletDofs",
    "free_dofs",
]

Marker = int | str | Sequence[int]


def check_markers(mesh: fd.MeshGeometry, marker: Marker) -> None:
    """Raise :class:`BoundaryMarkerError` unless the mesh has every marker in ``marker``.

    ``"on_boundary"`` (the whole boundary) is always accepted.
    """
    wanted = [marker] if isinstance(marker, str) or np.isscalar(marker) else list(marker)
    have = sorted(int(m) for m in mesh.exterior_facets.unique_markers)
    for m in wanted:
        if isinstance(m, str):
            if m != "on_boundary":
                raise BoundaryMarkerError(m, have)
        elif int(m) not in have:
            raise BoundaryMarkerError(m, have)


def boundary_nodes(V: fd.FunctionSpace, marker: Marker, component: int | None = None) -> np.ndarray:
    """DOF node indices on the boundary part ``marker`` (as ``DirichletBC.nodes``).

    Parameters
    ----------
    V
        A scalar or vector function space.
    marker
        A boundary marker, a sequence of markers, or ``"on_boundary"``.
    component
        For vector spaces: the component constrained (``None``: all of them; the node
        set is the same).

    Returns
    -------
    numpy.ndarray
        Sorted int64 node indices.
    """
    check_supported(V)
    check_markers(V.mesh(), marker)
    W = V if component is None else V.sub(component)
    return np.unique(np.asarray(fd.DirichletBC(W, 0, marker).nodes, dtype=np.int64))


def _bc_flat_dofs(bc: fd.DirichletBC, V: fd.FunctionSpace) -> np.ndarray:
    """Flat (interleaved) DOF indices constrained by one DirichletBC on V or V.sub(i)."""
    W = bc.function_space()
    ncomp = V.block_size
    nodes = np.asarray(bc.nodes, dtype=np.int64)
    comp = getattr(W, "component", None)
    if W.parent is not None and W.parent != V or (W.parent is None and W != V):
        raise SpaceMismatchError("the DirichletBC is not defined on this function space")
    if comp is None:
        comps = np.arange(ncomp, dtype=np.int64)
    else:
        comps = np.array([comp], dtype=np.int64)
    return (nodes[:, None] * ncomp + comps[None, :]).ravel()


def _as_list(bcs: fd.DirichletBC | Iterable[fd.DirichletBC] | None) -> list[fd.DirichletBC]:
    if bcs is None:
        return []
    if isinstance(bcs, fd.DirichletBC):
        return [bcs]
    return list(bcs)


def free_dofs(V: fd.FunctionSpace, bcs: fd.DirichletBC | Iterable[fd.DirichletBC] | None) -> np.ndarray:
    """Flat indices of the DOFs of ``V`` that no condition in ``bcs`` constrains."""
    return DirichletDofs(V, bcs).free


class DirichletDofs:
    """Constrained/free DOF split of a space under Dirichlet conditions.

    Parameters
    ----------
    V
        The (scalar or vector) function space.
    bcs
        Dirichlet conditions on ``V`` or its components ``V.sub(i)``; may be empty.

    Attributes
    ----------
    shape
        DOF-tensor shape of one sample, ``(n_nodes,)`` or ``(n_nodes, ncomp)``.
    constrained, free
        Sorted int64 flat indices (interleaved order) into ``range(n_dofs)``.
    mask
        Bool tensor of shape ``shape``: True on constrained DOFs.
    """

    def __init__(self, V: fd.FunctionSpace, bcs: fd.DirichletBC | Iterable[fd.DirichletBC] | None) -> None:
        check_supported(V)
        self.V = V
        self.bcs = _as_list(bcs)
        for bc in self.bcs:
            check_markers(V.mesh(), bc.sub_domain)
        self.shape = dof_shape(V)
        self.n_dofs = int(np.prod(self.shape))
        parts = [_bc_flat_dofs(bc, V) for bc in self.bcs]
        self.constrained = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        is_c = np.zeros(self.n_dofs, dtype=bool)
        is_c[self.constrained] = True
        self.free = np.flatnonzero(~is_c).astype(np.int64)
        self.mask = torch.from_numpy(is_c.reshape(self.shape))

    @property
    def n_free(self) -> int:
        """Number of free DOFs."""
        return int(self.free.size)

    def lifting(self, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The lifting ``g_h``: boundary data on the constrained DOFs, zero elsewhere.

        Returns
        -------
        torch.Tensor
            Shape ``shape`` (no batch axis), float64 by default.
        """
        g = fd.Function(self.V)
        for bc in self.bcs:
            bc.apply(g)
        return torch.from_numpy(g.dat.data_ro.reshape(self.shape).copy()).to(dtype)

    def inject(self, z: torch.Tensor) -> torch.Tensor:
        """``Z z``: place free values into full DOF tensors (zeros on constrained DOFs).

        Parameters
        ----------
        z
            Shape ``(batch, n_free)``; differentiable.

        Returns
        -------
        torch.Tensor
            Shape ``(batch, *shape)``, same dtype and device as ``z``.
        """
        if z.ndim != 2 or z.shape[1] != self.n_free:
            raise SpaceMismatchError(
                f"expected free values of shape (batch, {self.n_free}), got {tuple(z.shape)}"
            )
        out = z.new_zeros((z.shape[0], self.n_dofs))
        idx = torch.as_tensor(self.free, device=z.device)
        out = out.index_copy(1, idx, z)
        return out.reshape((z.shape[0],) + self.shape)

    def restrict(self, u: torch.Tensor) -> torch.Tensor:
        """``Zᵀ u``: the free values of full DOF tensors of shape ``(batch, *shape)``."""
        if tuple(u.shape[1:]) != self.shape:
            raise SpaceMismatchError(
                f"expected DOF tensors of shape (batch, {', '.join(map(str, self.shape))}), "
                f"got {tuple(u.shape)}"
            )
        flat = u.reshape(u.shape[0], self.n_dofs)
        return flat.index_select(1, torch.as_tensor(self.free, device=u.device))

    def injection_matrix(self) -> sp.csr_matrix:
        """``Z`` as a scipy CSR matrix of shape ``(n_dofs, n_free)`` (ones)."""
        return sp.csr_matrix(
            (np.ones(self.n_free), (self.free, np.arange(self.n_free))),
            shape=(self.n_dofs, self.n_free),
        )
