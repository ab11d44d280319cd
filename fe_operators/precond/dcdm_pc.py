"""``DCDM``: the DCDM network as a Firedrake preconditioner for PETSc's flexible CG.

Solver parameters (DCDM's iteration is PETSc's FCG with two directions kept, standard
truncation, and the true residual checked)::

    {"ksp_type": "fcg", "ksp_fcg_mmax": 2, "ksp_fcg_truncation_type": "standard",
     "ksp_norm_type": "unpreconditioned",
     "pc_type": "python", "pc_python_type": "fe_operators.precond.DCDM",
     "dcdm_model": "dcdm.pt"}

on a mesh that is a level of a ``MeshHierarchy``.  Every application runs the network
on the residual (numpy float64 → the network's dtype, float32 by default → numpy float64,
:meth:`DCDM.direction`); Dirichlet rows get ``r_i / a_ii``.  A ``vcycle`` network's levels
(:func:`~fe_operators.precond.dcdm.vcycle_levels`: the masked Galerkin operators by PETSc's
PtAP from the network's coarsest mesh level up, the restrictions reused while the Dirichlet
rows stay) and its smoothing multipliers are computed in set-up, for every new coefficient
(:attr:`DCDM.setup_breakdown` times them).  Safeguard: a direction that is not finite or
not a descent direction (``rᵀz ≤ 0``) is replaced by the Jacobi direction ``D⁻¹ r`` for that application,
counted (:attr:`DCDM.counter`) and reported after the solve.  One process only (the
network's hierarchy operators are serial); use :class:`~fe_operators.precond.NeuralMG`
in parallel.

Options (prefix ``<solver prefix>dcdm_``): ``model PATH`` (else
``appctx["precond_model"]``).  The KSP must be a flexible method (:data:`FLEXIBLE_KSP`:
``fcg``, ``gcr``, ``fgmres`` and their pipelined variants; ``preonly`` for one
application inside another flexible method) and measure the unpreconditioned (true)
residual (``ksp_norm_type unpreconditioned``); a solve with another method or norm is
refused (plain ``cg`` assumes a fixed linear preconditioner and stalls or diverges).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

import firedrake as fd
from firedrake.dmhooks import get_function_space
from firedrake.petsc import PETSc
from firedrake.preconditioners.base import PCBase

from fe_operators.models.build import hierarchy_context
from fe_operators.multigrid.cycle import cast_levels, cycle_levels, match_level
from fe_operators.precond.base import FallbackCounter, options_prefix, require_hierarchy, resolve_model
from fe_operators.precond.dcdm import (
    DCDMNet, coefficient_indicator, mesh_level_sizes, start_level, vcycle_levels,
)
from fe_operators.errors import PreconditionerSetupError
from fe_operators.precond.features import row_parts

__all__ = ["DCDM", "FLEXIBLE_KSP"]

#: the Krylov methods DCDM's nonlinear, changing preconditioner is valid in
FLEXIBLE_KSP = ("fcg", "pipefcg", "gcr", "pipegcr", "fgmres", "pipefgmres", "preonly")


class DCDM(PCBase):
    """The DCDM direction ``z = f(r/‖r‖)`` with a Jacobi fallback (module docstring).

    Attributes
    ----------
    counter
        The :class:`~fe_operators.precond.base.FallbackCounter` (``applications``,
        ``fallbacks`` of the current solve, and totals).
    net
        The network (after set-up).
    setup_seconds
        Wall time of the last set-up.
    setup_breakdown
        ``vcycle`` networks: seconds of the last set-up's parts (``coarse operators``,
        ``levels``, ``network``), printed by ``precond evaluate``; empty otherwise.
    """

    _prefix = "dcdm_"
    name = "fe_operators.precond.DCDM"
    needs_python_pmat = False

    def __init__(self) -> None:
        super().__init__()
        self.counter = FallbackCounter("Jacobi")
        self.net: DCDMNet | None = None
        self.levels: list[Any] = []
        self.dtype = torch.float32
        self.setup_seconds = 0.0
        self._laplacian_diag: torch.Tensor | None = None
        self._diag = np.zeros(0)
        self._decoupled = np.zeros(0, dtype=bool)
        self._coefficient: torch.Tensor | None = None
        self._galerkin: Any = None
        self._restrictions: tuple[list, list, list] = ([], [], [])  # (ids of the masked P̃, P̃, P̃ᵀ)
        self._multipliers: list | None = None
        self.setup_breakdown: dict[str, float] = {}

    def initialize(self, pc: PETSc.PC) -> None:
        """Model, the hierarchy's operators as tensors, the operator's coefficient indicator."""
        t0 = time.perf_counter()
        if pc.comm.getSize() > 1:
            raise PreconditionerSetupError(self.name, "runs on one process (its network's hierarchy operators "
                                                      "are serial); use fe_operators.precond.NeuralMG in parallel")
        net = resolve_model(self.name, options_prefix(pc, self._prefix), None, self.get_appctx(pc), kind="dcdm")
        V = get_function_space(pc.getDM())
        require_hierarchy(V, self.name)
        self.net = net
        self.dtype = next(net.parameters()).dtype
        if getattr(net, "architecture", "mgno") == "vcycle":
            self._initialize_vcycle(pc, V)
            self.setup_seconds = time.perf_counter() - t0
            return
        _, bcs = self.form(pc)
        bcs = [bc for bc in (bcs or ()) if isinstance(bc, fd.DirichletBC)]
        hier = hierarchy_context(V, bcs)
        start = start_level(hier, net.coarsest_h)
        self.levels = cast_levels(cycle_levels(hier, start, net.coarsest_h), self.dtype)
        self._laplacian_diag = hier.finest.stiffness_diag
        self._read_operator(pc)
        self.setup_seconds = time.perf_counter() - t0

    def update(self, pc: PETSc.PC) -> None:
        """New matrix values: recompute the coefficient indicator (``mgno``), or the Galerkin
        operators and the network's levels (``vcycle``)."""
        t0 = time.perf_counter()
        if self._galerkin is not None:
            self._vcycle_operators(pc)
        else:
            self._read_operator(pc)
        self.setup_seconds = time.perf_counter() - t0

    def _initialize_vcycle(self, pc: PETSc.PC, V: Any) -> None:
        """The ``vcycle`` network: the mesh levels from its coarsest on, their prolongations."""
        from fe_operators.fem.transfer import level_prolongations
        from fe_operators.precond.mg import GalerkinHierarchy

        sizes = mesh_level_sizes(V)
        start = match_level(sizes, self.net.coarsest_h, "network", "refine the base mesh it was trained on")
        P = self._assembled(pc)
        self._galerkin = GalerkinHierarchy(P, level_prolongations(V, len(sizes) - start))
        self._vcycle_operators(pc, built=True)

    def _assembled(self, pc: PETSc.PC) -> PETSc.Mat:
        _, P = pc.getOperators()
        if P.getType() in ("python", "shell"):
            raise PreconditionerSetupError(self.name, "expected an assembled operator: set mat_type aij")
        return P

    def _vcycle_operators(self, pc: PETSc.PC, built: bool = False) -> None:
        """Per coefficient: Galerkin operators (PETSc), the network's float32 levels, the
        weight-only products; timed in :attr:`setup_breakdown`."""
        import scipy.sparse as sp

        from fe_operators.sparse.petsc import seqaij_csr

        P = self._assembled(pc)
        t0 = time.perf_counter()
        if not built:
            self._galerkin.update(P)
        t1 = time.perf_counter()

        def csr(M: PETSc.Mat) -> sp.csr_matrix:
            parts = seqaij_csr(M) or M.getValuesCSR()
            return sp.csr_matrix((parts[2], parts[1], parts[0]), shape=M.getSize())

        ops = [csr(A) for A in self._galerkin.operators]
        pros = self._galerkin.prolongations
        if [id(M) for M in pros] != self._restrictions[0]:  # masked prolongations are new: new transposes
            scipy_pros = [csr(M) for M in pros]
            self._restrictions = ([id(M) for M in pros], scipy_pros, [sp.csr_matrix(M.T) for M in scipy_pros])
        _, scipy_pros, restrictions = self._restrictions
        try:
            self.levels = vcycle_levels(ops, scipy_pros, self.dtype, restrictions=restrictions)
        except ValueError as exc:
            raise PreconditionerSetupError(self.name, str(exc)) from None
        dec = self.levels[-1].d_inv[:, 0] == 0
        self._decoupled = dec.numpy()
        self._diag = ops[-1].diagonal()
        t2 = time.perf_counter()
        with torch.no_grad():
            self._multipliers = self.net.vcycle.multipliers(self.levels)
        # the first set-up's coarse operators were made with the GalerkinHierarchy, which times itself
        coarse = self._galerkin.setup_seconds if built else t1 - t0
        self.setup_breakdown = {"coarse operators": coarse, "levels": t2 - t1, "network": time.perf_counter() - t2}

    def _read_operator(self, pc: PETSc.PC) -> None:
        P = self._assembled(pc)
        indptr, indices, data = P.getValuesCSR()
        try:
            d, _, dec = row_parts(indptr, indices, data, P.getOwnershipRange()[0])
        except ValueError as exc:
            raise PreconditionerSetupError(self.name, str(exc)) from None
        self._diag, self._decoupled = d, dec
        self._coefficient = coefficient_indicator(torch.from_numpy(d), self._laplacian_diag,
                                                  torch.from_numpy(dec)).to(self.dtype)

    @torch.no_grad()
    def direction(self, r: np.ndarray) -> tuple[np.ndarray, bool]:
        """The preconditioned direction for residual ``r``, and whether it fell back to Jacobi.

        ``z = f(r)`` on the free rows, ``r_i / a_ii`` on the Dirichlet rows; ``D⁻¹ r``
        instead when that is not finite or ``rᵀz ≤ 0``.

        Shapes
        ------
        ``r`` ``(n,)`` float64 -> ``(n,)`` float64.
        """
        x = torch.from_numpy(np.array(r, dtype=np.float64)).to(self.dtype)[:, None]
        args = (self._multipliers,) if self._multipliers is not None else ()
        z = self.net(x, self._coefficient, self.levels, *args)[:, 0].to(torch.float64).numpy()
        z = np.where(self._decoupled, r / self._diag, z)
        if np.all(np.isfinite(z)) and float(r @ z) > 0.0:
            return z, False
        return r / self._diag, True

    def apply(self, pc: PETSc.PC, x: PETSc.Vec, y: PETSc.Vec) -> None:
        """``y = direction(x)``, counted."""
        z, fell_back = self.direction(x.array_r)
        self.counter.record(fell_back)
        y.array[:] = z

    def applyTranspose(self, pc: PETSc.PC, x: PETSc.Vec, y: PETSc.Vec) -> None:
        """Not defined: the network is nonlinear."""
        raise NotImplementedError(f"{self.name} is a nonlinear preconditioner and has no transpose; use it with "
                                  "ksp_type fcg (or gcr/fgmres), not a method that needs Bᵀ")

    def preSolve(self, pc: PETSc.PC, ksp: PETSc.KSP, b: PETSc.Vec, x: PETSc.Vec) -> None:
        """Check the Krylov method: flexible, testing the true residual; reset the fallback count.

        Raises
        ------
        PreconditionerSetupError
            The KSP is not a flexible method (:data:`FLEXIBLE_KSP`: ``cg`` and ``gmres``
            assume a fixed linear preconditioner, and stall or diverge with DCDM), or it
            measures a preconditioned or natural norm: for a nonlinear PC that is no
            residual norm, and convergence would be claimed on a residual never checked.
        """
        if ksp.getType() not in FLEXIBLE_KSP:
            raise PreconditionerSetupError(
                self.name, f"ksp_type {ksp.getType()} assumes a fixed linear preconditioner; DCDM is nonlinear and "
                           "needs a flexible Krylov method: set ksp_type fcg, ksp_fcg_mmax 2, "
                           "ksp_fcg_truncation_type standard (or ksp_type gcr, fgmres)")
        if ksp.getNormType() not in (PETSc.KSP.NormType.UNPRECONDITIONED, PETSc.KSP.NormType.NONE):
            raise PreconditionerSetupError(self.name, "the Krylov method must test the true residual: set "
                                                      "ksp_norm_type unpreconditioned (a nonlinear "
                                                      "preconditioner's preconditioned norm is not a residual norm)")
        self.counter.start_solve()

    def postSolve(self, pc: PETSc.PC, ksp: PETSc.KSP, b: PETSc.Vec, x: PETSc.Vec) -> None:
        """Report fallbacks after a solve (nothing when there were none)."""
        if self.counter.fallbacks:
            PETSc.Sys.Print(self.counter.summary(self.name), comm=pc.comm)

    def view(self, pc: PETSc.PC, viewer: Any = None) -> None:
        """Print the network and the fallback count."""
        super().view(pc, viewer)
        if viewer is None or viewer.getType() != "ascii":
            return
        viewer.printfASCII(f"  {self.net!r}\n".replace("\n", "\n  ").rstrip() + "\n")
        viewer.printfASCII(f"  {self.counter.summary(self.name)}\n")
