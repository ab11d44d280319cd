"""The hyperelastic beam family: exact clamp, linear limit, Newton, the buckling limit, generation."""

import json

import numpy as np
import pytest
import scipy.linalg

import firedrake as fd

from fe_operators.data import FEDataset, FEFile
from fe_operators.data import generate_dataset
from fe_operators.errors import ConfigError, LoadLimitError
from fe_operators.sparse.petsc import petsc_to_scipy
from fe_operators.io import load_mesh
from fe_operators.problems import load_problem, problem_class
from fe_operators.errors import SolveError
from fe_operators.problems.elasticity import ElasticityProblem
from fe_operators.problems.hyperelastic import (
    MAX_AXIAL_LOAD_FRACTION,
    HyperelasticBeamProblem,
    buckling_load,
    euler_load,
)

MESH = "rectangle:1,0.1:20x2"  # CG2: 410 DOFs


@pytest.fixture(scope="module")
def problem():
    return HyperelasticBeamProblem(load_mesh(MESH))


def corner_inputs(problem, a, b, E=None):
    """Uniform traction with axial fraction ``a`` and transverse fraction ``b`` of ``P_ref``."""
    if E is None:
        E = fd.Function(problem.input_spaces["E"]).assign(1.0)
    load = fd.Function(problem.input_spaces["load"])
    load.dat.data_wo[...] = np.array([-a, b]) * problem.reference_load(E) / problem.height
    return {"E": E, "load": load}


def test_clamped_dofs_exactly_zero(problem):
    inputs, u = problem.sample(seed=1, index=0)
    assert np.abs(u.dat.data_ro).max() > 1e-3
    (bc,) = problem.output_bcs(inputs)
    assert len(bc.nodes) > 0
    assert np.array_equal(u.dat.data_ro[bc.nodes], np.zeros((len(bc.nodes), 2)))
    # and SPON's lifting sees these DOFs with zero data, whatever the inputs
    lifting = problem.dirichlet_map()
    assert lifting.dofs.constrained.size == 2 * len(bc.nodes)
    assert not lifting.constant.any() and all(m.nnz == 0 for m in lifting.maps.values())


def test_small_load_agrees_with_linear_elasticity_to_second_order(problem):
    linear = ElasticityProblem(problem.mesh, degree=2, poisson_ratio=0.3, clamp_markers=1, traction_markers=2)
    base = problem.sample_inputs(np.random.default_rng(7))
    base = corner_inputs(problem, 0.5, 0.1, E=base["E"])  # the worst corner, heterogeneous E
    ratios = []
    for s in (0.04, 0.02, 0.01):
        load = fd.Function(base["load"].function_space(), val=s * base["load"].dat.data_ro)
        u = problem.solve({"E": base["E"], "load": load}).dat.data_ro
        u_lin = linear.solve({"E": base["E"], "load": load}).dat.data_ro
        ratios.append(np.linalg.norm(u - u_lin) / np.linalg.norm(u_lin))
    # ‖u − u_lin‖ = O(s²): the relative difference halves with the load
    assert ratios[-1] < 2e-2
    for big, small in zip(ratios, ratios[1:]):
        assert 0.4 < small / big < 0.6, ratios


@pytest.mark.parametrize("b", [0.1, -0.1, 0.0])
def test_newton_converges_with_default_load_steps(problem, b):
    # homogeneous E at the largest sampled loads: the hardest inputs of the sampled range
    inputs = corner_inputs(problem, problem.params["axial_load_max"], b)
    u = problem.solve(inputs)
    assert problem.load_steps_taken == problem.params["load_steps"] == 1
    assert problem.newton_iterations <= 12
    # more load steps follow the same path to the same equilibrium
    stepped = HyperelasticBeamProblem(problem.mesh, load_steps=4)
    v = stepped.solve(inputs)
    assert stepped.load_steps_taken == 4
    np.testing.assert_allclose(v.dat.data_ro, u.dat.data_ro, rtol=0, atol=1e-7 * np.abs(u.dat.data_ro).max())
    if b:
        # beam-column amplification: the tip deflection is about 1/(1 − P/P_cr) ≈ 2 times the linear one
        linear_tip = b * problem.reference_load(inputs["E"]) * problem.length**3 / (
            3 * 1.0 / (1 - 0.3**2) * problem.height**3 / 12)
        tip = u.dat.data_ro[:, 1][np.abs(u.dat.data_ro[:, 1]).argmax()]
        assert 1.7 < tip / linear_tip < 2.1


