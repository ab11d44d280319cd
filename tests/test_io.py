"""fe_operators.io: mesh specs, meshio conversion with tags, errors, info and VTU output."""

import json
import math

import meshio
import numpy as np
import pytest

import firedrake

from fe_operators.errors import MeshReadError, SpaceMismatchError
from fe_operators.cli.mesh import main_mesh_info
from fe_operators.io import (
    format_mesh_info,
    load_mesh,
    max_cells,
    mesh_info,
    radius_ratio,
    resolve_mesh_spec,
    shipped_meshes,
    write_fields,
)


def area(mesh):
    return firedrake.assemble(firedrake.Constant(1.0) * firedrake.dx(domain=mesh))


def markers(mesh):
    return sorted(int(m) for m in mesh.exterior_facets.unique_markers)


def tiny_square():
    """Unit square as 4 triangles around (0.5, 0.5), sides tagged 1-4, names as gmsh's."""
    points = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]], dtype=float)
    tris = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    lines = np.array([[3, 0], [1, 2], [0, 1], [2, 3]])  # left, right, bottom, top
    return meshio.Mesh(
        points, [("triangle", tris), ("line", lines)],
        cell_data={"gmsh:physical": [np.full(4, 100), np.array([1, 2, 3, 4])],
                   "gmsh:geometrical": [np.full(4, 1), np.array([1, 2, 3, 4])]},
        field_data={"left": np.array([1, 1]), "right": np.array([2, 1]),
                    "bottom": np.array([3, 1]), "top": np.array([4, 1]),
                    "domain": np.array([100, 2])},
    )


# --- specs -----------------------------------------------------------------------------

@pytest.mark.parametrize("spec, cells, dim, volume, tags", [
    ("unitsquare:8", 128, 2, 1.0, [1, 2, 3, 4]),
    ("unitsquare:4x2:quad", 8, 2, 1.0, [1, 2, 3, 4]),
    ("rectangle:2,0.5:4x2", 16, 2, 1.0, [1, 2, 3, 4]),
    ("unitcube:2", 48, 3, 1.0, [1, 2, 3, 4, 5, 6]),
    ("box:1,1,2:1x1x2", 12, 3, 2.0, [1, 2, 3, 4, 5, 6]),
])
def test_builtin_specs(spec, cells, dim, volume, tags):
    mesh = load_mesh(spec)
    assert (mesh.num_cells(), mesh.topological_dimension) == (cells, dim)
    assert area(mesh) == pytest.approx(volume, rel=1e-12)
    assert markers(mesh) == tags


@pytest.mark.parametrize("spec", ["unitsquare:0", "unitsquare:3x", "rectangle:1:4",
                                  "box:1,1,-2:2", "unitcube:2x2"])
def test_malformed_builtin_spec(spec):
    with pytest.raises(MeshReadError, match="bad mesh spec"):
        load_mesh(spec)


def test_name_kwarg_and_comm():
    mesh = load_mesh("lshape", comm=firedrake.COMM_SELF, name="L")
    assert mesh.name == "L" and mesh.comm.size == 1


# --- refined specs and the size limit ------------------------------------------------------

def _level(mesh):
    from firedrake.mg.utils import get_level

    hierarchy, level = get_level(mesh)
    return (None, None) if hierarchy is None else (len(hierarchy), level)


@pytest.mark.parametrize("spec, cells, volume, levels", [
    ("unitsquare:2/r2", 8 * 16, 1.0, 3),
    ("unitsquare:2:quad/r1", 16, 1.0, 2),
    ("unitcube:1/r1", 6 * 8, 1.0, 2),
    ("lshape/r1", 1458 * 4, 3.0, 2),
    ("lshape/r0", 1458, 3.0, 1),
])
def test_refined_specs_are_the_finest_level_of_a_hierarchy(spec, cells, volume, levels):
    mesh = load_mesh(spec)
    base = load_mesh(spec.rsplit("/r", 1)[0])
    assert mesh.num_cells() == cells and _level(mesh) == (levels, levels - 1)
    assert area(mesh) == pytest.approx(volume, rel=1e-12)
    assert markers(mesh) == markers(base)  # refinement keeps the boundary markers
    assert _level(base) == (None, None)  # no suffix: a plain mesh


