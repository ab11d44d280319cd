"""Load a Firedrake mesh from a shipped name, a built-in spec, or any file meshio reads.

Spec grammar (:func:`load_mesh`)
--------------------------------
``NAME``
    A mesh shipped with fe_operators (:func:`shipped_meshes`), e.g. ``plate_holes``.
``unitsquare:N`` | ``unitsquare:NxM`` [``:quad``]
    ``UnitSquareMesh(N, N)`` / ``UnitSquareMesh(N, M)``; ``:quad`` for quadrilaterals.
``rectangle:LX,LY:N`` | ``rectangle:LX,LY:NxM`` [``:quad``]
    ``RectangleMesh(N, M, LX, LY)``.
``unitcube:N`` | ``unitcube:NxMxK``
    ``UnitCubeMesh(N, N, N)`` / ``UnitCubeMesh(N, M, K)``.
``box:LX,LY,LZ:N`` | ``box:LX,LY,LZ:NxMxK``
    ``BoxMesh(N, M, K, LX, LY, LZ)``.
``PATH``
    A file.  Gmsh ``.msh`` files of version 2.2 or 4.1 are read by ``firedrake.Mesh``
    directly; any other format meshio reads (``.vtu``, ``.vtk``, ``.xdmf``, ``.med``,
    ``.mesh``, older ``.msh`` …) is read by meshio and converted.  In every format the
    cells must be linear (curved, higher-order cells such as ``triangle6`` are refused:
    export linear elements), and a 2D mesh must lie in a plane ``z = const`` (a tilted
    or curved surface in 3D is refused rather than flattened onto the xy-plane).
``SPEC/rK``
    Any of the above refined uniformly ``K`` times (``K >= 0``): the finest mesh of
    ``firedrake.MeshHierarchy(load_mesh(SPEC), K)``, e.g. ``plate_holes/r2``,
    ``unitsquare:8/r3``, ``path/to/file.msh/r1``.  The mesh is a level of that hierarchy
    (``firedrake.mg.utils.get_level(mesh)`` gives it and the level; ``/r0`` is the base
    mesh as a one-level hierarchy), which is what multigrid needs.  Each refinement
    splits a triangle into 4 and a tetrahedron into 8; new vertices lie on the coarse
    cells' straight edges, so a curved boundary keeps the base mesh's polygon.  A path
    to an existing file is always that file, even if it ends in ``/rK``.

Validation: before PETSc reads a file, its cells are checked
(:func:`fe_operators.io.validate.validate_cells`): a vertex index out of range, a
non-finite coordinate of a vertex a cell uses, a cell that lists a vertex twice or a cell
of zero area (volume in 3D) is refused with a :class:`MeshReadError` naming the file and
the first such cell.  Cells of either orientation are valid.

Size limit: a spec whose estimated cell count (the built-in counts, or the base file's
cells, times ``4**K`` in 2D and ``8**K`` in 3D) exceeds :data:`MAX_CELLS` (2e7 cells,
some 10-20 GB of memory in Firedrake) is refused with a :class:`MeshReadError`: a
built-in spec before any mesh is built, a file with ``/rK`` after reading the base file
and before refining it (a file without suffix is read as it is).  Set the environment
variable ``FE_OPERATORS_MAX_CELLS`` to another limit to change it.

Boundary markers of the built-in specs are Firedrake's: 1 left (x = 0), 2 right, 3 bottom
(y = 0), 4 top in 2D; 1 left (x = 0), 2 right, 3 front (y = 0), 4 back, 5 bottom (z = 0),
6 top in 3D.  The shipped meshes follow the same convention where it applies.

Tags of converted files are taken from the first of the cell-data arrays
``gmsh:physical``, ``medit:ref``, ``CellEntityIds``, ``cell_tags`` present on the facet
cells (and on the cells, which become Firedrake's cell subdomain ids); names from meshio's
``field_data`` (gmsh physical names).  Formats that carry no facet cells (most ``.vtu``
files not written from a tagged mesh) give a mesh without boundary markers.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fe_operators.errors import MeshReadError
from fe_operators.io.validate import validate_cells

if TYPE_CHECKING:  # Firedrake is imported lazily: it is slow to import.
    import firedrake
    import meshio

__all__ = [
    "load_mesh",
    "load_hierarchy",
    "shipped_meshes",
    "BUILTIN_SPECS",
    "MAX_CELLS",
    "MeshSource",
    "max_cells",
    "resolve_mesh_spec",
]

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

# Gmsh versions PETSc's DMPlex reader understands; other versions go through meshio.
_PETSC_GMSH_VERSIONS = ("2.2", "4.1")

# meshio cell type -> (topological dimension, facet cell type, gmsh element type).
_CELLS = {
    "triangle": (2, "line", 2),
    "quad": (2, "line", 3),
    "tetra": (3, "triangle", 4),
    "hexahedron": (3, "quad", 5),
}
_GMSH_FACET_TYPE = {"line": 1, "triangle": 2, "quad": 3}
# Cell-data keys that carry integer region tags, in order of preference.
_TAG_KEYS = ("gmsh:physical", "medit:ref", "CellEntityIds", "cell_tags")


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
            f"{limit:.3g} cells (fe_operators.io.readers.MAX_CELLS; Firedrake needs 0.5-1 GB "
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


def _gmsh_version(path: Path) -> str:
    """The version of a gmsh file from its ``$MeshFormat`` header (MeshReadError if none)."""
    with open(path, "rb") as fh:
        head = fh.read(256).split(b"\n")
    if len(head) < 2 or head[0].strip() != b"$MeshFormat":
        raise MeshReadError(f"cannot read mesh file '{path}': not a gmsh file "
                            "(no $MeshFormat header)")
    fields = head[1].split()
    try:
        return f"{float(fields[0]):.1f}"
    except (IndexError, ValueError):
        raise MeshReadError(f"cannot read mesh file '{path}': bad $MeshFormat "
                            f"line {head[1][:40]!r}") from None


def physical_names(path: Path) -> dict[tuple[int, int], str]:
    """The ``$PhysicalNames`` of a gmsh file, ``{(dim, id): name}`` (empty if none).

    Only the file's header is scanned: the section comes before the nodes.
    """
    names: dict[tuple[int, int], str] = {}
    with open(path, "rb") as fh:
        inside = False
        for raw in fh:
            line = raw.decode("utf-8", "replace").strip()
            if line == "$PhysicalNames":
                inside = True
            elif line == "$EndPhysicalNames" or line in ("$Nodes", "$Entities"):
                break
            elif inside:
                m = re.match(r'(\d+)\s+(\d+)\s+"(.*)"', line)
                if m:
                    names[(int(m[1]), int(m[2]))] = m[3]
    return names


def _gmsh_points(path: Path) -> np.ndarray:
    """The node coordinates ``(n_nodes, 3)`` of a gmsh 2.2 or 4.1 file (ASCII or binary).

    Only the ``$Nodes`` section is parsed (numpy, one pass): PETSc's reader keeps just
    ``x, y`` of a 2D mesh's nodes, so ``z`` must be looked at separately.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    head = data[: data.find(b"$EndMeshFormat")].split()
    version, binary, size_t = head[1].decode(), head[2] == b"1", int(head[3])
    start = data.find(b"\n", data.find(b"\n$Nodes") + 1) + 1
    end = data.find(b"$EndNodes", start)
    if start <= 0 or end < 0:
        raise MeshReadError(f"cannot read mesh file '{path}': no $Nodes section")
    section = data[start:end]
    if version.startswith("2"):
        line_end = section.find(b"\n")
        n = int(section[:line_end])
        if not binary:
            return np.fromstring(section[line_end + 1:], sep=" ")[: 4 * n].reshape(n, 4)[:, 1:]
        records = np.frombuffer(section, dtype=[("i", "<i4"), ("x", "<f8", (3,))], count=n, offset=line_end + 1)
        return np.array(records["x"])
    if not binary:  # numEntityBlocks numNodes min max, then per block: dim tag parametric n, tags, coords
        values = np.fromstring(section, sep=" ")
        n_blocks, pos, parts = int(values[0]), 4, []
        for _ in range(n_blocks):  # blocks are geometric entities (a handful), not nodes
            dim, parametric, n = int(values[pos]), int(values[pos + 2]), int(values[pos + 3])
            width = 3 + (dim if parametric else 0)
            pos += 4 + n
            parts.append(values[pos:pos + width * n].reshape(n, width)[:, :3])
            pos += width * n
        return np.concatenate(parts) if parts else np.zeros((0, 3))
    size = np.dtype(f"<u{size_t}")
    n_blocks = int(np.frombuffer(section, size, count=1)[0])
    pos, parts = 4 * size_t, []
    for _ in range(n_blocks):
        dim, _tag, parametric = np.frombuffer(section, "<i4", count=3, offset=pos)
        n = int(np.frombuffer(section, size, count=1, offset=pos + 12)[0])
        width = 3 + (int(dim) if parametric else 0)
        pos += 12 + size_t + n * size_t
        parts.append(np.frombuffer(section, "<f8", count=n * width, offset=pos).reshape(n, width)[:, :3])
        pos += 8 * n * width
    return np.concatenate(parts) if parts else np.zeros((0, 3))


