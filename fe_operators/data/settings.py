"""The settings that decide a generation run's samples, and the provenance stored with them.

:func:`run_settings` collects what must agree for two runs to produce the same samples
(problem, parameters, seed, mesh, DOF numbering, solver options, inputs; for trajectories
also the kind and the time settings);
:func:`compare_settings` says where a stored file or journal differs from a requested
run; :func:`versions` records the software stack.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fe_operators.data.layout import FORMAT_VERSION

if TYPE_CHECKING:  # pragma: no cover
    from fe_operators.data.sources import SteadySource, TrajectorySource
    from fe_operators.problems.base import Problem
    from fe_operators.problems.timedep import TimeDependentProblem

__all__ = ["COMPARED_SETTINGS", "compare_settings", "jsonable", "normalise_mesh_spec", "run_settings",
           "versions"]

#: settings that must agree to resume or extend a file
COMPARED_SETTINGS = ("format_version", "kind", "problem", "params", "seed", "mesh", "time", "numbering",
                     "solver_parameters", "inputs")


def jsonable(value: Any) -> Any:
    """``value`` after a JSON round trip (tuples become lists, odd objects strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def normalise_mesh_spec(spec: str) -> str:
    """A mesh spec that names an existing file becomes an absolute path.

    With a refinement suffix on a file (``mesh.msh/r1``) the file's path becomes absolute
    and the suffix stays (``/abs/mesh.msh/r1``); other specs are kept as given.
    """
    if os.path.isfile(spec):
        return os.path.abspath(spec)
    from fe_operators.errors import MeshReadError
    from fe_operators.io.specs import resolve_mesh_spec

    try:
        source = resolve_mesh_spec(spec)
    except MeshReadError:  # not ours to judge here: loading the mesh reports it
        return spec
    if source.kind == "file" and source.refinements is not None:
        return os.path.abspath(source.path) + f"/r{source.refinements}"
    return spec


def run_settings(name: str, mesh: str, problem: Problem | TimeDependentProblem, seed: int,
                 source: SteadySource | TrajectorySource | None = None) -> dict[str, Any]:
    """The settings of a run that decide its samples (compared when resuming).

    ``solver_parameters`` is :attr:`Problem.solver_parameters
    <fe_operators.problems.base.Problem.solver_parameters>`: the PETSc options the
    problem's solver really uses (the family's defaults and Firedrake's included).
    ``source`` (default: the steady source of ``problem``) adds what its kind needs: the
    DOF numbering and input names of a steady run; ``kind``, ``time`` (``n_steps``,
    ``store_every``, ``spinup_steps``, ``dt``), the state space's numbering and the
    parameter names of a trajectory run (:mod:`~fe_operators.data.sources`).
    """
    if source is None:
        from fe_operators.data.sources import SteadySource

        source = SteadySource(problem)  # type: ignore[arg-type]
    settings = {
        "format_version": FORMAT_VERSION,
        "problem": name,
        "params": jsonable(problem.params),
        "seed": int(seed),
        "mesh": normalise_mesh_spec(mesh),
        "solver_parameters": jsonable(problem.solver_parameters),
    }
    settings.update(jsonable(source.settings()))
    return settings


def compare_settings(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Settings that differ, as dotted keys (``"params.solver_parameters.pc_type"``) -> (stored, requested).

    A stored ``solver_parameters`` of ``None`` is not compared: files written before the
    solver's options were recorded stored ``None`` for every problem (the options given
    by the user are in ``params`` and compared there).
    """
    diff: dict[str, tuple[Any, Any]] = {}
    for key in COMPARED_SETTINGS:
        a, b = stored.get(key), requested.get(key)
        if key == "solver_parameters" and a is None:
            continue
        if key == "numbering":  # hashes: the first 12 hex digits say enough
            a = {k: v[:12] for k, v in a.items()} if isinstance(a, dict) else a
            b = {k: v[:12] for k, v in b.items()} if isinstance(b, dict) else b
        _diff(key, a, b, diff)
    return diff


class _Unset:
    """Marks a setting one side does not have."""

    def __repr__(self) -> str:
        return "unset"


_MISSING = _Unset()


def _diff(key: str, a: Any, b: Any, out: dict[str, tuple[Any, Any]]) -> None:
    """Record in ``out`` where ``a`` and ``b`` differ, descending into dicts."""
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for sub in sorted(set(a) | set(b), key=str):
            _diff(f"{key}.{sub}", a.get(sub, _MISSING), b.get(sub, _MISSING), out)
    else:
        out[key] = (a, b)


def versions() -> dict[str, str | None]:
    """Versions of Python, the stack and fe_operators."""
    import h5py
    from petsc4py import PETSc

    import fe_operators

    out: dict[str, str | None] = {"python": platform.python_version(), "fe_operators": fe_operators.__version__}
    for dist in ("firedrake", "petsc4py", "mpi4py", "numpy", "h5py", "torch"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    out["petsc"] = ".".join(str(v) for v in PETSc.Sys.getVersion())
    out["hdf5"] = h5py.version.hdf5_version
    return out
