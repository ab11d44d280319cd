"""The file means the same functions in a fresh process; numbering is checked, never guessed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import firedrake as fd
import h5py
import numpy as np
import pytest

from fe_operators.data import DatasetFileError, FEFile, NumberingError
from fe_operators.data import generate_dataset
from fe_operators.data.digests import sample_digests
from fe_operators.problems import load_problem

ROOT = Path(__file__).resolve().parents[1]
MESH = "plate_holes"  # a gmsh file: the mesh a fresh process reads back is the stored one
SEED = 11
INDICES = [0, 2]

RELOAD = r"""
import json, sys
import numpy as np
import firedrake as fd
from fe_operators.data import FEFile

path, points = sys.argv[1], np.array(json.loads(sys.argv[2]))
f = FEFile(path)
result = {"identity": {}, "stored_mesh": [], "rebuilt_problem": []}
spaces = f.rebuild()  # the stored mesh, DOFs mapped through the numbering probes
result["identity"] = {k: bool((p == np.arange(p.size)).all()) for k, p in spaces.permutations.items()}
evaluate = fd.PointEvaluator(spaces.mesh, points)
for inputs, u in f.functions(json.loads(sys.argv[3]), spaces):
    a = inputs["a"]
    result["stored_mesh"].append({
        "u_l2": fd.assemble(u * u * fd.dx), "u_h1": fd.assemble(fd.inner(fd.grad(u), fd.grad(u)) * fd.dx),
        "a_l2": fd.assemble(a * a * fd.dx), "au": fd.assemble(a * u * fd.dx),
        "u_points": evaluate.evaluate(u).tolist(),
    })
problem = f.rebuild_problem()  # the mesh from the stored spec: numbering verified
inputs, output = f.read(json.loads(sys.argv[3]))
for a_dofs, u_dofs in zip(inputs["a"], output):
    a = fd.Function(problem.input_spaces["a"], val=a_dofs)
    u = fd.Function(problem.output_space, val=u_dofs)
    result["rebuilt_problem"].append({"u_l2": fd.assemble(u * u * fd.dx), "au": fd.assemble(a * u * fd.dx)})
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def darcy_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("h5") / "darcy.h5"
    generate_dataset("darcy", MESH, 3, out, seed=SEED, progress=False)
    return out


def test_a_fresh_process_reads_the_same_functions(darcy_file):
    from mpi4py import MPI

    problem = load_problem("darcy", MESH, FEFile(darcy_file).provenance["params"], comm=MPI.COMM_SELF)
    mesh = problem.mesh
    cells = mesh.coordinates.cell_node_map().values[[0, 300, 900, 1400]]
    points = mesh.coordinates.dat.data_ro[cells].mean(axis=1)  # cell centroids: inside the domain
    evaluate = fd.PointEvaluator(mesh, points)
    expected = []
    for i in INDICES:
        inputs, u = problem.sample(SEED, i)
        a = inputs["a"]
        expected.append({
            "u_l2": fd.assemble(u * u * fd.dx), "u_h1": fd.assemble(fd.inner(fd.grad(u), fd.grad(u)) * fd.dx),
            "a_l2": fd.assemble(a * a * fd.dx), "au": fd.assemble(a * u * fd.dx),
            "u_points": evaluate.evaluate(u).tolist(),
        })
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", RELOAD, str(darcy_file), json.dumps(points.tolist()), json.dumps(INDICES)],
        env=env, cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(got["identity"]) == {"inputs/a", "output"}
    print("stored->reloaded numbering is the identity:", got["identity"])
    for want, stored, rebuilt in zip(expected, got["stored_mesh"], got["rebuilt_problem"]):
        for key in ("u_l2", "u_h1", "a_l2", "au"):
            assert stored[key] == pytest.approx(want[key], rel=1e-12, abs=1e-14), key
        assert np.allclose(stored["u_points"], want["u_points"], rtol=0, atol=1e-12)
        for key in ("u_l2", "au"):
            assert rebuilt[key] == pytest.approx(want[key], rel=1e-12, abs=1e-14), key


def _probe_path(h5: h5py.File, name: str) -> str:
    """Path of the stored values of numbering probe ``name`` inside the CheckpointFile part."""
    found: list[str] = []
    h5.visititems(lambda path, obj: found.append(path) if isinstance(obj, h5py.Dataset)
                  and path.endswith(f"vecs/{name}/{name}") else None)
    assert len(found) == 1, found
    return found[0]