def _planar(points: np.ndarray, where: str) -> np.ndarray:
    """The ``(x, y)`` of a 2D mesh's points, refused unless they lie in a plane ``z = const``.

    A 2D mesh in 3D (a tilted plane, a curved surface) would otherwise be flattened onto
    the xy-plane, changing its lengths and areas without a word.
    """
    if points.shape[1] == 3:
        z = points[:, 2]
        scale = max(float(np.ptp(points[:, :2])) if len(points) else 0.0, 1.0)
        if len(points) and np.ptp(z) > 1e-12 * scale:
            raise MeshReadError(
                f"cannot read mesh file '{where}': its 2D cells do not lie in a plane z = const "
                f"(z ranges from {z.min():.6g} to {z.max():.6g}): a surface in 3D, tilted or "
                "curved, is not supported (it would be flattened onto the xy-plane); rotate the "
                "mesh into the xy-plane (z = 0) before exporting it"
            )
    return points[:, :2]


#: higher-order meshio cell types, by the linear type they curve
_SECOND_ORDER = {
    "line3": "line", "triangle6": "triangle", "triangle7": "triangle", "triangle10": "triangle",
    "quad8": "quad", "quad9": "quad", "tetra10": "tetra", "hexahedron20": "hexahedron",
    "hexahedron27": "hexahedron", "wedge15": "wedge", "pyramid13": "pyramid",
}