def test_refined_file_paths_and_a_file_named_like_a_suffix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msh = shipped_meshes()["lshape"].read_bytes()
    (tmp_path / "l.msh").write_bytes(msh)
    source = resolve_mesh_spec("l.msh/r1")
    assert (source.kind, source.refinements, source.base_spec) == ("file", 1, "l.msh")
    assert source.estimated_cells is None  # counted from the file, when loaded
    assert load_mesh("l.msh/r1").num_cells() == 4 * 1458
    from fe_operators.data.settings import normalise_mesh_spec

    assert normalise_mesh_spec("l.msh/r1") == str(tmp_path / "l.msh") + "/r1"
    assert normalise_mesh_spec("lshape/r1") == "lshape/r1"
    (tmp_path / "lshape").mkdir()
    (tmp_path / "lshape" / "r2").write_bytes(msh)  # an existing file wins over the suffix
    source = resolve_mesh_spec("lshape/r2")
    assert (source.kind, source.refinements) == ("file", None)
    with pytest.raises(MeshReadError, match="'lshape/r2': unsupported format"):
        load_mesh("lshape/r2")  # read as that file (which has no extension to go by)
    assert normalise_mesh_spec("lshape/r2") == str(tmp_path / "lshape" / "r2")


@pytest.mark.parametrize("spec", ["plate_holes/r", "plate_holes/r-1", "plate_holes/rx",
                                  "unitsquare:4/r1.5"])
def test_bad_refinement_suffix(spec):
    with pytest.raises(MeshReadError) as exc_info:
        load_mesh(spec)
    text = _one_line_naming(exc_info, spec)
    assert "/rK" in text and "non-negative integer" in text


def test_size_limit_refuses_before_building(monkeypatch):
    with pytest.raises(MeshReadError, match=r"about 2e\+10 cells.*limit of 2e\+07.*"
                                            r"FE_OPERATORS_MAX_CELLS=20000000000"):
        resolve_mesh_spec("unitsquare:100000")  # refused without building anything
    assert resolve_mesh_spec("unitcube:4/r2").estimated_cells == 6 * 64 * 64
    with pytest.raises(MeshReadError, match="limit"):
        load_mesh("unitsquare:8/r40")
    monkeypatch.setenv("FE_OPERATORS_MAX_CELLS", "5000")
    assert max_cells() == 5000
    with pytest.raises(MeshReadError, match=r"about 6.2e\+03 cells"):
        load_mesh("plate_holes/r1")  # a file: the base's 1550 cells times 4
    assert load_mesh("plate_holes").num_cells() == 1550  # a file without suffix is as it is
    monkeypatch.setenv("FE_OPERATORS_MAX_CELLS", "1e7")
    assert load_mesh("plate_holes/r1").num_cells() == 6200
    monkeypatch.setenv("FE_OPERATORS_MAX_CELLS", "lots")
    with pytest.raises(MeshReadError, match="FE_OPERATORS_MAX_CELLS='lots'"):
        load_mesh("unitsquare:2")


# --- meshio round trips ------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".vtu", ".vtk", ".xdmf", ".mesh"])
def test_meshio_round_trip_keeps_cells_area_and_tags(tmp_path, suffix):
    source = meshio.read(shipped_meshes()["plate_holes"])
    path = tmp_path / f"plate{suffix}"
    meshio.write(path, source)
    reference, mesh = load_mesh("plate_holes"), load_mesh(path)
    assert mesh.num_cells() == reference.num_cells()
    assert area(mesh) == pytest.approx(area(reference), rel=1e-12)
    assert markers(mesh) == [1, 2, 3, 4, 5]  # the tags ride along as cell data
    assert (firedrake.assemble(firedrake.Constant(1.0) * firedrake.ds(5, domain=mesh))
            == pytest.approx(firedrake.assemble(
                firedrake.Constant(1.0) * firedrake.ds(5, domain=reference)), rel=1e-12))


@pytest.mark.parametrize("fmt, suffix", [("gmsh22", ".msh"), (None, ".vtu")])
def test_hand_made_square_round_trip(tmp_path, fmt, suffix):
    path = tmp_path / f"square{suffix}"
    meshio.write(path, tiny_square(), **({"file_format": fmt, "binary": False} if fmt else {}))
    mesh = load_mesh(path)
    assert mesh.num_cells() == 4 and area(mesh) == pytest.approx(1.0, rel=1e-14)
    assert markers(mesh) == [1, 2, 3, 4]
    x, y = firedrake.SpatialCoordinate(mesh)
    # ds(1) is x = 0 and ds(4) is y = 1: the tags are on the right sides.
    assert firedrake.assemble(x * firedrake.ds(1)) == pytest.approx(0.0, abs=1e-14)
    assert firedrake.assemble(y * firedrake.ds(4)) == pytest.approx(1.0, rel=1e-14)
    names = {t["id"]: t["name"] for t in mesh_info(path)["boundary_tags"]}
    assert names == ({1: "left", 2: "right", 3: "bottom", 4: "top"} if fmt
                     else dict.fromkeys([1, 2, 3, 4]))  # VTU carries no names


