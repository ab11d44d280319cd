"""``NeuralMG``: the SPD neural multigrid as a Firedrake preconditioner.

A user's solve gains it by changing solver parameters only::

    solve(a == L, u, bcs=bcs, solver_parameters={
        "ksp_type": "cg",
        "ksp_norm_type": "unpreconditioned",
        "pc_type": "python",
        "pc_python_type": "fe_operators.precond.NeuralMG",
        "neuralmg_model": "smoother.pt",
    })

on a mesh that is a level of a ``MeshHierarchy`` (``load_mesh("unitsquare:16/r4")``).
The PC assembles nothing itself: it takes the solve's assembled matrix, the hierarchy's
prolongations (:func:`fe_operators.fem.transfer.level_prolongations`), builds the masked
Galerkin operators and a PETSc ``PCMG`` with learned smoothers
(:mod:`fe_operators.precond.mg`), and applies one V-cycle per Krylov iteration — no
network in the Krylov loop.  A new matrix (next solve with a new coefficient) recomputes
the coarse operators (``MatPtAP`` reusing the symbolic product, cut to the compact patterns
fixed at the first set-up: :class:`~fe_operators.precond.mg.GalerkinHierarchy`) and the smoother weights.

Options (prefix ``<solver prefix>neuralmg_``)
---------------------------------------------
``model PATH``
    The trained smoother network (else ``appctx["precond_model"]``).
``sweeps N``
    Smoothing sweeps per level before and after the coarse correction (default: the
    network's ``sweeps``).
``levels N``
    Use the finest ``N`` levels of the hierarchy (default: all).
``coarse galerkin|rediscretise``
    The coarse operators: the masked Galerkin products (default), or the solve's form
    assembled on each coarse mesh with the coefficients' cell averages
    (:mod:`fe_operators.precond.rediscretise`, as Firedrake's ``pc_type mg``); the same
    boundary masks, and SPD either way.
``mg_*``
    Any option of the inner ``PCMG`` (``neuralmg_mg_coarse_pc_type cholesky``).
"""

from __future__ import annotations

import time

from firedrake.dmhooks import get_appctx, get_function_space
from firedrake.petsc import PETSc
from firedrake.preconditioners.base import PCBase

from fe_operators.fem.transfer import level_prolongations
from fe_operators.precond.base import options_prefix, require_hierarchy, resolve_model
from fe_operators.errors import PreconditionerSetupError
from fe_operators.precond.mg import GalerkinHierarchy, _LearnedMGBase, setup_learned_mg

__all__ = ["NeuralMG"]


