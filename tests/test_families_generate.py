"""Every problem family generates a dataset on a shipped mesh (the 3D one by Poisson)."""

import numpy as np
import pytest

import firedrake as fd

from fe_operators.data import FEDataset, FEFile
from fe_operators.data import generate_dataset
from fe_operators.problems import load_problem

CASES = [
    ("poisson", "box_cavity", {}),
    ("darcy", "lshape", {}),
    ("helmholtz", "crescent", {}),
    ("elasticity", "plate_holes", {}),
    ("nonlinear", "lshape", {}),
    ("stokes", "channel_cylinder", {}),
]


@pytest.mark.parametrize("family,mesh,params", CASES, ids=[c[0] for c in CASES])
def test_family_generates_on_shipped_mesh(tmp_path, family, mesh, params):
    out = tmp_path / f"{family}.h5"
    report = generate_dataset(family, mesh, 2, out, seed=5, params=params, progress=False)
    assert report.generated == 2
    data = FEDataset(out)
    x, y = data[1]
    problem = load_problem(family, mesh, params)
    inputs, u = problem.sample(5, 1)
    # the stored sample is the problem's own solution for (seed, index)
    _, stored = FEFile(out).read([1])
    assert np.allclose(stored[0], u.dat.data_ro, rtol=0, atol=1e-10 * np.abs(u.dat.data_ro).max())
    assert y.shape == tuple(np.shape(u.dat.data_ro))
    assert np.abs(u.dat.data_ro).max() > 0
    # and it satisfies the output's Dirichlet conditions exactly
    for bc in problem.output_bcs(inputs):
        g = fd.Function(u.function_space())
        bc.apply(g)
        nodes = bc.nodes
        assert np.array_equal(u.dat.data_ro[nodes], g.dat.data_ro[nodes])