def _higher_order_error(where: str, types: list[str]) -> MeshReadError:
    """The error for a file of curved (second- or higher-order) cells."""
    return MeshReadError(
        f"cannot read mesh file '{where}': it has higher-order (curved) cells "
        f"({', '.join(types)}), which are not supported; export the mesh with linear "
        "elements (gmsh: Mesh.ElementOrder = 1, i.e. `gmsh -order 1`, or do not call "
        "SetOrder 2)"
    )


def _cell_tags(mesh: "meshio.Mesh", block: int) -> np.ndarray | None:
    """Integer region tags of cell block ``block`` from the first known tag key, or None."""
    for key in _TAG_KEYS:
        if key in mesh.cell_data:
            tags = np.asarray(mesh.cell_data[key][block]).reshape(-1)
            if np.issubdtype(tags.dtype, np.number):
                return tags.astype(np.int64)
    return None


@dataclass
class _Converted:
    """A meshio mesh reduced to what a Firedrake mesh needs."""

    points: np.ndarray  # (n_points, gdim), float64
    blocks: list[tuple[int, np.ndarray, np.ndarray | None]]  # (gmsh type, conn, tags)
    names: dict[tuple[int, int], str]


def _convert(mesh: "meshio.Mesh", where: str) -> _Converted:
    """Keep the top-dimensional cells and the tagged facets of a meshio mesh.

    Points no cell uses are dropped (PETSc would make them isolated vertices); a 2D mesh
    must lie in a plane z = const, which is dropped; curved (higher-order) cells are refused.
    """
    types = [b.type for b in mesh.cells]
    curved = sorted({t for t in types if t in _SECOND_ORDER})
    if curved:
        raise _higher_order_error(where, curved)
    known = [t for t in types if t in _CELLS]
    if not known:
        found = ", ".join(sorted(set(types))) or "none"
        raise MeshReadError(f"cannot read mesh file '{where}': no supported cells "
                            f"(triangle, quad, tetra, hexahedron); found {found}")
    dim = max(_CELLS[t][0] for t in known)
    cell_types = sorted({t for t in known if _CELLS[t][0] == dim})
    # Vertices and edges are harmless extras; anything else (wedges, quadratic cells) is not.
    others = sorted({t for t in types if t not in _CELLS and t not in ("vertex", "line")})
    if len(cell_types) > 1 or others:
        raise MeshReadError(f"cannot read mesh file '{where}': unsupported cell types "
                            f"{', '.join(cell_types[1:] + others)} (only one linear "
                            "cell type per mesh)")
    cell_type = cell_types[0]
    facet_type = _CELLS[cell_type][1]
    cells = [(i, b.data) for i, b in enumerate(mesh.cells) if b.type == cell_type]
    facets = [(i, b.data) for i, b in enumerate(mesh.cells) if b.type == facet_type]
    # Before any point is indexed: an index out of range would wrap or raise below.
    validate_cells(mesh.points, np.concatenate([np.asarray(c) for _, c in cells]),
                   source=where, cell_type=cell_type)
    blocks: list[tuple[int, np.ndarray, np.ndarray | None]] = []
    for i, conn in cells:
        blocks.append((_CELLS[cell_type][2], conn, _cell_tags(mesh, i)))
    for i, conn in facets:
        tags = _cell_tags(mesh, i)
        if tags is not None:  # untagged facets carry no information for Firedrake
            blocks.append((_GMSH_FACET_TYPE[facet_type], conn, tags))

    # Renumber to the points the cells use (vectorised: one unique + one lookup table).
    used = np.unique(np.concatenate([c.reshape(-1) for _, c in cells]))
    points = np.asarray(mesh.points, dtype=np.float64)
    if dim == 2:  # only the points of cells count: gmsh files may hold others
        points = np.zeros((len(points), 2))
        points[used] = _planar(np.asarray(mesh.points, dtype=np.float64)[used], where)
    if points.shape[1] != dim:
        raise MeshReadError(f"cannot read mesh file '{where}': {dim}D cells with "
                            f"{points.shape[1]}D points")
    new = np.full(len(points), -1, dtype=np.int64)
    new[used] = np.arange(len(used))
    renumbered = []
    for gtype, conn, tags in blocks:
        conn = new[np.asarray(conn, dtype=np.int64)]
        keep = (conn >= 0).all(axis=1)  # a facet on an unused point belongs to no cell
        renumbered.append((gtype, conn[keep], None if tags is None else tags[keep]))
    names = {(int(v[1]), int(v[0])): str(k) for k, v in mesh.field_data.items()
             if np.size(v) >= 2}
    return _Converted(points[used], renumbered, names)


