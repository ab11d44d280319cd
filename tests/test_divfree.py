"""Exactly divergence-free velocities: Alfeld refinement, exact P2 embedding, the Leray projection, SPON's option.

The projection maps P2 velocities of a mesh to Scott–Vogelius P2 velocities on its
Alfeld refinement: ``‖div v‖ / ‖∇v‖`` must be round-off (≤ 1e-10) for random inputs,
random SPON weights, a Taylor–Hood Stokes solution and a Navier–Stokes state, while the
Dirichlet values are the input's bit for bit (``torch.equal``: they are copied, no
arithmetic touches them).  Divergences are measured on the refined space, where the
inputs live exactly (the embedding is exact).
"""

import numpy as np
import pytest
import torch

import firedrake as fd

from fe_operators.errors import SpaceMismatchError, UnsupportedSpaceError
from fe_operators.fem import DirichletDofs, functions_to_tensor
from fe_operators.fem.barycentric import alfeld_refine, p2_embedding
from fe_operators.fem.leray import leray_projection
from fe_operators.io import load_mesh
from fe_operators.meshes.dfg import dfg_mesh
from fe_operators.models import SPON
from fe_operators.models.build import spon_for_problem
from fe_operators.problems import get_problem
from fe_operators.problems.navier_stokes import NavierStokesCylinder

DIV_TOL = 1e-10


def _h1(P, w):
    """``|w|_{H^1}`` per sample of refined velocities."""
    X = w.reshape(w.shape[0], -1).numpy().T
    return np.sqrt(np.einsum("ib,ib->b", X, P.stiffness @ X))


def _div_l2(P, w):
    """``‖div w‖_{L^2}`` per sample (as ``divergence_ratio`` times ``|w|_{H^1}``)."""
    return P.divergence_ratio(w) * _h1(P, w)


def _firedrake_div_ratio(P, v):
    """The same ratio by Firedrake's quadrature of a refined Function (an independent check)."""
    f = fd.Function(P.space)
    f.dat.data_wo[...] = v.reshape(P.n_fine, P.ncomp).numpy()
    return np.sqrt(fd.assemble(fd.div(f) ** 2 * fd.dx) / fd.assemble(fd.inner(fd.grad(f), fd.grad(f)) * fd.dx))


@pytest.fixture(scope="module")
def square():
    """Unit square, Dirichlet on the whole boundary (the pressure constant needs the multiplier)."""
    V = fd.VectorFunctionSpace(fd.UnitSquareMesh(6, 6), "CG", 2)
    bcs = fd.DirichletBC(V, fd.Constant((0.0, 0.0)), "on_boundary")
    return V, DirichletDofs(V, bcs), leray_projection(V, bcs)


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    """The NS problem on the coarse DFG mesh (r = 0.5): inflow, walls and cylinder Dirichlet, outflow natural."""
    problem = NavierStokesCylinder(load_mesh(dfg_mesh(tmp_path_factory.mktemp("dfg"), 0.5)), dt=1 / 400)
    V = problem.velocity_space
    bcs = [fd.DirichletBC(V, fd.Constant((0.0, 0.0)), m) for m in (problem.inlet_marker, *problem.noslip_markers)]
    return problem, DirichletDofs(V, bcs), leray_projection(V, bcs)


def _stream_velocity(V, seed):
    """``curl ψ`` of a random global cubic ψ: a P2 velocity with div = 0 pointwise (its own boundary values)."""
    x, y = fd.SpatialCoordinate(V.mesh())
    c = np.random.default_rng(seed).standard_normal(10)
    psi = sum(ci * x**i * y**j for ci, (i, j) in zip(c, [(i, j) for i in range(4) for j in range(4 - i)]))
    return fd.Function(V).interpolate(fd.as_vector((psi.dx(1), -psi.dx(0))))


# ----------------------------------------------------------------------------- refinement, embedding

