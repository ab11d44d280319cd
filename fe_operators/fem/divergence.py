"""How far a velocity field is from divergence-free: continuous and discrete measures.

* :func:`divergence_ratio` — ``‖div u‖_L2 / ‖∇u‖_L2``, the pointwise divergence (a
  Taylor–Hood velocity's is the discretisation's level, not round-off);
* :func:`discrete_divergence` — the divergence tested with a pressure space's basis,
  relative to ``(∫ q_i |∇u|)_i``: the continuity equation a mixed scheme solves, so
  round-off for its solutions.
"""

from __future__ import annotations

import math

import firedrake as fd

__all__ = ["divergence_ratio", "discrete_divergence"]


def divergence_ratio(u: fd.Function) -> float:
    """``‖div u‖_L2 / ‖∇u‖_L2`` of a velocity ``u`` (exact quadrature of the forms)."""
    return math.sqrt(fd.assemble(fd.div(u) ** 2 * fd.dx) / fd.assemble(fd.inner(fd.grad(u), fd.grad(u)) * fd.dx))


def discrete_divergence(u: fd.Function, Q: fd.FunctionSpace) -> float:
    """``‖(∫ q_i div u)_i‖ / ‖(∫ q_i |∇u|)_i‖`` (2-norms over all processes), ``q_i`` the basis of ``Q``."""
    q = fd.TestFunction(Q)
    div = fd.assemble(q * fd.div(u) * fd.dx).dat.data_ro
    scale = fd.assemble(q * fd.sqrt(fd.inner(fd.grad(u), fd.grad(u))) * fd.dx).dat.data_ro
    comm = u.function_space().mesh().comm
    return math.sqrt(comm.allreduce(float(div @ div)) / comm.allreduce(float(scale @ scale)))