def _write_gmsh22(path: Path, conv: _Converted) -> None:
    """Write ``conv`` as a binary gmsh 2.2 file (elements without tags get no tag fields).

    meshio's own writer pads missing tags with zeros, which PETSc would turn into a
    spurious subdomain 0.
    """
    pts = np.zeros((len(conv.points), 3))
    pts[:, : conv.points.shape[1]] = conv.points
    nodes = np.empty(len(pts), dtype=[("i", "<i4"), ("x", "<f8", (3,))])
    nodes["i"] = np.arange(1, len(pts) + 1)
    nodes["x"] = pts
    with open(path, "wb") as fh:
        fh.write(b"$MeshFormat\n2.2 1 8\n")
        np.array([1], dtype="<i4").tofile(fh)
        fh.write(b"\n$EndMeshFormat\n")
        if conv.names:
            fh.write(f"$PhysicalNames\n{len(conv.names)}\n".encode())
            for (dim, pid), name in sorted(conv.names.items()):
                fh.write(f'{dim} {pid} "{name}"\n'.encode())
            fh.write(b"$EndPhysicalNames\n")
        fh.write(f"$Nodes\n{len(pts)}\n".encode())
        nodes.tofile(fh)
        fh.write(b"\n$EndNodes\n")
        total = sum(len(conn) for _, conn, _ in conv.blocks)
        fh.write(f"$Elements\n{total}\n".encode())
        first = 1
        for gtype, conn, tags in conv.blocks:
            n = len(conn)
            ntags = 0 if tags is None else 2  # physical, elementary (= physical)
            np.array([gtype, n, ntags], dtype="<i4").tofile(fh)
            cols = [np.arange(first, first + n)[:, None]]
            if tags is not None:
                cols += [tags[:, None], tags[:, None]]
            cols.append(conn + 1)
            np.hstack(cols).astype("<i4").tofile(fh)
            first += n
        fh.write(b"\n$EndElements\n")


