"""Input-dependent Dirichlet data: the affine map of the inputs, and SPON's exact lifting through it.

The boundary values of a SPON's prediction must be the problem's own Dirichlet data bit
for bit (``torch.equal`` against Firedrake's ``DirichletBC`` values and against the
solver's solutions), for Poisson (``u = g``) and Stokes (``u = d g`` on the inlet), with
and without normalizers; data that are not affine in the inputs are refused.
"""

import numpy as np
import pytest
import torch

import firedrake as fd

from fe_operators.errors import BoundaryDataError, ConfigError, SpaceMismatchError
from fe_operators.fem import DirichletDofs, dirichlet_map, functions_to_tensor
from fe_operators.io import load_mesh
from fe_operators.models import SPON, NormalizedModel, UnitGaussianNormalizer, predict
from fe_operators.models.build import context_for_model, context_from_spaces, spon_for_problem
from fe_operators.problems import get_problem


@pytest.fixture(scope="module")
def problems():
    return {
        # Dirichlet data g on two sides only, CG2
        "poisson": get_problem("poisson", fd.UnitSquareMesh(6, 5), degree=2, markers=[1, 3]),
        "stokes": get_problem("stokes", load_mesh("channel_cylinder")),
    }


def _random_inputs(problem, rng, scale):
    """Random values on every DOF of every input (not the sampler's: nothing vanishes anywhere)."""
    out = {}
    for name, W in problem.input_spaces.items():
        f = fd.Function(W)
        f.dat.data_wo[...] = scale * rng.standard_normal(f.dat.data_ro.shape)
        out[name] = f
    return out


def _firedrake_lifting(problem, inputs):
    """The DirichletBC values Firedrake applies for these inputs (zero off the boundary)."""
    return DirichletDofs(problem.output_space, problem.output_bcs(inputs)).lifting()


PROCESSORS = {"mlp": dict(hidden=[8]), "gnn": dict(width=4, depth=1, hops=1, coarse_cells=2, latent_cells=0)}


@pytest.mark.parametrize("name,processor", [("poisson", "mlp"), ("stokes", "mlp"), ("stokes", "gnn")])
def test_boundary_values_equal_dirichletbc_bit_for_bit(problems, name, processor):
    problem = problems[name]
    torch.manual_seed(0)
    model = spon_for_problem(problem, processor, **PROCESSORS[processor])
    assert model.lifting_inputs == {"poisson": ("g",), "stokes": ("inflow",)}[name]
    rng = np.random.default_rng(1)
    # magnitudes 1e-3 .. 1e3: any float32 step or lost bit would show
    samples = [_random_inputs(problem, rng, scale) for scale in (1e-3, 1.0, 1e3)]
    x = {n: functions_to_tensor([s[n] for s in samples]) for n in problem.input_spaces}
    ref = torch.stack([_firedrake_lifting(problem, s) for s in samples])
    u = model(x).reshape(ref.shape)
    mask = model.context.mask.reshape(ref.shape[1:])
    assert mask.any() and torch.equal(u[:, mask], ref[:, mask])
    assert not torch.equal(u[:, ~mask], ref[:, ~mask])  # the free DOFs are the network's
    # through input and output normalizers (the network sees encoded inputs)
    x_norm = {n: UnitGaussianNormalizer.fit(v * 3.0 + 1.0, per="dof") for n, v in x.items()}
    y_norm = UnitGaussianNormalizer.fit(torch.randn(4, *u.shape[1:], dtype=torch.float64) * 5 + 2, per="dof")
    v = NormalizedModel(model, x_norm, y_norm)(x).reshape(ref.shape)
    assert torch.equal(v[:, mask], ref[:, mask])


@pytest.mark.parametrize("name", ["poisson", "stokes"])
def test_lifting_of_sampled_inputs_is_the_solution_on_the_boundary(problems, name):
    """What ``evaluate`` compares: the lifting equals the stored FE solution's boundary values."""
    problem = problems[name]
    model = spon_for_problem(problem, "mlp", hidden=[4])
    pairs = [problem.sample(seed=3, index=i) for i in range(2)]
    x = {n: functions_to_tensor([p[0][n] for p in pairs]) for n in problem.input_spaces}
    y = functions_to_tensor([p[1] for p in pairs]).reshape(2, *model.context.mask.shape)
    g = model.lifting_from_inputs(x)
    mask = model.context.mask
    assert torch.equal(g[:, mask], y[:, mask]) and y[:, mask].abs().max() > 0


