"""Rollout surrogates: the heat family, RolloutSPON, its training and evaluation."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import numpy as np
import pytest
import torch

import firedrake as fd

from fe_operators.errors import SpaceMismatchError
from fe_operators.data.trajectories import TrajectoryData
from fe_operators.fem.norms import RelativeLoss
from fe_operators.models.rollout import RolloutSPON, StateLayout
from fe_operators.models.rollout_build import rollout_spon_for_problem, state_layout
from fe_operators.problems.heat import HeatEquation
from fe_operators.train import TrainSection
from fe_operators.train.rollout import RolloutTrainer, RolloutWindows, UnrolledLoss, state_norm


# ----------------------------------------------------------------------------- the heat family
def _manufactured(scheme: str, dt: float, degree: int = 2, n: int = 4, end: float = 1.0) -> float:
    """L2 error at ``end`` of u = (cos 2t + 1)(1 + 2x - x²): in CG2 in space (only the time error
    remains), Dirichlet data u(0, y, t) = cos 2t + 1 on x = 0, insulated elsewhere (∂_n u = 0 there)."""
    mesh = fd.UnitSquareMesh(n, n)

    def T(t):
        return fd.cos(2 * t) + 1

    def S(x):
        return 1 + 2 * x[0] - x[0] ** 2

    problem = HeatEquation(
        mesh, dt=dt, degree=degree, scheme=scheme, dirichlet_markers=1,
        source=lambda x, t, p: -2 * fd.sin(2 * t) * S(x) + 2 * p["kappa"] * T(t),
        boundary=lambda x, t: T(t) * S(x), initial=lambda x, p: T(0.0) * S(x))
    states = problem.trajectory({"kappa": 0.7, "amplitude": 1.0, "frequency": 1.0}, int(round(end / dt)))
    assert problem.time == pytest.approx(end, rel=1e-12)
    u = problem.array_to_state(states[-1])
    exact = T(fd.Constant(end)) * S(fd.SpatialCoordinate(mesh))
    return float(fd.sqrt(fd.assemble((u - exact) ** 2 * fd.dx)))


@pytest.mark.parametrize("scheme, low", [("crank_nicolson", 3.9), ("bdf2", 3.2)])
def test_heat_second_order_in_time(scheme, low):
    """Halving dt divides the error by 4 (CN: 4.003, 4.001; BDF2 with its Euler start: 3.30, 3.73)."""
    errors = [_manufactured(scheme, dt) for dt in (0.1, 0.05, 0.025)]
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    assert errors[-1] < 1e-3
    assert all(low < r < 4.3 for r in ratios), ratios


def test_heat_cg1_converges_in_space():
    """CG1 with a small dt: the L2 error falls by about 4 per mesh halving (second order)."""
    errors = [_manufactured("crank_nicolson", 0.0125, degree=1, n=n, end=0.25) for n in (4, 8)]
    assert 3.0 < errors[0] / errors[1] < 4.5, errors


def test_heat_family_contract():
    mesh = fd.UnitSquareMesh(4, 4)
    problem = HeatEquation(mesh, dt=0.05, boundary_value=1.0, boundary_frequency=4.0)
    rng = np.random.default_rng(1)
    params = problem.sample_parameters(rng)
    assert list(params) == ["kappa", "amplitude", "frequency"]
    assert 0.5 <= params["kappa"] <= 2.0
    json.dumps(problem.description())
    states = problem.trajectory(params, 6, store_every=2, spinup_steps=2)
    assert states.shape == (4, problem.n_dofs)
    # time-dependent Dirichlet data on x = 0 only, reproduced bit for bit by boundary_values
    mask = state_layout(problem.state_space, problem.output_bcs(params)).mask.numpy()
    assert mask.sum() == 5  # the 5 CG1 nodes of x = 0, not the whole boundary
    g = problem.boundary_values(params, problem.dt * (2 + 2 * np.arange(4)))
    assert np.array_equal(states[:, mask], g[:, mask])
    assert np.ptp(g[:, mask]) > 0.5  # they do change in time
    with pytest.raises(ValueError, match="kappa > 0"):
        problem.trajectory({"kappa": -1.0, "amplitude": 1.0, "frequency": 1.0}, 1)
    with pytest.raises(ValueError, match="scheme"):
        HeatEquation(mesh, scheme="rk4")


# ----------------------------------------------------------------------------- rollout models
def _heat_data(problem: HeatEquation, n: int, steps: int, seed: int) -> TrajectoryData:
    rng = np.random.default_rng(seed)
    params = [problem.sample_parameters(rng) for _ in range(n)]
    states = np.stack([problem.trajectory(p, steps) for p in params])
    values = np.array([[p[k] for k in problem.parameter_names] for p in params])
    return TrajectoryData(states, values, problem.parameter_names, problem.dt, problem.description())


@pytest.fixture(scope="module")
def oscillating():
    """Heat on unitsquare:4 with Dirichlet data cos(4t) on x = 0, and three trajectories."""
    problem = HeatEquation(fd.UnitSquareMesh(4, 4), dt=0.05, boundary_value=1.0, boundary_frequency=4.0)
    return problem, _heat_data(problem, 3, 8, seed=0)


@pytest.mark.parametrize("processor, options", [
    ("gnn", {"width": 8, "depth": 2, "latent_cells": 0}),
    ("mlp", {"hidden": [16]}),
    ("multigrid", {}),
    pytest.param("hierarchical", {}, marks=pytest.mark.slow),  # ~20 s of set-up under load
])
def test_untrained_rollout_exact_boundary(oscillating, processor, options):
    """Boundary error exactly 0 at every step for random weights, time-dependent data."""
    problem, data = oscillating
    torch.manual_seed(0)
    model = rollout_spon_for_problem(problem, processor, mesh_spec="unitsquare:4", **options)
    model.fit_normalizers(data.states, data.params)
    ref = torch.from_numpy(data.states)
    pred = model.rollout(ref[:, 0], torch.from_numpy(data.params), data.n_stored - 1, boundary=ref)
    mask = model.layout.mask
    assert pred.shape == ref.shape and pred.dtype == torch.float64
    assert torch.equal(pred[..., mask], ref[..., mask])
    assert not torch.equal(pred[:, 1:, ~mask], ref[:, 1:, ~mask])  # the interior is the network's
    # without boundary data: the data of s0 at every step
    steady = model.rollout(ref[:, 0], torch.from_numpy(data.params), 3)
    assert torch.equal(steady[..., mask], ref[:, :1, mask].expand(-1, 4, -1))


def test_unrolled_loss_one_step_and_windows(oscillating):
    problem, data = oscillating
    torch.manual_seed(0)
    model = rollout_spon_for_problem(problem, "gnn", width=8, depth=1, latent_cells=0)
    model.fit_normalizers(data.states, data.params)
    step_loss = RelativeLoss(state_norm(problem))
    windows = RolloutWindows(data, 1, model.layout.mask)
    assert len(windows) == 3 * 8
    x, y = windows[10]  # trajectory 1, step 2
    assert torch.equal(x["state"], torch.from_numpy(data.states[1, 2]))
    assert torch.equal(y[0], torch.from_numpy(data.states[1, 3]))
    assert torch.equal(x["boundary"][0, ~model.layout.mask], torch.zeros(int((~model.layout.mask).sum()),
                                                                         dtype=torch.float64))
    batch = torch.utils.data.default_collate([windows[i] for i in range(6)])
    unrolled = UnrolledLoss(step_loss)(model(batch[0]), batch[1])
    one_step = step_loss(model.step(batch[0]["state"], batch[0]["params"], batch[0]["boundary"][:, 0]), batch[1][:, 0])
    assert unrolled.item() == one_step.item() > 0
    # k = 3 unrolls the one-step map three times
    x3, y3 = torch.utils.data.default_collate([RolloutWindows(data, 3, model.layout.mask)[0]])
    out = model(x3)
    s = x3["state"]
    for j in range(3):
        s = model.step(s, x3["params"], x3["boundary"][:, j])
        assert torch.equal(out[:, j], s)


def test_training_noise_changes_inputs_only(oscillating):
    problem, data = oscillating
    torch.manual_seed(0)
    model = rollout_spon_for_problem(problem, "gnn", width=8, depth=1, latent_cells=0, noise_std=0.1)
    model.fit_normalizers(data.states, data.params)
    x, y = torch.utils.data.default_collate([RolloutWindows(data, 2, model.layout.mask)[i] for i in range(4)])
    mask = model.layout.mask
    model.eval()  # no noise outside training
    clean = model(x)
    model.noise_std = 0.0
    model.train()
    assert torch.equal(model(x), clean)  # std 0: training mode changes nothing
    model.noise_std = 0.1
    torch.manual_seed(5)
    noisy_state = model.add_noise(x["state"])
    torch.manual_seed(5)
    noisy = model(x)
    diff = noisy_state - x["state"]
    assert torch.equal(diff[:, mask], torch.zeros_like(diff[:, mask]))  # Dirichlet DOFs untouched
    std = model.state_normalizer.std.item()
    assert 0.05 * std < float(diff[:, ~mask].std()) < 0.2 * std
    # the model with noise is the clean model applied to the noisy input: targets and data unchanged
    model.eval()
    assert torch.equal(noisy, model({**x, "state": noisy_state}))
    assert torch.equal(noisy[..., mask], y[..., mask])


def test_mixed_state_layout_and_ns_rollout_exact_velocity():
    """Taylor–Hood (u, p) on the shipped channel_cylinder mesh: P1 pressure embedded in the P2
    nodes and read back exactly; an untrained rollout keeps the inflow and no-slip values exactly."""
    from fe_operators.io import load_mesh
    from fe_operators.problems.navier_stokes import NavierStokesCylinder

    problem = NavierStokesCylinder(load_mesh("channel_cylinder"))
    params = {"Re": 100.0}
    s0 = problem.state_to_array(problem.stokes_state(params))
    torch.manual_seed(0)
    model = rollout_spon_for_problem(problem, "gnn", params=params, width=8, depth=2, latent_cells=0)
    layout = model.layout
    assert layout.channels == 3 and [f["mapped"] for f in layout.fields] == [False, True]
    s = torch.from_numpy(s0)[None]
    assert torch.equal(layout.from_nodes(layout.to_nodes(s)), s)  # pressure vertices are P2 nodes
    n_u = problem.velocity_space.dof_dset.size * 2
    assert bool(layout.mask[:n_u].any()) and not bool(layout.mask[n_u:].any())
    pred = model.rollout(s, torch.tensor([[100.0]]), 3)
    assert torch.equal(pred[:, :, layout.mask], s[:, None, layout.mask].expand(-1, 4, -1))
    inflow = pred[0, -1, :n_u].reshape(-1, 2)[layout.mask[:n_u].reshape(-1, 2)[:, 0]]
    assert float(inflow[:, 0].max()) == pytest.approx(1.5, rel=1e-3)  # U_max = 1.5 at Re 100 on the inlet
    norms = state_norm(problem), state_norm(problem, fields=[0])
    u = problem.stokes_state(params).subfunctions[0]
    assert float(norms[1](s)) == pytest.approx(float(fd.norm(u)), rel=1e-12)
    assert float(norms[0](s)) > float(norms[1](s))


def test_diagnostic_pressure_is_predicted_not_evolved():
    """Navier–Stokes declares its pressure diagnostic; with ``diagnostic=problem.diagnostic_fields``
    the network reads the velocity only (2 state channels), the new pressure is the network's value
    whatever the old pressure was (changing it changes nothing of the step), the velocity is the old
    one plus the increment, and the increment's pressure part is the new value minus the old; the
    default evolves both (3 state channels, the old pressure read)."""
    from fe_operators.io import load_mesh
    from fe_operators.problems.navier_stokes import NavierStokesCylinder

    problem = NavierStokesCylinder(load_mesh("channel_cylinder"))
    assert problem.diagnostic_fields == (1,)
    params = {"Re": 100.0}
    s = torch.from_numpy(problem.state_to_array(problem.stokes_state(params)))[None]
    re = torch.tensor([[100.0]])
    n_u = problem.velocity_space.dof_dset.size * 2
    torch.manual_seed(0)
    model = rollout_spon_for_problem(problem, "gnn", params=params, diagnostic=problem.diagnostic_fields,
                                     width=8, depth=2, latent_cells=0)
    assert [f.ncomp for f in model.spon.encoder.fields] == [2, 1]
    assert [f["diagnostic"] for f in model.layout.fields] == [False, True]
    model.fit_normalizers(torch.stack([s, 1.1 * s], dim=1), re)
    other = s.clone()
    other[:, n_u:] += torch.randn(other[:, n_u:].shape, dtype=torch.float64)
    with torch.no_grad():
        new, new_other = model.step(s, re), model.step(other, re)
        delta = model.increment(s, re)
    assert torch.equal(new, new_other)
    assert float((new[:, n_u:] - s[:, n_u:]).abs().max()) > 1e-6
    free_u = ~model.layout.mask[:n_u]
    assert torch.equal(new[:, :n_u][:, free_u], (s + delta)[:, :n_u][:, free_u])
    torch.testing.assert_close(new[:, n_u:], (s + delta)[:, n_u:], rtol=1e-14, atol=1e-14)
    assert torch.equal(new[:, model.layout.mask], s[:, model.layout.mask])
    evolved = rollout_spon_for_problem(problem, "gnn", params=params, width=8, depth=2, latent_cells=0)
    assert [f.ncomp for f in evolved.spon.encoder.fields] == [3, 1]
    with torch.no_grad():
        assert not torch.equal(evolved.step(s, re), evolved.step(other, re))
    read = rollout_spon_for_problem(problem, "gnn", params=params, diagnostic=(1,), read_diagnostic=True, width=8,
                                    depth=2, latent_cells=0)
    assert [f.ncomp for f in read.spon.encoder.fields] == [3, 1] and read.layout.fields[1]["read"]
    read.fit_normalizers(torch.stack([s, 1.1 * s], dim=1), re)
    with torch.no_grad():
        assert not torch.equal(read.step(s, re), read.step(other, re))  # the old pressure is read
        # ... but not integrated: the new pressure is the network's value, whatever the old one
        z = read._raw_output(s, re)
        assert torch.equal(read.step(s, re)[:, n_u:], z[:, n_u:])
    with pytest.raises(ValueError, match="evolved field must be read"):
        StateLayout([dict(offset=0, n_nodes=4, ncomp=1, channel=0, mapped=False, read=False)], 4)
    restored = RolloutSPON.from_config(json.loads(json.dumps(model.config)))
    restored.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(restored.step(s, re), new)
    with pytest.raises(ValueError, match="out of range"):
        state_layout(problem.state_space, (), diagnostic=(2,))
    with pytest.raises(ValueError, match="at least one evolved"):
        state_layout(problem.state_space, (), diagnostic=(0, 1))


def _cylinder_model_and_projection() -> tuple[torch.Tensor, RolloutSPON, Callable[[torch.Tensor], torch.Tensor], int]:
    """The Stokes state at Re 100 on channel_cylinder ``(1, n_dofs)``, an untrained rollout GNN, the
    state's Leray projection (:func:`leray_state_projection`) and the velocity block's size."""
    from fe_operators.fem.leray import leray_projection, leray_state_projection
    from fe_operators.io import load_mesh
    from fe_operators.problems.navier_stokes import NavierStokesCylinder

    problem = NavierStokesCylinder(load_mesh("channel_cylinder"))
    params = {"Re": 100.0}
    s = torch.from_numpy(problem.state_to_array(problem.stokes_state(params)))[None]
    torch.manual_seed(0)
    model = rollout_spon_for_problem(problem, "gnn", params=params, width=8, depth=2, latent_cells=0)
    n_u = problem.velocity_space.dof_dset.size * 2
    P = leray_projection(problem.velocity_space, np.flatnonzero(model.layout.mask[:n_u].numpy()))
    return s, model, leray_state_projection(P), n_u


def test_rollout_with_the_leray_projection_at_every_step():
    """RolloutSPON.rollout(project=leray_state_projection(P)): every step is taken from the projected
    state (a manual loop of step then projection gives the same states bit for bit), the pressure block
    is left alone by the projection, the Dirichlet values stay exact, and the projected velocity differs
    from the network's own (the projection acts)."""
    s, model, project, n_u = _cylinder_model_and_projection()
    mask, re = model.layout.mask, torch.tensor([[100.0]])
    pred = model.rollout(s, re, 2, project=project)
    manual, state = [s], s
    with torch.no_grad():  # as the rollout
        for _ in range(2):
            state = project(model.step(state, re))
            manual.append(state)
    assert torch.equal(pred, torch.stack(manual, dim=1))
    assert torch.equal(pred[:, :, mask], s[:, None, mask].expand(-1, 3, -1))
    with torch.no_grad():
        stepped = model.step(s, re)
    assert torch.equal(project(stepped)[:, n_u:], stepped[:, n_u:])  # pressure untouched
    assert float((project(stepped)[:, :n_u] - stepped[:, :n_u]).abs().max()) > 1e-6
    with pytest.raises(SpaceMismatchError, match="velocity block"):
        project(s[:, :10])


