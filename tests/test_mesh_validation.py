"""Mesh files are validated on read, before PETSc sees them: vertex indices, finite
coordinates, no cell listing a vertex twice, no cell of zero area or volume; cells of
either orientation stay valid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import meshio
import numpy as np
import pytest

import firedrake

from fe_operators.cli.main import main
from fe_operators.errors import MeshReadError
from fe_operators.io import load_mesh, validate_cells

ROOT = Path(__file__).resolve().parents[1]
FIX = "fix or regenerate the mesh"


def square(n: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The unit square: points (z = 0), 2 n^2 counterclockwise triangles, boundary lines
    and their tags (1 left, 2 right, 3 bottom, 4 top)."""
    ix = np.arange(n + 1)
    x, y = np.meshgrid(ix / n, ix / n)
    points = np.column_stack([x.ravel(), y.ravel(), np.zeros(x.size)])
    v = lambda i, j: j * (n + 1) + i  # noqa: E731
    i, j = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n)))
    a, b, c, d = v(i, j), v(i + 1, j), v(i + 1, j + 1), v(i, j + 1)
    tris = np.stack([np.column_stack([a, b, c]), np.column_stack([a, c, d])], axis=1).reshape(-1, 3)
    k = np.arange(n)
    lines = np.concatenate([np.column_stack([v(0, k), v(0, k + 1)]),
                            np.column_stack([v(n, k), v(n, k + 1)]),
                            np.column_stack([v(k, 0), v(k + 1, 0)]),
                            np.column_stack([v(k, n), v(k + 1, n)])])
    return points, tris, lines, np.repeat([1, 2, 3, 4], n)