def test_stokes_map_is_the_inflow_direction_on_the_inlet(problems):
    problem = problems["stokes"]
    dm = problem.dirichlet_map()
    assert dm.inputs == ("inflow",) and not dm.constant.any()  # no-slip walls: zero
    L = dm.maps["inflow"].tocoo()
    V = problem.output_space
    inlet = fd.DirichletBC(V, 0, problem.inlet_marker).nodes
    walls = fd.DirichletBC(V, 0, problem.noslip_markers).nodes
    # one entry per inlet DOF of a component with d_c != 0, at the DOF's own node; the
    # corners belong to the walls (the later condition wins)
    rows = np.setdiff1d(inlet, walls)
    d = problem.inflow_direction
    comps = np.flatnonzero(d)
    assert np.array_equal(np.sort(L.row), np.sort((rows[:, None] * 2 + comps).ravel()))
    assert np.array_equal(L.col, L.row // 2) and np.array_equal(L.data, d[L.row % 2])


def test_component_conditions_later_wins_and_constant_part():
    mesh = fd.UnitSquareMesh(4, 3)
    V, S = fd.VectorFunctionSpace(mesh, "CG", 2), fd.FunctionSpace(mesh, "CG", 1)

    def bcs(x):
        return [fd.DirichletBC(V.sub(1), 2 * x["a"] - 3 * x["b"] + 1.5, 1),
                fd.DirichletBC(V, fd.as_vector([x["a"], fd.Constant(-2.0)]), 3),  # overlaps marker 1 at a corner
                fd.DirichletBC(V.sub(0), 0.25, 2)]

    dm = dirichlet_map(V, bcs, {"a": S, "b": S, "c": S})
    assert dm.inputs == ("a", "b")  # c: no dependence, no map
    rng = np.random.default_rng(0)
    inputs = {n: fd.Function(S, val=rng.standard_normal(S.dof_dset.size)) for n in "abc"}
    ref = DirichletDofs(V, bcs(inputs)).lifting().numpy().reshape(-1)
    assert np.abs(dm.lifting(inputs) - ref).max() <= 1e-14
    assert np.array_equal(dm.dofs.mask.numpy(), DirichletDofs(V, bcs(inputs)).mask.numpy())
    # the constant part: data for zero inputs (1.5, -2 and 0.25 where each condition sets)
    assert set(np.unique(dm.constant)) == {0.0, 1.5, -2.0, 0.25}


def test_data_not_affine_in_the_inputs_are_refused():
    mesh = fd.UnitSquareMesh(3, 3)
    V = fd.FunctionSpace(mesh, "CG", 1)
    with pytest.raises(BoundaryDataError, match="not affine in input 'g'"):
        dirichlet_map(V, lambda x: fd.DirichletBC(V, x["g"] * x["g"], "on_boundary"), {"g": V})

    def through_a_function(x):  # the dependence hidden in a Function computed from the input
        return fd.DirichletBC(V, fd.Function(V).interpolate(2 * x["g"]), "on_boundary")

    with pytest.raises(BoundaryDataError, match="not an affine UFL expression.*override Problem.dirichlet_map"):
        dirichlet_map(V, through_a_function, {"g": V})


def test_null_lifting_is_refused_where_the_data_depend_on_the_inputs(problems):
    with pytest.raises(ConfigError, match=r"lifting_input: null means fixed boundary data.*\['inflow'\]"):
        spon_for_problem(problems["stokes"], "mlp", lifting_input=None, hidden=[4])
    with pytest.raises(ConfigError, match="depend on \\['g'\\], got 'f'"):
        spon_for_problem(problems["poisson"], "mlp", lifting_input="f", hidden=[4])
    assert spon_for_problem(problems["stokes"], "mlp", lifting_input="inflow", hidden=[4]).lifting_inputs == ("inflow",)
    darcy = get_problem("darcy", fd.UnitSquareMesh(3, 3))
    assert spon_for_problem(darcy, "mlp", lifting_input=None, hidden=[4]).lifting_inputs == ()


def test_context_without_the_models_lifting_maps_is_refused(problems):
    problem = problems["poisson"]
    model = spon_for_problem(problem, "gnn", width=4, depth=1, hops=1, coarse_cells=2, latent_cells=0)
    V = problem.output_space
    fixed = context_from_spaces(problem.input_spaces, V, problem.output_bcs(
        {n: fd.Function(W) for n, W in problem.input_spaces.items()}))
    x = torch.randn(1, V.dof_dset.size, 2, dtype=torch.float64)
    with pytest.raises(SpaceMismatchError, match=r"depend on the input fields \['g'\], the mesh context lifts \[\]"):
        model(x, context=fixed)
    # and a model with fixed data refuses a context that lifts inputs
    darcy_like = SPON.from_context(fixed, ["f", "g"], "gnn", width=4, depth=1, hops=1, coarse_cells=2,
                                   latent_cells=0)
    with pytest.raises(SpaceMismatchError, match="built with fixed boundary data"):
        darcy_like(x, context=model.context)


@pytest.mark.parametrize("name", ["poisson", "stokes"])
def test_multigrid_spon_is_exact_on_the_boundary(name):
    """SPON-MG: the lifting maps sit beside the hierarchy in the context; Poisson's g and
    Stokes' inflow d*g are the boundary values bit for bit, also through normalizers."""
    spec = {"poisson": "plate_holes/r1", "stokes": "channel_cylinder/r1"}[name]
    problem = get_problem(name, load_mesh(spec))
    torch.manual_seed(0)
    model = spon_for_problem(problem, "multigrid", width=4, layers=1, mixing="separable", coarsest_nodes=0)
    assert model.context.hierarchy is not None
    assert model.lifting_inputs == {"poisson": ("g",), "stokes": ("inflow",)}[name]
    rng = np.random.default_rng(2)
    samples = [_random_inputs(problem, rng, scale) for scale in (1e-3, 1e3)]
    x = {n: functions_to_tensor([s[n] for s in samples]) for n in problem.input_spaces}
    ref = torch.stack([_firedrake_lifting(problem, s) for s in samples])
    mask = model.context.mask.reshape(ref.shape[1:])
    u = model(x).reshape(ref.shape)
    assert mask.any() and torch.equal(u[:, mask], ref[:, mask])
    x_norm = {n: UnitGaussianNormalizer.fit(v * 2.0 - 1.0, per="global") for n, v in x.items()}
    y_norm = UnitGaussianNormalizer.fit(u.detach() * 3.0 + 1.0, per="dof")
    v = NormalizedModel(model, x_norm, y_norm)(x).reshape(ref.shape)
    assert torch.equal(v[:, mask], ref[:, mask])


def test_multigrid_spon_on_a_finer_mesh_of_the_hierarchy_lifts_that_meshs_data():
    """The evaluate/predict path on another mesh: context_for_model (hierarchy and lifting
    maps of the finer problem), and predict building the context from bcs= as a function of
    the inputs, for a NormalizedModel; the boundary is the finer mesh's g bit for bit."""
    coarse = get_problem("poisson", load_mesh("plate_holes/r1"))
    fine = get_problem("poisson", load_mesh("plate_holes/r2"))
    torch.manual_seed(0)
    model = spon_for_problem(coarse, "multigrid", width=4, layers=1, mixing="separable", coarsest_nodes=0)
    ctx = context_for_model(model, fine)
    assert ctx.hierarchy is not None and ctx.lifting_inputs == (1,) and ctx.n_nodes > model.context.n_nodes
    rng = np.random.default_rng(3)
    samples = [_random_inputs(fine, rng, scale) for scale in (1e-2, 1e2)]
    x = {n: functions_to_tensor([s[n] for s in samples]) for n in fine.input_spaces}
    ref = torch.stack([_firedrake_lifting(fine, s) for s in samples])
    mask = ctx.mask[:, 0]
    norm = NormalizedModel(model, {"f": UnitGaussianNormalizer.fit(x["f"] + 1.0, per="global")},
                           UnitGaussianNormalizer.fit(torch.randn(4, 1, dtype=torch.float64) * 2.0, per="global"))
    for net in (model, norm):
        assert torch.equal(net(x, context=ctx)[:, mask], ref[:, mask])
    u = predict(norm, samples, fine.output_space, bcs=fine.output_bcs)
    assert torch.equal(functions_to_tensor(u)[:, mask], ref[:, mask])
