"""Regenerate the meshes shipped with fe_operators (``fe_operators/meshes/*.msh``).

Run ``python meshes/make_meshes.py`` (needs the ``gmsh`` wheel from PyPI; no display).
Every mesh is written in gmsh's MSH 2.2 ASCII format, which both ``firedrake.Mesh`` (through
PETSc's DMPlex reader) and meshio read.  The integer ids of the gmsh physical groups become
Firedrake's boundary markers (``mesh.exterior_facets.unique_markers``); their names are kept
in the file's ``$PhysicalNames`` section, where ``fe_operators.io.mesh_info`` finds them.

Conventions shared by all meshes (and by the built-in specs of ``fe_operators.io.load_mesh``):
the axis-aligned sides of a rectangle are 1 left (x = x0), 2 right, 3 bottom (y = y0), 4 top;
the faces of a box are 1 left (x = x0), 2 right, 3 front (y = y0), 4 back, 5 bottom
(z = z0), 6 top; every domain (the cells) is the physical group 100 ``domain``.

The output is deterministic: one thread, fixed algorithms, fixed sizes.  ``--check``
regenerates into a temporary folder and fails if any file differs from the shipped one.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import gmsh

# The .msh files live inside the package so that an installed fe_operators finds them.
OUT_DIR = Path(__file__).resolve().parent.parent / "fe_operators" / "meshes"
DOMAIN_ID = 100


def _tag_curves(groups: dict[str, tuple[int, list[int]]], dim: int) -> None:
    """Create the named physical groups ``{name: (id, entity tags)}`` of dimension ``dim``."""
    for name, (pid, tags) in groups.items():
        gmsh.model.addPhysicalGroup(dim, sorted(tags), tag=pid, name=name)


def _boundary_by_bbox(dim: int, test: Callable[[list[float]], bool]) -> list[int]:
    """Entity tags of dimension ``dim`` whose bounding box passes ``test``."""
    return [tag for (_, tag) in gmsh.model.getEntities(dim)
            if test(list(gmsh.model.getBoundingBox(dim, tag)))]


def _close(a: float, b: float, tol: float = 1e-5) -> bool:
    return abs(a - b) < tol


def _size_field(curves: list[int], h_min: float, h_max: float, d_min: float,
                d_max: float, dim: int = 1) -> None:
    """Grade the mesh size from ``h_min`` near the given entities to ``h_max`` far away."""
    occ = gmsh.model.mesh.field
    dist = occ.add("Distance")
    occ.setNumbers(dist, "CurvesList" if dim == 1 else "SurfacesList", curves)
    occ.setNumber(dist, "Sampling", 100)
    thr = occ.add("Threshold")
    occ.setNumber(thr, "InField", dist)
    occ.setNumber(thr, "SizeMin", h_min)
    occ.setNumber(thr, "SizeMax", h_max)
    occ.setNumber(thr, "DistMin", d_min)
    occ.setNumber(thr, "DistMax", d_max)
    occ.setAsBackgroundMesh(thr)
    # The background field alone decides the size (no growth from points or curvature).
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)


def lshape() -> None:
    """L-shaped domain (-1, 1)^2 minus [0, 1] x [-1, 0]; re-entrant corner at the origin."""
    occ = gmsh.model.occ
    big = occ.addRectangle(-1, -1, 0, 2, 2)
    cut = occ.addRectangle(0, -1, 0, 1, 1)
    occ.cut([(2, big)], [(2, cut)])
    occ.synchronize()
    bb = lambda f: _boundary_by_bbox(1, f)  # noqa: E731
    _tag_curves({
        "left": (1, bb(lambda b: _close(b[0], -1) and _close(b[3], -1))),
        "bottom": (2, bb(lambda b: _close(b[1], -1) and _close(b[4], -1))),
        "notch_vertical": (3, bb(lambda b: _close(b[0], 0) and _close(b[3], 0))),
        "notch_horizontal": (4, bb(lambda b: _close(b[1], 0) and _close(b[4], 0))),
        "right": (5, bb(lambda b: _close(b[0], 1) and _close(b[3], 1))),
        "top": (6, bb(lambda b: _close(b[1], 1) and _close(b[4], 1))),
    }, 1)
    gmsh.model.addPhysicalGroup(2, [t for _, t in gmsh.model.getEntities(2)],
                                tag=DOMAIN_ID, name="domain")
    # Refine toward the re-entrant corner, where the solution is singular.
    occ_field = gmsh.model.mesh.field
    dist = occ_field.add("Distance")
    pts = [t for (_, t) in gmsh.model.getEntities(0)
           if all(_close(c, 0) for c in gmsh.model.getValue(0, t, []))]
    occ_field.setNumbers(dist, "PointsList", pts)
    thr = occ_field.add("Threshold")
    occ_field.setNumber(thr, "InField", dist)
    for key, val in (("SizeMin", 0.02), ("SizeMax", 0.1), ("DistMin", 0.05),
                     ("DistMax", 0.8)):
        occ_field.setNumber(thr, key, val)
    occ_field.setAsBackgroundMesh(thr)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.model.mesh.generate(2)


def plate_holes() -> None:
    """Unit square plate with three circular holes of different radii."""
    occ = gmsh.model.occ
    plate = occ.addRectangle(0, 0, 0, 1, 1)
    holes = [occ.addDisk(0.3, 0.3, 0, 0.1, 0.1),
             occ.addDisk(0.7, 0.35, 0, 0.12, 0.12),
             occ.addDisk(0.45, 0.72, 0, 0.13, 0.13)]
    occ.cut([(2, plate)], [(2, h) for h in holes])
    occ.synchronize()
    bb = lambda f: _boundary_by_bbox(1, f)  # noqa: E731
    sides = {
        "left": (1, bb(lambda b: _close(b[0], 0) and _close(b[3], 0))),
        "right": (2, bb(lambda b: _close(b[0], 1) and _close(b[3], 1))),
        "bottom": (3, bb(lambda b: _close(b[1], 0) and _close(b[4], 0))),
        "top": (4, bb(lambda b: _close(b[1], 1) and _close(b[4], 1))),
    }
    straight = {t for _, ts in sides.values() for t in ts}
    holes_curves = [t for (_, t) in gmsh.model.getEntities(1) if t not in straight]
    _tag_curves({**sides, "holes": (5, holes_curves)}, 1)
    gmsh.model.addPhysicalGroup(2, [t for _, t in gmsh.model.getEntities(2)],
                                tag=DOMAIN_ID, name="domain")
    _size_field(holes_curves, 0.02, 0.05, 0.0, 0.15)
    gmsh.model.mesh.generate(2)


def channel_cylinder() -> None:
    """DFG flow-past-cylinder channel 2.2 x 0.41, cylinder r = 0.05 at (0.2, 0.2)."""
    occ = gmsh.model.occ
    channel = occ.addRectangle(0, 0, 0, 2.2, 0.41)
    cyl = occ.addDisk(0.2, 0.2, 0, 0.05, 0.05)
    occ.cut([(2, channel)], [(2, cyl)])
    occ.synchronize()
    bb = lambda f: _boundary_by_bbox(1, f)  # noqa: E731
    inlet = bb(lambda b: _close(b[0], 0) and _close(b[3], 0))
    outlet = bb(lambda b: _close(b[0], 2.2) and _close(b[3], 2.2))
    walls = bb(lambda b: (_close(b[1], 0) and _close(b[4], 0))
               or (_close(b[1], 0.41) and _close(b[4], 0.41)))
    cylinder = [t for (_, t) in gmsh.model.getEntities(1)
                if t not in set(inlet + outlet + walls)]
    _tag_curves({"inlet": (1, inlet), "outlet": (2, outlet), "walls": (3, walls),
                 "cylinder": (4, cylinder)}, 1)
    gmsh.model.addPhysicalGroup(2, [t for _, t in gmsh.model.getEntities(2)],
                                tag=DOMAIN_ID, name="domain")
    _size_field(cylinder, 0.01, 0.07, 0.0, 0.6)
    gmsh.model.mesh.generate(2)


def crescent() -> None:
    """Crescent: unit disk minus the disk of radius 0.8 centred at (0.5, 0) (non-convex)."""
    occ = gmsh.model.occ
    outer = occ.addDisk(0, 0, 0, 1, 1)
    inner = occ.addDisk(0.5, 0, 0, 0.8, 0.8)
    occ.cut([(2, outer)], [(2, inner)])
    occ.synchronize()

    def on_outer(tag: int) -> bool:
        # A curve lies on the unit circle if its parametric midpoint does.
        lo, hi = gmsh.model.getParametrizationBounds(1, tag)
        x, y, _ = gmsh.model.getValue(1, tag, [0.5 * (lo[0] + hi[0])])
        return _close(x * x + y * y, 1.0, 1e-6)

    curves = [t for (_, t) in gmsh.model.getEntities(1)]
    _tag_curves({"outer": (1, [t for t in curves if on_outer(t)]),
                 "inner": (2, [t for t in curves if not on_outer(t)])}, 1)
    gmsh.model.addPhysicalGroup(2, [t for _, t in gmsh.model.getEntities(2)],
                                tag=DOMAIN_ID, name="domain")
    gmsh.option.setNumber("Mesh.MeshSizeMax", 0.04)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.model.mesh.generate(2)


def box_cavity() -> None:
    """Unit cube with a spherical cavity of radius 0.25 at its centre (3D, tetrahedra)."""
    occ = gmsh.model.occ
    box = occ.addBox(0, 0, 0, 1, 1, 1)
    ball = occ.addSphere(0.5, 0.5, 0.5, 0.25)
    occ.cut([(3, box)], [(3, ball)])
    occ.synchronize()
    bb = lambda f: _boundary_by_bbox(2, f)  # noqa: E731
    faces = {
        "left": (1, bb(lambda b: _close(b[0], 0) and _close(b[3], 0))),
        "right": (2, bb(lambda b: _close(b[0], 1) and _close(b[3], 1))),
        "front": (3, bb(lambda b: _close(b[1], 0) and _close(b[4], 0))),
        "back": (4, bb(lambda b: _close(b[1], 1) and _close(b[4], 1))),
        "bottom": (5, bb(lambda b: _close(b[2], 0) and _close(b[5], 0))),
        "top": (6, bb(lambda b: _close(b[2], 1) and _close(b[5], 1))),
    }
    flat = {t for _, ts in faces.values() for t in ts}
    cavity = [t for (_, t) in gmsh.model.getEntities(2) if t not in flat]
    _tag_curves({**faces, "cavity": (7, cavity)}, 2)
    gmsh.model.addPhysicalGroup(3, [t for _, t in gmsh.model.getEntities(3)],
                                tag=DOMAIN_ID, name="domain")
    _size_field(cavity, 0.08, 0.17, 0.0, 0.4, dim=2)
    gmsh.model.mesh.generate(3)


MESHES: dict[str, Callable[[], None]] = {
    "lshape": lshape,
    "plate_holes": plate_holes,
    "channel_cylinder": channel_cylinder,
    "crescent": crescent,
    "box_cavity": box_cavity,
}


def make(name: str, out_dir: Path) -> dict[str, object]:
    """Build mesh ``name`` into ``out_dir/name.msh``; return its counts for the README."""
    gmsh.initialize(["-noenv"], readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.option.setNumber("General.NumThreads", 1)
        gmsh.option.setNumber("Mesh.RandomSeed", 1)
        gmsh.option.setNumber("Mesh.Algorithm", 6)  # Frontal-Delaunay (2D)
        gmsh.option.setNumber("Mesh.Algorithm3D", 1)  # Delaunay (3D)
        gmsh.option.setNumber("Mesh.OptimizeNetgen", 1)  # removes 3D slivers
        gmsh.option.setNumber("Mesh.MshFileVersion", 2.2)
        gmsh.option.setNumber("Mesh.Binary", 0)
        gmsh.option.setNumber("Mesh.SaveAll", 0)  # only physical groups are written
        gmsh.model.add(name)
        MESHES[name]()
        dim = gmsh.model.getDimension()
        path = out_dir / f"{name}.msh"
        gmsh.write(str(path))
        types, tags, _ = gmsh.model.mesh.getElements(dim)
        nodes, _, _ = gmsh.model.mesh.getNodes()
        groups = {gmsh.model.getPhysicalName(d, t): t
                  for d, t in gmsh.model.getPhysicalGroups(dim - 1)}
        return {"name": name, "dim": dim, "cells": sum(len(t) for t in tags),
                "vertices": len(nodes), "tags": groups, "bytes": path.stat().st_size}
    finally:
        gmsh.finalize()


def main(argv: list[str] | None = None) -> int:
    """Regenerate all meshes (or only those named); ``--check`` compares with the shipped."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"meshes to build, among {', '.join(MESHES)} (default: all)")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    p.add_argument("--check", action="store_true",
                   help="build into a temporary folder and compare with --out")
    args = p.parse_args(argv)
    names = args.names or list(MESHES)
    unknown = sorted(set(names) - set(MESHES))
    if unknown:
        p.error(f"unknown mesh {unknown[0]!r}; expected one of {', '.join(MESHES)}")
    out = Path(tempfile.mkdtemp()) if args.check else args.out
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for name in names:
        info = make(name, out)
        tags = ", ".join(f"{v} {k}" for k, v in sorted(info["tags"].items(),
                                                       key=lambda kv: kv[1]))
        print(f"| {name} | {info['dim']}D | {info['cells']} | {info['vertices']} | "
              f"{tags} | {info['bytes'] / 1024:.0f} KiB |")
        if args.check and not filecmp.cmp(out / f"{name}.msh",
                                          args.out / f"{name}.msh", shallow=False):
            print(f"{name}.msh differs from {args.out / (name + '.msh')}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
