"""PDE problem families defined in UFL, each with an input sampler.

Families are looked up by name with :func:`get_problem` (or built on a mesh spec with
:func:`load_problem`); each is a :class:`~fe_operators.problems.base.Problem` subclass in
a module of its own, listed in :mod:`~fe_operators.problems.registry`.
"""

from __future__ import annotations

from fe_operators.problems.base import Problem, sample_rng
from fe_operators.problems.registry import (
    FAMILIES,
    check_params,
    get_problem,
    load_problem,
    problem_class,
    resolve_problem,
    stored_problem_class,
    user_problem,
)

__all__ = [
    "FAMILIES",
    "Problem",
    "check_params",
    "get_problem",
    "load_problem",
    "problem_class",
    "resolve_problem",
    "sample_rng",
    "stored_problem_class",
    "user_problem",
]