def test_untagged_vtu_gives_a_mesh_without_markers(tmp_path):
    square = tiny_square()
    path = tmp_path / "bare.vtu"
    meshio.write(path, meshio.Mesh(square.points, [square.cells[0]]))
    mesh = load_mesh(path)
    assert mesh.num_cells() == 4 and markers(mesh) == []
    assert mesh_info(path)["untagged_exterior_facets"] == 4


def test_unused_points_are_dropped(tmp_path):
    square = tiny_square()
    points = np.vstack([square.points, [[5.0, 5.0]]])  # a stray point no cell uses
    path = tmp_path / "stray.vtu"
    meshio.write(path, meshio.Mesh(points, square.cells, cell_data=dict(square.cell_data)))
    mesh = load_mesh(path)
    assert mesh.num_vertices() == 5 and area(mesh) == pytest.approx(1.0)


# --- errors ------------------------------------------------------------------------------

def _one_line_naming(exc_info, name):
    message = str(exc_info.value)
    assert name in message and "\n" not in message
    return message


@pytest.mark.parametrize("suffix", [".msh", ".vtu", ".xdmf", ".vtk"])
def test_garbage_file_raises_mesh_read_error(tmp_path, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(MeshReadError) as exc_info:
        load_mesh(path)
    _one_line_naming(exc_info, path.name)


def test_truncated_gmsh_file_raises_mesh_read_error(tmp_path):
    path = tmp_path / "cut.msh"
    path.write_bytes(shipped_meshes()["plate_holes"].read_bytes()[:30_000])
    with pytest.raises(MeshReadError) as exc_info:
        load_mesh(path)
    _one_line_naming(exc_info, "cut.msh")
    assert exc_info.value.__cause__ is not None  # PETSc's error is chained


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(MeshReadError, match="no such file") as exc_info:
        load_mesh(tmp_path / "absent.vtu")
    _one_line_naming(exc_info, "absent.vtu")
    with pytest.raises(MeshReadError, match="unknown mesh") as exc_info:
        load_mesh("no_such_mesh")
    assert "plate_holes" in _one_line_naming(exc_info, "no_such_mesh")  # lists the choices


def test_unsupported_format_and_cells(tmp_path):
    path = tmp_path / "points.xyz"
    path.write_text("0 0 0\n")
    with pytest.raises(MeshReadError, match="unsupported format"):
        load_mesh(path)
    wedge = tmp_path / "wedge.vtu"
    meshio.write(wedge, meshio.Mesh(np.eye(6, 3), [("wedge", np.arange(6)[None])]))
    with pytest.raises(MeshReadError, match="wedge"):
        load_mesh(wedge)


def _gmsh_square(path, tilt=0.0, z0=0.0, order=1):
    """The unit square as gmsh writes it (format from ``path``'s name: ``*22*``, ``*bin*``),
    turned by ``tilt`` degrees about the x axis and lifted to ``z = z0``; elements of ``order``."""
    import gmsh

    gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Verbosity", 0)
        gmsh.model.occ.addRectangle(0, 0, z0, 1, 1)
        gmsh.model.occ.rotate([(2, 1)], 0, 0, z0, 1, 0, 0, math.radians(tilt))
        gmsh.model.occ.synchronize()
        gmsh.model.addPhysicalGroup(2, [1], 10)
        gmsh.model.addPhysicalGroup(1, [1, 2, 3, 4], 1)
        gmsh.option.setNumber("Mesh.MeshSizeMax", 0.4)
        gmsh.model.mesh.generate(2)
        gmsh.model.mesh.setOrder(order)
        gmsh.option.setNumber("Mesh.MshFileVersion", 2.2 if "22" in path.name else 4.1)
        gmsh.option.setNumber("Mesh.Binary", int("bin" in path.name))
        gmsh.write(str(path))
    finally:
        gmsh.finalize()
    return path


@pytest.mark.parametrize("name", ["v22.msh", "v22_bin.msh", "v41.msh", "v41_bin.msh"])
def test_a_2d_mesh_must_lie_in_a_plane_z_const_in_every_format(tmp_path, name):
    # a tilted square was read by PETSc with z dropped: area 0.878 instead of 1
    from fe_operators.io.mesh_files import _gmsh_points

    tilted = _gmsh_square(tmp_path / f"tilted_{name}", tilt=28.6)
    points = _gmsh_points(tilted)  # the nodes as gmsh wrote them, z included
    assert np.array_equal(points, meshio.read(tilted).points) and np.ptp(points[:, 2]) > 0.4
    vtu = tmp_path / "tilted.vtu"
    meshio.write(vtu, meshio.Mesh(points, [c for c in meshio.read(tilted).cells if c.type == "triangle"]))
    for path in (tilted, vtu):
        with pytest.raises(MeshReadError, match="do not lie in a plane z = const") as exc_info:
            load_mesh(path)
        assert "rotate the mesh into the xy-plane" in _one_line_naming(exc_info, path.name)
    lifted = load_mesh(_gmsh_square(tmp_path / f"lifted_{name}", z0=0.5))  # parallel to xy: fine
    assert lifted.geometric_dimension == 2 and area(lifted) == pytest.approx(1.0, rel=1e-13)


@pytest.mark.parametrize("name", ["p2_22.msh", "p2_41_bin.msh", "p2.vtu"])
def test_second_order_cells_are_named_with_the_fix(tmp_path, name):
    path = _gmsh_square(tmp_path / "p2_22.msh", order=2)
    if name.endswith(".vtu"):
        meshio.write(tmp_path / name, meshio.read(path))
    elif name != path.name:
        path = _gmsh_square(tmp_path / name, order=2)
    with pytest.raises(MeshReadError, match=r"higher-order \(curved\) cells \(line3, triangle6\)") as exc_info:
        load_mesh(tmp_path / name)
    message = _one_line_naming(exc_info, name)
    assert "export the mesh with linear elements" in message and "corrupt" not in message


# --- info --------------------------------------------------------------------------------

def test_radius_ratio_of_regular_and_right_simplices():
    equilateral = np.array([[[0, 0], [1, 0], [0.5, math.sqrt(3) / 2]]])
    regular = np.array([[[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]], dtype=float)
    right = np.array([[[0, 0], [1, 0], [0, 1]]], dtype=float)
    flat = np.array([[[0, 0], [1, 0], [2, 0]]], dtype=float)
    assert radius_ratio(equilateral) == pytest.approx([1.0])
    assert radius_ratio(regular) == pytest.approx([1.0])
    assert radius_ratio(right) == pytest.approx([2 * (math.sqrt(2) - 1)])
    assert radius_ratio(flat) == pytest.approx([0.0])


def test_mesh_info_of_unit_square():
    info = mesh_info("unitsquare:8")
    assert (info["cells"], info["vertices"], info["dimension"]) == (128, 81, 2)
    assert info["boundary_tags"] == [
        {"id": i, "name": n, "exterior_facets": 8, "interior_facets": 0}
        for i, n in enumerate(["left", "right", "bottom", "top"], start=1)]
    assert info["quality"]["min"] == pytest.approx(2 * (math.sqrt(2) - 1))
    assert info["cell_diameter"]["max"] == pytest.approx(math.sqrt(2) / 8)
    json.dumps(info)  # serialisable for --json
    text = format_mesh_info(info)
    assert "128" in text and "left" in text


def test_main_mesh_info_exit_codes(tmp_path, capsys):
    assert main_mesh_info(["channel_cylinder"]) == 0
    out = capsys.readouterr().out
    assert "cylinder" in out and "inlet" in out
    bad = tmp_path / "bad.msh"
    bad.write_bytes(b"\x00\xff garbage")
    assert main_mesh_info([str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "bad.msh" in captured.err
    assert main_mesh_info(["--json", "unitsquare:2"]) == 0
    assert json.loads(capsys.readouterr().out)["cells"] == 8


def test_mesh_info_lists_the_hierarchy_levels(capsys):
    info = mesh_info("unitsquare:2/r1")
    assert info["levels"] == [{"level": 0, "cells": 8, "vertices": 9},
                              {"level": 1, "cells": 32, "vertices": 25}]
    assert mesh_info("unitsquare:2")["levels"] is None
    assert main_mesh_info(["plate_holes/r1"]) == 0
    out = capsys.readouterr().out
    assert "levels      0: 1550 cells, 867 vertices\n            1: 6200 cells" in out


# --- write_fields -------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".vtu", ".xdmf"])
def test_write_fields_point_and_cell_data(tmp_path, suffix):
    mesh = load_mesh("plate_holes")
    x, y = firedrake.SpatialCoordinate(mesh)
    u = firedrake.Function(firedrake.FunctionSpace(mesh, "CG", 1)).interpolate(x + 2 * y)
    w = firedrake.Function(firedrake.FunctionSpace(mesh, "CG", 2)).interpolate(x * y)
    v = firedrake.Function(firedrake.VectorFunctionSpace(mesh, "CG", 1)).interpolate(
        firedrake.as_vector([y, -x]))
    d = firedrake.Function(firedrake.FunctionSpace(mesh, "DG", 0)).interpolate(x)
    path = write_fields(tmp_path / f"fields{suffix}", {"u": u, "w": w, "v": v, "d": d})
    back = meshio.read(path)
    px, py = back.points[:, 0], back.points[:, 1]
    assert len(back.points) == mesh.num_vertices()
    assert sum(len(b) for b in back.cells) == mesh.num_cells()
    np.testing.assert_allclose(back.point_data["u"], px + 2 * py, atol=1e-14)
    np.testing.assert_allclose(back.point_data["w"], px * py, atol=1e-14)  # CG2 at vertices
    np.testing.assert_allclose(back.point_data["v"], np.c_[py, -px, 0 * px], atol=1e-14)
    centroids = back.points[back.cells[0].data].mean(axis=1)
    np.testing.assert_allclose(back.cell_data["d"][0], centroids[:, 0], atol=1e-14)


def test_write_fields_values_match_the_function(tmp_path):
    # Same values as Firedrake's own evaluation at the written points.
    mesh = load_mesh("unitsquare:4")
    u = firedrake.Function(firedrake.FunctionSpace(mesh, "CG", 1))
    u.dat.data[:] = np.random.default_rng(1).standard_normal(u.dat.data.shape)
    back = meshio.read(write_fields(tmp_path / "u.vtu", {"u": u}))
    expected = firedrake.PointEvaluator(mesh, back.points[:, :2]).evaluate(u)
    np.testing.assert_allclose(back.point_data["u"], expected, atol=1e-12)


def test_write_fields_errors(tmp_path):
    a, b = load_mesh("unitsquare:2"), load_mesh("unitsquare:2")
    fa = firedrake.Function(firedrake.FunctionSpace(a, "CG", 1))
    fb = firedrake.Function(firedrake.FunctionSpace(b, "CG", 1))
    with pytest.raises(SpaceMismatchError, match="one mesh"):
        write_fields(tmp_path / "x.vtu", {"a": fa, "b": fb})
    with pytest.raises(ValueError, match="ending in"):
        write_fields(tmp_path / "x.txt", {"a": fa})
    with pytest.raises(ValueError, match="neither"):
        write_fields(tmp_path / "x.vtu")
    # The mesh alone can be written and read back as a mesh.
    path = write_fields(tmp_path / "mesh_only.vtu", mesh=a)
    assert load_mesh(path).num_cells() == a.num_cells()


@pytest.mark.parametrize("mesh_name", ["crescent", "channel_cylinder"])
def test_plot_row_labels_are_inside_the_figure_and_beside_the_panels(tmp_path, monkeypatch, mesh_name):
    # the labels (sample, error) were axis labels, cut off on the crescent and wide domains
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from fe_operators.io.plots import plot_fields

    mesh = load_mesh(mesh_name)
    x = firedrake.SpatialCoordinate(mesh)
    V = firedrake.FunctionSpace(mesh, "CG", 1)
    u = firedrake.Function(V).interpolate(x[0] * x[1])
    rows = [{"input": u, "truth": u, "prediction": u, "error": firedrake.Function(V)}] * 3
    labels = [f"sample {i}, rel L2 {e:.2%}" for i, e in [(0, 0.0123), (117, 0.0456), (1234, 0.1789)]]
    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k))[1])
    path = plot_fields(tmp_path / "p.png", rows, row_labels=labels, shared=[("truth", "prediction")], title="t")
    assert path.stat().st_size > 0 and len(drawn) == 1
    fig = drawn[0]
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    panels = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 12
    for i, label in enumerate(labels):
        words = label.split(", ")
        (text,) = [t for t in fig.findobj(Text) if t.get_visible() and words[0] in t.get_text().split("\n")[0]
                   and all(w in t.get_text() for w in words)]
        ext = text.get_window_extent(renderer)
        assert box.x0 - 0.5 <= ext.x0 and ext.x1 <= box.x1 + 0.5, (label, ext, box)
        assert box.y0 - 0.5 <= ext.y0 and ext.y1 <= box.y1 + 0.5, (label, ext, box)
        assert not any(ext.overlaps(p) for p in panels), label