class NeuralMG(_LearnedMGBase, PCBase):
    """V-cycle on the problem's mesh hierarchy with learned SPD smoothers (a PCBase): Galerkin or
    rediscretised coarse operators.

    See the module docstring for usage and options.  The cycle is symmetric positive
    definite for any network weights (:mod:`fe_operators.precond.smoother`), so use it
    with ``ksp_type cg``.

    Attributes
    ----------
    hierarchy
        The :class:`~fe_operators.precond.mg.GalerkinHierarchy` or its subclass
        :class:`~fe_operators.precond.rediscretise.RediscretisedHierarchy` (after set-up).
    mg
        The inner PETSc ``PCMG``.
    smoothers
        The level smoothers' contexts (finest first).
    setup_breakdown
        Seconds of the last set-up's parts: ``features``, ``network`` (the smoothers; on one
        process the features are computed inside the network's compiled pass,
        :func:`~fe_operators.precond.smoother.fused_multipliers`, and counted there: 0 s),
        ``coarse operators`` (the Galerkin products, or the coefficients' averages and the
        coarse assemblies), ``LU`` (the rest of the PCMG set-up: the coarse
        factorisation); :attr:`setup_seconds` is the whole.
    coarse
        ``"galerkin"`` or ``"rediscretise"`` (the option ``coarse``).
    """

    _prefix = "neuralmg_"
    name = "fe_operators.precond.NeuralMG"
    needs_python_pmat = False

    def __init__(self) -> None:
        PCBase.__init__(self)
        _LearnedMGBase.__init__(self)
        self.hierarchy: GalerkinHierarchy | None = None
        self.coarse = "galerkin"

    def initialize(self, pc: PETSc.PC) -> None:
        """First set-up: model, prolongations, coarse operators, inner PCMG."""
        t0 = time.perf_counter()
        prefix = options_prefix(pc, self._prefix)
        _, P = pc.getOperators()
        if P.getType() in ("python", "shell"):
            raise PreconditionerSetupError(self.name, f"expected an assembled operator, got a {P.getType()!r} "
                                                      "matrix: set mat_type (or pmat_type) aij")
        self.net = resolve_model(self.name, prefix, None, self.get_appctx(pc), kind="neural_mg")
        self.sweeps = self._sweeps(prefix)
        V = get_function_space(pc.getDM())
        require_hierarchy(V, self.name)
        opts = PETSc.Options(prefix)
        levels = opts.getInt("levels") if opts.hasName("levels") else None
        prolongations = level_prolongations(V, levels)
        coarse = opts.getString("coarse", "galerkin").lower()
        if coarse == "galerkin":
            self.hierarchy = GalerkinHierarchy(P, prolongations, compact=True)
        elif coarse in ("rediscretise", "rediscretize"):
            self.hierarchy = self._rediscretised(pc, P, prolongations, prefix)
        else:
            raise PreconditionerSetupError(self.name, f"-{prefix}coarse {coarse!r}: expected galerkin or "
                                                      "rediscretise")
        self.coarse = coarse
        self.mg = PETSc.PC().create(comm=pc.comm)
        self.mg.incrementTabLevel(1, parent=pc)
        self.mg.setOptionsPrefix(prefix)
        self.smoothers = setup_learned_mg(self.mg, self.hierarchy, self.net, self.sweeps)
        self._timed_mg_setup(self.hierarchy.setup_seconds)
        self.setup_seconds = time.perf_counter() - t0

    def _rediscretised(self, pc: PETSc.PC, P: PETSc.Mat, prolongations: list, prefix: str) -> GalerkinHierarchy:
        """The :class:`~fe_operators.precond.rediscretise.RediscretisedHierarchy` of the solve's form."""
        from fe_operators.precond.rediscretise import RediscretisedHierarchy

        ctx = get_appctx(pc.getDM())
        form = getattr(ctx, "Jp", None)
        form = getattr(ctx, "J", None) if form is None else form
        if form is None:
            raise PreconditionerSetupError(self.name, f"-{prefix}coarse rediscretise needs the solve's bilinear "
                                                      "form (a Firedrake solve's DM); use galerkin")
        try:
            return RediscretisedHierarchy(P, prolongations, form)
        except ValueError as exc:
            raise PreconditionerSetupError(self.name, f"-{prefix}coarse rediscretise: {exc}") from None

    def update(self, pc: PETSc.PC) -> None:
        """New matrix values: recompute the coarse operators; the smoothers re-read their levels."""
        t0 = time.perf_counter()
        _, P = pc.getOperators()
        old = list(self.hierarchy.prolongations)
        self.hierarchy.update(P)
        if any(a is not b for a, b in zip(old, self.hierarchy.prolongations)):  # rebuilt: new Dirichlet rows
            for level, A in enumerate(self.hierarchy.operators):
                if level:
                    self.mg.setMGInterpolation(level, self.hierarchy.prolongations[level - 1])
                    kspd, kspu = self.mg.getMGSmootherDown(level), self.mg.getMGSmootherUp(level)
                    kspd.setOperators(A, A)
                    kspu.setOperators(A, A)
                else:
                    self.mg.getMGCoarseSolve().setOperators(A, A)
        self.mg.setOperators(P, P)
        self._timed_mg_setup(self.hierarchy.setup_seconds)
        self.setup_seconds = time.perf_counter() - t0

    def _report(self) -> str:
        return super()._report() + f"; {'rediscretised' if self.coarse != 'galerkin' else 'Galerkin'} coarse operators"

    def destroy(self, pc: PETSc.PC) -> None:
        """Free the inner PC and the hierarchy's matrices."""
        _LearnedMGBase.destroy(self, pc)
        if self.hierarchy is not None:
            self.hierarchy.destroy()
            self.hierarchy = None
