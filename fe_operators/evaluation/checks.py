"""The checks of an evaluation: arguments, checkpoint, the data against the model, the samples.

Data and model must agree: the dataset's spaces are checked against those the model was
trained on (element, cell, shape, components), each mismatch an error naming it; on
another mesh than the training mesh, only a mesh-agnostic model without per-DOF
normalizers runs (:func:`check_fit`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fe_operators.data import split_rows
from fe_operators.errors import CheckpointError, SpaceMismatchError, UsageError
from fe_operators.models import PROCESSORS, SPON
from fe_operators.models.normalized import UnitGaussianNormalizer
from fe_operators.train.checkpoint import space_dicts
from fe_operators.train.config import device_error

__all__ = ["resolve_checkpoint", "check_arguments", "check_not_precond", "run_info", "check_fit", "select_rows"]

#: space fields that may differ between the training mesh and another mesh of the domain
_MESH_FIELDS = ("n_nodes", "n_cells")


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
    data = run_config.get("data") or {}
    return split_rows(file, list(data.get("split", [0.8, 0.1, 0.1])), int(data.get("seed", 0)))[2]


def check_arguments(split: Any, batch_size: Any, plots: Any, device: Any) -> None:
    """Raise :class:`~fe_operators.errors.UsageError` (a ``ValueError``) naming a bad argument."""
    if split not in (None, "test", "all"):
        raise UsageError(f"--split: expected 'test' or 'all', got {split!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"--batch-size: expected a positive integer, got {batch_size!r}")
    if not isinstance(plots, int) or not 0 <= plots <= 3:
        raise UsageError(f"--plots: expected 0, 1, 2 or 3 (samples plotted: first, median, worst), got {plots!r}")
    why = device_error(device)
    if why:
        raise UsageError(f"--device: {why}")


def check_not_precond(loaded: Any) -> None:
    """Refuse the checkpoint of a learned preconditioner (``fe-operators precond train`` writes one).

    Such a checkpoint records ``run.precond`` and no function spaces; without this check
    it would fail the space comparison with "not a model space".
    """
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


def run_info(loaded: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run configuration and the training dataset (path, numbering) a checkpoint records."""
    info = loaded.metadata.get("run") or {}
    return info.get("config") or {}, info.get("dataset") or {}


def check_fit(loaded: Any, file: Any, mesh: str | None) -> bool:
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
    network = loaded.network
    stored = file.provenance.get("mesh")
    if mesh is not None and _mesh_spec(mesh) != stored:
        raise SpaceMismatchError(
            f"--mesh {mesh!r}: the dataset {file.path} was generated on mesh {stored!r}; evaluate always runs on "
            f"the dataset's own mesh, so --mesh is not needed; to evaluate on {mesh!r}, generate data there "
            f"(fe-operators generate {file.provenance.get('problem')} --mesh {mesh} ...) and pass it as --data")
    _check_other_mesh_spaces(loaded.spaces, file.space_dicts, loaded.path, file.path)
    _, trained_on = run_info(loaded)
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


def select_rows(loaded: Any, file: Any, split: str | None) -> tuple[str, np.ndarray]:
    """The split (default: ``"test"`` for the run's training file, else ``"all"``) and its file rows."""
    run_config, trained_on = run_info(loaded)
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