def _default_comm() -> Any:
    from firedrake import COMM_WORLD

    return COMM_WORLD


def _mesh_kwargs(comm: Any, name: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"comm": comm}
    if name is not None:
        kwargs["name"] = name
    return kwargs


def _check_gmsh(path: Path) -> bool:
    """Validate a gmsh file's cells before PETSc reads it; True if it was checked.

    PETSc crashes on a cell that lists a vertex twice and reads non-finite coordinates
    and zero-area cells without a word, so the file is read with meshio first and its
    cells of the top dimension checked (:func:`~fe_operators.io.validate.validate_cells`),
    and a 2D mesh's points checked to lie in a plane ``z = const``.  A file meshio cannot
    read, or one with curved cells, is left to PETSc (False): its failure is explained there.
    """
    try:
        mesh = _meshio_read(path)
    except MeshReadError:
        return False
    types = {b.type for b in mesh.cells}
    known = [t for t in types if t in _CELLS]
    if not known or types & set(_SECOND_ORDER):
        return False
    dim = max(_CELLS[t][0] for t in known)
    used = []
    for cell_type in sorted(t for t in known if _CELLS[t][0] == dim):  # one or two types
        conn = np.concatenate([b.data for b in mesh.cells if b.type == cell_type])
        validate_cells(mesh.points, conn, source=str(path), cell_type=cell_type)
        used.append(conn.reshape(-1))
    if dim == 2:
        _planar(np.asarray(mesh.points, dtype=np.float64)[np.unique(np.concatenate(used))],
                str(path))
    return True


