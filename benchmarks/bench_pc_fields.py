"""Coefficient families of ``bench_pc.py`` for what the log-normal Matérn sampler cannot do.

The Darcy family's log-normal field (:class:`~fe_operators.precond.data.DiffusionFamily`)
is sampled by factorising an SPDE on the mesh, on one process: the sparse Cholesky
factorisation grows faster than the mesh (9.6 s at 66k DOFs, 28 s at 263k on a shared
core of the bench machine; minutes at 4.2M), and it cannot run under ``mpiexec``. Both families here solve
:math:`-\\nabla\\cdot(a\\nabla u) = 1`, :math:`u = 0`, CG1, like the Darcy family:

- :class:`CoarseLogNormal`: the same log-normal field, sampled on a coarser level of the
  mesh's hierarchy (the finest with at most ``max_sample_dofs`` vertices) and prolonged
  to the mesh (P1 interpolation between nested meshes: positive, and the field's
  correlation length is hundreds of coarse cells at the default);
- :class:`FourierLogField`: ``exp`` of a random sum of Fourier modes, interpolated in
  parallel from the same seed on every rank.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

import firedrake as fd

from fe_operators.problems.base import OperatorForm, Problem

__all__ = ["CoarseLogNormal", "FourierLogField"]


class _Diffusion(Problem):
    """``-div(a grad u) = 1``, ``u = 0`` on the boundary, CG1, input ``a`` in CG1; only the
    ``spd_operator`` hook (what ``precond evaluate`` needs)."""

    def __init__(self, mesh: Any, **params: Any) -> None:
        super().__init__(mesh, **params)
        self._V = fd.FunctionSpace(mesh, "CG", 1)

    @property
    def input_spaces(self) -> dict[str, Any]:
        return {"a": self._V}

    @property
    def output_space(self) -> Any:
        return self._V

    def solve(self, inputs: Mapping[str, fd.Function]) -> fd.Function:  # pragma: no cover - not used here
        raise NotImplementedError(f"{type(self).__name__} only provides spd_operator")

    def spd_operator(self, inputs: Mapping[str, fd.Function], **overrides: float) -> OperatorForm:
        u, v = fd.TrialFunction(self._V), fd.TestFunction(self._V)
        return OperatorForm(fd.inner(inputs["a"] * fd.grad(u), fd.grad(v)) * fd.dx,
                            [fd.DirichletBC(self._V, 0.0, "on_boundary")])


class CoarseLogNormal(_Diffusion):
    """The Darcy family's log-normal coefficient (variance ``variance``, the FNO length scale),
    sampled on the finest level of the mesh's hierarchy with at most ``max_sample_dofs``
    vertices and prolonged to the mesh."""

    #: the level the last instance samples on
    last_sample_level: int | None = None

    def __init__(self, mesh: Any, variance: float = 2.0, max_sample_dofs: int = 300_000) -> None:
        from firedrake.mg.utils import get_level

        from fe_operators.problems.darcy import DarcyProblem

        super().__init__(mesh, variance=variance, max_sample_dofs=max_sample_dofs)
        hierarchy, level = get_level(mesh)
        if hierarchy is None:
            raise ValueError("CoarseLogNormal needs a level of a MeshHierarchy (a mesh spec NAME/rK)")
        coarse = level
        while coarse > 0 and fd.FunctionSpace(hierarchy[coarse], "CG", 1).dim() > max_sample_dofs:
            coarse -= 1
        self.sample_level = coarse
        type(self).last_sample_level = coarse  # for the bench's table, which never sees the instance
        self._spaces = [fd.FunctionSpace(hierarchy[k], "CG", 1) for k in range(coarse, level + 1)]
        self._darcy = DarcyProblem(hierarchy[coarse], coefficient="lognormal", variance=variance)

    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        a = self._darcy.sample_inputs(rng)["a"]
        a = fd.Function(self._spaces[0]).interpolate(a)  # the sampler's CG1 field, on its own space
        for V in self._spaces[1:]:
            fine = fd.Function(V)
            fd.prolong(a, fine)
            a = fine
        return {"a": a}


class FourierLogField(_Diffusion):
    """``a = exp(g)``, ``g`` a sum of ``modes``² products of cosines of wavenumbers ``1..modes``
    with random phases and amplitudes decaying as ``1/|k|²``, scaled to variance ``variance``."""

    def __init__(self, mesh: Any, variance: float = 2.0, modes: int = 4) -> None:
        super().__init__(mesh, variance=variance, modes=modes)

    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        n, x = self.params["modes"], fd.SpatialCoordinate(self.mesh)
        k = np.arange(1, n + 1)
        kx, ky = np.meshgrid(k, k, indexing="ij")
        amp = rng.standard_normal((n, n)) / (kx**2 + ky**2)
        phase = rng.uniform(0, 2 * np.pi, (n, n, 2))
        amp *= np.sqrt(4 * self.params["variance"] / np.sum(amp**2))  # a product of cosines has variance 1/4
        g = sum(float(amp[i, j]) * fd.cos(np.pi * kx[i, j] * x[0] + phase[i, j, 0])
                * fd.cos(np.pi * ky[i, j] * x[1] + phase[i, j, 1]) for i in range(n) for j in range(n))
        return {"a": fd.Function(self._V).interpolate(fd.exp(g))}