def test_alfeld_refinement_keeps_boundary_markers(channel):
    mesh = channel[0].mesh
    fine = alfeld_refine(mesh)
    assert fine.num_cells() == 3 * mesh.num_cells()
    assert fine.num_vertices() == mesh.num_vertices() + mesh.num_cells()
    assert sorted(fine.exterior_facets.unique_markers) == sorted(mesh.exterior_facets.unique_markers) == [1, 2, 3, 4]
    one = fd.Constant(1.0)
    for marker in (1, 2, 3, 4):  # the same boundary edges (not split), the same lengths
        assert fd.assemble(one * fd.ds(marker, domain=fine)) == pytest.approx(
            fd.assemble(one * fd.ds(marker, domain=mesh)), rel=1e-13)
    assert fd.assemble(one * fd.dx(domain=fine)) == pytest.approx(fd.assemble(one * fd.dx(domain=mesh)), rel=1e-13)
    with pytest.raises(UnsupportedSpaceError, match="triangle"):
        alfeld_refine(fd.UnitSquareMesh(2, 2, quadrilateral=True))


def test_p2_embedding_is_exact_on_random_fields(square):
    mesh = square[0].mesh()
    V, Vf = fd.FunctionSpace(mesh, "CG", 2), fd.FunctionSpace(alfeld_refine(mesh), "CG", 2)
    emb = p2_embedding(V, Vf)
    # the entries are multiples of 1/9, the original nodes unit rows
    assert np.abs(emb.matrix.data * 9 - np.rint(emb.matrix.data * 9)).max() <= 1e-14
    u = fd.Function(V)
    u.dat.data_wo[...] = np.random.default_rng(0).standard_normal(V.dof_count)
    w = emb.matrix @ u.dat.data_ro
    assert np.array_equal(w[emb.fine_of_coarse], u.dat.data_ro)
    # Firedrake's own interpolation of u into the refined space, and point values of both
    ref = fd.Function(Vf).interpolate(u).dat.data_ro
    assert np.abs(w - ref).max() <= 1e-13 * np.abs(ref).max()
    # and the same P2 polynomials inside the sub-cells: values at the nodes of P3 on each sub-cell
    wf = fd.Function(Vf)
    wf.dat.data_wo[...] = w
    D = fd.FunctionSpace(Vf.mesh(), "DG", 3)
    a, b = fd.Function(D).interpolate(u).dat.data_ro, fd.Function(D).interpolate(wf).dat.data_ro
    assert np.abs(a - b).max() <= 1e-13 * np.abs(a).max()


# ----------------------------------------------------------------------------- the projection

def test_random_inputs_become_divergence_free_with_exact_dirichlet_values(square, channel):
    rng = np.random.default_rng(1)
    for V, dofs, P in (square, (channel[0].velocity_space, *channel[1:])):
        u = torch.from_numpy(rng.standard_normal((3, P.n_coarse * 2)))
        if P.pressure_multiplier:  # Dirichlet everywhere: boundary data with zero net flux
            u[:, dofs.constrained] = torch.from_numpy(
                _stream_velocity(V, 2).dat.data_ro.reshape(-1)[dofs.constrained])
        v = P(u)
        w = P.embed(u)
        assert (P.divergence_ratio(w) > 0.1).all()  # random fields are far from divergence-free
        assert (P.divergence_ratio(v) <= DIV_TOL).all()
        assert _firedrake_div_ratio(P, v[0]) <= DIV_TOL
        # Dirichlet values: u's own bits (copied), and they are all original DOFs
        assert torch.equal(v[:, P.constrained], w[:, P.constrained])
        assert torch.equal(v[:, P.fine_of_coarse[dofs.constrained]], u[:, dofs.constrained])
        # idempotent (to the stream form's accuracy: its SPD system is biharmonic-like, cond ~ h^-4)
        assert torch.allclose(P.project(v), v, rtol=0, atol=1e-8 * v.abs().max())


def test_divergence_free_fields_are_unchanged(square):
    V, dofs, P = square
    u = functions_to_tensor([_stream_velocity(V, s) for s in (3, 4)]).reshape(2, -1)
    assert (P.divergence_ratio(P.embed(u)) <= DIV_TOL).all()
    v = P(u)
    assert torch.allclose(v, P.embed(u), rtol=0, atol=1e-10 * u.abs().max())


