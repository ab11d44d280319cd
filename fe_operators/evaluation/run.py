"""Evaluate a trained model on a dataset: :func:`evaluate_run`, the steps in order.

What is measured and written is described in :mod:`fe_operators.evaluation`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch

from fe_operators.data import FEFile
from fe_operators.errors import SpaceMismatchError
from fe_operators.evaluation.checks import (
    check_arguments, check_fit, check_not_precond, resolve_checkpoint, run_info, select_rows,
)
from fe_operators.evaluation.files import write_files
from fe_operators.evaluation.measure import measure, predict_rows
from fe_operators.evaluation.result import EvaluationResult
from fe_operators.train.checkpoint import load_model

__all__ = ["evaluate_run"]


def evaluate_run(
    run: str | os.PathLike,
    data: str | os.PathLike,
    *,
    mesh: str | None = None,
    split: Literal["test", "all"] | None = None,
    out: str | os.PathLike | None = None,
    checkpoint: Literal["best", "last"] = "best",
    batch_size: int = 32,
    plots: int = 3,
    device: str = "cpu",
    problem: str | type | None = None,
) -> EvaluationResult:
    """Evaluate a trained model on a dataset; write plots, a .vtu and ``evaluation.json``.

    Steps: check the arguments, load the checkpoint, check that the data fit the model
    (:func:`check_fit`), pick the samples (:func:`select_rows`), rebuild the problem
    and the mesh context (:func:`_problem_and_context`), predict (:func:`predict_rows`),
    measure (:func:`measure`) and write the files (:func:`write_files`).

    Parameters
    ----------
    run
        A run folder of ``fe-operators train`` or a checkpoint file.
    data
        A dataset file of ``fe-operators generate``.
    mesh
        Optional: assert that the dataset was generated on this mesh spec (and that the
        model is mesh-agnostic).  Evaluation always runs on the dataset's own mesh.
    split
        ``"test"``: the run's test split (``data`` must be its training file); ``"all"``:
        every valid sample.  Default: ``"test"`` for the training file, else ``"all"``.
    out
        Output folder (default ``<run folder>/eval-<data stem>-<split>``).
    checkpoint
        ``"best"`` or ``"last"`` checkpoint of a run folder.
    batch_size
        Samples per forward pass.
    plots
        Samples to plot (0: no PNG; at most 3: first, median, worst).
    device
        Torch device.
    problem
        The problem class of your own that generated the data, ``"module:Class"`` or the
        class (``--problem``): needed when the dataset's problem is not a registered
        family, and checked against the stored name.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    CheckpointError
        A missing or corrupt checkpoint, or one of a learned preconditioner.
    DatasetFileError
        ``data`` is not a dataset file; its problem is a ``module:Class`` that ``problem``
        does not name; its stored solver options select a Python PETSc type.
    SpaceMismatchError
        The data's spaces differ from the model's; the data are on another mesh and the
        model is fixed-mesh or has mesh-bound normalizers; ``mesh`` not the dataset's mesh.
    NonFiniteError
        The model predicts NaN or infinite values (or the dataset holds some).
    NumberingError
        The problem rebuilt from the dataset's provenance numbers its DOFs differently
        from the stored arrays.
    UsageError
        Bad arguments (split, batch size, plots, an unknown or unavailable device), or
        ``problem`` is not the dataset's problem.
    """
    check_arguments(split, batch_size, plots, device)
    ckpt = resolve_checkpoint(run, checkpoint)
    loaded = load_model(ckpt, device=device)
    if type(loaded.network).__name__ == "RolloutSPON":
        raise SpaceMismatchError(f"{ckpt} holds a rollout surrogate (trained on trajectories); {data} is not a "
                                 "trajectory file: evaluate it on trajectories of its family")
    check_not_precond(loaded)
    file = FEFile(data)
    if problem is not None:  # a mismatch is an error before any data are read
        from fe_operators.problems.registry import stored_problem_class

        stored_problem_class(file.provenance.get("problem"), problem, source=f"the dataset {file.path}")
    other_mesh = check_fit(loaded, file, mesh)
    split, rows = select_rows(loaded, file, split)
    problem, context = _problem_and_context(loaded, file, other_mesh, device, problem)
    pred, y, ms = predict_rows(loaded, file, rows, context, batch_size, device)
    rel_l2, rel_h1, boundary, notes = measure(problem, pred, y)
    result = EvaluationResult(
        checkpoint=str(ckpt), data=file.path, mesh=str(file.provenance.get("mesh")), split=split,
        other_mesh=other_mesh, indices=rows, rel_l2=rel_l2, rel_h1=rel_h1, boundary_error=boundary,
        n_params=sum(int(p.numel()) for p in loaded.model.parameters()), ms_per_sample=ms,
        batch_size=batch_size, device=str(device), notes=notes,
    )
    out = Path(out) if out is not None else ckpt.parent / f"eval-{Path(file.path).stem}-{split}"
    write_files(result, out, file, problem, pred, plots)
    return result


def _problem_and_context(loaded: Any, file: Any, other_mesh: bool, device: str,
                         user_problem: Any = None) -> tuple[Any, Any]:
    """The dataset's problem (in the stored DOF order, checked) and, on another mesh, its mesh context."""
    from fe_operators.models.build import context_for_model

    problem = file.rebuild_problem(problem=user_problem)
    if not other_mesh:
        return problem, None
    run_config, _ = run_info(loaded)
    method = (run_config.get("model") or {}).get("method", "auto")
    context = context_for_model(loaded.network, problem, method=method,
                                mesh_spec=file.provenance.get("mesh")).to(torch.device(device))
    loaded.network.check_context(context)
    return problem, context
