"""Finding and building problems by name: the family registry and ``module:Class`` paths.

Data generation (:mod:`fe_operators.data`), rebuilding a problem from a dataset file
(:meth:`fe_operators.data.FEFile.rebuild_problem`) and evaluation all go through
:func:`load_problem`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import firedrake as fd

    from fe_operators.problems.base import Problem

__all__ = ["FAMILIES", "get_problem", "load_problem", "problem_class", "resolve_problem"]

#: family name -> "module:Class" (imported on first use)
FAMILIES: dict[str, str] = {
    "poisson": "fe_operators.problems.poisson:PoissonProblem",
    "darcy": "fe_operators.problems.darcy:DarcyProblem",
    "helmholtz": "fe_operators.problems.helmholtz:HelmholtzProblem",
    "elasticity": "fe_operators.problems.elasticity:ElasticityProblem",
    "nonlinear": "fe_operators.problems.nonlinear:NonlinearDiffusionProblem",
    "stokes": "fe_operators.problems.stokes:StokesProblem",
}


def problem_class(name: str) -> type[Problem]:
    """The Problem subclass of family ``name``.

    Raises
    ------
    ValueError
        Unknown family (the message lists the known ones).
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown problem {name!r}; known problems: {', '.join(sorted(FAMILIES))}")
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_problem(name: str, mesh: fd.MeshGeometry, **params: Any) -> Problem:
    """Build the problem family ``name`` on ``mesh`` with family parameters ``params``."""
    return problem_class(name)(mesh, **params)


def resolve_problem(name: str) -> type[Problem]:
    """The Problem class of a registry name (``"darcy"``) or an import path (``"pkg.mod:Class"``).

    Raises
    ------
    ValueError
        Unknown family, or an import path that does not name a Problem subclass.
    """
    from fe_operators.problems.base import Problem

    if ":" in name and name not in FAMILIES:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import problem class {name!r}: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Problem)):
            raise ValueError(f"expected {name!r} to name a Problem subclass, got {cls!r}")
        return cls
    return problem_class(name)


def load_problem(name: str, mesh: str, params: Mapping[str, Any], comm: Any = None) -> Problem:
    """Build problem ``name`` with ``params`` on the mesh ``mesh`` (a spec for ``load_mesh``).

    Parameters
    ----------
    name
        Registry name or ``"module:Class"``.
    mesh
        Mesh spec: a shipped mesh name, ``"unitsquare:64"`` or a file path, optionally
        refined (``"plate_holes/r2"``).
    params
        Family parameters.
    comm
        Communicator of the mesh (default ``COMM_SELF``: one copy per process).

    Raises
    ------
    ValueError
        Unknown problem or invalid parameters.
    fe_operators.errors.MeshReadError
        The mesh spec cannot be read.
    """
    from mpi4py import MPI

    from fe_operators.io import load_mesh

    cls = resolve_problem(name)
    mesh_obj = load_mesh(mesh, comm=MPI.COMM_SELF if comm is None else comm)
    try:
        return cls(mesh_obj, **dict(params))
    except TypeError as exc:
        raise ValueError(f"invalid parameters {dict(params)} for problem {name!r}: {exc}") from exc
