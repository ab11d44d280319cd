"""The shipped gmsh meshes: they load in Firedrake with the documented tags and sizes."""

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

import firedrake
import gmsh  # noqa: F401  (make_meshes.py needs it: missing, the module fails rather than skips)

from fe_operators.io import load_mesh, mesh_info, shipped_meshes

REPO = Path(__file__).resolve().parent.parent

# name -> (topological dimension, {marker: name}, exact or reference area/volume, tolerance)
EXPECTED = {
    "lshape": (2, {1: "left", 2: "bottom", 3: "notch_vertical", 4: "notch_horizontal",
                   5: "right", 6: "top"}, 3.0, 1e-12),
    "plate_holes": (2, {1: "left", 2: "right", 3: "bottom", 4: "top", 5: "holes"},
                    1 - math.pi * (0.1**2 + 0.12**2 + 0.13**2), 2e-3),
    "channel_cylinder": (2, {1: "inlet", 2: "outlet", 3: "walls", 4: "cylinder"},
                         2.2 * 0.41 - math.pi * 0.05**2, 2e-4),
    "crescent": (2, {1: "outer", 2: "inner"}, None, None),
    "box_cavity": (3, {1: "left", 2: "right", 3: "front", 4: "back", 5: "bottom", 6: "top",
                       7: "cavity"}, 1 - 4 / 3 * math.pi * 0.25**3, 5e-3),
}


def test_five_meshes_are_shipped_inside_the_package():
    meshes = shipped_meshes()
    assert set(EXPECTED) <= set(meshes)
    package = Path(importlib.util.find_spec("fe_operators").origin).parent
    for path in meshes.values():
        assert path.parent == package / "meshes"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_mesh_loads_with_documented_tags(name):
    dim, tags, volume, tol = EXPECTED[name]
    path = shipped_meshes()[name]
    assert path.stat().st_size < 1_000_000
    mesh = load_mesh(name)
    assert mesh.topological_dimension == dim
    assert sorted(int(m) for m in mesh.exterior_facets.unique_markers) == sorted(tags)
    info = mesh_info(name)
    assert 200 <= info["cells"] <= 10_000
    assert {t["id"]: t["name"] for t in info["boundary_tags"]} == tags
    assert all(t["exterior_facets"] > 0 for t in info["boundary_tags"])
    assert info["untagged_exterior_facets"] == 0  # every boundary piece is tagged
    assert info["quality"]["min"] > 0.3
    # ds over every tag together is the whole boundary.
    ds_all = firedrake.assemble(firedrake.Constant(1.0) * firedrake.ds(tuple(tags), domain=mesh))
    assert ds_all == pytest.approx(firedrake.assemble(
        firedrake.Constant(1.0) * firedrake.ds(domain=mesh)), rel=1e-12)
    if volume is not None:
        assert info["volume"] == pytest.approx(volume, abs=tol)


def test_readme_documents_every_shipped_mesh_and_tag():
    readme = (REPO / "meshes" / "README.md").read_text()
    for name, (_, tags, _, _) in EXPECTED.items():
        assert f"`{name}`" in readme
        for marker, tag in tags.items():
            assert f"| {marker} | `{tag}` |" in readme


def test_make_meshes_reproduces_the_shipped_files():
    # --check rebuilds every mesh in a temporary folder and compares byte by byte.
    run = subprocess.run([sys.executable, str(REPO / "meshes" / "make_meshes.py"), "--check"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
