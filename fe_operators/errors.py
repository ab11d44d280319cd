"""The exceptions fe_operators raises on bad input.

Every error derives from :class:`FEOperatorsError` and from the built-in exception a
Python user would expect (``ValueError``, ``TypeError``, ``NotImplementedError``), so
``except ValueError`` keeps working.  Messages say what was expected, what was given,
and where possible how to fix it.
"""

from __future__ import annotations

import os

__all__ = [
    "FEOperatorsError",
    "ConfigError",
    "SpaceMismatchError",
    "UnsupportedSpaceError",
    "BoundaryMarkerError",
    "PointsOutsideMeshError",
    "MeshReadError",
    "NoHierarchyError",
    "BoundaryDataError",
]


class FEOperatorsError(Exception):
    """Base class of every error raised by fe_operators."""


class ConfigError(FEOperatorsError, ValueError):
    """A configuration or option with an unknown key, a wrong type or an invalid value.

    Raised for run configurations (``fe-operators train --config``), model and processor
    options given in Python, and every other typed option schema
    (:mod:`fe_operators.options`).

    Parameters
    ----------
    key
        Dotted path of the offending key, e.g. ``"train.lr"``; ``""`` for the whole file.
    message
        What was expected and what was given, e.g. ``"expected float, got str 'abc'"``.
    source
        The configuration file, if the configuration came from one.
    """

    def __init__(self, key: str, message: str, source: "str | os.PathLike[str] | None" = None) -> None:
        self.key = key
        self.message = message
        self.source = None if source is None else str(source)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.key}: {self.message}" if self.key else f"{where}{self.message}"


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


class BoundaryDataError(FEOperatorsError, ValueError):
    """Dirichlet data that are not an affine map of a problem's inputs.

    SPON lifts input-dependent boundary data through a fixed sparse map
    (:func:`fe_operators.fem.lifting.dirichlet_map`); data that depend on the inputs in
    another way (nonlinearly, or through Functions computed from them) cannot be lifted
    exactly.
    """
