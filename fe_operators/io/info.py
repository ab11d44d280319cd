"""Summaries of meshes: counts, boundary tags and element quality (``fe-operators mesh info``
prints them: :mod:`fe_operators.cli.mesh`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from fe_operators.errors import MeshReadError
from fe_operators.io.readers import _load

if TYPE_CHECKING:
    import firedrake

__all__ = ["mesh_info", "format_mesh_info", "radius_ratio"]


def radius_ratio(vertices: np.ndarray) -> np.ndarray:
    r"""Radius ratio of simplices, ``d * r_in / r_circ`` (1 for regular, 0 for degenerate).

    Parameters
    ----------
    vertices
        Shape ``(n_cells, d + 1, gdim)``: triangles (d = 2, gdim 2 or 3) or tetrahedra
        (d = 3).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_cells,)``.

    Notes
    -----
    Triangles: :math:`2r/R = (b+c-a)(c+a-b)(a+b-c)/(abc)` from the edge lengths.
    Tetrahedra: :math:`3r/R = 108 V^2 / (S\,|a^2(b\times c)+b^2(c\times a)+c^2(a\times b)|)`
    with edge vectors a, b, c from one vertex, volume V and total face area S
    (from :math:`r = 3V/S` and :math:`R = |\dots|/(12V)`).
    """
    x = np.asarray(vertices, dtype=np.float64)
    if x.shape[1] == 3:
        a = np.linalg.norm(x[:, 1] - x[:, 2], axis=1)
        b = np.linalg.norm(x[:, 2] - x[:, 0], axis=1)
        c = np.linalg.norm(x[:, 0] - x[:, 1], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = (b + c - a) * (c + a - b) * (a + b - c) / (a * b * c)
        return np.nan_to_num(np.clip(q, 0.0, 1.0))
    if x.shape[1] == 4 and x.shape[2] == 3:
        a, b, c = x[:, 1] - x[:, 0], x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]
        vol = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c))) / 6.0
        faces = ((0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3))
        area = sum(0.5 * np.linalg.norm(np.cross(x[:, j] - x[:, i], x[:, k] - x[:, i]),
                                        axis=1) for i, j, k in faces)
        sq = lambda v: np.einsum("ij,ij->i", v, v)[:, None]  # noqa: E731
        big = np.linalg.norm(sq(a) * np.cross(b, c) + sq(b) * np.cross(c, a)
                             + sq(c) * np.cross(a, b), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = 108.0 * vol**2 / (area * big)
        return np.nan_to_num(np.clip(q, 0.0, 1.0))
    raise ValueError(f"expected triangles (n, 3, gdim) or tetrahedra (n, 4, 3), "
                     f"got vertices of shape {x.shape}")


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"min": float(values.min()), "mean": float(values.mean()),
            "max": float(values.max())}


def _geometry(mesh: "firedrake.MeshGeometry") -> dict[str, Any]:
    """Bounding box, cell sizes and (for simplices) radius ratios, vectorised over cells."""
    import firedrake

    coords = mesh.coordinates
    if coords.function_space().ufl_element().embedded_superdegree != 1:
        # Curved (higher-order) geometry: summarise the straight-sided cells at its vertices.
        coords = firedrake.Function(
            firedrake.VectorFunctionSpace(mesh, "CG", 1)
        ).interpolate(firedrake.SpatialCoordinate(mesh))
    x = coords.dat.data_ro.reshape(-1, mesh.geometric_dimension)
    cells = coords.function_space().cell_node_map().values
    xc = x[cells]  # (n_cells, n_vertices, gdim)
    # Cell diameter = longest vertex-to-vertex distance (every pair, not only edges).
    i, j = np.triu_indices(cells.shape[1], 1)
    h = np.linalg.norm(xc[:, i] - xc[:, j], axis=2).max(axis=1)
    out: dict[str, Any] = {
        "bounding_box": [x.min(axis=0).tolist(), x.max(axis=0).tolist()],
        "cell_diameter": _summary(h),
        "quality": None,
    }
    if str(mesh.ufl_cell()) in ("triangle", "tetrahedron"):
        out["quality"] = {"measure": "radius_ratio", **_summary(radius_ratio(xc))}
    return out


def _boundary(mesh: "firedrake.MeshGeometry", names: dict[int, str]) -> list[dict[str, Any]]:
    """Facet counts per marker (exterior and interior), with names where known.

    Counted on the DMPlex labels (Firedrake's ``Face Sets`` also marks the vertices of
    tagged facets, hence the restriction to the facet stratum).  Firedrake's
    ``interior_facets.subset`` is not used: it lists every marker and warns on each
    empty one.
    """
    from firedrake.cython.dmcommon import FACE_SETS_LABEL

    dm = mesh.topology_dm
    f_start, f_end = dm.getHeightStratum(1)
    exterior = dm.getStratumIS("exterior_facets", 1).indices
    if not dm.hasLabel(FACE_SETS_LABEL):
        return []
    rows = []
    for m in dm.getLabelIdIS(FACE_SETS_LABEL).indices:  # one row per tag, a handful
        points = dm.getStratumIS(FACE_SETS_LABEL, int(m)).indices
        facets = points[(points >= f_start) & (points < f_end)]
        n_ext = int(np.isin(facets, exterior).sum())
        if len(facets):
            rows.append({"id": int(m), "name": names.get(int(m)), "exterior_facets": n_ext,
                         "interior_facets": len(facets) - n_ext})
    return sorted(rows, key=lambda r: r["id"])


def mesh_info(spec: "str | os.PathLike[str] | firedrake.MeshGeometry") -> dict[str, Any]:
    """Summarise a mesh: counts, boundary tags, geometry and element quality.

    Parameters
    ----------
    spec
        Anything :func:`fe_operators.io.load_mesh` accepts, or a Firedrake mesh (whose
        boundary names are then unknown).  Specs are loaded on ``COMM_SELF``, so the
        counts are those of the whole mesh.

    Returns
    -------
    dict
        JSON-serialisable: ``source``, ``kind`` (shipped/builtin/file/mesh), ``path``,
        ``cell_type``, ``dimension`` (topological), ``geometric_dimension``, ``cells``,
        ``vertices``, ``exterior_facets``, ``boundary_tags`` (list of ``{id, name,
        exterior_facets, interior_facets}``), ``untagged_exterior_facets``, ``volume``,
        ``bounding_box``, ``cell_diameter``, ``quality`` (``{measure, min, mean,
        max}`` of :func:`radius_ratio`; ``None`` for non-simplex cells) and ``levels``:
        for a level of a ``MeshHierarchy`` (a ``/rK`` spec), ``[{level, cells,
        vertices}, ...]`` from the coarsest up to this mesh, else ``None``.

    Raises
    ------
    MeshReadError
        As :func:`fe_operators.io.load_mesh`.
    """
    import firedrake

    if isinstance(spec, firedrake.mesh.MeshGeometry):
        mesh, kind, source, path, names = spec, "mesh", spec.name, None, {}
    else:
        mesh, src, names = _load(spec, comm=firedrake.COMM_SELF)
        kind, source = src.kind, src.spec
        path = None if src.path is None else str(src.path)
    geometry = _geometry(mesh)  # first: touching the coordinates completes the topology
    tags = _boundary(mesh, names)
    n_ext = int(mesh.exterior_facets.set.size)
    tagged_ext = sum(t["exterior_facets"] for t in tags)  # a facet carries one tag
    volume = float(firedrake.assemble(firedrake.Constant(1.0) * firedrake.dx(domain=mesh)))
    return {
        "source": source,
        "kind": kind,
        "path": path,
        "cell_type": str(mesh.ufl_cell()),
        "dimension": int(mesh.topological_dimension),
        "geometric_dimension": int(mesh.geometric_dimension),
        "cells": int(mesh.num_cells()),
        "vertices": int(mesh.num_vertices()),
        "exterior_facets": n_ext,
        "boundary_tags": tags,
        "untagged_exterior_facets": n_ext - tagged_ext,
        "volume": volume,
        **geometry,
        "levels": _levels(mesh),
    }


def _levels(mesh: "firedrake.MeshGeometry") -> list[dict[str, int]] | None:
    """Cells and vertices of the hierarchy levels up to ``mesh`` (None: not a level)."""
    from firedrake.mg.utils import get_level

    hierarchy, level = get_level(mesh)
    if hierarchy is None:
        return None
    return [{"level": i, "cells": int(m.num_cells()), "vertices": int(m.num_vertices())}
            for i, m in enumerate(hierarchy.meshes[: int(level) + 1])]


def format_mesh_info(info: dict[str, Any]) -> str:
    """Render :func:`mesh_info`'s dictionary as a short human-readable text block."""
    lines = [
        f"mesh        {info['source']}" + (f"  ({info['path']})" if info.get("path") else ""),
        f"cells       {info['cells']} ({info['cell_type']}, dimension "
        f"{info['dimension']}, in {info['geometric_dimension']}D)",
        f"vertices    {info['vertices']}",
        f"volume      {info['volume']:.6g}",
        "bounding    " + " x ".join(f"[{lo:.4g}, {hi:.4g}]"
                                   for lo, hi in zip(*info["bounding_box"])),
        "diameter    min {min:.3g}  mean {mean:.3g}  max {max:.3g}".format(
            **info["cell_diameter"]),
    ]
    q = info.get("quality")
    if q is not None:
        lines.append(f"quality     {q['measure']}: min {q['min']:.3f}  mean {q['mean']:.3f}"
                     f"  max {q['max']:.3f}")
    for lev in info.get("levels") or ():
        lines.append(("levels      " if lev["level"] == 0 else " " * 12)
                     + f"{lev['level']}: {lev['cells']} cells, {lev['vertices']} vertices")
    lines.append(f"boundary    {info['exterior_facets']} exterior facets"
                 + (f", {info['untagged_exterior_facets']} untagged"
                    if info["untagged_exterior_facets"] else ""))
    for t in info["boundary_tags"]:
        where = f"{t['exterior_facets']} facets"
        if t["interior_facets"]:
            where += f" + {t['interior_facets']} interior"
        lines.append(f"  {t['id']:>4}  {t['name'] or '-':<18} {where}")
    return "\n".join(lines)