def test_taylor_hood_states_change_by_their_divergence(channel):
    """A Navier–Stokes state (BDF2 step from the perturbed steady state): divergence 0 after, and
    ``|v − u|_1`` is of the size of ``‖div u‖``: at least ``‖div u‖/√2`` (``div(v − u) = −div u``),
    at most ``‖div u‖/β`` (β the inf-sup constant)."""
    problem, dofs, P = channel
    params = {"Re": 100.0}
    s0 = problem.initial_state(params)
    s1 = problem.step(s0, params)
    u = torch.from_numpy(np.stack([s.subfunctions[0].dat.data_ro.reshape(-1) for s in (s0, s1)]))
    w, v = P.embed(u), P(u)
    before, after = P.divergence_ratio(w), P.divergence_ratio(v)
    assert np.allclose(before[1], problem.divergence_ratio(s1), rtol=1e-8)  # the same number on T and T*
    assert (before > 1e-3).all() and (after <= DIV_TOL).all()
    assert torch.equal(v[:, P.constrained], w[:, P.constrained])
    ratio = _h1(P, v - w) / _div_l2(P, w)
    assert (ratio >= 1 / np.sqrt(2) * (1 - 1e-9)).all() and (ratio <= 10).all(), ratio
    assert (_h1(P, v - w) / _h1(P, w) < 0.1).all()
    # the L2 change is smaller still (the correction is a gradient-type field of size h ‖div u‖)
    assert (P.relative_l2(v, u) < 0.1 * _h1(P, v - w) / _h1(P, w)).all()


