"""Mesh specs: what a string names (a shipped mesh, a built-in constructor, a file, ``/rK``).

:func:`resolve_mesh_spec` turns a spec into a :class:`MeshSource` without building a mesh;
the grammar is in :mod:`fe_operators.io.readers`.  The size limit lives here too: a spec
whose estimated cell count exceeds :func:`max_cells` is refused before anything is built.
Imports no Firedrake.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fe_operators.errors import MeshReadError

__all__ = ["BUILTIN_SPECS", "MAX_CELLS", "MeshSource", "max_cells", "resolve_mesh_spec", "shipped_meshes"]

#: The built-in spec forms, for help texts and error messages.
BUILTIN_SPECS: tuple[str, ...] = (
    "unitsquare:N[xM][:quad]",
    "rectangle:LX,LY:N[xM][:quad]",
    "unitcube:N[xMxK]",
    "box:LX,LY,LZ:N[xMxK]",
)

#: The default largest (estimated) number of cells a mesh spec may have; Firedrake needs
#: 0.5-1 GB of memory per million cells (0.8 GB measured for ``unitsquare:710``, 1e6
#: triangles, with a CG1 space and one assembly).  The
#: environment variable ``FE_OPERATORS_MAX_CELLS`` replaces it (:func:`max_cells`).
MAX_CELLS: int = 20_000_000
_MAX_CELLS_ENV = "FE_OPERATORS_MAX_CELLS"

# ``BASE/rK``: the last path component is "r" and then no dot or a number (``x/run.msh``
# is a path, ``x/r1.5`` a bad suffix); K is checked separately so that a malformed suffix
# gets its own message.
_REFINE_SUFFIX = re.compile(r"^(?P<base>.+)/r(?P<k>[^/.]*|[-+0-9.eE]*)$")
# Refinements past this count are too large anyway; capping keeps 4**K cheap to compute.
_MAX_COUNTED_REFINEMENTS = 64

_NAMES_2D = {1: "left", 2: "right", 3: "bottom", 4: "top"}
_NAMES_3D = {1: "left", 2: "right", 3: "front", 4: "back", 5: "bottom", 6: "top"}

@dataclass(frozen=True)
class MeshSource:
    """Where a mesh spec points: a built-in constructor, a shipped file or a user file.

    Parameters
    ----------
    spec
        The spec as given.
    kind
        ``"builtin"``, ``"shipped"`` or ``"file"``.
    path
        The file (``None`` for built-in specs).
    builtin
        For built-in specs: the Firedrake constructor name, its positional arguments and
        its keyword arguments.
    names
        Boundary names known without reading the file, ``{marker: name}``.
    refinements
        ``K`` of a ``/rK`` suffix (the mesh is the finest of a ``MeshHierarchy`` with
        ``K`` refinements of the base); ``None`` without a suffix.
    estimated_cells
        The cell count, known without reading a file (built-in specs, refinements
        included); ``None`` for files.
    """

    spec: str
    kind: str
    path: Path | None = None
    builtin: tuple[str, tuple[Any, ...], dict[str, Any]] | None = None
    names: dict[int, str] = field(default_factory=dict)
    refinements: int | None = None
    estimated_cells: int | None = None

    @property
    def base_spec(self) -> str:
        """The spec without its ``/rK`` suffix (the spec itself when it has none)."""
        if self.refinements is None:
            return self.spec
        return self.spec[: self.spec.rindex("/r")]


def max_cells() -> int:
    """The cell limit in force: ``$FE_OPERATORS_MAX_CELLS`` if set, else :data:`MAX_CELLS`.

    Raises
    ------
    MeshReadError
        The environment variable is set to something other than a positive number.
    """
    text = os.environ.get(_MAX_CELLS_ENV, "").strip()
    if not text:
        return MAX_CELLS
    try:
        value = int(float(text))  # "5e7" is a natural way to write it
    except (ValueError, OverflowError):
        value = 0
    if value <= 0:
        raise MeshReadError(f"{_MAX_CELLS_ENV}={text!r}: expected a positive number of "
                            "cells such as 50000000")
    return value


def _check_size(spec: str, cells: int) -> None:
    """Raise :class:`MeshReadError` if ``cells`` is past :func:`max_cells`."""
    limit = max_cells()
    if cells > limit:
        raise_it = f", or set {_MAX_CELLS_ENV}={cells} to allow it" if cells < 1e12 else ""
        raise MeshReadError(
            f"mesh spec {spec!r} would have about {cells:.3g} cells, more than the limit of "
            f"{limit:.3g} cells (fe_operators.io.specs.MAX_CELLS; Firedrake needs 0.5-1 GB "
            f"of memory per million cells); use a coarser spec{raise_it}"
        )


def _refinement_factor(dim: int, refinements: int | None) -> int:
    """How many cells one cell becomes after ``refinements`` uniform refinements."""
    return (2 ** dim) ** min(refinements or 0, _MAX_COUNTED_REFINEMENTS)


def shipped_meshes() -> dict[str, Path]:
    """The meshes shipped with fe_operators, ``{name: path of the .msh file}``.

    Returns
    -------
    dict
        Sorted by name; see ``meshes/README.md`` for their boundary tags.
    """
    folder = Path(str(resources.files("fe_operators").joinpath("meshes")))
    return {p.stem: p for p in sorted(folder.glob("*.msh"))}


def _counts(text: str, n: int, spec: str) -> tuple[int, ...]:
    """Parse ``N`` or ``NxM[xK]`` into ``n`` positive cell counts."""
    parts = text.split("x")
    if len(parts) not in (1, n) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise MeshReadError(
            f"bad mesh spec {spec!r}: expected {n} positive cell count(s) as N or "
            f"{'x'.join('NMK'[:n])}, got {text!r}"
        )
    return tuple(int(p) for p in parts) * (n if len(parts) == 1 else 1)


def _lengths(text: str, n: int, spec: str) -> tuple[float, ...]:
    """Parse ``LX,LY[,LZ]`` into ``n`` positive lengths."""
    try:
        values = tuple(float(p) for p in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n or not all(v > 0 and np.isfinite(v) for v in values):
        raise MeshReadError(
            f"bad mesh spec {spec!r}: expected {n} positive lengths "
            f"{','.join(['LX', 'LY', 'LZ'][:n])}, got {text!r}"
        )
    return values


def _parse_builtin(spec: str) -> MeshSource:
    """Turn a built-in spec (``unitsquare:8``, ``box:1,1,2:4``, …) into a :class:`MeshSource`."""
    head, *rest = spec.split(":")
    quad = bool(rest) and rest[-1] == "quad" and head in ("unitsquare", "rectangle")
    args = rest[:-1] if quad else rest
    want = {"unitsquare": 1, "unitcube": 1, "rectangle": 2, "box": 2}[head]
    if len(args) != want:
        form = next(f for f in BUILTIN_SPECS if f.startswith(head + ":"))
        raise MeshReadError(f"bad mesh spec {spec!r}: expected {form}")
    kwargs: dict[str, Any] = {"quadrilateral": True} if quad else {}
    if head == "unitsquare":
        ctor, pos, names = "UnitSquareMesh", _counts(args[0], 2, spec), _NAMES_2D
    elif head == "rectangle":
        ctor, names = "RectangleMesh", _NAMES_2D
        pos = _counts(args[1], 2, spec) + _lengths(args[0], 2, spec)
    elif head == "unitcube":
        ctor, pos, names = "UnitCubeMesh", _counts(args[0], 3, spec), _NAMES_3D
    else:
        ctor, names = "BoxMesh", _NAMES_3D
        pos = _counts(args[1], 3, spec) + _lengths(args[0], 3, spec)
    return MeshSource(spec, "builtin", builtin=(ctor, pos, kwargs), names=dict(names),
                      estimated_cells=_builtin_cells(ctor, pos, quad))


def _builtin_cells(ctor: str, pos: tuple[Any, ...], quad: bool) -> int:
    """Cells of a built-in mesh: 2 triangles (or 1 quad) per square, 6 tets per cube."""
    if ctor in ("UnitSquareMesh", "RectangleMesh"):
        return int(pos[0]) * int(pos[1]) * (1 if quad else 2)
    return 6 * int(pos[0]) * int(pos[1]) * int(pos[2])


def resolve_mesh_spec(spec: str | os.PathLike[str]) -> MeshSource:
    """Decide what a mesh spec refers to, without reading any file.

    Parameters
    ----------
    spec
        A shipped mesh name, a built-in spec or a path, optionally with a ``/rK``
        refinement suffix (see the module docstring).  A :class:`os.PathLike` is always
        a path, without suffix.

    Returns
    -------
    MeshSource

    Raises
    ------
    MeshReadError
        A malformed built-in spec or refinement suffix, a name that is neither shipped
        nor an existing file, or a built-in spec past the cell limit (:func:`max_cells`).
    """
    text = os.fspath(spec)
    m = _REFINE_SUFFIX.match(text)
    if isinstance(spec, os.PathLike) or m is None or Path(text).expanduser().is_file():
        source = _resolve_base(spec)
    else:
        k = m["k"]
        if re.fullmatch(r"[0-9]+", k) is None:
            raise MeshReadError(
                f"bad mesh spec {text!r}: expected a refinement suffix /rK with K a "
                f"non-negative integer (e.g. 'plate_holes/r2'), got '/r{k}' (and no file "
                f"{text!r} exists)"
            )
        base = _resolve_base(m["base"])
        cells = None
        if base.builtin is not None:
            dim = 2 if base.builtin[0] in ("UnitSquareMesh", "RectangleMesh") else 3
            cells = base.estimated_cells * _refinement_factor(dim, int(k))
        source = dataclasses.replace(base, spec=text, refinements=int(k), estimated_cells=cells)
    if source.estimated_cells is not None:
        _check_size(text, source.estimated_cells)
    return source


def _resolve_base(spec: str | os.PathLike[str]) -> MeshSource:
    """:func:`resolve_mesh_spec` of a spec without refinement suffix."""
    text = os.fspath(spec)
    head = text.split(":", 1)[0]
    if not isinstance(spec, os.PathLike) and ":" in text and head in (
        "unitsquare", "rectangle", "unitcube", "box"
    ):
        return _parse_builtin(text)
    shipped = shipped_meshes()
    if not isinstance(spec, os.PathLike) and text in shipped:
        return MeshSource(text, "shipped", path=shipped[text])
    path = Path(text).expanduser()
    if path.is_file():
        return MeshSource(text, "file", path=path)
    if path.exists():
        raise MeshReadError(f"cannot read mesh {text!r}: not a regular file")
    if isinstance(spec, os.PathLike) or path.suffix or os.sep in text:
        raise MeshReadError(f"cannot read mesh file {text!r}: no such file")
    raise MeshReadError(
        f"unknown mesh {text!r}: not a shipped mesh ({', '.join(shipped)}), "
        f"a built-in spec ({', '.join(BUILTIN_SPECS)}) or an existing file"
    )
