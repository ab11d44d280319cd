"""The pushforward trick of the rollout training (``RolloutTrainer(pushforward=M)``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import firedrake as fd

from fe_operators.data.trajectories import TrajectoryData
from fe_operators.fem.norms import RelativeLoss
from fe_operators.models.rollout_build import rollout_spon_for_problem
from fe_operators.problems.heat import HeatEquation
from fe_operators.train import TrainSection
from fe_operators.train.rollout import RolloutTrainer, RolloutWindows, state_norm


@pytest.fixture(scope="module")
def setup():
    """Heat on unitsquare:4 with Dirichlet data cos(4t) on x = 0, three trajectories of 8 steps, a GNN model."""
    problem = HeatEquation(fd.UnitSquareMesh(4, 4), dt=0.05, boundary_value=1.0, boundary_frequency=4.0)
    rng = np.random.default_rng(0)
    params = [problem.sample_parameters(rng) for _ in range(3)]
    states = np.stack([problem.trajectory(p, 8) for p in params])
    values = np.array([[p[k] for k in problem.parameter_names] for p in params])
    data = TrajectoryData(states, values, problem.parameter_names, problem.dt, problem.description())
    return problem, data


def _trainer(problem, data, tmp_path, **kwargs):
    torch.manual_seed(0)
    model = rollout_spon_for_problem(problem, "gnn", width=8, depth=1, latent_cells=0, noise_std=0.0)
    model.fit_normalizers(data.states, data.params)
    trainer = RolloutTrainer(model, RelativeLoss(state_norm(problem)), data, None, run_dir=tmp_path,
                             settings=TrainSection(epochs=4, batch_size=4, progress=False, threads=1), **kwargs)
    return model, trainer


def _batch(trainer, n=4):
    return torch.utils.data.default_collate([trainer.train_data[i] for i in range(n)])


def test_pushforward_zero_is_the_unrolled_loss_and_windows_hold_k_plus_m(setup, tmp_path):
    """m = 0: the plain k-step predictions and loss on the window's first k targets; the
    training windows carry k + M targets, the trainer draws m in 0..M per batch."""
    problem, data = setup
    model, trainer = _trainer(problem, data, tmp_path, unroll=2, pushforward=3)
    assert isinstance(trainer.train_data, RolloutWindows) and trainer.train_data.unroll == 5
    x, y = _batch(trainer)
    assert y.shape[1] == 5
    pred = trainer.unrolled(x, 0)
    plain = model({**x, "boundary": x["boundary"][:, :2]})
    assert torch.equal(pred, plain)
    trainer._offset = 0
    loss = trainer.compute_loss(pred, y)
    ref = RelativeLoss(state_norm(problem))
    assert loss.item() == pytest.approx(0.5 * (ref(plain[:, 0], y[:, 0]) + ref(plain[:, 1], y[:, 1])).item(),
                                        rel=1e-12)
    torch.manual_seed(3)
    drawn = set()
    for _ in range(40):
        trainer.forward(x)
        drawn.add(trainer._offset)
    assert drawn == {0, 1, 2, 3}
    trainer.model.eval()
    trainer.forward(x)
    assert trainer._offset == 0  # evaluation: no pushforward
    with pytest.raises(ValueError, match="unroll \\+ pushforward"):
        _trainer(problem, data, tmp_path / "b", unroll=5, pushforward=4)


def test_pushforward_predictions_and_no_gradient_through_pushed_steps(setup, tmp_path):
    """m = 2: the predictions are the model's steps 3 and 4 from the data state (the same
    states a rollout gives), and the gradient is that of the 2-step loss started from the
    detached state after 2 steps: nothing flows through the pushforward steps."""
    problem, data = setup
    model, trainer = _trainer(problem, data, tmp_path, unroll=2, pushforward=2)
    model.train()
    x, y = _batch(trainer)
    pred = trainer.unrolled(x, 2)
    with torch.no_grad():
        full = model(x)  # 4 steps from the data state
    assert torch.equal(pred.detach(), full[:, 2:4])
    trainer._offset = 2
    loss = trainer.compute_loss(pred, y)
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    # the same loss from the pushed state as a constant input
    start = full[:, 1].detach().clone()
    pred2 = model({**x, "state": start, "boundary": x["boundary"][:, 2:4]})
    loss2 = RelativeLoss(state_norm(problem))
    ref = 0.5 * (loss2(pred2[:, 0], y[:, 2]) + loss2(pred2[:, 1], y[:, 3]))
    grads2 = torch.autograd.grad(ref, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    for g, h in zip(grads, grads2):
        assert (g is None) == (h is None)
        if g is not None:
            torch.testing.assert_close(g, h, rtol=1e-6, atol=0)
    # and through all four steps the gradient differs (so the check above can fail)
    out = model(x)
    unrolled = 0.5 * (loss2(out[:, 2], y[:, 2]) + loss2(out[:, 3], y[:, 3]))
    g4 = torch.autograd.grad(unrolled, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    assert any(a is not None and not torch.allclose(a, b, rtol=1e-3, atol=0) for a, b in zip(g4, grads2))


def test_pushforward_curriculum_grows_and_training_runs(setup, tmp_path):
    """The curriculum's largest m goes 0 -> M with the schedule's progress; training runs with it."""
    problem, data = setup
    model, trainer = _trainer(problem, data, tmp_path, unroll=1, pushforward=3, pushforward_curriculum=True)
    total = trainer.settings.epochs * trainer.steps_per_epoch
    seen = []
    for step in (0, total // 4, total // 2, total - 1, total):
        trainer.state.step = step
        seen.append(trainer.max_pushforward())
    assert seen == [0, 1, 2, 3, 3]
    trainer.state.step = 0
    result = trainer.fit()
    assert result.step == total and np.isfinite(result.history[-1]["train_loss"])