@pytest.mark.parametrize("marker", [1, "on_boundary"])
def test_gradcheck(marker):
    """One side Dirichlet (outflow elsewhere) and the whole boundary (the pressure multiplier)."""
    V = fd.VectorFunctionSpace(fd.UnitSquareMesh(2, 2), "CG", 2)
    P = leray_projection(V, fd.DirichletBC(V, fd.Constant((0.0, 0.0)), marker))
    assert P.pressure_multiplier == (marker == "on_boundary")
    u = torch.randn(2, P.n_coarse * 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(P, (u,))
    w = torch.randn(2, P.n_fine, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(P.project, (w,))
    # float32 inputs get float32 gradients (outputs are float64)
    u32 = torch.randn(1, P.n_coarse, 2, requires_grad=True)
    P(u32).sum().backward()
    assert u32.grad.dtype == torch.float32 and u32.grad.shape == u32.shape


def test_stream_form_equals_the_saddle_point_form(square, channel):
    """The stream-function form (curls of HCT) is the same linear map as the saddle point, forward and
    adjoint, for any data: compatible Dirichlet values through the stream functions, and a net flux
    through the closed cylinder (random values there: no stream function has them) through the
    flux directions mapped once by the saddle point (div-free too, with the outflow open)."""
    rng = np.random.default_rng(5)
    for V, dofs, P in (square, (channel[0].velocity_space, *channel[1:])):
        assert P.stream is not None and P.stream.size < P.n_fine and P.stream.flux_directions == 1
        Q = leray_projection(V, dofs, method="saddle")
        assert Q.stream is None
        u = torch.from_numpy(rng.standard_normal((3, P.n_coarse * 2)))
        u[:2, dofs.constrained] = torch.from_numpy(
            _stream_velocity(V, 7).dat.data_ro.reshape(-1)[dofs.constrained])
        compatible = [P.stream.compatible(w[:, None]) for w in P.embed(u).numpy()[:, P.constrained]]
        assert compatible == [True, True, False]
        v, ref = P(u), Q(u)
        assert float((v - ref).abs().max()) <= 1e-8 * float(ref.abs().max())
        # the rollout's path: the values at the original nodes without the refined field
        with torch.no_grad():
            nodes = P.at_nodes(u)
        assert float((nodes - P.restrict(v)).abs().max()) <= 1e-12 * float(v.abs().max())
        assert torch.equal(nodes[:, dofs.constrained], u[:, dofs.constrained])
        assert torch.equal(v[:, P.constrained], ref[:, P.constrained])
        if not P.pressure_multiplier:
            assert (P.divergence_ratio(v) <= DIV_TOL).all()
        g = torch.from_numpy(rng.standard_normal(tuple(v.shape)))
        x = u.clone().requires_grad_(True)
        (P(x) * g).sum().backward()
        y = u.clone().requires_grad_(True)
        (Q(y) * g).sum().backward()
        assert float((x.grad - y.grad).abs().max()) <= 1e-8 * float(y.grad.abs().max())
    with pytest.raises(ValueError, match="method"):
        leray_projection(channel[0].velocity_space, channel[1], method="stream")


def test_refused_spaces():
    mesh = fd.UnitSquareMesh(2, 2)
    with pytest.raises(UnsupportedSpaceError, match="vector CG2"):
        leray_projection(fd.VectorFunctionSpace(mesh, "CG", 1), [])
    V = fd.VectorFunctionSpace(mesh, "CG", 2)
    with pytest.raises(SpaceMismatchError, match="Dirichlet"):
        leray_projection(V, [])


# ----------------------------------------------------------------------------- SPON's decoder option

GNN = dict(width=8, depth=1, hops=1, coarse_cells=2, latent_cells=0)


@pytest.fixture(scope="module")
def stokes():
    """Stokes on the shipped channel mesh and a SPON with the divergence-free decoder (its projection)."""
    problem = get_problem("stokes", load_mesh("channel_cylinder"))
    torch.manual_seed(0)
    model = spon_for_problem(problem, "gnn", decoder="divergence_free", **GNN)
    return problem, model


def _mlp(model, seed):
    """A small MLP SPON with the divergence-free decoder on the same context and projection (fast to train)."""
    torch.manual_seed(seed)
    mlp = SPON.from_context(model.context, [("inflow", 1)], "mlp", decoder="divergence_free", hidden=[16])
    mlp.set_projection(model.projection)
    return mlp.double()


def test_spon_divergence_free_decoder_random_weights(stokes):
    problem, model = stokes
    P = model.projection
    rng = np.random.default_rng(5)
    inputs = []
    for _ in range(2):
        f = fd.Function(problem.input_spaces["inflow"])
        f.dat.data_wo[...] = rng.standard_normal(f.dat.data_ro.shape)
        inputs.append(f)
    x = {"inflow": functions_to_tensor(inputs)}
    v = model(x)
    assert v.shape == (2, P.n_fine, 2) and v.dtype == torch.float64
    assert (P.divergence_ratio(v) <= DIV_TOL).all()
    # the Dirichlet values are the problem's data (DirichletBC's), bit for bit
    ref = torch.stack([DirichletDofs(problem.output_space, problem.output_bcs({"inflow": f})).lifting()
                       for f in inputs]).reshape(2, -1)
    mask = model.context.mask.reshape(-1)
    assert torch.equal(v.reshape(2, -1)[:, P.fine_of_coarse[mask.numpy()]], ref[:, mask])
    # gradients reach the weights through the projection
    v.square().sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.processor.parameters())
    # the option travels in the config; the projection (mesh data) is attached again
    clone = SPON.from_config(model.config)
    assert clone.config["decoder"] == "divergence_free"
    clone.load_state_dict(model.state_dict())
    with pytest.raises(ValueError, match="set_projection"):
        clone(x)
    clone.set_projection(P)
    assert torch.equal(clone(x), v.detach())


def test_spon_divergence_free_after_training(stokes):
    """A few Adam steps on Stokes solutions (targets embedded exactly into the refined space):
    the loss falls, the outputs stay divergence-free and exact on the Dirichlet boundary."""
    problem, built = stokes
    model = _mlp(built, 1)
    P = model.projection
    pairs = [problem.sample(seed=0, index=i) for i in range(2)]
    x = {"inflow": functions_to_tensor([p[0]["inflow"] for p in pairs])}
    y = P.embed(functions_to_tensor([p[1] for p in pairs]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = (model(x) - y).square().sum() / y.square().sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        v = model(x)
    assert (P.divergence_ratio(v) <= DIV_TOL).all()
    assert torch.equal(v.reshape(2, -1)[:, P.constrained], y.reshape(2, -1)[:, P.constrained])


def test_train_config_key():
    from fe_operators.train.builders import spon_options
    from fe_operators.train.config import ModelSection

    assert spon_options(ModelSection(type="spon", options={"decoder": "divergence_free"})).decoder == "divergence_free"
    assert spon_options(ModelSection(type="spon", options={})).decoder == "dirichlet"
    with pytest.raises(Exception, match="decoder"):
        spon_options(ModelSection(type="spon", options={"decoder": "curl"}))
    # steady training compares outputs with the dataset's DOFs: refused with the reason
    from fe_operators.errors import ConfigError
    from fe_operators.train.builders import build_spon

    with pytest.raises(ConfigError, match="Alfeld-refined"):
        build_spon(ModelSection(type="spon", options={"decoder": "divergence_free"}), None)
