"""The exceptions fe_operators raises on bad input.

Every error derives from :class:`FEOperatorsError` and from the built-in exception a
Python user would expect (``ValueError``, ``TypeError``, ``NotImplementedError``), so
``except ValueError`` keeps working.  Messages say what was expected, what was given,
and where possible how to fix it.
"""

from __future__ import annotations

__all__ = [
    "FEOperatorsError",
    "SpaceMismatchError",
    "UnsupportedSpaceError",
    "BoundaryMarkerError",
    "PointsOutsideMeshError",
    "MeshReadError",
    "NoHierarchyError",
]


class FEOperatorsError(Exception):
    """Base class of every error raised by fe_operators."""


class SpaceMismatchError(FEOperatorsError, ValueError):
    """A tensor, Function or operator does not match the function space it is used with."""


class UnsupportedSpaceError(FEOperatorsError, NotImplementedError):
    """The function space is of a kind fe_operators does not support (yet)."""


class BoundaryMarkerError(FEOperatorsError, ValueError):
    """A boundary marker that the mesh does not have.

    Parameters
    ----------
    marker
        The marker that was asked for.
    available
        The markers the mesh does have.
    """

    def __init__(self, marker: object, available: "list[int] | tuple[int, ...]") -> None:
        self.marker = marker
        self.available = tuple(int(m) for m in available)
        super().__init__(str(self))

    def __str__(self) -> str:
        return (
            f"the mesh has no boundary marker {self.marker!r}; "
            f"its boundary markers are {list(self.available)}"
        )


class PointsOutsideMeshError(FEOperatorsError, ValueError):
    """Target points of a transfer lie outside the source mesh."""


class MeshReadError(FEOperatorsError, ValueError):
    """A mesh file that cannot be read (missing, corrupt or unsupported)."""


class NoHierarchyError(SpaceMismatchError):
    """A mesh that is no level of a mesh hierarchy, where multigrid needs one."""
