"""PDE problem families defined in UFL, each with an input sampler.

Families are looked up by name with :func:`get_problem`; each is a
:class:`~fe_operators.problems.base.Problem` subclass in a module of its own.
"""

from __future__ import annotations

import importlib
from typing import Any

import firedrake as fd

from fe_operators.problems.base import Problem, SolveError, sample_rng

__all__ = ["Problem", "SolveError", "sample_rng", "get_problem", "problem_class", "FAMILIES"]

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
