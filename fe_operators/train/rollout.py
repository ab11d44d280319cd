r"""Training rollout surrogates on trajectories: windows, the unrolled loss, the trainer.

A :class:`~fe_operators.models.rollout.RolloutSPON` is trained with the package's
:class:`~fe_operators.train.Trainer` on *windows* of the stored trajectories
(:class:`RolloutWindows`): a sample is a state :math:`s_j` with its parameters and the
next ``k`` states :math:`s_{j+1..j+k}`.  The model unrolls ``k`` steps from :math:`s_j`
(with training noise on :math:`s_j` if configured) and the loss is the mean over the
steps of an FE-norm loss (:class:`UnrolledLoss`), back-propagated through all ``k``
steps:

.. math:: \mathcal{L} = \frac1k \sum_{i=1}^{k} \ell\big(\hat s_{j+i}, s_{j+i}\big), \qquad
          \hat s_{j+i} = \Phi_\theta(\hat s_{j+i-1}), \ \hat s_j = s_j + \eta,

with :math:`\ell` e.g. the relative :math:`L^2` norm of the state space
(:func:`state_norm`); ``k = 1`` is the one-step loss.

**Pushforward** (Brandstetter, Worrall & Welling 2022, "Message passing neural PDE
solvers"): with ``pushforward = M > 0`` each training batch draws ``m`` uniformly in
``0 .. M`` and first unrolls ``m`` steps from :math:`s_j` *without gradient*; the loss
above then starts from that model state :math:`\hat s_{j+m}` (detached, no further noise)
against :math:`s_{j+m+1..j+m+k}`.  The model so learns to correct the distribution of
its own rollout errors, while the gradient costs only ``k`` steps.  With the
``pushforward_curriculum`` the largest ``m`` grows over training, from 0 to ``M``
(linearly in the schedule's progress: epochs, or the time budget).  ``m = 0`` is the
plain unrolled loss; validation windows always use ``m = 0``.  :class:`RolloutTrainer` adds the
metric that picks ``best.pt``: the relative :math:`L^2` error of full rollouts of the
validation trajectories, averaged over time (``val_rollout_rel_l2``).

Importing this module does not import Firedrake (:func:`state_norm` does, on call).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fe_operators.data.trajectories import TrajectoryData
from fe_operators.train.metrics import MetricsLog
from fe_operators.train.trainer import LossFn, Trainer

__all__ = ["RolloutWindows", "UnrolledLoss", "RolloutTrainer", "state_norm", "rollout_relative_errors",
           "train_rollout"]


class RolloutWindows(Dataset):
    """Windows of trajectories: ``({"state", "params", "boundary"}, target)`` samples.

    Sample ``(i, j)`` is trajectory ``i`` at stored step ``j``: ``state`` ``s_j``
    ``(n_dofs,)``, ``params`` ``(P,)``, ``boundary`` ``(k, n_dofs)`` (the Dirichlet entries
    of ``s_{j+1..j+k}``, zero elsewhere, so the model cannot read the targets' interior),
    and the target ``s_{j+1..j+k}`` ``(k, n_dofs)``; ``j`` runs over ``0 .. n_stored - 1 - k``.

    Parameters
    ----------
    data
        The trajectories.
    unroll
        ``k``, steps per window (``1 <= k < n_stored``).
    mask
        ``(n_dofs,)`` bool Dirichlet mask (the model's ``layout.mask``).
    """

    def __init__(self, data: TrajectoryData, unroll: int, mask: torch.Tensor | np.ndarray) -> None:
        unroll = int(unroll)
        if not 1 <= unroll < data.n_stored:
            raise ValueError(f"expected 1 <= unroll < n_stored = {data.n_stored}, got unroll={unroll}")
        mask = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
        if tuple(mask.shape) != (data.n_dofs,):
            raise ValueError(f"expected a Dirichlet mask of shape ({data.n_dofs},), got {tuple(mask.shape)}")
        self.states = torch.as_tensor(np.asarray(data.states, dtype=np.float64))
        self.params = torch.as_tensor(np.asarray(data.params, dtype=np.float64))
        self.mask = mask
        self.unroll = unroll
        self.per_trajectory = data.n_stored - unroll

    def __len__(self) -> int:
        return self.states.shape[0] * self.per_trajectory

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        if not 0 <= int(index) < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        i, j = divmod(int(index), self.per_trajectory)
        target = self.states[i, j + 1:j + 1 + self.unroll]
        boundary = torch.where(self.mask, target, torch.zeros((), dtype=target.dtype))
        return {"state": self.states[i, j], "params": self.params[i], "boundary": boundary}, target


class UnrolledLoss(torch.nn.Module):
    """The mean over unrolled steps of a per-step loss: ``(batch, k, n_dofs)`` pairs → scalar.

    Parameters
    ----------
    step_loss
        ``(prediction, target) -> scalar`` on ``(batch, n_dofs)`` states, e.g.
        ``RelativeLoss(state_norm(problem))``.
    """

    def __init__(self, step_loss: LossFn) -> None:
        super().__init__()
        self.step_loss = step_loss

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.ndim != 3 or pred.shape != target.shape:
            raise ValueError(f"expected predictions and targets of one shape (batch, k, n_dofs), got "
                             f"{tuple(pred.shape)} and {tuple(target.shape)}")
        return torch.stack([self.step_loss(pred[:, j], target[:, j]) for j in range(pred.shape[1])]).mean()


def state_norm(problem: Any, kind: str = "l2", fields: Sequence[int] | None = None) -> Any:
    """The FE norm of flat states of a time-dependent problem (``state_to_array`` order).

    Block-diagonal over the sub-spaces of a mixed state: ``‖s‖² = Σ_i ‖s_i‖²``.

    Parameters
    ----------
    problem
        A :class:`~fe_operators.problems.timedep.TimeDependentProblem` (or anything with a
        ``state_space``).
    kind
        ``"l2"`` (mass matrices) or ``"h1"`` (mass + stiffness).
    fields
        Sub-spaces that count (e.g. ``[0]``: the velocity of a Taylor–Hood state); the
        others get a zero block.  Default: all.

    Returns
    -------
    FENorm
        On ``(batch, n_dofs)`` float64 tensors.
    """
    import scipy.sparse as sp

    from fe_operators.fem.assembly import mass_matrix, stiffness_matrix
    from fe_operators.fem.norms import FENorm
    from fe_operators.models.rollout_build import state_subspaces

    if kind not in ("l2", "h1"):
        raise ValueError(f"expected kind 'l2' or 'h1', got {kind!r}")
    subs = state_subspaces(problem.state_space)
    keep = set(range(len(subs))) if fields is None else {int(i) for i in fields}
    blocks = []
    for i, V in enumerate(subs):
        A = mass_matrix(V) if kind == "l2" else mass_matrix(V) + stiffness_matrix(V)
        blocks.append(A if i in keep else sp.csr_matrix(A.shape))
    A = sp.block_diag(blocks, format="csr")
    return FENorm(A, (A.shape[0],), f"{kind.upper()}{'' if fields is None else f' of fields {sorted(keep)}'}")


def rollout_relative_errors(norm: Any, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Relative FE-norm errors per sample and step, ``(batch, T)``, for rollouts ``(batch, T, n_dofs)``.

    Where a reference state has norm zero the error is the absolute one (so an exact
    zero state counts 0, not NaN).
    """
    b, T, n = pred.shape
    e = norm(pred.reshape(b * T, n).to(torch.float64) - target.reshape(b * T, n).to(torch.float64))
    t = norm(target.reshape(b * T, n).to(torch.float64))
    return torch.where(t > 0, e / torch.where(t > 0, t, torch.ones_like(t)), e).reshape(b, T)


class RolloutTrainer(Trainer):
    """:class:`~fe_operators.train.Trainer` on trajectory windows, picking ``best.pt`` by full rollouts.

    Parameters
    ----------
    model
        A :class:`~fe_operators.models.rollout.RolloutSPON` (normalizers fitted).
    step_loss
        Per-step loss on ``(batch, n_dofs)`` states (wrapped in :class:`UnrolledLoss`).
    train, val
        Training and validation trajectories.
    unroll
        ``k``, steps of the unrolled loss.
    pushforward
        ``M``: each training batch first unrolls ``m ~ U{0..M}`` steps without gradient
        (the pushforward trick, module docstring); 0: none.  Training windows hold
        ``k + M`` targets.
    pushforward_curriculum
        Grow the largest ``m`` from 0 to ``M`` over training (:meth:`max_pushforward`).
    rollout_norm
        The norm of the validation rollout metric (default: the relative loss's norm,
        ``step_loss.norm``, where it has one).
    **kwargs
        :class:`~fe_operators.train.Trainer`'s keywords (``run_dir``, ``settings``, …).

    The validation metrics are ``val_loss`` (the unrolled loss on validation windows) and
    ``val_rollout_rel_l2`` (mean over trajectories and steps of the relative error of a
    rollout over the whole stored horizon from the first state), which picks ``best.pt``.
    """

    def __init__(self, model: torch.nn.Module, step_loss: LossFn, train: TrajectoryData,
                 val: TrajectoryData | None = None, *, unroll: int = 1, rollout_norm: Any = None,
                 pushforward: int = 0, pushforward_curriculum: bool = False, **kwargs: Any) -> None:
        mask = model.layout.mask.cpu()
        loss = UnrolledLoss(step_loss)
        pushforward = int(pushforward)
        if pushforward < 0:
            raise ValueError(f"expected pushforward >= 0 steps, got {pushforward}")
        if unroll + pushforward >= train.n_stored:
            raise ValueError(f"unroll + pushforward = {unroll} + {pushforward} must be below the {train.n_stored} "
                             f"states stored per trajectory: lower one of them")
        super().__init__(model, loss, RolloutWindows(train, unroll + pushforward, mask),
                         None if val is None else RolloutWindows(val, unroll, mask), **kwargs)
        self.unroll = int(unroll)
        self.pushforward = pushforward
        self.pushforward_curriculum = bool(pushforward_curriculum)
        #: the pushforward steps of the batch being trained (the targets it is compared with start after them)
        self._offset = 0
        self.val_trajectories = val
        self.rollout_norm = rollout_norm if rollout_norm is not None else getattr(step_loss, "norm", None)
        if val is not None and self.rollout_norm is not None:
            self.select = "val_rollout_rel_l2"
            self.log = MetricsLog(self.run_dir, self.select)

    def max_pushforward(self) -> int:
        """The largest pushforward ``m`` drawn now: ``pushforward``, or its curriculum's value."""
        if not self.pushforward_curriculum:
            return self.pushforward
        if self.timed_schedule:
            progress = self.budget_progress()
        else:
            progress = self.state.step / max(self.settings.epochs * self.steps_per_epoch, 1)
        return min(self.pushforward, int(min(max(progress, 0.0), 1.0) * (self.pushforward + 1)))

    def unrolled(self, x: Mapping[str, torch.Tensor], pushforward: int) -> torch.Tensor:
        """Predictions of steps ``m + 1 .. m + k`` of a window: ``m`` steps without gradient, then ``k`` with.

        Parameters
        ----------
        x
            A batch of windows (``boundary`` with at least ``m + k`` steps).
        pushforward
            ``m``; 0: the plain unrolled loss's predictions (training noise on the data state).

        Returns
        -------
        torch.Tensor
            ``(batch, k, n_dofs)``.
        """
        m, k = int(pushforward), self.unroll
        boundary = x["boundary"]
        if boundary.shape[1] < m + k:
            raise ValueError(f"a window of {boundary.shape[1]} steps is too short for {m} pushforward and {k} "
                             "unrolled steps")
        if m == 0:
            return self.model({**x, "boundary": boundary[:, :k]})
        with torch.no_grad():  # the pushforward: the model's own state after m steps (noise on the data state)
            s = self.model({**x, "boundary": boundary[:, :m]})[:, -1]
        return self.model({**x, "state": s, "boundary": boundary[:, m:m + k]}, noise=False)

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The training batch's predictions (a drawn pushforward ``m``) or, in evaluation, ``m = 0``'s."""
        m = 0
        if self.model.training and self.pushforward > 0:
            m = int(torch.randint(0, self.max_pushforward() + 1, ()))
        self._offset = m
        return self.unrolled(x, m)

    def compute_loss(self, pred: torch.Tensor, y: torch.Tensor, fn: LossFn | None = None) -> torch.Tensor:
        """The loss against the window's targets after the batch's pushforward steps."""
        return super().compute_loss(pred, y[:, self._offset:self._offset + pred.shape[1]], fn)

    @property
    def network(self) -> torch.nn.Module:
        """The :class:`RolloutSPON` being trained."""
        return self.model.network

    @torch.no_grad()
    def rollout_error(self, data: TrajectoryData, batch_size: int | None = None) -> float:
        """Mean relative error of rollouts of ``data`` over its whole horizon (boundary data from ``data``)."""
        net = self.network
        bs = batch_size or self.settings.batch_size
        total, count = 0.0, 0
        for start in range(0, data.n_samples, bs):
            ref = torch.as_tensor(np.asarray(data.states[start:start + bs]), dtype=torch.float64, device=self.device)
            p = torch.as_tensor(np.asarray(data.params[start:start + bs]), dtype=torch.float64, device=self.device)
            pred = net.rollout(ref[:, 0], p, data.n_stored - 1, boundary=ref)
            err = rollout_relative_errors(self.rollout_norm, pred[:, 1:].cpu(), ref[:, 1:].cpu())
            total += float(err.mean(dim=1).sum())
            count += ref.shape[0]
        return total / max(count, 1)

    def evaluate(self, data: Any = None) -> dict[str, float]:
        """The base metrics, and ``rollout_rel_l2`` of the validation trajectories when ``data`` is None."""
        out = super().evaluate(data)
        if data is None and self.val_trajectories is not None and self.rollout_norm is not None:
            out["rollout_rel_l2"] = self.rollout_error(self.val_trajectories)
        return out


def train_rollout(problem: Any, train: TrajectoryData, val: TrajectoryData | None, run_dir: Any, *,
                  processor: str = "gnn", options: Mapping[str, Any] | None = None, unroll: int = 1,
                  noise_std: float = 0.0, pushforward: int = 0, pushforward_curriculum: bool = False,
                  loss: str = "l2", settings: Any = None, resume: bool = False,
                  dtype: torch.dtype = torch.float32, mesh_spec: str | None = None,
                  run_info: Mapping[str, Any] | None = None,
                  test: TrajectoryData | None = None, diagnostic: Sequence[int] = (),
                  read_diagnostic: bool = False,
                  projection: Callable[[Any], Callable[[torch.Tensor], torch.Tensor]] | None = None,
                  ) -> tuple[torch.nn.Module, Any]:
    """Build, normalise and train a rollout SPON on trajectories: what ``fe-operators train`` does for them.

    Parameters
    ----------
    problem
        The :class:`~fe_operators.problems.timedep.TimeDependentProblem` of the data.
    train, val
        Training and validation trajectories (``val`` picks ``best.pt`` by full rollouts).
    run_dir
        The run folder.
    processor, options
        The processor and its options.
    unroll, noise_std
        Steps of the unrolled loss, training noise (see :class:`RolloutTrainer`).
    pushforward, pushforward_curriculum
        The largest number of pushforward steps (0: none) and whether it grows over
        training (see the module docstring).
    loss
        ``"l2"`` or ``"h1"``: the relative FE norm of the state space per step.
    settings
        A :class:`~fe_operators.train.TrainSection` (default: its defaults).
    resume
        Continue the run in ``run_dir``.
    dtype, mesh_spec
        As :func:`~fe_operators.models.rollout_build.rollout_spon_for_problem`.
    run_info
        Stored in the checkpoints (``fe-operators train``: the configuration and the dataset).
    diagnostic, read_diagnostic
        Sub-spaces predicted rather than evolved, and whether they are read (see
        :func:`~fe_operators.models.rollout_build.rollout_spon_for_problem`).
    projection
        A structure kept at every step, in training and in rollouts: called with the
        built model, it returns the model's
        :attr:`~fe_operators.models.rollout.RolloutSPON.projection`, e.g.
        ``lambda m: leray_state_projection(leray_projection(V, dofs))`` with ``dofs``
        the velocity's Dirichlet DOFs (``m.layout.mask``), so that the unrolled loss
        sees the states the projected rollout steps from.  Not saved in checkpoints: set
        it again on a loaded model.
    test
        Test trajectories: when training finishes, ``best.pt``'s rollout error on them is
        written to ``metrics.json`` under ``"test"`` (``rollout_rel_l2``).

    Returns
    -------
    (RolloutSPON, TrainResult)
        The trained model (last weights) and the trainer's result.
    """
    from fe_operators.fem.norms import RelativeLoss
    from fe_operators.models.rollout_build import rollout_spon_for_problem
    from fe_operators.train.config import TrainSection

    settings = settings if settings is not None else TrainSection()
    if tuple(train.param_names) != tuple(problem.parameter_names):
        raise ValueError(f"the trajectories have parameters {list(train.param_names)}, the problem "
                         f"{list(problem.parameter_names)}")
    params = dict(zip(train.param_names, np.asarray(train.params[0], dtype=float)))
    model = rollout_spon_for_problem(problem, processor, params=params, noise_std=noise_std, dtype=dtype,
                                     mesh_spec=mesh_spec, weight_copies=4, diagnostic=diagnostic,
                                     read_diagnostic=read_diagnostic,
                                     **dict(options or {}))
    model.fit_normalizers(train.states, train.params)
    if projection is not None:
        model.projection = projection(model)
    trainer = RolloutTrainer(model, RelativeLoss(state_norm(problem, loss)), train, val, unroll=unroll,
                             pushforward=pushforward, pushforward_curriculum=pushforward_curriculum,
                             run_dir=run_dir, settings=settings, run_info=run_info)
    result = trainer.fit(resume=resume)
    finished = result.stopped == "completed" or settings.scheduler.length == "time_budget"
    if test is not None and test.n_samples and finished and trainer.rollout_norm is not None \
            and trainer.best_path.exists():
        from fe_operators.train.checkpoint import load_model

        last = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.model.load_state_dict(load_model(trainer.best_path, device=trainer.device).model.state_dict())
        trainer.log.test = {"rollout_rel_l2": trainer.rollout_error(test)}
        trainer.log.write()
        trainer.model.load_state_dict(last)  # the documented return: the last weights
    return trainer.network, result
