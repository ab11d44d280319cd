"""Reading mesh files: gmsh files PETSc reads directly, every other format through meshio.

A gmsh 2.2/4.1 file is checked (:func:`fe_operators.io.validate.validate_cells`) and then
read by ``firedrake.Mesh``; any other file is read by meshio, checked, converted to a
gmsh 2.2 file with its tags and read the same way.  Used by :mod:`fe_operators.io.readers`.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fe_operators.errors import MeshReadError
from fe_operators.io.validate import validate_cells

if TYPE_CHECKING:  # Firedrake is imported lazily: it is slow to import.
    import firedrake
    import meshio

__all__ = ["physical_names"]

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