def test_stored_dofs_in_another_order_are_mapped_back(darcy_file, tmp_path):
    """Store the output DOFs in a shuffled order (and the probe to match): same functions."""
    ref = FEFile(darcy_file)
    spaces = ref.rebuild()
    (_, u_ref), = ref.functions([1], spaces)
    moved = tmp_path / "shuffled.h5"
    shutil.copy(darcy_file, moved)
    sigma = np.random.default_rng(0).permutation(867)
    with h5py.File(moved, "r+") as h5:
        g = h5["fe_operators"]
        g["output"][...] = g["output"][...][:, sigma]
        coords = g["spaces/output/dof_coordinates"]
        coords[...] = coords[...][sigma]
        probe = h5[_probe_path(h5, "fe_operators_numbering_output")]
        probe[...] = np.argsort(sigma)[np.rint(probe[...]).astype(np.int64)].astype(np.float64)
        fields = json.loads(g["digests"].attrs["fields"])  # as a writer in that order digests them
        g["digests"][...] = sample_digests(np.arange(g["done"].shape[0]), [(k, g[k][...]) for k in fields])
    f = FEFile(moved)
    spaces = f.rebuild()
    assert not np.array_equal(spaces.permutations["output"], np.arange(867))
    (_, u), = f.functions([1], spaces)
    assert np.array_equal(u.dat.data_ro, u_ref.dat.data_ro)


def test_damaged_numbering_is_an_error_not_a_silent_renumbering(darcy_file, tmp_path):
    bad = tmp_path / "bad_coordinates.h5"
    shutil.copy(darcy_file, bad)
    with h5py.File(bad, "r+") as h5:
        ds = h5["fe_operators/spaces/output/dof_coordinates"]
        coords = ds[...]
        ds[...] = coords[[1, 0, *range(2, coords.shape[0])]]
    with pytest.raises(NumberingError, match="DOF coordinates of space output"):
        FEFile(bad).rebuild()

    other = tmp_path / "bad_hash.h5"
    shutil.copy(darcy_file, other)
    with h5py.File(other, "r+") as h5:
        h5["fe_operators/spaces/inputs/a"].attrs["numbering_hash"] = "0" * 64
    with pytest.raises(NumberingError, match="numbers the DOFs of inputs/a differently"):
        FEFile(other).rebuild_problem()


def test_layout_and_provenance(darcy_file):
    f = FEFile(darcy_file)
    prov = f.provenance
    assert prov["problem"] == "darcy" and prov["seed"] == SEED and prov["mesh"] == MESH
    assert prov["params"]["coefficient"] == "dg0" and "solver_parameters" in prov["params"]
    # the options PETSc really got: the family's sparse Cholesky and Firedrake's defaults
    used = prov["solver_parameters"]
    assert used.items() >= prov["params"]["solver_parameters"].items() and used["pc_type"] == "cholesky"
    assert used["snes_type"] == "ksponly"
    assert {"firedrake", "petsc", "h5py", "numpy", "fe_operators"} <= set(prov["versions"])
    assert prov["runs"][-1]["generated"] == 3 and prov["seconds_per_sample_mean"] > 0
    assert f.input_names == ["a"] and f.complete and (f.times > 0).all()
    info = f.space_info("output")
    assert (info.family, info.degree, info.n_nodes) == ("Lagrange", 1, 867)
    assert f.space_info("inputs/a").family == "Discontinuous Lagrange"
    assert f.dof_coordinates("inputs/a").shape == (1550, 2)
    with h5py.File(darcy_file, "r") as h5:
        g = h5["fe_operators"]
        assert g["inputs/a"].shape == (3, 1550) and g["output"].shape == (3, 867)
        assert g["inputs/a"].maxshape == (None, 1550) and g["done"][...].tolist() == [1, 1, 1]


def _overwrite(path: Path, offset: int, size: int = 4096) -> None:
    """Overwrite ``size`` bytes of ``path`` at ``offset`` with random bytes (as a bad disk would)."""
    with open(path, "r+b") as fh:
        fh.seek(max(offset, 0))
        fh.write(np.random.default_rng(offset).bytes(size))


@pytest.mark.parametrize("anchor, shift", [(b"fe_operators.dataset", -2048), (b"provenance", 0),
                                           (b"numbering_hash", 0)])
def test_a_damaged_file_is_reported_by_path_not_by_traceback(tmp_path, capsys, darcy_file, anchor, shift):
    # 4 KiB of the group's metadata overwritten: a wrong "no group", an OSError, a KeyError before
    meta = tmp_path / "meta.h5"
    shutil.copy(darcy_file, meta)
    _overwrite(meta, meta.read_bytes().index(anchor) + shift)
    with pytest.raises(DatasetFileError, match="is damaged or not readable") as info:
        FEFile(meta)
    assert str(meta) in str(info.value) and "--overwrite" in str(info.value)
    if anchor != b"provenance":
        return

    # the generator, asked to extend it, says the same in one line
    from fe_operators.cli.generate import main_generate

    assert main_generate(["darcy", "--mesh", MESH, "--samples", "4", "--out", str(meta), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is damaged or not readable" in err[0] and str(meta) in err[0], err