def cube(n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The unit cube: points and 6 n^3 positively oriented tetrahedra."""
    ix = np.arange(n + 1) / n
    z, y, x = np.meshgrid(ix, ix, ix, indexing="ij")
    points = np.column_stack([x.ravel(), y.ravel(), z.ravel()])
    v = lambda i, j, k: (k * (n + 1) + j) * (n + 1) + i  # noqa: E731
    i, j, k = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), np.arange(n)))
    corners = [v(i, j, k), v(i + 1, j, k), v(i + 1, j + 1, k), v(i, j + 1, k),
               v(i, j, k + 1), v(i + 1, j, k + 1), v(i + 1, j + 1, k + 1), v(i, j + 1, k + 1)]
    split = [(0, 1, 2, 6), (0, 2, 3, 6), (0, 3, 7, 6), (0, 7, 4, 6), (0, 4, 5, 6), (0, 5, 1, 6)]
    tets = np.stack([np.column_stack([corners[q] for q in t]) for t in split], axis=1)
    return points, tets.reshape(-1, 4)


def write_square(path: Path, points: np.ndarray, tris: np.ndarray, *, tagged: bool = True) -> Path:
    """Write triangles (and the tagged boundary lines) as gmsh 2.2 ASCII or any meshio format."""
    _, _, lines, line_tags = square(round(np.sqrt(len(tris) / 2)))
    cells, data = [("triangle", tris)], [np.full(len(tris), 100)]
    if tagged:
        cells.append(("line", lines))
        data.append(line_tags)
    kwargs = {"file_format": "gmsh22", "binary": False} if path.suffix == ".msh" else {}
    meshio.write(path, meshio.Mesh(points, cells,
                                   cell_data={"gmsh:physical": data, "gmsh:geometrical": data}),
                 **kwargs)
    return path


def write_cube(path: Path, points: np.ndarray, tets: np.ndarray) -> Path:
    tags = [np.full(len(tets), 1)]
    kwargs = {"file_format": "gmsh22", "binary": False} if path.suffix == ".msh" else {}
    meshio.write(path, meshio.Mesh(points, [("tetra", tets)],
                                   cell_data={"gmsh:physical": tags, "gmsh:geometrical": tags}),
                 **kwargs)
    return path


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --- the four cases of the battery -------------------------------------------------------

def test_mesh_info_on_a_triangle_listing_a_vertex_twice_is_one_line_not_a_crash(tmp_path):
    # PETSc's DMPlex crashed on it (segmentation fault, exit 59): run where a crash
    # cannot take the test session down.
    points, tris, _, _ = square()
    tris[17] = [tris[17, 0], tris[17, 1], tris[17, 0]]
    files = [write_square(tmp_path / "dup.msh", points, tris),
             write_square(tmp_path / "dup.vtu", points, tris)]
    env = dict(os.environ, OMP_NUM_THREADS="1", FE_OPERATORS_TRACEBACK="")
    run = subprocess.run([sys.executable, "-m", "fe_operators.cli", "mesh", "info", *map(str, files)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert run.returncode == 1, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 2 and run.stdout == "", run.stderr[-2000:]
    for line, path in zip(lines, files):
        assert line.startswith(f"fe-operators mesh info: error: bad mesh file '{path}': ")
        assert f"triangle 17 near (0.08333, 0.5833, 0) lists vertex {tris[17, 0]} twice" in line
        assert FIX in line


def test_mesh_info_on_a_nan_coordinate_exits_1_naming_the_cell(tmp_path, capsys):
    # was: "diameter min nan", exit 0
    points, tris, _, _ = square()
    vertex = int(tris[17, 2])
    points[vertex, 1] = np.nan
    first = int(np.flatnonzero((tris == vertex).any(axis=1))[0])
    path = write_square(tmp_path / "nan.msh", points, tris)
    assert main(["mesh", "info", str(path)]) == 1
    err = one_line(capsys)
    assert err.startswith(f"fe-operators mesh info: error: bad mesh file '{path}': ")
    assert f"triangle {first} uses vertex {vertex}, whose coordinates (" in err
    assert "nan, 0) are not finite" in err and FIX in err
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("defect", ["zero-area", "nan"])
def test_generate_on_a_bad_mesh_is_one_line_naming_the_cell(tmp_path, capsys, defect):
    # was: "Matrix is not positive definite"; a FloatingPointError in sample 0
    points, tris, _, _ = square()
    if defect == "zero-area":
        tris[17] = [0, 1, 2]  # three points of the bottom side
        expected = "triangle 17 near (0.25, 0, 0) has zero area (its vertices 0, 1, 2 are collinear)"
    else:
        points[12] = [np.nan, np.inf, 0.0]
        first = int(np.flatnonzero((tris == 12).any(axis=1))[0])
        expected = f"triangle {first} uses vertex 12, whose coordinates (nan, inf, 0) are not finite"
    path = write_square(tmp_path / f"{defect}.msh", points, tris)
    out = tmp_path / "x.h5"
    assert main(["generate", "poisson", "--mesh", str(path), "--samples", "2",
                 "--out", str(out), "--quiet"]) == 1
    err = one_line(capsys)
    assert err.startswith(f"fe-operators generate: error: bad mesh file '{path}': ")
    assert expected in err and FIX in err
    assert not out.exists()


# --- every format, 3D, orientation ------------------------------------------------------

@pytest.mark.parametrize("suffix", [".msh", ".vtu", ".vtk"])
def test_zero_area_and_out_of_range_cells_in_every_format(tmp_path, suffix):
    points, tris, _, _ = square()
    flat = tris.copy()
    flat[[5, 20]] = [[0, 1, 2], [4, 3, 2]]
    with pytest.raises(MeshReadError) as exc_info:
        load_mesh(write_square(tmp_path / f"flat{suffix}", points, flat))
    message = str(exc_info.value)
    assert "triangle 5 near (0.25, 0" in message
    assert "has zero area (its vertices 0, 1, 2 are collinear); 2 of 32 triangles" in message
    assert "\n" not in message and FIX in message
    if suffix != ".msh":  # gmsh files name nodes by tag: a missing one is meshio's error
        for bad in (25, -1):
            wild = tris.copy()
            wild[9, 1] = bad
            with pytest.raises(MeshReadError, match=f"triangle 9 lists vertex {bad}, but the file "
                                                    "has 25 vertices"):
                load_mesh(write_square(tmp_path / f"wild{suffix}", points, wild, tagged=False))


@pytest.mark.parametrize("suffix", [".msh", ".vtu"])
def test_a_tetrahedron_of_zero_volume_is_refused(tmp_path, suffix):
    points, tets = cube()
    assert load_mesh(write_cube(tmp_path / f"cube{suffix}", points, tets)).num_cells() == 48
    tets[30] = [0, 1, 4, 3]  # four corners of the bottom face z = 0
    with pytest.raises(MeshReadError) as exc_info:
        load_mesh(write_cube(tmp_path / f"flat{suffix}", points, tets))
    assert "tetrahedron 30 near (0.25, 0.25, 0) has zero volume (its vertices 0, 1, 4, 3 are " \
           "coplanar); 1 of 48" in str(exc_info.value)


def _mass(mesh):
    space = firedrake.FunctionSpace(mesh, "CG", 1)
    u, v = firedrake.TrialFunction(space), firedrake.TestFunction(space)
    x = firedrake.SpatialCoordinate(mesh)
    mass = firedrake.assemble(u * v * firedrake.dx).petscmat
    return (firedrake.assemble(firedrake.Constant(1.0) * firedrake.dx(domain=mesh)),
            firedrake.assemble(x[0] ** 2 * x[1] * firedrake.dx), mass.norm())


@pytest.mark.parametrize("suffix", [".msh", ".vtu"])
def test_clockwise_cells_are_valid_and_give_the_same_mass(tmp_path, suffix):
    points, tris, _, _ = square()
    mixed = tris.copy()
    mixed[::3] = mixed[::3, ::-1]  # every third triangle clockwise
    ccw = _mass(load_mesh(write_square(tmp_path / f"ccw{suffix}", points, tris)))
    cw = _mass(load_mesh(write_square(tmp_path / f"cw{suffix}", points, mixed)))
    assert ccw[0] == pytest.approx(1.0, rel=1e-14) and ccw[1] == pytest.approx(1 / 6, rel=1e-14)
    assert cw == pytest.approx(ccw, rel=1e-14)
    cube_points, tets = cube()
    turned = tets.copy()
    turned[1::2, :2] = turned[1::2, 1::-1]  # every other tetrahedron negatively oriented
    one = _mass(load_mesh(write_cube(tmp_path / f"tets{suffix}", cube_points, tets)))
    other = _mass(load_mesh(write_cube(tmp_path / f"turned{suffix}", cube_points, turned)))
    assert one[0] == pytest.approx(1.0, rel=1e-14) and other == pytest.approx(one, rel=1e-14)


def test_shipped_meshes_pass():
    for name in ("lshape", "box_cavity"):
        assert load_mesh(name).num_cells() > 0


# --- validate_cells itself --------------------------------------------------------------

def test_the_zero_measure_test_is_relative_to_each_cells_size_and_position():
    # a cell 1e-5 the size of the mesh is valid (a bounding-box test, |det| <= 1e-12 diam^3,
    # would refuse it); collinear points far from the origin are refused despite round-off
    tet = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    points = np.vstack([tet, 0.5 + 1e-5 * tet])
    validate_cells(points, [[0, 1, 2, 3], [4, 6, 5, 7]], source="graded.msh")
    validate_cells(1e6 + points[:, :2], [[0, 1, 2], [4, 5, 6]], source="far.msh")  # h = 1e-5
    line = 1e6 + np.array([[0.0, 0.0], [0.1, 0.1], [0.3, 0.3]])
    with pytest.raises(MeshReadError, match=r"triangle 0 near \(1e\+06, 1e\+06\) has zero area"):
        validate_cells(line, [[0, 1, 2]], source="far.msh")


def test_quadrilaterals_and_hexahedra():
    square_points = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [2, 0]], dtype=float)
    validate_cells(square_points, [[0, 1, 2, 3], [3, 2, 1, 0]], source="q.vtu")  # both orientations
    with pytest.raises(MeshReadError, match=r"quadrilateral 1 near \(1, 0\) lists vertex 1 twice "
                                            r"\(its vertices: 0, 1, 4, 1\); 1 of 2 quadrilaterals"):
        validate_cells(square_points, [[0, 1, 2, 3], [0, 1, 4, 1]], source="q.vtu")
    with pytest.raises(MeshReadError, match=r"quadrilateral 0 near \(1.75, 0\) has zero area "
                                            r"\(its vertices: 0, 1, 4, 2\)"):
        validate_cells(np.array([[0, 0], [1, 0], [2, 0], [3, 0], [4, 0]], dtype=float),
                       [[0, 1, 4, 2]], source="q.vtu")
    box = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                    [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=float)
    validate_cells(box, [np.arange(8), np.arange(8)[[4, 5, 6, 7, 0, 1, 2, 3]]], source="h.vtu")
    squashed = box.copy()
    squashed[4:, 2] = 0.0
    with pytest.raises(MeshReadError, match=r"hexahedron 0 near \(0.5, 0.5, 0\) has zero volume"):
        validate_cells(squashed, [np.arange(8)], source="h.vtu")


def test_unused_non_finite_points_are_not_looked_at():
    points = np.array([[0, 0], [1, 0], [0, 1], [np.nan, 0]])
    validate_cells(points, [[0, 1, 2]], source="m.vtu")
    with pytest.raises(MeshReadError, match=r"triangle 1 uses vertex 3, .* 1 of 2 triangles"):
        validate_cells(points, [[0, 1, 2], [1, 2, 3]], source="m.vtu")