def _read_gmsh(path: Path, comm: Any, name: str | None) -> "firedrake.MeshGeometry":
    """Read a gmsh 2.2/4.1 file with ``firedrake.Mesh`` (PETSc's DMPlex reader).

    Rank 0 first checks the cells (:func:`_check_gmsh`).  PETSc keeps only ``x, y`` of a
    2D mesh's nodes, so for a 2D mesh rank 0 reads the nodes' ``z`` as well and refuses a
    surface that is not in a plane ``z = const`` (in :func:`_check_gmsh`, or after PETSc's
    read if meshio could not read the file).  A failed read is explained as higher-order
    cells when the file has them.
    """
    import firedrake

    error, checked = None, False
    if comm.rank == 0:
        try:
            checked = _check_gmsh(path)
        except MeshReadError as exc:
            error = str(exc)
        except Exception:  # noqa: BLE001 - never leave the other ranks waiting in bcast:
            checked = False  # PETSc reads the file unchecked, as before the check existed
    error, checked = comm.bcast((error, checked), root=0)
    if error is not None:
        raise MeshReadError(error)
    try:
        mesh = firedrake.Mesh(str(path), **_mesh_kwargs(comm, name))
    except Exception as exc:  # PETSc.Error, ValueError, …: all mean a bad file here
        curved = _curved_cell_types(path) if comm.rank == 0 else []
        curved = comm.bcast(curved, root=0)
        if curved:
            raise _higher_order_error(str(path), curved) from exc
        raise MeshReadError(f"cannot read mesh file '{path}': PETSc's gmsh reader failed "
                            f"({_first_line(exc)}); is the file truncated or corrupt?"
                            ) from exc
    if mesh.topological_dimension == 2 and not checked:
        error = None
        if comm.rank == 0:
            try:
                try:
                    points = _gmsh_points(path)
                except Exception:  # noqa: BLE001 - PETSc read the file: let meshio read the nodes
                    points = np.asarray(_meshio_read(path).points, dtype=np.float64)
                _planar(points, str(path))
            except MeshReadError as exc:
                error = str(exc)
        error = comm.bcast(error, root=0)
        if error is not None:
            raise MeshReadError(error)
    return mesh


def _curved_cell_types(path: Path) -> list[str]:
    """Higher-order cell types in a gmsh file (read by meshio; ``[]`` if it cannot)."""
    try:
        mesh = _meshio_read(path)
    except MeshReadError:
        return []
    return sorted({b.type for b in mesh.cells if b.type in _SECOND_ORDER})


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or of its cause's), else its type name."""
    inner: BaseException | None = exc
    while inner is not None:
        text = str(inner).strip()
        if text:
            return text.splitlines()[0]
        inner = inner.__cause__ or inner.__context__
    return type(exc).__name__


def _meshio_read(path: Path) -> "meshio.Mesh":
    """Read ``path`` with meshio's reader for its extension (MeshReadError if none works)."""
    import meshio
    # Not meshio.read: when a reader fails it prints and calls sys.exit(1).
    from meshio._helpers import reader_map

    suffixes = [s.lower() for s in path.suffixes]
    formats: list[str] = []
    for ext in ("".join(suffixes[-2:]), "".join(suffixes[-1:])):
        formats += [f for f in meshio.extension_to_filetypes.get(ext, []) if f not in formats]
    if "gmsh" in formats:  # ".msh" is also ANSYS's; gmsh is far more common
        formats.remove("gmsh")
        formats.insert(0, "gmsh")
    if not formats:
        raise MeshReadError(f"cannot read mesh file '{path}': unsupported format "
                            f"{path.suffix or '(no extension)'!r}; expected gmsh .msh or a "
                            "format meshio reads (.vtu, .vtk, .xdmf, .med, .mesh, …)")
    for fmt in formats:
        try:
            return reader_map[fmt](str(path))
        except Exception as exc:  # readers raise ReadError, XML, struct, h5py errors, …
            failure = exc
    raise MeshReadError(f"cannot read mesh file '{path}' as {' or '.join(formats)}: "
                        f"{_first_line(failure)}") from failure


