"""Learned preconditioners for PETSc Krylov solves (docs/design.md §6).

Chosen with ordinary solver options, ``-pc_type python -pc_python_type
fe_operators.precond.<Class>``:

* :class:`NeuralMG` (Firedrake ``PCBase``) — SPD neural multigrid on the problem's
  ``MeshHierarchy``: Galerkin V-cycle with learned diagonal smoothers, valid for ``cg``;
* :class:`NeuralAMG` (plain petsc4py PC) — the same learned smoothers in PETSc's GAMG,
  for any assembled SPD matrix;
* :class:`LearnedJacobi` (petsc4py PC) — the learned smoother alone, for any PCMG's levels;
* :class:`DCDM` (Firedrake ``PCBase``) — a nonlinear network ``f(r/‖r‖)`` applied at every
  iteration, for ``fcg`` (Kaneda et al. 2023).

A learned preconditioner *kind* (what ``fe-operators precond train`` trains) is one
:class:`~.registry.LearnedPreconditioner` subclass registered with
:func:`register_preconditioner` (its options section, network, trainer, solver options
and ``precond evaluate`` rows; docs/extending.md); ``neural_mg``
(:mod:`~.kind_neural_mg`) and ``dcdm`` (:mod:`~.kind_dcdm`) are written in that form.

Modules: :mod:`~.registry` (the kinds), :mod:`~.base` (model lookup, fallback counts), :mod:`~.features` (row features),
:mod:`~.smoother`, :mod:`~.mg` (Galerkin hierarchy in PETSc, GAMG variant), :mod:`~.neural_mg`,
:mod:`~.vcycle` (the V-cycle in torch, on a :class:`fe_operators.multigrid.hierarchy.Hierarchy`),
:mod:`~.dcdm` (network and loss),
:mod:`~.dcdm_pc`, :mod:`~.data` (training operators and right-hand sides),
:mod:`~.training`, :mod:`~.config`, :mod:`~.evaluate`, :mod:`~.cli`.

Importing this package imports neither Firedrake nor torch; the classes load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["NeuralMG", "NeuralAMG", "LearnedJacobi", "DCDM", "SmootherNet", "DCDMNet",
           "train_preconditioner", "load_precond_model", "register_preconditioner", "LearnedPreconditioner",
           "Method", "preconditioner_kinds"]

_WHERE = {
    "NeuralMG": "fe_operators.precond.neural_mg",
    "NeuralAMG": "fe_operators.precond.mg",
    "LearnedJacobi": "fe_operators.precond.smoother",
    "SmootherNet": "fe_operators.precond.smoother",
    "DCDM": "fe_operators.precond.dcdm_pc",
    "DCDMNet": "fe_operators.precond.dcdm",
    "train_preconditioner": "fe_operators.precond.training",
    "load_precond_model": "fe_operators.precond.base",
    "register_preconditioner": "fe_operators.precond.registry",
    "LearnedPreconditioner": "fe_operators.precond.registry",
    "Method": "fe_operators.precond.registry",
    "preconditioner_kinds": "fe_operators.precond.registry",
}


def __getattr__(name: str) -> Any:
    # petsc4py resolves "fe_operators.precond.NeuralMG" by attribute: load the class on use
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_WHERE))