def test_projection_inside_the_unrolled_loss():
    """RolloutSPON.projection: forward (the unrolled loss) takes every step from the projected state, as the
    projected rollout does; gradients pass through the projection (its adjoint), so they differ from the
    unprojected model's; rollout() projects by default; the Dirichlet values are the window's data."""
    s, model, project, n_u = _cylinder_model_and_projection()
    mask, re = model.layout.mask, torch.tensor([[100.0]])
    x = {"state": s, "params": re, "boundary": s[:, None].expand(-1, 2, -1)}
    grads = []
    for proj in (None, project):
        model.projection = proj
        model.zero_grad()
        pred = model(x, noise=False)
        weights = torch.linspace(-1.0, 1.0, pred.numel(), dtype=pred.dtype).reshape(pred.shape)
        (pred * weights).sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]))
    assert torch.equal(pred[:, :, mask], s[:, None, mask].expand(-1, 2, -1))
    rolled = model.rollout(s, re, 2)  # the model's projection by default
    assert torch.equal(rolled, model.rollout(s, re, 2, project=project))
    assert torch.allclose(pred.detach(), rolled[:, 1:], rtol=0, atol=1e-9)
    assert bool(torch.isfinite(grads[1]).all())
    assert float((grads[1] - grads[0]).norm()) > 1e-3 * float(grads[0].norm())