def _read_meshio(path: Path, comm: Any, name: str | None
                 ) -> tuple["firedrake.MeshGeometry", dict[tuple[int, int], str]]:
    """Read ``path`` with meshio on rank 0, convert via a temporary gmsh 2.2 file."""
    import firedrake

    tmp: str | None = None
    error: str | None = None
    names: dict[tuple[int, int], str] = {}
    cause: BaseException | None = None
    if comm.rank == 0:  # one reader; the mesh is distributed by Firedrake afterwards
        try:
            conv = _convert(_meshio_read(path), str(path))
            names = conv.names
            fd, tmp = tempfile.mkstemp(suffix=".msh", prefix="fe_operators_")
            os.close(fd)
            _write_gmsh22(Path(tmp), conv)
        except MeshReadError as exc:
            error, cause = str(exc), exc.__cause__
        except Exception as exc:  # never leave the other ranks waiting in bcast
            error, cause = f"cannot read mesh file '{path}': {_first_line(exc)}", exc
    error, tmp, names = comm.bcast((error, tmp, names), root=0)
    if error is not None:
        raise MeshReadError(error) from cause
    try:
        return firedrake.Mesh(tmp, **_mesh_kwargs(comm, name)), names
    except Exception as exc:  # a conversion we cannot express in Firedrake
        raise MeshReadError(f"cannot read mesh file '{path}': {_first_line(exc)}") from exc
    finally:
        if comm.rank == 0 and tmp is not None:
            os.unlink(tmp)


def _load(spec: str | os.PathLike[str], comm: Any = None, name: str | None = None
          ) -> tuple["firedrake.MeshGeometry", MeshSource, dict[int, str]]:
    """Load a mesh; also return its source and ``{boundary marker: name}``.

    With a ``/rK`` suffix the mesh is the finest level of a ``MeshHierarchy``.
    """
    source = resolve_mesh_spec(spec)
    comm = _default_comm() if comm is None else comm
    if source.refinements is None:
        mesh, names = _load_base(source, comm, name)
        return mesh, source, names
    base_name = name if name is None or source.refinements == 0 else f"{name}_level0"
    base, names = _load_base(source, comm, base_name)
    hierarchy = _refine(base, source, name)
    return hierarchy[-1], source, names


def _local_cells(mesh: "firedrake.MeshGeometry") -> int:
    """Cells of the mesh's DMPlex on this rank, without building Firedrake's numbering."""
    start, end = mesh.topology_dm.getHeightStratum(0)
    return end - start


def _refine(base: "firedrake.MeshGeometry", source: MeshSource, name: str | None) -> Any:
    """``MeshHierarchy(base, K)``, refused first if the finest level is past the limit.

    With ``name``, the finest mesh is called ``name`` and level ``i`` ``{name}_level{i}``
    (Firedrake's default names otherwise).
    """
    import firedrake

    k = int(source.refinements or 0)
    if source.estimated_cells is None:  # a file: count the base cells, before refining
        dm = base.topology_dm
        cells = base.comm.allreduce(_local_cells(base))  # halo cells, if any, overcount
        _check_size(source.spec, cells * _refinement_factor(dm.getDimension(), k))
    builder = firedrake.Mesh
    if name is not None:
        levels = iter(range(1, k + 1))

        def builder(plex: Any, **kwargs: Any) -> "firedrake.MeshGeometry":
            level = next(levels)
            return firedrake.Mesh(plex, name=name if level == k else f"{name}_level{level}",
                                  **kwargs)
    return firedrake.MeshHierarchy(base, k, mesh_builder=builder)


def _load_base(source: MeshSource, comm: Any, name: str | None
               ) -> tuple["firedrake.MeshGeometry", dict[int, str]]:
    """Load the (unrefined) mesh a source points to, with ``{boundary marker: name}``."""
    import firedrake

    if source.builtin is not None:
        ctor, args, kwargs = source.builtin
        mesh = getattr(firedrake, ctor)(*args, **kwargs, **_mesh_kwargs(comm, name))
        return mesh, dict(source.names)
    path = source.path
    assert path is not None  # resolve_mesh_spec gives a path for non-builtins
    version = None
    if path.suffix.lower() == ".msh":
        version = _gmsh_version(path)
    if version in _PETSC_GMSH_VERSIONS:
        mesh = _read_gmsh(path, comm, name)
        all_names = physical_names(path)
    else:
        mesh, all_names = _read_meshio(path, comm, name)
    fdim = mesh.topological_dimension - 1
    names = {pid: n for (d, pid), n in sorted(all_names.items()) if d == fdim}
    return mesh, names


