"""Evaluating rollout surrogates on trajectories: errors per step, plots against time, a ``.pvd`` series.

* :func:`evaluate_rollouts` — roll a :class:`~fe_operators.models.rollout.RolloutSPON` out
  from the first stored state of each trajectory over the stored horizon (Dirichlet data
  from the reference), and measure per step the relative FE-norm error of the state and,
  for a mixed state, of its first field (the velocity of a Taylor–Hood state), the
  persistence baseline ``s_n = s_0`` and the largest error on the Dirichlet DOFs;
* :func:`plot_rollout_errors` — the mean error (and the persistence baseline) against time,
  PNG on an Agg canvas (no global matplotlib backend);
* :func:`write_rollout_files` — all of it into a folder (what ``fe-operators evaluate``
  writes for trajectories): ``rollout.json``, ``errors.png``, ``rollout.pvd``;
* :func:`write_rollout_pvd` — predicted and reference states of one trajectory as a
  ParaView time series (a ``.pvd`` collection of ``.vtu`` frames written with meshio,
  :func:`fe_operators.io.write_fields`), one frame per stored step.

This module imports Firedrake.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

import firedrake as fd

from fe_operators.data.trajectories import TrajectoryData
from fe_operators.train.rollout import rollout_relative_errors, state_norm

__all__ = ["RolloutEvaluation", "evaluate_rollouts", "plot_rollout_errors", "write_rollout_pvd", "write_rollout_files"]


@dataclasses.dataclass
class RolloutEvaluation:
    """Errors of rollouts against reference trajectories.

    Attributes
    ----------
    times
        ``(T,)`` times of the states (0 at the first).
    errors
        ``{name: (n_samples, T)}`` relative errors per trajectory and step: ``"state"``
        (the state's norm), ``"velocity"`` (mixed states: the first field only),
        ``"persistence"`` (the baseline ``s_n = s_0`` in the state's norm).
    boundary_error
        ``max |prediction − reference|`` over the Dirichlet DOFs of all steps (0 for an
        exact lifting).
    predictions
        ``(n_samples, T, n_dofs)`` the rollouts.
    """

    times: np.ndarray
    errors: dict[str, np.ndarray]
    boundary_error: float
    predictions: np.ndarray

    def summary(self, steps: tuple[int, ...] = (1,)) -> dict[str, Any]:
        """Means over trajectories at ``steps`` (and the last step), and over the horizon (steps ≥ 1)."""
        last = self.times.size - 1
        out: dict[str, Any] = {"boundary_error": self.boundary_error}
        for name, e in self.errors.items():
            mean = e.mean(axis=0)
            out[name] = {"mean_over_horizon": float(mean[1:].mean()) if last else 0.0,
                         **{f"step_{s}": float(mean[s]) for s in (*steps, last) if s <= last}}
        return out


def evaluate_rollouts(model: Any, data: TrajectoryData, problem: Any, *, n_steps: int | None = None,
                      kind: str = "l2", batch_size: int = 16) -> RolloutEvaluation:
    """Roll out from the first stored state of every trajectory and measure the errors per step.

    Parameters
    ----------
    model
        A :class:`~fe_operators.models.rollout.RolloutSPON`.
    data
        Reference trajectories.
    problem
        Their :class:`~fe_operators.problems.timedep.TimeDependentProblem` (for the norms).
    n_steps
        Steps to roll out (default: the whole stored horizon, ``n_stored − 1``).
    kind
        ``"l2"`` or ``"h1"``.
    batch_size
        Trajectories rolled out together.
    """
    T = data.n_stored - 1 if n_steps is None else int(n_steps)
    if not 0 <= T < data.n_stored:
        raise ValueError(f"expected 0 <= n_steps < n_stored = {data.n_stored}, got {n_steps}")
    network = getattr(model, "network", model)
    device = network.device
    norms = {"state": state_norm(problem, kind)}
    n_fields = len(problem.state_space) if hasattr(problem.state_space, "__len__") else 1
    if n_fields > 1:
        norms["velocity"] = state_norm(problem, kind, fields=[0])
    errors: dict[str, list[np.ndarray]] = {name: [] for name in (*norms, "persistence")}
    preds, boundary = [], 0.0
    mask = network.layout.mask.cpu()
    for start in range(0, data.n_samples, batch_size):
        ref = torch.as_tensor(np.asarray(data.states[start:start + batch_size, :T + 1]), dtype=torch.float64)
        p = torch.as_tensor(np.asarray(data.params[start:start + batch_size]), dtype=torch.float64)
        pred = network.rollout(ref[:, 0].to(device), p.to(device), T, boundary=ref.to(device)).cpu()
        for name, norm in norms.items():
            errors[name].append(rollout_relative_errors(norm, pred, ref).numpy())
        errors["persistence"].append(
            rollout_relative_errors(norms["state"], ref[:, :1].expand_as(ref), ref).numpy())
        if bool(mask.any()):
            boundary = max(boundary, float((pred[..., mask] - ref[..., mask]).abs().max()))
        preds.append(pred.numpy())
    return RolloutEvaluation(times=data.dt * np.arange(T + 1),
                             errors={k: np.concatenate(v) for k, v in errors.items()},
                             boundary_error=boundary, predictions=np.concatenate(preds))


def plot_rollout_errors(evaluation: RolloutEvaluation, path: str | os.PathLike, *, title: str | None = None,
                        log: bool = True) -> Path:
    """PNG of the mean relative errors against time (shaded: min to max over trajectories).

    Returns
    -------
    Path
        The file written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    t = evaluation.times
    for name, e in evaluation.errors.items():
        style = "--" if name == "persistence" else "-"
        ax.plot(t[1:], e.mean(axis=0)[1:], style, label=name)
        if e.shape[0] > 1 and name != "persistence":
            ax.fill_between(t[1:], e.min(axis=0)[1:], e.max(axis=0)[1:], alpha=0.2)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("time")
    ax.set_ylabel("relative error")
    ax.set_title(title or "rollout error against time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _state_fields(problem: Any, prefix: str, array: np.ndarray) -> dict[str, fd.Function]:
    """The sub-functions of a state as named fields (``prefix_u``, ``prefix_p`` for a pair)."""
    parts = list(problem.array_to_state(array).subfunctions)
    names = ["u", "p"] if len(parts) == 2 else [f"field{i}" for i in range(len(parts))] if len(parts) > 1 else ["u"]
    return {f"{prefix}_{name}": f for f, name in zip(parts, names)}


def write_rollout_pvd(path: str | os.PathLike, problem: Any, predicted: np.ndarray,
                      reference: np.ndarray | None = None, times: np.ndarray | None = None) -> Path:
    """A ParaView time series of one rollout: ``predicted`` (and ``reference`` and their difference).

    One ``.vtu`` per frame (:func:`fe_operators.io.write_fields`: vertex values, serial)
    in the folder ``<stem>/`` next to the ``.pvd`` collection that lists them with their
    times; ParaView opens the ``.pvd`` as a time series.

    Parameters
    ----------
    path
        The ``.pvd`` file.
    problem
        The :class:`~fe_operators.problems.timedep.TimeDependentProblem` of the states.
    predicted
        ``(T, n_dofs)`` states in ``state_to_array`` order.
    reference
        ``(T, n_dofs)`` or None.
    times
        ``(T,)`` frame times (default ``0, dt, 2 dt, …`` with the problem's ``dt``).

    Returns
    -------
    Path
        The ``.pvd`` file, with ``T`` frames.
    """
    from xml.sax.saxutils import quoteattr

    from fe_operators.io import write_fields

    predicted = np.asarray(predicted, dtype=np.float64)
    if predicted.ndim != 2 or predicted.shape[1] != problem.n_dofs:
        raise ValueError(f"expected predicted states of shape (T, {problem.n_dofs}), got {predicted.shape}")
    if reference is not None and np.shape(reference) != predicted.shape:
        raise ValueError(f"expected reference states of shape {predicted.shape}, got {np.shape(reference)}")
    times = problem.dt * np.arange(predicted.shape[0]) if times is None else np.asarray(times, dtype=np.float64)
    if times.shape != (predicted.shape[0],):
        raise ValueError(f"expected {predicted.shape[0]} frame times, got shape {times.shape}")
    path = Path(path)
    if path.suffix != ".pvd":
        raise ValueError(f"expected a .pvd path, got {str(path)!r}")
    frames = path.parent / path.stem
    frames.mkdir(parents=True, exist_ok=True)
    entries = []
    for j, t in enumerate(times):
        fields = _state_fields(problem, "predicted", predicted[j])
        if reference is not None:
            fields.update(_state_fields(problem, "reference", np.asarray(reference[j], dtype=np.float64)))
            fields.update(_state_fields(problem, "error", predicted[j] - np.asarray(reference[j], dtype=np.float64)))
        frame = write_fields(frames / f"{path.stem}_{j:05d}.vtu", fields)
        entries.append(f'    <DataSet timestep="{float(t)!r}" part="0" '
                       f'file={quoteattr(frame.relative_to(path.parent).as_posix())}/>')
    path.write_text('<?xml version="1.0"?>\n<VTKFile type="Collection" version="0.1">\n  <Collection>\n'
                    + "\n".join(entries) + "\n  </Collection>\n</VTKFile>\n")
    return path


def write_rollout_files(evaluation: RolloutEvaluation, data: TrajectoryData, problem: Any,
                        out: str | os.PathLike, *, sample: int = 0, steps: tuple[int, ...] = (1,)) -> dict[str, Any]:
    """Write ``rollout.json`` (summary and errors per step), ``errors.png`` and ``rollout.pvd`` (trajectory ``sample``).

    Returns
    -------
    dict
        The content of ``rollout.json``.
    """
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"summary": evaluation.summary(steps), "times": evaluation.times.tolist(),
              "mean_errors": {k: v.mean(axis=0).tolist() for k, v in evaluation.errors.items()},
              "n_samples": int(data.n_samples), "dt": float(data.dt)}
    (out / "rollout.json").write_text(json.dumps(report, indent=1))
    plot_rollout_errors(evaluation, out / "errors.png")
    T = evaluation.times.size
    write_rollout_pvd(out / "rollout.pvd", problem, evaluation.predictions[sample],
                      np.asarray(data.states[sample, :T]), evaluation.times)
    return report