# ----------------------------------------------------------------------------- training
def test_train_rollout_metric_matches_evaluation(oscillating, tmp_path):
    """train_rollout end to end (2 epochs); the trainer's validation rollout metric is the
    evaluation's mean error over the horizon for the same weights."""
    from fe_operators.evaluation.rollout import evaluate_rollouts
    from fe_operators.train.rollout import train_rollout

    problem, data = oscillating
    model, result = train_rollout(problem, data.subset([0, 1]), data.subset([2]), tmp_path / "run", processor="gnn",
                                  options={"width": 8, "depth": 1, "latent_cells": 0}, unroll=2, noise_std=0.01,
                                  settings=TrainSection(epochs=2, batch_size=4, progress=False))
    assert result.step == 2 * 4 and result.best["metric"] == "val_rollout_rel_l2"
    assert (tmp_path / "run" / "best.pt").exists()
    summary = evaluate_rollouts(model, data.subset([2]), problem).summary()
    assert result.history[-1]["val_rollout_rel_l2"] == pytest.approx(summary["state"]["mean_over_horizon"], rel=1e-12)
    assert summary["boundary_error"] == 0.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An MLP rollout model trained 580 steps (k = 2, noise 0.01) on 16 heat trajectories of 30 steps."""
    problem = HeatEquation(fd.UnitSquareMesh(8, 8), dt=0.02, boundary_value=1.0)
    train, val = _heat_data(problem, 16, 30, seed=0), _heat_data(problem, 4, 30, seed=1)
    torch.manual_seed(0)
    model = rollout_spon_for_problem(problem, "mlp", hidden=[128, 128], noise_std=0.01)
    model.fit_normalizers(train.states, train.params)
    run_dir = tmp_path_factory.mktemp("rollout_run")
    trainer = RolloutTrainer(model, RelativeLoss(state_norm(problem)), train, val, unroll=2, run_dir=run_dir,
                             settings=TrainSection(epochs=20, batch_size=16, lr=3e-3, progress=False, threads=1))
    result = trainer.fit()
    return problem, model, val, result, run_dir


@pytest.mark.slow
def test_training_beats_persistence(trained, tmp_path):
    from fe_operators.evaluation.rollout import evaluate_rollouts, plot_rollout_errors, write_rollout_pvd

    problem, model, val, result, run_dir = trained
    assert result.step == 20 * 29  # 16 trajectories × 29 windows of k = 2, batches of 16
    assert result.best["metric"] == "val_rollout_rel_l2"
    evaluation = evaluate_rollouts(model, val, problem)
    summary = evaluation.summary()
    persistence = summary["persistence"]["mean_over_horizon"]
    rollout = summary["state"]["mean_over_horizon"]
    per_step = result.history[-1]["elapsed"] / result.step
    print(f"rollout {rollout:.4f} persistence {persistence:.4f}, {1e3 * per_step:.0f} ms per training step "
          f"(validation rollouts included)", summary)
    assert persistence > 0.8
    assert rollout < 0.1 * persistence  # measured 0.039 against 0.886 (MLP, 16 trajectories, 580 steps)
    assert evaluation.boundary_error == 0.0
    png = plot_rollout_errors(evaluation, tmp_path / "errors.png")
    assert png.stat().st_size > 1000
    pvd = write_rollout_pvd(tmp_path / "rollout.pvd", problem, evaluation.predictions[0], val.states[0])
    frames = re.findall(r'<DataSet timestep="([^"]+)" part="0" file="([^"]+)"/>', pvd.read_text())
    assert len(frames) == val.n_stored  # n_steps + 1
    assert float(frames[-1][0]) == pytest.approx(30 * problem.dt)
    import meshio

    last = meshio.read(tmp_path / frames[-1][1])
    assert set(last.point_data) == {"predicted_u", "reference_u", "error_u"}
    # CG1: the vertex values are the DOF values (in the mesh's vertex order)
    assert np.allclose(np.sort(last.point_data["reference_u"]), np.sort(val.states[0, -1]))
    assert np.allclose(np.sort(last.point_data["predicted_u"]), np.sort(evaluation.predictions[0, -1]))
    assert np.allclose(last.point_data["error_u"], last.point_data["predicted_u"] - last.point_data["reference_u"])


@pytest.mark.slow
def test_write_rollout_files(trained, tmp_path):
    from fe_operators.evaluation.rollout import evaluate_rollouts, write_rollout_files

    problem, model, val, result, run_dir = trained
    evaluation = evaluate_rollouts(model, val.subset([0, 1]), problem, n_steps=10)
    report = write_rollout_files(evaluation, val.subset([0, 1]), problem, tmp_path / "eval")
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["errors.png", "rollout", "rollout.json",
                                                                     "rollout.pvd"]
    assert len(report["times"]) == 11 and report["summary"]["boundary_error"] == 0.0
    assert report["summary"]["state"]["step_10"] == pytest.approx(evaluation.errors["state"][:, 10].mean())


@pytest.mark.slow
def test_trained_checkpoint_reloads(trained):
    from fe_operators.train import load_model

    problem, model, val, result, run_dir = trained
    loaded = load_model(run_dir / "last.pt").model
    assert isinstance(loaded.network, RolloutSPON)
    ref = torch.from_numpy(val.states[:2])
    p = torch.from_numpy(val.params[:2])
    assert torch.equal(loaded.network.rollout(ref[:, 0], p, 5, boundary=ref[:, :6]),
                       model.rollout(ref[:, 0], p, 5, boundary=ref[:, :6]))