def load_mesh(spec: str | os.PathLike[str], *, comm: Any = None,
              name: str | None = None) -> "firedrake.MeshGeometry":
    """Load a Firedrake mesh from a shipped name, a built-in spec or a mesh file.

    Parameters
    ----------
    spec
        ``"plate_holes"`` (a shipped mesh, :func:`shipped_meshes`), ``"unitsquare:64"``,
        ``"unitsquare:64x32:quad"``, ``"rectangle:2,1:32x16"``, ``"unitcube:8"``,
        ``"box:1,1,2:4x4x8"``, or a path to a gmsh file or any file meshio reads; any
        of them with a refinement suffix ``/rK`` (``"plate_holes/r2"``) for the finest
        mesh of a ``MeshHierarchy``.  A :class:`os.PathLike` is always taken as a path.
        See the module docstring.
    comm
        MPI communicator (default: ``firedrake.COMM_WORLD``).  Files are read on rank 0
        and distributed.
    name
        The Firedrake mesh name (default: Firedrake's).

    Returns
    -------
    firedrake.MeshGeometry
        Physical facet ids of the file (gmsh physical groups) are its boundary markers,
        ``mesh.exterior_facets.unique_markers``.

    Raises
    ------
    MeshReadError
        Unknown name, malformed spec, missing file, or a file that is corrupt or of an
        unsupported format or cell type, or whose cells are invalid (a vertex listed
        twice, a non-finite coordinate, zero area or volume: the message names the
        first such cell); the one-line message names the file and the reason, and the
        original exception is chained.  Also a spec whose estimated
        cell count is past :func:`max_cells`, before anything is built.

    Examples
    --------
    >>> mesh = load_mesh("channel_cylinder")                      # doctest: +SKIP
    >>> sorted(mesh.exterior_facets.unique_markers)               # doctest: +SKIP
    [1, 2, 3, 4]
    """
    return _load(spec, comm, name)[0]


def load_hierarchy(spec: str | os.PathLike[str], *, comm: Any = None,
                   name: str | None = None) -> tuple[Any, "firedrake.MeshGeometry"]:
    """The ``MeshHierarchy`` of a refined spec, and its finest mesh.

    Parameters
    ----------
    spec
        As :func:`load_mesh`.  ``"plate_holes/r2"`` gives a three-level hierarchy; a spec
        without suffix is taken as ``/r0`` (its mesh as a one-level hierarchy).
    comm, name
        As :func:`load_mesh` (``name`` is the finest mesh's).

    Returns
    -------
    tuple
        ``(hierarchy, finest)``: ``hierarchy[0]`` is the base mesh, ``hierarchy[-1] is
        finest``; ``finest`` is what ``load_mesh(spec)`` returns for a ``/rK`` spec.
        Use the hierarchy with Firedrake's own multigrid (``"pc_type": "mg"``) or
        :func:`fe_operators.fem.hierarchy.hierarchy_operators`.

    Raises
    ------
    MeshReadError
        As :func:`load_mesh`.
    """
    from firedrake.mg.utils import get_level

    source = resolve_mesh_spec(spec)
    if source.refinements is None:
        source = dataclasses.replace(source, refinements=0)
        comm = _default_comm() if comm is None else comm
        base, _ = _load_base(source, comm, name)
        finest = _refine(base, source, name)[-1]
    else:
        finest = _load(spec, comm, name)[0]
    return get_level(finest)[0], finest