def test_newton_cuts_failed_steps_and_reports_failure():
    mesh = load_mesh(MESH)
    cut = HyperelasticBeamProblem(mesh, solver_parameters={"snes_max_it": 5})
    u = cut.solve(corner_inputs(cut, 0.5, 0.1))
    assert cut.load_steps_taken > 1
    ref = HyperelasticBeamProblem(mesh).solve(corner_inputs(cut, 0.5, 0.1))
    np.testing.assert_allclose(u.dat.data_ro, ref.dat.data_ro, rtol=0, atol=1e-7 * np.abs(ref.dat.data_ro).max())
    never = HyperelasticBeamProblem(mesh, max_load_steps=2, solver_parameters={"snes_max_it": 2})
    with pytest.raises(SolveError, match="SNES_DIVERGED_MAX_IT") as info:
        never.solve(corner_inputs(never, 0.5, 0.1))
    assert info.value.solver == "SNES" and "max_load_steps 2" in str(info.value)


def test_sampled_loads_stay_below_half_the_fe_critical_load(problem):
    E1 = fd.Function(problem.input_spaces["E"]).assign(1.0)
    p_cr = buckling_load(problem, E1)
    p_euler = euler_load(1.0, 0.3, problem.length, problem.height)
    assert problem.reference_load(E1) == p_euler
    assert 1.0 <= p_cr / p_euler < 1.02  # the FE model buckles at the Euler load (shear: < 1 %)
    for index in range(3):
        inputs = problem.sample_inputs(np.random.default_rng([3, index]))
        axial, _ = problem.resultants(inputs["load"])
        assert 0 <= axial <= MAX_AXIAL_LOAD_FRACTION * buckling_load(problem, inputs["E"])


@pytest.mark.parametrize("b", [0.1, -0.1])
def test_tangent_stiffness_positive_definite_at_the_corners(problem, b):
    # a stable equilibrium on the load path: one solution per input
    u = problem.solve(corner_inputs(problem, problem.params["axial_load_max"], b))
    problem._u.assign(u)
    (bc,) = problem.output_bcs({})
    jac = fd.derivative(fd.derivative(problem._energy, problem._u), problem._u)
    K = petsc_to_scipy(fd.assemble(jac, bcs=bc).petscmat).toarray()
    assert scipy.linalg.eigvalsh(K, subset_by_index=[0, 0])[0] > 0


def test_load_above_the_limit_is_refused(problem):
    with pytest.raises(ConfigError, match="axial_load_max") as info:
        HyperelasticBeamProblem(problem.mesh, axial_load_max=0.6)
    assert info.value.key == "axial_load_max" and "buckl" in str(info.value)
    with pytest.raises(LoadLimitError, match=r"0\.6 of the Euler load .* at most 0\.5"):
        problem.solve(corner_inputs(problem, 0.6, 0.0))
    problem.solve(corner_inputs(problem, MAX_AXIAL_LOAD_FRACTION, 0.0))  # the limit itself is accepted


def test_registry_and_generate(tmp_path):
    assert problem_class("hyperelastic_beam") is HyperelasticBeamProblem
    out = tmp_path / "beam.h5"
    report = generate_dataset("hyperelastic_beam", MESH, 2, out, seed=5, params={}, progress=False)
    assert report.generated == 2
    x, y = FEDataset(out)[1]
    problem = load_problem("hyperelastic_beam", MESH, {})
    desc = json.loads(json.dumps(problem.description()))
    assert desc["problem"] == "hyperelastic_beam" and desc["params"] == problem.params
    inputs, u = problem.sample(5, 1)
    _, stored = FEFile(out).read([1])
    assert np.allclose(stored[0], u.dat.data_ro, rtol=0, atol=1e-10 * np.abs(u.dat.data_ro).max())
    assert y.shape == u.dat.data_ro.shape
    (bc,) = problem.output_bcs(inputs)
    assert np.array_equal(stored[0][bc.nodes], np.zeros((len(bc.nodes), 2)))
