"""Generated meshes of the DFG flow-past-a-cylinder benchmark geometry (gmsh Python API).

The shipped ``channel_cylinder`` mesh has the DFG geometry but its cylinder is a 32-sided
polygon, whose missing area alone moves the drag coefficient by about the width of the
benchmark's reference window.  :func:`dfg_mesh` writes a mesh of the same geometry (the
channel ``[0, 2.2] × [0, 0.41]`` minus the disk of radius 0.05 centred at ``(0.2, 0.2)``)
with a finely resolved cylinder and a refined wake, for validating flow solvers against
the published reference values.

Boundary markers are those of ``channel_cylinder`` (``meshes/make_meshes.py``): **1**
``inlet`` (x = 0), **2** ``outlet`` (x = 2.2), **3** ``walls`` (y = 0 and y = 0.41),
**4** ``cylinder``; the cells are the physical group **100** ``domain``.  The gmsh
conventions are those of ``meshes/make_meshes.py`` too: one thread, Frontal-Delaunay,
fixed random seed, MSH 2.2 ASCII with only the physical groups, so that a file is a
deterministic function of its parameters.

Sizes scale with one resolution factor ``r`` (``r = 1``: the validation mesh, 10,198
triangles and 46,716 Taylor–Hood degrees of freedom; ``r = 0.5``: a coarse mesh for fast
tests, 2,640 triangles and 12,295 DOFs; gmsh 4.15.2):

* cylinder: ``n = round(128 r)`` equal segments (at least 16), so cell size
  ``h_c = 2π R / n`` on it, growing linearly to the wake size at distance ``0.1``;
* wake: size ``h_w = 0.012 / r`` in the box ``[0.15, 1.0] × [0.1, 0.31]`` behind (and
  around) the cylinder, growing to ``1.6 h_w`` in ``[1.0, 2.2]`` (same band);
* elsewhere ``h_f = 0.03 / r``.

Files are cached: the name encodes the parameters (``dfg_r1.msh``, ``dfg_r0.5.msh``), a
file already in the folder is reused, and a new file is written under a temporary name
and renamed, so that concurrent callers never read a partial file.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

__all__ = ["DFG_CENTRE", "DFG_HEIGHT", "DFG_LENGTH", "DFG_RADIUS", "dfg_mesh", "dfg_mesh_sizes"]

#: channel length and height
DFG_LENGTH = 2.2
DFG_HEIGHT = 0.41
#: cylinder centre and radius (diameter D = 0.1)
DFG_CENTRE = (0.2, 0.2)
DFG_RADIUS = 0.05

#: boundary markers, as in the shipped ``channel_cylinder`` mesh
INLET, OUTLET, WALLS, CYLINDER = 1, 2, 3, 4
DOMAIN_ID = 100


def dfg_mesh_sizes(resolution: float = 1.0) -> dict[str, float]:
    """The mesh sizes :func:`dfg_mesh` uses for a resolution factor.

    Parameters
    ----------
    resolution
        ``r > 0``; sizes scale like ``1 / r`` and the cylinder's segment count like ``r``.

    Returns
    -------
    dict
        ``segments`` (on the cylinder), ``h_cylinder``, ``h_wake``, ``h_far_wake``,
        ``h_far``.

    Raises
    ------
    ValueError
        ``resolution`` not a positive finite number.
    """
    r = float(resolution)
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"expected a positive resolution factor, got {resolution!r}")
    segments = max(16, int(round(128 * r)))
    return {
        "segments": segments,
        "h_cylinder": 2 * math.pi * DFG_RADIUS / segments,
        "h_wake": 0.012 / r,
        "h_far_wake": 0.0192 / r,
        "h_far": 0.03 / r,
    }


def _build(sizes: dict[str, float]) -> None:
    """Geometry, physical groups and size fields of the DFG channel in the current model."""
    import gmsh

    occ = gmsh.model.occ
    channel = occ.addRectangle(0, 0, 0, DFG_LENGTH, DFG_HEIGHT)
    disk = occ.addDisk(*DFG_CENTRE, 0, DFG_RADIUS, DFG_RADIUS)
    occ.cut([(2, channel)], [(2, disk)])
    occ.synchronize()

    def close(a: float, b: float) -> bool:
        return abs(a - b) < 1e-5

    def curves(test) -> list[int]:
        return sorted(t for (_, t) in gmsh.model.getEntities(1)
                      if test(gmsh.model.getBoundingBox(1, t)))

    inlet = curves(lambda b: close(b[0], 0) and close(b[3], 0))
    outlet = curves(lambda b: close(b[0], DFG_LENGTH) and close(b[3], DFG_LENGTH))
    walls = curves(lambda b: (close(b[1], 0) and close(b[4], 0))
                   or (close(b[1], DFG_HEIGHT) and close(b[4], DFG_HEIGHT)))
    straight = set(inlet + outlet + walls)
    cylinder = sorted(t for (_, t) in gmsh.model.getEntities(1) if t not in straight)
    for name, pid, tags in (("inlet", INLET, inlet), ("outlet", OUTLET, outlet),
                            ("walls", WALLS, walls), ("cylinder", CYLINDER, cylinder)):
        gmsh.model.addPhysicalGroup(1, tags, tag=pid, name=name)
    gmsh.model.addPhysicalGroup(2, [t for _, t in gmsh.model.getEntities(2)],
                                tag=DOMAIN_ID, name="domain")

    # exactly `segments` equal segments on the (closed) cylinder curve(s)
    per_curve = sizes["segments"] // len(cylinder)
    for tag in cylinder:
        gmsh.model.mesh.setTransfiniteCurve(tag, per_curve + 1)

    field = gmsh.model.mesh.field
    dist = field.add("Distance")
    field.setNumbers(dist, "CurvesList", cylinder)
    field.setNumber(dist, "Sampling", 400)
    near = field.add("Threshold")
    field.setNumber(near, "InField", dist)
    field.setNumber(near, "SizeMin", sizes["h_cylinder"])
    field.setNumber(near, "SizeMax", sizes["h_far"])
    field.setNumber(near, "DistMin", 0.0)
    # grows linearly from h_cylinder to h_wake at distance 0.1 (then on to h_far)
    field.setNumber(near, "DistMax", 0.1 * (sizes["h_far"] - sizes["h_cylinder"])
                    / (sizes["h_wake"] - sizes["h_cylinder"]))
    boxes = []
    for x0, x1, h in ((0.15, 1.0, sizes["h_wake"]), (1.0, DFG_LENGTH, sizes["h_far_wake"])):
        box = field.add("Box")
        field.setNumber(box, "VIn", h)
        field.setNumber(box, "VOut", sizes["h_far"])
        field.setNumber(box, "XMin", x0)
        field.setNumber(box, "XMax", x1)
        field.setNumber(box, "YMin", 0.1)
        field.setNumber(box, "YMax", 0.31)
        field.setNumber(box, "Thickness", 0.05)
        boxes.append(box)
    smallest = field.add("Min")
    field.setNumbers(smallest, "FieldsList", [near, *boxes])
    field.setAsBackgroundMesh(smallest)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.model.mesh.generate(2)


def dfg_mesh(folder: str | os.PathLike[str], resolution: float = 1.0) -> Path:
    """Write (or reuse) a DFG-geometry gmsh mesh in ``folder``; return its path.

    Parameters
    ----------
    folder
        Where the file is cached (created if missing).
    resolution
        The resolution factor ``r`` (see the module docstring); 1 is the validation mesh
        (128 segments on the cylinder), 0.5 a coarse one for fast tests.

    Returns
    -------
    pathlib.Path
        ``folder/dfg_r{r}.msh`` (MSH 2.2 ASCII); load it with
        :func:`fe_operators.io.load_mesh` or ``firedrake.Mesh``.

    Raises
    ------
    ValueError
        A resolution factor that is not a positive finite number.

    Examples
    --------
    >>> from fe_operators.io import load_mesh                     # doctest: +SKIP
    >>> mesh = load_mesh(dfg_mesh("/tmp/meshes", 0.5))            # doctest: +SKIP
    """
    sizes = dfg_mesh_sizes(resolution)
    folder = Path(folder)
    path = folder / f"dfg_r{float(resolution):g}.msh"
    if path.is_file():
        return path
    import gmsh

    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".msh", dir=folder)
    os.close(fd)
    try:
        gmsh.initialize(["-noenv"], readConfigFiles=False)
        try:
            gmsh.option.setNumber("General.Terminal", 0)
            gmsh.option.setNumber("General.NumThreads", 1)
            gmsh.option.setNumber("Mesh.RandomSeed", 1)
            gmsh.option.setNumber("Mesh.Algorithm", 6)  # Frontal-Delaunay (2D)
            gmsh.option.setNumber("Mesh.MshFileVersion", 2.2)
            gmsh.option.setNumber("Mesh.Binary", 0)
            gmsh.option.setNumber("Mesh.SaveAll", 0)  # only physical groups are written
            gmsh.model.add(path.stem)
            _build(sizes)
            gmsh.write(tmp)
        finally:
            gmsh.finalize()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
