"""PDE problem families defined in UFL, each with an input sampler.

Families are looked up by name with :func:`get_problem` (or built on a mesh spec with
:func:`load_problem`); each is a :class:`~fe_operators.problems.base.Problem` subclass in
a module of its own that registers it with :func:`register_problem`.  Importing this
package imports the families of the package, which fills :data:`FAMILIES`: seven steady
ones and the time-dependent ``navier_stokes`` and ``heat``
(:class:`~fe_operators.problems.timedep.TimeDependentProblem`, generated as trajectories).
"""

from __future__ import annotations

from fe_operators.problems.base import Problem, bound_params, sample_rng
from fe_operators.problems.registry import (
    FAMILIES,
    check_params,
    get_problem,
    is_time_dependent,
    load_problem,
    problem_class,
    register_problem,
    resolve_problem,
    stored_problem_class,
    user_problem,
)

# the families register themselves on import (in this order, the order of FAMILIES)
from fe_operators.problems import poisson, darcy, helmholtz, elasticity, nonlinear, stokes, hyperelastic  # noqa: E402,F401  isort: skip
from fe_operators.problems import navier_stokes, heat  # noqa: E402,F401  isort: skip  (time-dependent families)

__all__ = [
    "FAMILIES",
    "Problem",
    "bound_params",
    "check_params",
    "get_problem",
    "is_time_dependent",
    "load_problem",
    "problem_class",
    "register_problem",
    "resolve_problem",
    "sample_rng",
    "stored_problem_class",
    "user_problem",
]
