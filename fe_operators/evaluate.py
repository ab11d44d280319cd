"""``fe-operators evaluate``: a trained model on a dataset, in FE norms, with plots and a .vtu.

Usage::

    fe-operators evaluate RUN_DIR --data data.h5 [--split test|all] [--out DIR] [--problem MODULE:CLASS]

``RUN_DIR`` is a run folder of ``fe-operators train`` (its ``best.pt`` is used, or
``--checkpoint last``) or a checkpoint file.  Printed (and written to
``evaluation.json``):

* relative L2 and relative H1 errors, mean (and max) over the samples, in the FE norms
  of the dataset's output space (:func:`~fe_operators.train.losses.fe_norm_for_file`);
* the max boundary error: ``max |prediction - truth|`` over the Dirichlet DOFs of every
  sample, relative to ``max |truth|`` there (to ``max |truth|`` overall where the
  boundary data are zero); a SPON's exact lifting makes it 0 (or round-off);
* the number of parameters, and the inference time per sample (batched, after a warm-up
  batch, inputs already in memory);

and written to the output folder: ``samples.png`` (input | truth | prediction | error on
the mesh, for the first, the median and the worst sample by relative L2),
``samples.vtu`` (the same fields, for ParaView) and ``evaluation.json``.

Data and model must agree: the dataset's spaces are checked against those the model was
trained on (element, cell, shape, components), each mismatch an error naming it.  The
dataset records the mesh it was generated on, and evaluation always runs there:

* the training mesh (the DOF numbering of the training data): the model's own mesh
  context;
* another mesh of the domain: a mesh-agnostic model (SPON with the ``gnn`` or
  ``multigrid`` processor) runs with a mesh context built for the dataset's problem on
  its mesh (``other_mesh`` in the result); a fixed-mesh model (``mlp`` processor), or one
  trained with per-DOF normalizers, is refused with an error saying what to do.

``--mesh SPEC`` is not needed; given, it asserts that the dataset was generated on mesh
``SPEC`` (a spec as for ``fe-operators generate``) and that the model is mesh-agnostic.
Non-finite predictions are an error naming how many samples have them.

The problem is rebuilt from the dataset's provenance with
:meth:`~fe_operators.data.FEFile.rebuild_problem`, whose DOF numbering is checked to equal
the stored arrays'; nothing is ever renumbered silently.  A dataset of a problem class of
your own records its ``module:Class``, which is imported only when ``--problem
MODULE:CLASS`` names it: a file never decides what code runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch

from fe_operators.cli import command
from fe_operators.errors import NonFiniteError, SpaceMismatchError, UsageError

__all__ = ["EvaluationResult", "evaluate_run", "format_table", "main_evaluate", "resolve_checkpoint"]

#: space fields that may differ between the training mesh and another mesh of the domain
_MESH_FIELDS = ("n_nodes", "n_cells")


@dataclasses.dataclass
class EvaluationResult:
    """What :func:`evaluate_run` measured and wrote.

    Attributes
    ----------
    checkpoint, data, mesh
        The checkpoint file, the dataset file, the dataset's mesh spec.
    split
        ``"test"`` (the run's test split of its training file) or ``"all"``.
    other_mesh
        Whether the model ran on another mesh than its training mesh (the dataset's).
    indices
        File rows evaluated.
    rel_l2, rel_h1
        Per-sample relative errors, ``(n,)``.
    boundary_error
        Max boundary error (see the module docstring).
    n_params
        Number of model parameters.
    ms_per_sample
        Inference milliseconds per sample (batched, warm).
    batch_size
        Samples per forward pass.
    device
        Torch device of the model.
    files
        Written files by kind (``"png"``, ``"vtu"``, ``"json"``).
    notes
        Remarks printed under the table.
    """

    checkpoint: str
    data: str
    mesh: str
    split: str
    other_mesh: bool
    indices: np.ndarray
    rel_l2: np.ndarray
    rel_h1: np.ndarray
    boundary_error: float
    n_params: int
    ms_per_sample: float
    batch_size: int
    device: str
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def n_samples(self) -> int:
        """Number of samples evaluated."""
        return int(self.indices.size)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (what ``evaluation.json`` holds, without per-sample errors)."""
        return {
            "checkpoint": self.checkpoint, "data": self.data, "mesh": self.mesh, "split": self.split,
            "other_mesh": self.other_mesh, "n_samples": self.n_samples,
            "rel_l2": float(self.rel_l2.mean()), "rel_l2_max": float(self.rel_l2.max()),
            "rel_h1": float(self.rel_h1.mean()), "rel_h1_max": float(self.rel_h1.max()),
            "boundary_error": float(self.boundary_error), "n_params": int(self.n_params),
            "ms_per_sample": float(self.ms_per_sample), "batch_size": int(self.batch_size),
            "device": self.device, "files": dict(self.files), "notes": list(self.notes),
        }


def format_table(result: EvaluationResult) -> str:
    """The result as a small Markdown table with a header line."""
    s = result.summary()
    where = "another mesh, " if result.other_mesh else ""
    rows = [
        ("relative L2 (mean / max)", f"{s['rel_l2']:.4e} / {s['rel_l2_max']:.4e}"),
        ("relative H1 (mean / max)", f"{s['rel_h1']:.4e} / {s['rel_h1_max']:.4e}"),
        ("max boundary error", f"{s['boundary_error']:.3e}"),
        ("parameters", f"{s['n_params']}"),
        ("inference ms/sample", f"{s['ms_per_sample']:.3f} (batch {s['batch_size']}, {s['device']})"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{Path(result.checkpoint).name} of {Path(result.checkpoint).parent} on {result.data}",
             f"({result.split} split, {result.n_samples} samples, {where}mesh {result.mesh})",
             f"| {'metric'.ljust(w0)} | {'value'.ljust(w1)} |", f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|"]
    lines += [f"| {a.ljust(w0)} | {b.ljust(w1)} |" for a, b in rows]
    lines += [f"note: {n}" for n in result.notes]
    if result.files:
        lines.append("wrote " + ", ".join(result.files[k] for k in sorted(result.files)))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- checks
def resolve_checkpoint(run: str | os.PathLike, which: Literal["best", "last"] = "best") -> Path:
    """The checkpoint file of a run folder (``best.pt``/``last.pt``), or ``run`` itself if a file.

    A missing path is returned as is: :func:`~fe_operators.train.checkpoint.load_model`
    reports it.
    """
    path = Path(run)
    return path / f"{which}.pt" if path.is_dir() else path


def _mesh_spec(spec: str) -> str:
    """A mesh spec as the generator stores it (an existing file becomes an absolute path)."""
    return os.path.abspath(spec) if os.path.isfile(spec) else spec


def _check_other_mesh_spaces(expected: Mapping[str, Any], actual: Mapping[str, Any], checkpoint: str,
                             data: str) -> None:
    """Spaces must agree in everything but their size (element, cell, shape, components)."""
    problems = []
    for key in sorted(set(expected) | set(actual)):
        if key not in expected or key not in actual:
            problems.append(f"{key}: {'missing from the dataset' if key in expected else 'not a model space'}")
            continue
        for field in sorted(set(expected[key]) | set(actual[key])):
            if field in _MESH_FIELDS:
                continue
            a, b = expected[key].get(field), actual[key].get(field)
            if a != b:
                problems.append(f"{key}: {field} {a!r} (the checkpoint) vs {b!r} (the dataset)")
    if problems:
        raise SpaceMismatchError(f"the spaces of {data} do not match those of the checkpoint {checkpoint}: "
                                 + "; ".join(problems))


def _per_dof_normalizers(loaded: Any) -> list[str]:
    """Which normalizers hold one statistic per DOF of the training mesh (mesh-bound)."""
    from fe_operators.models.normalized import UnitGaussianNormalizer

    def bound(norm: UnitGaussianNormalizer, n_nodes: int) -> bool:
        return norm.mean.ndim >= 1 and int(norm.mean.shape[0]) == n_nodes

    out = []
    spaces = loaded.spaces
    x = loaded.model.input_normalizer
    if isinstance(x, UnitGaussianNormalizer):
        first = next(k for k in spaces if k.startswith("inputs/"))
        if bound(x, int(spaces[first]["n_nodes"])):
            out.append("input")
    elif x is not None:
        out += [f"input {n!r}" for n, m in x.items() if bound(m, int(spaces[f"inputs/{n}"]["n_nodes"]))]
    y = loaded.model.output_normalizer
    if y is not None and bound(y, int(spaces["output"]["n_nodes"])):
        out.append("output")
    return out


def _test_rows(file: Any, run_config: Mapping[str, Any]) -> np.ndarray:
    """The test split of a run (same rule and seed as ``fe-operators train``)."""
    from fe_operators.train.cli import _split

    data = run_config.get("data") or {}
    return _split(file, list(data.get("split", [0.8, 0.1, 0.1])), int(data.get("seed", 0)))[2]


# ----------------------------------------------------------------------------- evaluation
def _take(x: Any, part: slice) -> Any:
    return x[part] if isinstance(x, torch.Tensor) else {k: v[part] for k, v in x.items()}


def _to(x: Any, device: torch.device, dtype: torch.dtype) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return {k: v.to(device=device, dtype=dtype) for k, v in x.items()}


def _predict_all(forward: Any, x: Any, n: int, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        parts = [forward(_take(x, slice(s, min(s + batch_size, n)))) for s in range(0, n, batch_size)]
    return torch.cat(parts).to(torch.float64).cpu()


def _time_per_sample(forward: Any, x: Any, n: int, batch_size: int, min_seconds: float = 0.3,
                     max_repeats: int = 20) -> float:
    """Milliseconds per sample of batched inference after a warm-up batch."""
    _predict_all(forward, _take(x, slice(0, min(batch_size, n))), min(batch_size, n), batch_size)  # warm-up
    repeats, elapsed = 0, 0.0
    while repeats < max_repeats and (repeats == 0 or elapsed < min_seconds):
        start = time.perf_counter()
        _predict_all(forward, x, n, batch_size)
        elapsed += time.perf_counter() - start
        repeats += 1
    return 1000.0 * elapsed / (repeats * n)


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
    (:func:`_check_fit`), pick the samples (:func:`_select_rows`), rebuild the problem
    and the mesh context (:func:`_problem_and_context`), predict (:func:`_predict`),
    measure (:func:`_measure`) and write the files (:func:`_write_files`).

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
    from fe_operators.data import FEFile
    from fe_operators.train.checkpoint import load_model

    _check_arguments(split, batch_size, plots, device)
    ckpt = resolve_checkpoint(run, checkpoint)
    loaded = load_model(ckpt, device=device)
    _check_not_precond(loaded)
    file = FEFile(data)
    if problem is not None:  # a mismatch is an error before any data are read
        from fe_operators.problems.registry import stored_problem_class

        stored_problem_class(file.provenance.get("problem"), problem, source=f"the dataset {file.path}")
    other_mesh = _check_fit(loaded, file, mesh)
    split, rows = _select_rows(loaded, file, split)
    problem, context = _problem_and_context(loaded, file, other_mesh, device, problem)
    pred, y, ms = _predict(loaded, file, rows, context, batch_size, device)
    rel_l2, rel_h1, boundary, notes = _measure(problem, pred, y)
    result = EvaluationResult(
        checkpoint=str(ckpt), data=file.path, mesh=str(file.provenance.get("mesh")), split=split,
        other_mesh=other_mesh, indices=rows, rel_l2=rel_l2, rel_h1=rel_h1, boundary_error=boundary,
        n_params=sum(int(p.numel()) for p in loaded.model.parameters()), ms_per_sample=ms,
        batch_size=batch_size, device=str(device), notes=notes,
    )
    out = Path(out) if out is not None else ckpt.parent / f"eval-{Path(file.path).stem}-{split}"
    _write_files(result, out, file, problem, pred, plots)
    return result


def _check_arguments(split: Any, batch_size: Any, plots: Any, device: Any) -> None:
    """Raise :class:`~fe_operators.errors.UsageError` (a ``ValueError``) naming a bad argument."""
    from fe_operators.train.config import device_error

    if split not in (None, "test", "all"):
        raise UsageError(f"--split: expected 'test' or 'all', got {split!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"--batch-size: expected a positive integer, got {batch_size!r}")
    if not isinstance(plots, int) or not 0 <= plots <= 3:
        raise UsageError(f"--plots: expected 0, 1, 2 or 3 (samples plotted: first, median, worst), got {plots!r}")
    why = device_error(device)
    if why:
        raise UsageError(f"--device: {why}")


def _check_not_precond(loaded: Any) -> None:
    """Refuse the checkpoint of a learned preconditioner (``fe-operators precond train`` writes one).

    Such a checkpoint records ``run.precond`` and no function spaces; without this check
    it would fail the space comparison with "not a model space".
    """
    from fe_operators.errors import CheckpointError

    precond = (loaded.metadata.get("run") or {}).get("precond")
    if isinstance(precond, Mapping):
        kind = precond.get("kind")
        flag = "--dcdm-model" if kind == "dcdm" else "--model"
        raise CheckpointError(loaded.path, f"holds a learned preconditioner (kind {str(kind)[:40]}), not a model "
                                           "trained on a dataset; evaluate it with fe-operators precond evaluate "
                                           f"{flag} {loaded.path} --mesh SPEC")
    if not loaded.spaces:
        raise CheckpointError(loaded.path, "records no function spaces, so no dataset fits it (it was not written "
                                           "by fe-operators train)")


def _run_info(loaded: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run configuration and the training dataset (path, numbering) a checkpoint records."""
    info = loaded.metadata.get("run") or {}
    return info.get("config") or {}, info.get("dataset") or {}


def _check_fit(loaded: Any, file: Any, mesh: str | None) -> bool:
    """Check that the dataset fits the model; return whether it is on another mesh than the training data.

    The dataset records its mesh, so no option is needed to evaluate on it: on the
    training mesh (same DOF numbering as the training data) the model runs with its own
    mesh context; on another mesh of the domain a mesh-agnostic model runs with a context
    built for the dataset's mesh, and a fixed-mesh model is refused.  ``mesh`` (``--mesh``)
    only asserts which mesh the dataset is on.

    Raises
    ------
    SpaceMismatchError
        See :func:`evaluate_run`.
    """
    from fe_operators.models import PROCESSORS, SPON
    from fe_operators.train.checkpoint import space_dicts

    network = loaded.network
    stored = file.provenance.get("mesh")
    if mesh is not None and _mesh_spec(mesh) != stored:
        raise SpaceMismatchError(
            f"--mesh {mesh!r}: the dataset {file.path} was generated on mesh {stored!r}; evaluate always runs on "
            f"the dataset's own mesh, so --mesh is not needed; to evaluate on {mesh!r}, generate data there "
            f"(fe-operators generate {file.provenance.get('problem')} --mesh {mesh} ...) and pass it as --data")
    _check_other_mesh_spaces(loaded.spaces, file.space_dicts, loaded.path, file.path)
    _, trained_on = _run_info(loaded)
    numbering = trained_on.get("numbering")
    if (dict(numbering) == dict(file.numbering) if numbering else
            space_dicts(loaded.spaces) == space_dicts(file.space_dicts)):
        return False
    # another mesh of the domain
    agnostic = ", ".join(repr(n) for n, c in sorted(PROCESSORS.items()) if c.mesh_agnostic)
    if not (isinstance(network, SPON) and network.mesh_agnostic):
        kind = f"a SPON with processor {network.processor_type!r}" if isinstance(network, SPON) else \
            type(network).__name__
        how = (f"evaluate it on data generated on its training mesh ({trained_on.get('path') or 'see the run'}), "
               f"or train a mesh-agnostic model (SPON with processor {agnostic})")
        if mesh is not None:
            raise SpaceMismatchError(f"--mesh needs a mesh-agnostic model (SPON with processor {agnostic}); the "
                                     f"checkpoint {loaded.path} holds {kind}, which runs only on its training mesh")
        try:
            loaded.check_spaces(file.space_dicts, name=f"the dataset {file.path}")
        except SpaceMismatchError as exc:
            raise SpaceMismatchError(f"{exc}; the checkpoint holds {kind}, which runs only on its training "
                                     f"mesh: {how}") from None
        raise SpaceMismatchError(f"the dataset {file.path} numbers its DOFs differently from the data the model "
                                 f"was trained on (another mesh, generated as {stored!r}); the checkpoint holds "
                                 f"{kind}, which runs only on its training mesh: {how}")
    bound = _per_dof_normalizers(loaded)
    if bound:
        raise SpaceMismatchError(f"the dataset {file.path} is on another mesh ({stored!r}) than the training data, "
                                 f"but the checkpoint {loaded.path} was trained with per-DOF normalizers "
                                 f"({', '.join(bound)}; data.normalize_*: dof), which hold one value per node of "
                                 "the training mesh; retrain with 'global' or 'none' to evaluate on other meshes")
    return True


def _select_rows(loaded: Any, file: Any, split: str | None) -> tuple[str, np.ndarray]:
    """The split (default: ``"test"`` for the run's training file, else ``"all"``) and its file rows."""
    run_config, trained_on = _run_info(loaded)
    same_file = bool(trained_on.get("path")) and os.path.abspath(trained_on["path"]) == os.path.abspath(file.path) \
        and dict(trained_on.get("numbering") or {}) == dict(file.numbering)
    split = split or ("test" if same_file else "all")
    if split == "test":
        if not same_file:
            raise ValueError(f"--split test means the run's test split of its training file "
                             f"{trained_on.get('path')!r}; {file.path} is another file: use --split all")
        rows = _test_rows(file, run_config)
        if rows.size == 0:
            raise ValueError("the run's test split is empty (data.split leaves no test samples); use --split all")
    else:
        rows = np.flatnonzero(file.done)
        if rows.size == 0:
            raise ValueError(f"{file.path} holds no valid samples")
    return split, rows


def _problem_and_context(loaded: Any, file: Any, other_mesh: bool, device: str,
                         user_problem: Any = None) -> tuple[Any, Any]:
    """The dataset's problem (in the stored DOF order, checked) and, on another mesh, its mesh context."""
    from fe_operators.models.build import context_for_model

    problem = file.rebuild_problem(problem=user_problem)
    if not other_mesh:
        return problem, None
    run_config, _ = _run_info(loaded)
    method = (run_config.get("model") or {}).get("method", "auto")
    context = context_for_model(loaded.network, problem, method=method,
                                mesh_spec=file.provenance.get("mesh")).to(torch.device(device))
    loaded.network.check_context(context)
    return problem, context


def _predict(loaded: Any, file: Any, rows: np.ndarray, context: Any, batch_size: int,
             device: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Predictions and truths ``(n, n_nodes[, ncomp])`` float64 on the CPU, and ms per sample."""
    from fe_operators.data import FEDataset
    from fe_operators.models import SPON

    dataset = FEDataset(file.path, rows, dtype=torch.float64, preload=True)
    x, y = dataset.raw(np.arange(len(dataset)))
    n = len(dataset)
    network = loaded.network
    dtype = torch.float64 if isinstance(network, SPON) else next(network.parameters()).dtype
    x = _to(x, torch.device(device), dtype)
    model = loaded.model
    forward = model if context is None else functools.partial(model, context=context)
    model.eval()
    pred = _predict_all(forward, x, n, batch_size)
    if pred.shape != y.shape:
        raise SpaceMismatchError(f"the model predicts DOF tensors of shape {tuple(pred.shape)}, the dataset holds "
                                 f"{tuple(y.shape)}")
    bad = np.flatnonzero(~torch.isfinite(pred.reshape(n, -1)).all(dim=1).numpy())
    if bad.size:
        shown = ", ".join(str(int(r)) for r in rows[bad[:10]]) + (", ..." if bad.size > 10 else "")
        raise NonFiniteError(f"the model predicts NaN or infinite values for {bad.size} of {n} samples (file rows "
                             f"{shown}); the checkpoint {loaded.path} is broken or its training diverged: try "
                             "another checkpoint (--checkpoint best|last) or retrain with a lower train.lr")
    return pred, y, _time_per_sample(forward, x, n, batch_size)


def _measure(problem: Any, pred: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float, list[str]]:
    """Per-sample relative L2 and H1 errors, the max boundary error, and notes."""
    import firedrake as fd

    from fe_operators.fem import DirichletDofs, FENorm

    notes: list[str] = []
    V = problem.output_space
    templates = {n: fd.Function(W) for n, W in problem.input_spaces.items()}
    mask = DirichletDofs(V, problem.output_bcs(templates)).mask
    rel_l2 = FENorm.l2(V).relative(pred, y).numpy()
    rel_h1 = FENorm.h1(V).relative(pred, y).numpy()
    m = mask.reshape(y.shape[1:])
    if bool(m.any()):
        err = float((pred - y)[:, m].abs().max())
        scale = float(y[:, m].abs().max()) or float(y.abs().max()) or 1.0
        boundary = err / scale
    else:
        boundary = 0.0
        notes.append("the output has no Dirichlet DOFs; the boundary error is 0 by definition")
    return rel_l2, rel_h1, boundary, notes


def _write_files(result: EvaluationResult, out: Path, file: Any, problem: Any, pred: torch.Tensor,
                 plots: int) -> None:
    """Write ``samples.png`` (first, median, worst), ``samples.vtu`` and ``evaluation.json`` to ``out``."""
    import firedrake as fd

    from fe_operators.io import write_fields

    out.mkdir(parents=True, exist_ok=True)
    rows, rel_l2, n = result.indices, result.rel_l2, result.n_samples
    V = problem.output_space
    order = np.argsort(rel_l2, kind="stable")
    picks = list(dict.fromkeys([0, int(order[n // 2]), int(order[-1])]))[:max(0, min(plots, 3))] or [0]
    inputs_np, output_np = file.read(rows[picks])
    fields: dict[str, Any] = {}
    panels = []
    for j, k in enumerate(picks):
        truth = fd.Function(V, val=output_np[j].reshape(V.dof_dset.size, *V.value_shape))
        guess = fd.Function(V, val=pred[k].numpy().reshape(V.dof_dset.size, *V.value_shape))
        error = fd.Function(V).assign(guess - truth)
        ins = {name: fd.Function(W, val=inputs_np[name][j].reshape(W.dof_dset.size, *W.value_shape))
               for name, W in problem.input_spaces.items()}
        first = next(iter(ins))
        panels.append({f"input {first}": ins[first], "truth": truth, "prediction": guess, "error": error})
        row = int(rows[k])
        fields.update({f"{name}_{row}": f for name, f in ins.items()})
        fields.update({f"truth_{row}": truth, f"prediction_{row}": guess, f"error_{row}": error})
    if plots > 0:
        from fe_operators.errors import UnsupportedSpaceError
        from fe_operators.io.plots import plot_fields

        labels = [f"sample {int(rows[k])}, rel L2 {rel_l2[k]:.2%}" for k in picks]
        try:
            result.files["png"] = str(plot_fields(out / "samples.png", panels, row_labels=labels,
                                                  shared=[("truth", "prediction")],
                                                  title=f"{Path(file.path).name}: truth, prediction, error"))
        except UnsupportedSpaceError as exc:
            result.notes.append(f"no plot: {exc}")
    result.files["vtu"] = str(write_fields(out / "samples.vtu", fields))
    result.files["json"] = str(out / "evaluation.json")
    payload = result.summary()
    payload["indices"] = rows.tolist()
    payload["rel_l2_per_sample"] = rel_l2.tolist()
    payload["rel_h1_per_sample"] = result.rel_h1.tolist()
    (out / "evaluation.json").write_text(json.dumps(payload, indent=1) + "\n")


# ----------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fe-operators evaluate",
        description="Evaluate a trained model on a dataset: relative L2/H1, boundary error, parameters, "
                    "inference time; PNG plots and a .vtu.")
    p.add_argument("run", metavar="RUN_DIR", help="run folder of 'fe-operators train' (or a checkpoint file)")
    p.add_argument("--data", required=True, metavar="FILE", help="dataset file of 'fe-operators generate'")
    p.add_argument("--mesh", metavar="SPEC",
                   help="not needed: evaluation runs on the mesh the dataset records (a mesh-agnostic model also "
                        "on other meshes than its training mesh); given, it asserts the dataset's mesh spec")
    p.add_argument("--split", choices=("test", "all"),
                   help="the run's test split (default for its training file) or all samples (default otherwise)")
    p.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/eval-<data>-<split>)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of RUN_DIR")
    p.add_argument("--batch-size", type=int, default=32, help="samples per forward pass (default 32)")
    p.add_argument("--plots", type=int, default=3, choices=range(4), metavar="{0,1,2,3}",
                   help="samples to plot: first, median, worst (default 3; 0: no PNG)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--problem", metavar="MODULE:CLASS",
                   help="the problem class of your own that generated the data (it must be importable, e.g. "
                        "with PYTHONPATH); only then is it imported: a file never names code to run")
    return p


@command("evaluate")
def main_evaluate(argv: list[str]) -> int:
    """Entry point of ``fe-operators evaluate`` (``main_evaluate(argv=None)``); returns the exit status.

    0 on success, 1 on bad input (missing/corrupt checkpoint, mismatched data, ...), 2 on
    a usage error; errors are one line on stderr (:func:`fe_operators.cli.run_command`).
    """
    args = _parser().parse_args(argv)
    result = evaluate_run(args.run, args.data, mesh=args.mesh, split=args.split, out=args.out,
                          checkpoint=args.checkpoint, batch_size=args.batch_size, plots=args.plots,
                          device=args.device, problem=args.problem)
    print(format_table(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_evaluate())
