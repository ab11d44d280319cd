"""Descriptions of Firedrake function spaces that models and checkpoints can carry.

A :class:`SpaceInfo` says everything a model needs to know about a finite element space
without holding the space itself: element family and degree, cell, number of DOF nodes
and components.  It is plain data (JSON-able) so it travels inside checkpoints and
datasets, and it is how the bridge checks that a tensor belongs to a space.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import firedrake as fd

from fe_operators.errors import UnsupportedSpaceError

__all__ = ["SpaceInfo", "space_info", "check_supported"]


@dataclasses.dataclass(frozen=True)
class SpaceInfo:
    """Plain-data description of a (non-mixed) function space.

    Attributes
    ----------
    family
        UFL family name, e.g. ``"Lagrange"``, ``"Discontinuous Lagrange"``.
    degree
        Polynomial degree.
    cell
        UFL cell name, e.g. ``"triangle"``.
    value_shape
        Shape of the values of a function in the space (``()`` for scalars).
    n_nodes
        Number of DOF nodes (rows of the DOF tensor).
    ncomp
        Components per node (1 for scalar spaces).
    gdim
        Geometric dimension of the mesh.
    n_cells
        Number of cells of the mesh.
    """

    family: str
    degree: int
    cell: str
    value_shape: tuple[int, ...]
    n_nodes: int
    ncomp: int
    gdim: int
    n_cells: int

    @property
    def n_dofs(self) -> int:
        """Total scalar DOFs, ``n_nodes * ncomp``."""
        return self.n_nodes * self.ncomp

    @property
    def dof_shape(self) -> tuple[int, ...]:
        """Shape of one sample in the DOF-tensor layout: ``(n_nodes,)`` or ``(n_nodes, ncomp)``."""
        return (self.n_nodes,) if self.value_shape == () else (self.n_nodes, self.ncomp)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary (inverse of :meth:`from_dict`)."""
        d = dataclasses.asdict(self)
        d["value_shape"] = list(self.value_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SpaceInfo":
        """Rebuild from :meth:`to_dict` output."""
        d = dict(d)
        d["value_shape"] = tuple(d["value_shape"])
        return cls(**d)


def check_supported(V: Any) -> None:
    """Raise a clear error unless ``V`` is a non-mixed Firedrake function space.

    Raises
    ------
    TypeError
        ``V`` is not a Firedrake function space.
    UnsupportedSpaceError
        ``V`` is a mixed space.
    """
    if not isinstance(V, fd.functionspaceimpl.WithGeometryBase):
        raise TypeError(f"expected a Firedrake FunctionSpace, got {type(V).__name__}")
    if len(V) > 1:
        raise UnsupportedSpaceError(
            f"mixed function spaces ({len(V)} subspaces) are not supported yet; "
            "pass the subspaces one at a time"
        )


def space_info(V: fd.FunctionSpace) -> SpaceInfo:
    """Describe a Firedrake function space as plain data.

    Parameters
    ----------
    V
        A scalar, vector or tensor function space (not mixed).

    Returns
    -------
    SpaceInfo
    """
    check_supported(V)
    elem = V.ufl_element()
    if elem.sub_elements and len(set(elem.sub_elements)) == 1:
        base = elem.sub_elements[0]  # vector/tensor element: describe the scalar one
    else:
        base = elem
    mesh = V.mesh()
    return SpaceInfo(
        family=str(base.family()),
        degree=int(base.embedded_superdegree),
        cell=str(mesh.ufl_cell().cellname),
        value_shape=tuple(int(s) for s in V.value_shape),
        n_nodes=int(V.dof_dset.size),
        ncomp=int(V.block_size),
        gdim=int(mesh.geometric_dimension),
        n_cells=int(mesh.num_cells()),
    )
