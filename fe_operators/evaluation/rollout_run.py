"""``fe-operators evaluate`` on a trajectory file: a rollout surrogate against the stored trajectories.

:func:`evaluate_rollout_run` loads a run's checkpoint (a
:class:`~fe_operators.models.rollout.RolloutSPON`, ``model.type: rollout_spon``), checks
that the trajectories fit it (parameters, DOFs, Dirichlet DOFs, the numbering of the
training data on the training mesh), rebuilds the generating problem from the file (for
the FE norms and the ``.pvd``), rolls out from the first stored state of every selected
trajectory (:func:`~fe_operators.evaluation.rollout.evaluate_rollouts`, Dirichlet data
from the reference) and writes :func:`~fe_operators.evaluation.rollout.write_rollout_files`:
``rollout.json`` (summary, mean errors per step), ``errors.png`` (error against time) and
``rollout.pvd`` (predicted, reference and error of the first trajectory, one frame per step).

This module imports Firedrake.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fe_operators.errors import SpaceMismatchError, UsageError

__all__ = ["evaluate_rollout_run", "format_rollout"]


def _rows(trained_on: dict[str, Any], run_config: dict[str, Any], file: Any,
          split: str | None) -> tuple[str, np.ndarray]:
    """The split (default: ``"test"`` for the run's training file where it has a test split) and its rows."""
    from fe_operators.data import split_rows

    same_file = bool(trained_on.get("path")) and os.path.abspath(trained_on["path"]) == os.path.abspath(file.path) \
        and trained_on.get("numbering") == file.numbering
    data = run_config.get("data") or {}
    test = split_rows(file, list(data.get("split", [0.8, 0.1, 0.1])), int(data.get("seed", 0)))[2] \
        if same_file else np.empty(0, dtype=np.int64)
    if split == "test":
        if not same_file:
            raise UsageError(f"--split test means the run's test split of its training file "
                             f"{trained_on.get('path')!r}; {file.path} is another file: use --split all")
        if test.size == 0:
            raise UsageError("the run's test split is empty (data.split leaves no test trajectories); use --split all")
        return split, test
    if split is None and test.size:
        return "test", test
    rows = np.flatnonzero(file.done)
    if rows.size == 0:
        raise UsageError(f"{file.path} holds no valid trajectories")
    return "all", rows


def evaluate_rollout_run(run: str | os.PathLike, data: str | os.PathLike, *, steps: int | None = None,
                         split: Literal["test", "all"] | None = None, out: str | os.PathLike | None = None,
                         checkpoint: Literal["best", "last"] = "best", batch_size: int = 16,
                         device: str = "cpu", mesh: str | None = None, problem: str | type | None = None,
                         kind: Literal["l2", "h1"] = "l2") -> dict[str, Any]:
    """Evaluate a rollout surrogate on a trajectory file; write ``rollout.json``, ``errors.png``, ``rollout.pvd``.

    Parameters
    ----------
    run
        A run folder of ``fe-operators train`` on trajectories, or a checkpoint file.
    data
        A trajectory file of ``fe-operators generate``.
    steps
        Steps of the model to roll out (default: the whole stored horizon; a model trained
        with ``model.every: k`` steps every ``k``-th stored state, and is compared with
        those).  Errors are measured where
        the reference exists; steps past the stored horizon roll on with the family's
        Dirichlet data at those times (``rollout_beyond.pvd``, ``beyond_horizon`` in
        ``rollout.json``: their boundary error and whether the states stay finite).
    split
        ``"test"`` (the run's test trajectories; default for its training file when it has
        some) or ``"all"``.
    out
        Output folder (default ``<run folder>/eval-<data stem>-<split>``).
    checkpoint, batch_size, device
        Which checkpoint of a run folder, trajectories per batch, torch device.
    mesh
        Optional: assert the file's mesh spec.
    problem
        ``--problem``: the ``module:Class`` of a family of your own.
    kind
        Norm of the errors, ``"l2"`` or ``"h1"``.

    Returns
    -------
    dict
        The content of ``rollout.json``, with ``"out"`` (the folder) and ``"split"``.

    Raises
    ------
    CheckpointError
        A missing or corrupt checkpoint, or one of a learned preconditioner.
    SpaceMismatchError
        The checkpoint is not a rollout surrogate (a steady model), or the trajectories do
        not fit it (parameters, DOFs, Dirichlet DOFs, numbering, ``mesh``).
    UsageError
        Bad ``steps``, ``split`` or ``batch_size``.
    DatasetFileError, NumberingError
        As :meth:`~fe_operators.data.TrajectoryFile.rebuild_problem`.
    """
    from fe_operators.data import TrajectoryFile
    from fe_operators.evaluation.checks import check_not_precond, resolve_checkpoint, run_info
    from fe_operators.evaluation.rollout import evaluate_rollouts, write_rollout_files
    from fe_operators.models.rollout import RolloutSPON
    from fe_operators.models.rollout_build import dirichlet_mask
    from fe_operators.train.checkpoint import load_model

    if int(batch_size) < 1:
        raise UsageError(f"--batch-size must be a positive integer, got {batch_size}")
    ckpt = resolve_checkpoint(run, checkpoint)
    loaded = load_model(ckpt, device=device)
    if (loaded.metadata.get("run") or {}).get("precond"):
        check_not_precond(loaded)  # names the command that evaluates a learned preconditioner
    file = TrajectoryFile(data)
    network = loaded.network
    if not isinstance(network, RolloutSPON):
        raise SpaceMismatchError(f"{ckpt} holds a steady model ({type(network).__name__}: inputs -> output); "
                                 f"{file.path} holds trajectories: evaluate a run trained on trajectories "
                                 "(model.type: rollout_spon)")
    if mesh is not None and mesh != file.mesh_spec:
        raise SpaceMismatchError(f"--mesh {mesh!r}: {file.path} was generated on the mesh {file.mesh_spec!r}")
    if tuple(network.param_names) != tuple(file.param_names):
        raise SpaceMismatchError(f"{ckpt} was trained on trajectories with parameters {list(network.param_names)}; "
                                 f"{file.path} has {list(file.param_names)} (another family)")
    if network.layout.n_dofs != file.n_dofs:
        raise SpaceMismatchError(f"{ckpt} was trained on states of {network.layout.n_dofs} DOFs; {file.path} stores "
                                 f"{file.n_dofs} (another mesh or space): rollout surrogates run on their training "
                                 "mesh")
    run_config, trained_on = run_info(loaded)
    if trained_on.get("numbering") and trained_on["numbering"] != file.numbering:
        raise SpaceMismatchError(f"{file.path} numbers its DOFs differently from the trajectories {ckpt} was trained "
                                 f"on ({trained_on.get('path')!r}: another mesh or generator)")
    every = int((run_config.get("model") or {}).get("every", 1))
    horizon = (file.n_stored - 1) // every
    if steps is not None and int(steps) < 1:
        raise UsageError(f"--steps must be a positive number of steps, got {steps}")
    extra = 0 if steps is None else max(0, int(steps) - horizon)
    split, rows = _rows(trained_on, run_config, file, split)
    rebuilt = file.rebuild_problem(problem=problem)
    params = dict(zip(file.param_names, (float(v) for v in file.read([int(rows[0])])[0][0])))
    mask = dirichlet_mask(rebuilt.state_space, rebuilt.output_bcs(rebuilt.check_parameters(params)))
    if not np.array_equal(mask, network.layout.mask.cpu().numpy()):
        raise SpaceMismatchError(f"the Dirichlet DOFs of the problem rebuilt from {file.path} differ from those "
                                 f"{ckpt} was trained with (other boundary markers)")
    trajectories = file.data(rows).every(every)
    evaluation = evaluate_rollouts(network, trajectories, rebuilt, n_steps=None if steps is None else
                                   min(int(steps), horizon), kind=kind, batch_size=int(batch_size))
    out = Path(out) if out is not None else ckpt.parent / f"eval-{Path(file.path).stem}-{split}"
    report = write_rollout_files(evaluation, trajectories, rebuilt, out)
    if extra:
        report["beyond_horizon"] = _beyond(network, rebuilt, file, trajectories, evaluation, extra, out, every)
        (out / "rollout.json").write_text(json.dumps(report, indent=1))
    return {**report, "out": str(out), "split": split, "checkpoint": str(ckpt), "data": file.path}


def _boundary_data(problem: Any, file: Any, params: np.ndarray, last: np.ndarray,
                   stored_steps: np.ndarray) -> np.ndarray:
    """``(batch, len(stored_steps), n_dofs)`` states holding the Dirichlet data at stored steps past the horizon.

    A family with ``boundary_values(params, times)`` (time-dependent data, e.g. heat) gives
    them on its clock (0 at the initial state: the spin-up comes first); any other family's
    ``output_bcs(params)`` hold for every state by their contract, so the data of the last
    stored state carry over.
    """
    t = file.time_settings
    times = float(t["dt"]) * (int(t["spinup_steps"]) + stored_steps * int(t["store_every"]))
    if hasattr(problem, "boundary_values"):
        return np.stack([problem.boundary_values(dict(zip(file.param_names, (float(v) for v in p))), times)
                         for p in params])
    return np.repeat(last[:, None], stored_steps.size, axis=1)


def _beyond(network: Any, problem: Any, file: Any, data: Any, evaluation: Any, extra: int,
            out: Path, every: int = 1) -> dict[str, Any]:
    """Roll on ``extra`` steps past the stored horizon (no reference): ``rollout_beyond.pvd`` of the first trajectory.

    ``data`` holds the states the model steps through (every ``every``-th stored one).
    """
    import torch

    from fe_operators.evaluation.rollout import write_rollout_pvd

    horizon = data.n_stored - 1
    last = evaluation.predictions[:, -1]
    steps = np.arange(horizon, horizon + extra + 1)
    boundary = _boundary_data(problem, file, data.params, last, steps * every)
    pred = network.rollout(torch.from_numpy(last).to(network.device),
                           torch.from_numpy(np.asarray(data.params, dtype=np.float64)).to(network.device), extra,
                           boundary=torch.from_numpy(boundary).to(network.device)).cpu().numpy()
    mask = network.layout.mask.cpu().numpy()
    times = data.dt * steps
    write_rollout_pvd(out / "rollout_beyond.pvd", problem, pred[0], None, times)
    return {"steps": int(extra), "times": times.tolist(), "pvd": "rollout_beyond.pvd",
            "boundary_error": float(np.abs(pred[:, 1:][..., mask] - boundary[:, 1:][..., mask]).max(initial=0.0)),
            "finite": bool(np.isfinite(pred).all())}


def format_rollout(report: dict[str, Any], every: int | None = None) -> str:
    """The per-step mean errors of :func:`evaluate_rollout_run` as a table (at most ~20 rows), and the summary."""
    times = report["times"]
    errors = report["mean_errors"]
    T = len(times) - 1
    every = every or max(1, -(-T // 20))
    steps = sorted({*range(1, T + 1, every), T}) if T else [0]
    names = list(errors)
    lines = [f"{'step':>6} {'time':>10} " + " ".join(f"{n:>12}" for n in names)]
    for j in steps:
        lines.append(f"{j:>6} {times[j]:>10.4g} " + " ".join(f"{errors[n][j]:>12.4e}" for n in names))
    summary = report["summary"]
    lines.append("mean over the horizon: " + ", ".join(
        f"{n} {summary[n]['mean_over_horizon']:.4e}" for n in names if isinstance(summary.get(n), dict)))
    lines.append(f"boundary error (max over the Dirichlet DOFs of all steps): {summary['boundary_error']:.3g}")
    beyond = report.get("beyond_horizon")
    if beyond:
        lines.append(f"{beyond['steps']} more steps past the stored horizon (no reference): boundary error "
                     f"{beyond['boundary_error']:.3g}, {'finite' if beyond['finite'] else 'NOT FINITE'}; "
                     f"{beyond['pvd']}")
    lines.append(f"{report['n_samples']} trajectories ({report['split']}); rollout.json, errors.png, rollout.pvd "
                 f"in {report['out']}")
    return "\n".join(lines)
