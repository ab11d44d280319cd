r"""The Leray projection solved on stream functions: curls of Hsieh–Clough–Tocher (HCT) macro-elements.

:class:`~fe_operators.fem.leray.LerayProjection` minimises ``|v − w|_{H^1}`` over the
divergence-free continuous P2 velocities on the Alfeld split ``T*`` of a mesh ``T`` with
the Dirichlet values of ``w``.  That set is a saddle-point problem in ``(v, p)``; it is
also, without any multiplier, a set of *curls*: on an Alfeld split the divergence-free
P2 velocities are exactly ``curl ψ`` for ``ψ`` in the C¹ piecewise-cubic HCT space of
``T`` (Arnold–Qin 1992; Guzmán–Neilan), whenever the flux of the velocity through each
hole's boundary vanishes (always so for no-slip holes).  So

.. math::

    v = Z c, \qquad Z = \operatorname{curl}: \mathrm{HCT}(T) \to P2(T^*)^2, \qquad
    \min_c\ (Zc - w)^T A (Zc - w) \ \text{ subject to } \ (Zc)_D = w_D,

``A`` the refined vector Laplacian and ``D`` the Dirichlet DOFs.  ``Z`` is Firedrake's
interpolation of ``curl`` from ``HCT`` into the ``alfeld`` variant of vector ``CG2`` (the
same P2 fields on the same sub-cells), its rows reordered to the refined mesh's DOFs by
node coordinates.  ``div(Zc) = 0`` pointwise for *every* ``c``: the structure holds
whatever the linear algebra's round-off.

Constraints.  ``(Zc)_D`` involves only the HCT DOFs on Dirichlet edges (a C¹ function's
trace and normal derivative on an edge are set by that edge's DOFs), ``J``: a small dense
block ``Z_{DJ} = U Σ Vᵀ`` (SVD, once).  Its null space ``N`` (one direction per closed
Dirichlet boundary component beyond the first: the stream function's constant there),
the other HCT DOFs, and the minimum-norm particular solution ``c_J = V Σ⁺ Uᵀ w_D``
parametrise the admissible set: ``c = G g + c_p``.  ``Z`` kills constants, so one HCT
vertex-value DOF away from the Dirichlet edges is fixed to 0.  What is left is the SPD
system ``(Gᵀ Zᵀ A Z G) g = Gᵀ Zᵀ A (w − Z c_p)``: on ``dfg_mesh(r=0.35)`` 3,791 unknowns
against the saddle point's 27,785, a sparse LU (PETSc's, nested dissection) of 0.38M
entries solved in about 0.2 ms at batch 1, where MUMPS takes 8.5 ms on the saddle-point
matrix (1.35M entries: MUMPS's fixed cost per solve dominates at this size).
The system is biharmonic-like (condition number ~ h⁻⁴), so the velocities agree with the
saddle point's to about 1e-9 relative rather than 1e-13; their divergence is round-off
either way (it does not depend on ``c``).

Data with a net flux through a closed Dirichlet boundary component (the cylinder of a
channel, or the whole boundary of a closed cavity) are the directions ``U_⊥`` outside the
range of ``Z_DJ``: no stream function has them.  The projection is linear, so their part
``β = U_⊥ᵀ w_D`` is mapped by the saddle-point form once, at set-up, for each of the few
directions (one per closed component), ``Φ``, and added: ``v = Z(Gg + c_p) + Φ β`` with the
compatible data ``w_D − U_⊥ β`` in ``g`` and ``c_p``.  So the map is the saddle-point
form's for every input, forward and adjoint, not only for compatible data (and its
gradients with respect to the Dirichlet values are the same).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.spatial import cKDTree

import firedrake as fd
from firedrake.petsc import PETSc

from fe_operators.sparse.petsc import direct_lu, petsc_to_scipy

__all__ = ["StreamSolver", "stream_solver"]

#: singular values of ``Z_DJ`` below this times the largest are zero
_RANK_RTOL = 1e-10
#: Dirichlet data whose part outside the range of ``Z_DJ`` exceeds this (relative) is incompatible
_COMPAT_RTOL = 1e-9
#: entries of ``Z`` below this times its largest are interpolation round-off
_ROUNDOFF_RTOL = 1e-12
#: the dense SVD of ``Z_DJ`` is skipped (saddle-point form only) above this many Dirichlet DOFs
MAX_DIRICHLET_DOFS = 8000


class _SPDFactor:
    """PETSc's own sparse LU of an SPD matrix (nested-dissection ordering, no pivoting needed),
    solving columns of a numpy array.

    Why not SuperLU: on the stream system of ``dfg_mesh(r=0.35)`` (3,791 unknowns) its
    factors have 0.32M entries and a solve takes 0.54 ms; PETSc's LU with ``nd`` ordering has
    0.38M entries and solves in 0.21 ms (its Cholesky: 0.19M entries, 0.32 ms).
    """

    def __init__(self, K: sp.spmatrix) -> None:
        self._ksp = direct_lu(K, "fe_operators_leray_stream_", "petsc", ordering="nd")
        self._ksp.setUp()
        self._F = self._ksp.getPC().getFactorMatrix()
        self.entries = int(self._F.getInfo()["nz_used"])
        self._x, self._b = (PETSc.Vec().createSeq(K.shape[0], comm=PETSc.COMM_SELF) for _ in range(2))

    def solve(self, Y: np.ndarray) -> np.ndarray:
        """``K⁻¹ Y`` for ``Y`` ``(n,)`` or ``(n, b)``."""
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim == 1:
            return self.solve(Y[:, None])[:, 0]
        out = np.empty_like(Y)
        for j in range(Y.shape[1]):  # a column at a time: the batch is small, each solve is a sweep of the factors
            self._b.array[:] = Y[:, j]
            self._F.solve(self._b, self._x)
            out[:, j] = self._x.array_r
        return out


class StreamSolver:
    """``w ↦ v``: the Leray projection of refined P2 velocities by stream functions (see the module docstring).

    Attributes
    ----------
    size
        Unknowns of the SPD system.
    factor_entries
        Entries of its LU factors.
    flux_directions
        Directions of Dirichlet data taken by the saddle-point form (``Φ``'s columns).
    """

    def __init__(self, ZG: sp.csr_matrix, ZJ: sp.csr_matrix, C: np.ndarray, U_perp: np.ndarray, Phi: np.ndarray,
                 M1: sp.csr_matrix, M2: sp.csr_matrix, K: sp.csc_matrix, constrained: np.ndarray) -> None:
        self.ZG, self.ZJ, self.C, self.U_perp, self.Phi, self.M1, self.M2 = ZG, ZJ, C, U_perp, Phi, M1, M2
        self.ZG_T, self.ZJ_T, self.M1_T, self.M2_T = (sp.csr_matrix(X.T) for X in (ZG, ZJ, M1, M2))
        # the rhs of the flux part: M1's columns at the Dirichlet DOFs times U_perp
        self.M3 = np.asarray(M1[:, constrained] @ U_perp)
        self.constrained = constrained
        self._lu = _SPDFactor(K)
        self.size = int(K.shape[0])
        self.factor_entries = self._lu.entries
        self.flux_directions = int(U_perp.shape[1])
        self._rows: dict[str, Any] | None = None

    def compatible(self, WD: np.ndarray) -> bool:
        """Whether every column of Dirichlet data ``WD`` ``(n_D, b)`` is a stream function's (no net flux)."""
        beta = self.U_perp.T @ WD
        return bool((np.linalg.norm(beta, axis=0) <= _COMPAT_RTOL * np.linalg.norm(WD, axis=0) + 1e-300).all())

    def forward(self, W: np.ndarray) -> np.ndarray:
        """``Π W`` for refined columns ``W`` ``(n_fine ncomp, b)``."""
        WD = W[self.constrained]
        beta = self.U_perp.T @ WD
        cJ = self.C @ WD  # C U_perp = 0: the compatible part's particular solution
        g = self._lu.solve(np.asarray(self.M1 @ W) - self.M3 @ beta - np.asarray(self.M2 @ cJ))
        V = np.asarray(self.ZG @ g) + np.asarray(self.ZJ @ cJ) + self.Phi @ beta
        V[self.constrained] = WD  # copied: the data's own bits (the sum matches them to round-off)
        return V

    def forward_at_nodes(self, X: np.ndarray, embedding: sp.csr_matrix, fine_of_coarse: np.ndarray) -> np.ndarray:
        """``(Π E X)`` at the original nodes, for original-mesh columns ``X`` ``(n_coarse ncomp, b)``.

        The same numbers as ``forward(E X)[fine_of_coarse]`` without forming the refined
        field: the embedding is folded into the right-hand side and only the rows of the
        original nodes are evaluated (the maps are made on the first call).
        """
        if self._rows is None:
            coarse_of_fine = np.full(self.ZG.shape[0], -1, dtype=np.int64)
            coarse_of_fine[fine_of_coarse] = np.arange(fine_of_coarse.size)
            self._rows = {"M1E": sp.csr_matrix(self.M1 @ embedding), "ZG": sp.csr_matrix(self.ZG[fine_of_coarse]),
                          "ZJ": sp.csr_matrix(self.ZJ[fine_of_coarse]), "Phi": self.Phi[fine_of_coarse],
                          "dirichlet": coarse_of_fine[self.constrained]}
        r = self._rows
        WD = X[r["dirichlet"]]  # the embedding's rows at original nodes are unit rows: the same values
        beta = self.U_perp.T @ WD
        cJ = self.C @ WD
        g = self._lu.solve(np.asarray(r["M1E"] @ X) - self.M3 @ beta - np.asarray(self.M2 @ cJ))
        out = np.asarray(r["ZG"] @ g) + np.asarray(r["ZJ"] @ cJ) + r["Phi"] @ beta
        out[r["dirichlet"]] = WD
        return out

    def adjoint(self, Gv: np.ndarray) -> np.ndarray:
        """``Πᵀ G``: the transpose of :meth:`forward`."""
        Gf = Gv.copy()
        Gf[self.constrained] = 0.0
        a = self._lu.solve(np.asarray(self.ZG_T @ Gf))  # K is symmetric
        out = np.asarray(self.M1_T @ a)
        gJ = np.asarray(self.ZJ_T @ Gf) - np.asarray(self.M2_T @ a)
        g_beta = self.Phi.T @ Gf - self.M3.T @ a
        out[self.constrained] += self.C.T @ gJ + self.U_perp @ g_beta + Gv[self.constrained]
        return out


def stream_solver(Vf: fd.FunctionSpace, coarse_mesh: fd.MeshGeometry, stiffness: sp.csr_matrix,
                  constrained: np.ndarray, saddle: Callable[[np.ndarray], np.ndarray]) -> StreamSolver | None:
    """Build the stream-function form for refined vector CG2 ``Vf`` (the Alfeld split of ``coarse_mesh``).

    ``saddle`` maps refined columns by the saddle-point form (for the flux directions ``Φ``;
    called only where there are some).

    Returns None where it does not apply: no HCT element in this Firedrake, more than
    :data:`MAX_DIRICHLET_DOFS` Dirichlet DOFs, nodes that do not match, or no HCT vertex
    value away from the Dirichlet edges to fix the constant.
    """
    if constrained.size > MAX_DIRICHLET_DOFS:
        return None
    try:
        H = fd.FunctionSpace(coarse_mesh, "HCT", 3)
        Va = fd.VectorFunctionSpace(coarse_mesh, "CG", 2, variant="alfeld")
        Z = petsc_to_scipy(fd.assemble(fd.interpolate(fd.curl(fd.TrialFunction(H)), Va)).petscmat)
    except (ValueError, NotImplementedError, KeyError, TypeError):
        return None
    xa = fd.Function(Va).interpolate(fd.SpatialCoordinate(coarse_mesh)).dat.data_ro
    xf = fd.Function(Vf).interpolate(fd.SpatialCoordinate(Vf.mesh())).dat.data_ro
    dist, node = cKDTree(xa).query(xf)
    scale = float(np.ptp(xf, axis=0).max())
    if xa.shape != xf.shape or dist.max() > 1e-10 * scale or np.unique(node).size != node.size:
        return None
    Z = sp.csr_matrix(Z[np.stack([2 * node, 2 * node + 1], axis=1).reshape(-1)])
    Z.data[np.abs(Z.data) < _ROUNDOFF_RTOL * np.abs(Z.data).max()] = 0.0
    Z.eliminate_zeros()
    nH = Z.shape[1]
    ZD = Z[constrained]
    J = np.unique(ZD.indices)
    U, s, Vt = sla.svd(ZD[:, J].toarray(), full_matrices=True)
    r = int((s > _RANK_RTOL * s[0]).sum()) if s.size else 0
    # fix the constant: an HCT vertex value (the first DOF of each vertex) off the Dirichlet edges
    first = H.finat_element.entity_dofs()[0]
    values = np.unique(np.concatenate([H.cell_node_list[:, first[v][0]] for v in first]))
    away = np.setdiff1d(values, J)
    if away.size == 0:
        return None
    others = np.setdiff1d(np.arange(nH), np.union1d(J, away[:1]))
    N = Vt[r:].T  # (|J|, |J| - r): the null space of Z_DJ
    G = sp.hstack([sp.csr_matrix((np.ones(others.size), (others, np.arange(others.size))), shape=(nH, others.size)),
                   sp.csr_matrix((N.reshape(-1), (np.repeat(J, N.shape[1]), np.tile(np.arange(N.shape[1]), J.size))),
                                 shape=(nH, N.shape[1]))], format="csr")
    ZG = sp.csr_matrix(Z @ G)
    ZJ = sp.csr_matrix(Z[:, J])
    M1 = sp.csr_matrix(ZG.T @ stiffness)
    K = sp.csc_matrix(M1 @ ZG)
    K = sp.csc_matrix((K + K.T) * 0.5)
    C = Vt[:r].T @ (U[:, :r].T / s[:r, None])
    M2 = sp.csr_matrix(M1 @ ZJ)
    U_perp = np.ascontiguousarray(U[:, r:])
    Phi = np.zeros((Z.shape[0], U_perp.shape[1]))
    if U_perp.shape[1]:
        W = np.zeros_like(Phi)
        W[constrained] = U_perp
        Phi = saddle(W)
    return StreamSolver(ZG, ZJ, C, U_perp, Phi, M1, M2, K, constrained)
