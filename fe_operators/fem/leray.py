r"""A fixed discrete Leray projection: Taylor–Hood P2 velocities onto exactly divergence-free ones.

What it does
------------
Given a continuous P2 velocity ``u`` on a triangle mesh ``T`` (a Taylor–Hood velocity, or
a SPON output) that already has the exact Dirichlet values, :class:`LerayProjection`
returns the velocity ``v`` in continuous P2 on the barycentric (Alfeld) refinement
``T*`` of ``T`` (:mod:`fe_operators.fem.barycentric`) solving

.. math::

    \min_v\ |v - u|_{H^1} \quad\text{subject to}\quad
    (\nabla\cdot v, q) = 0 \ \ \forall q \in P1_{disc}(T^*), \qquad
    v = u \ \text{on the Dirichlet DOFs},

i.e. the saddle-point (Stokes-type) system for the free DOFs ``v_f`` (``f`` free, ``D``
Dirichlet; ``v_D = u_D``),

.. math::

    \begin{pmatrix} A_{ff} & B_f^T \\ B_f & 0 \end{pmatrix}
    \begin{pmatrix} v_f \\ p \end{pmatrix} =
    \begin{pmatrix} A_{ff} u_f \\ -B_D u_D \end{pmatrix},

``A`` the vector Laplacian ``(∇v, ∇w)`` and ``B`` the divergence ``(∇·v, q)`` on ``T*``.

Why this construction
---------------------
* *Exactly divergence-free.*  On ``T*`` the pair (continuous P2, discontinuous P1) is the
  Scott–Vogelius pair: ``div`` maps P2(``T*``) *into* P1disc(``T*``), so the discrete
  constraint ``(div v, q) = 0`` for all ``q`` there, with ``q = div v``, gives
  ``‖div v‖² = 0``: ``div v = 0`` pointwise, to the round-off of the solve.  The pair is
  inf-sup stable on Alfeld splits (Arnold–Qin; Guzmán–Neilan), so the system is uniquely
  solvable (up to the constant pressure when the whole boundary is Dirichlet, below).
  Plain P2 on ``T`` has too few divergence-free fields for this (locking): the refined
  mesh is what makes an exact projection possible without losing approximation.
* *Both boundary values exact.*  A stream function and its curl fix only the normal
  component; here every Dirichlet DOF of ``v`` is copied from ``u``.  The Alfeld split
  adds no node on the boundary (boundary edges are not split), so the refined Dirichlet
  DOFs are the original ones, and the copy is bit for bit (no arithmetic touches them).
* *Nothing lost on the way.*  P2(``T``) ⊂ P2(``T*``) and the embedding matrix is exact
  (:func:`~fe_operators.fem.barycentric.p2_embedding`), so ``u`` itself lives on the
  space ``v`` is measured on: errors and divergences are compared on ``T*``.
* *H¹-seminorm, not L²*: the minimiser in ``|·|_{H^1}`` is the discrete Stokes problem,
  stable uniformly in the mesh size: ``|v − u|_{H^1} ≤ β⁻¹ ‖div u‖_{L²}`` with ``β`` the
  inf-sup constant, so the change is of the size of ``u``'s divergence (the Taylor–Hood
  level for Taylor–Hood data) and vanishes for divergence-free ``u``.  The L² version
  has no continuous counterpart with the full trace prescribed (traces are not defined
  in L², the infimum is not attained), so its discrete minimiser is not stable in ``h``
  and concentrates the correction in layers along the Dirichlet boundary.
* *A fixed linear map.*  ``v = P u`` with ``P`` independent of ``u``, solved in its
  cheapest form: on stream functions (:mod:`fe_operators.fem.leray_stream`: the same
  minimiser over the same set, written as curls of HCT macro-elements, an SPD system about
  seven times smaller than the saddle point's, factorised once; 0.6 ms against MUMPS's
  8.5 ms at batch 1 on ``dfg_mesh(r=0.35)``).  The saddle-point system below defines the
  map; it is factorised (sparse LU, MUMPS) where the stream form does not apply, and at
  set-up for the few directions of boundary data stream functions do not have (a net flux
  through a closed Dirichlet boundary).  Every apply is a few sparse products and one pair of triangular solves for the
  whole batch, and its adjoint (for gradients) is the transposed solve with the same
  factors.

Pressure constant
-----------------
With Dirichlet conditions on the whole boundary, ``(div v, 1) = ∫ v·n`` is fixed by the
data, so ``B_f`` has the constants in its left null space.  Then the system gets a
Lagrange multiplier ``λ`` for ``∫ p = 0`` and the constraint becomes
``B_f v_f + m λ = −B_D u_D`` (``m_i = ∫ q_i``): for compatible data (``∫ g·n = 0``,
which every divergence-free field satisfies) ``λ = 0`` and ``v`` is exactly
divergence-free; for incompatible data no divergence-free ``v`` with these boundary
values exists and ``div v`` is the constant ``−∫ g·n / |Ω|``.  With an outflow (natural)
boundary there is no pressure null space and no multiplier: detected from ``B`` itself.

Devices
-------
The factorisation lives on the CPU (MUMPS through PETSc, one process).
:meth:`LerayProjection.__call__` takes tensors on any device and dtype, computes in
float64 on the CPU (one host transfer of the batch each way, forward and backward) and
returns float64 on the input's device.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import firedrake as fd
from firedrake.petsc import PETSc

from fe_operators.errors import SolveError, SpaceMismatchError, UnsupportedSpaceError
from fe_operators.fem.assembly import assemble_scipy
from fe_operators.fem.barycentric import alfeld_refine, p2_embedding
from fe_operators.fem.bcs import DirichletDofs
from fe_operators.fem.leray_stream import StreamSolver, stream_solver
from fe_operators.sparse.petsc import direct_lu

__all__ = ["LerayProjection", "leray_projection", "leray_state_projection"]

#: ``B_f^T 1`` below this (relative to ``max |B|``): the constant pressure is in the null space
_NULL_TOL = 1e-10


class LerayProjection:
    """The fixed map ``u ↦ v``: P2 velocities of a mesh onto divergence-free P2 on its Alfeld split.

    Build it with :func:`leray_projection`.  Calling it maps a batch of original-mesh
    velocities; :meth:`project` maps refined-mesh velocities (``P = project ∘ embed``);
    both are differentiable (the adjoint is the transposed solve).

    Attributes
    ----------
    ncomp
        Components per node (the geometric dimension, 2).
    n_coarse, n_fine
        P2 nodes of the mesh and of its refinement.
    space
        The vector ``CG2`` space of the refined mesh (the outputs' DOFs are its, in
        Firedrake's order: ``v.reshape(-1)`` is a ``Function(space).dat`` array).
    embedding
        ``(n_fine ncomp, n_coarse ncomp)`` CSR: the exact embedding of the original P2.
    fine_of_coarse
        ``(n_coarse ncomp,)`` int64: the refined DOF at each original DOF.
    constrained
        Sorted int64 refined DOFs of the Dirichlet conditions (all original DOFs).
    stiffness, divergence, mass
        The refined vector Laplacian ``(∇v, ∇w)``, divergence ``(∇·v, q)`` and vector mass
        matrix ``(v, w)`` (scipy CSR): norms and errors on the space the outputs live in.
    pressure_multiplier
        Whether the constant pressure was fixed by a multiplier (Dirichlet everywhere).

    Shapes
    ------
    ``u``: ``(batch, n_coarse, ncomp)`` or ``(batch, n_coarse ncomp)``; output
    ``(batch, n_fine, ncomp)`` float64 (or ``(batch, n_fine ncomp)`` for flat input).

    Examples
    --------
    >>> P = leray_projection(problem.velocity_space, velocity_bcs)      # doctest: +SKIP
    >>> v = P(states[:, : P.n_coarse * 2])   # Taylor–Hood (u, p) states: the velocity comes first
    >>> P.divergence_ratio(v)                # ~1e-13, against P.divergence_ratio(P.embed(u))
    >>> P.relative_l2(v, target_velocity)    # errors on the refined space (targets embedded exactly)
    """

    def __init__(self, *, space: fd.FunctionSpace, embedding: sp.csr_matrix, fine_of_coarse: np.ndarray,
                 constrained: np.ndarray, rhs: sp.csr_matrix, factor: Callable[[], Any], stiffness: sp.csr_matrix,
                 divergence: sp.csr_matrix, pressure_mass: sp.csr_matrix, mass: sp.csr_matrix,
                 pressure_multiplier: bool) -> None:
        self.space = space
        self.ncomp = int(space.block_size)
        self.embedding = embedding
        self.fine_of_coarse = fine_of_coarse
        self.constrained = constrained
        n = embedding.shape[0]
        is_c = np.zeros(n, dtype=bool)
        is_c[constrained] = True
        self.free = np.flatnonzero(~is_c)
        self._rhs = rhs
        self._rhs_T = sp.csr_matrix(rhs.T)
        self._embedding_T = sp.csr_matrix(embedding.T)
        self._make_factor = factor
        self._factor_obj: Any = None
        #: the stream-function form (None: the saddle point solves every apply)
        self.stream: StreamSolver | None = None
        self.stiffness = stiffness
        self.divergence = divergence
        self.mass = mass
        self._pressure_mass = spla.splu(sp.csc_matrix(pressure_mass))
        self.pressure_multiplier = bool(pressure_multiplier)

    # ------------------------------------------------------------------ sizes
    @property
    def n_coarse(self) -> int:
        return self.embedding.shape[1] // self.ncomp

    @property
    def n_fine(self) -> int:
        return self.embedding.shape[0] // self.ncomp

    # ------------------------------------------------------------------ numpy core
    @property
    def _factor(self) -> Any:
        """The saddle-point factorisation, made on first use."""
        if self._factor_obj is None:
            self._factor_obj = self._make_factor()
        return self._factor_obj

    def _project_np(self, W: np.ndarray) -> np.ndarray:
        """``Π W`` for refined columns ``W`` ``(n_fine ncomp, b)``."""
        return self.stream.forward(W) if self.stream is not None else self._saddle_np(W)

    def _saddle_np(self, W: np.ndarray) -> np.ndarray:
        sol = self._factor.solve(np.asarray(self._rhs @ W))
        V = np.empty_like(W)
        V[self.free] = sol[: self.free.size]
        V[self.constrained] = W[self.constrained]  # copied: bit for bit
        return V

    def _project_T_np(self, G: np.ndarray) -> np.ndarray:
        """``Πᵀ G``: the adjoint (the transposed solve)."""
        if self.stream is not None:
            return self.stream.adjoint(G)
        Y = np.zeros((self._rhs.shape[0], G.shape[1]))
        Y[: self.free.size] = G[self.free]
        out = np.asarray(self._rhs_T @ self._factor.solve(Y, trans="T"))
        out[self.constrained] += G[self.constrained]
        return out

    def _forward_np(self, X: np.ndarray, embed: bool) -> np.ndarray:
        if not embed:
            return self._project_np(X)
        W = np.asarray(self.embedding @ X)
        # the original DOFs are unit rows of the embedding: copy them, so that the
        # Dirichlet values are u's own bits whatever the sparse product does
        W[self.fine_of_coarse] = X
        return self._project_np(W)

    def _adjoint_np(self, G: np.ndarray, embed: bool) -> np.ndarray:
        out = self._project_T_np(G)
        return np.asarray(self._embedding_T @ out) if embed else out

    # ------------------------------------------------------------------ torch
    def _flat(self, x: torch.Tensor, n: int, what: str) -> tuple[torch.Tensor, bool]:
        flat = x.ndim == 2
        if (flat and x.shape[1] != n * self.ncomp) or (not flat and (x.ndim != 3 or x.shape[1:] != (n, self.ncomp))):
            raise SpaceMismatchError(f"the Leray projection expects {what} of shape (batch, {n}, {self.ncomp}) or "
                                     f"(batch, {n * self.ncomp}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1), flat

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """``P u``: original-mesh P2 velocities → divergence-free refined ones (differentiable)."""
        x, flat = self._flat(u, self.n_coarse, "original-mesh velocities")
        v = _LinearMap.apply(x, self, True)
        return v if flat else v.reshape(v.shape[0], self.n_fine, self.ncomp)

    def project(self, w: torch.Tensor) -> torch.Tensor:
        """``Π w`` for refined-mesh P2 velocities ``w`` (idempotent; differentiable)."""
        x, flat = self._flat(w, self.n_fine, "refined-mesh velocities")
        v = _LinearMap.apply(x, self, False)
        return v if flat else v.reshape(v.shape[0], self.n_fine, self.ncomp)

    def embed(self, u: torch.Tensor) -> torch.Tensor:
        """The exact embedding of original-mesh P2 velocities into the refined space (float64).

        Compare outputs with ``embed(target)``: the target's own field, on the outputs' space.
        """
        x, flat = self._flat(u, self.n_coarse, "original-mesh velocities")
        X = x.detach().to("cpu", torch.float64).numpy().T
        W = np.asarray(self.embedding @ X)
        W[self.fine_of_coarse] = X
        w = torch.from_numpy(np.ascontiguousarray(W.T)).to(u.device)
        return w if flat else w.reshape(w.shape[0], self.n_fine, self.ncomp)

    def restrict(self, v: torch.Tensor) -> torch.Tensor:
        """The values of refined velocities at the original P2 nodes (their P2 interpolant there)."""
        x, flat = self._flat(v, self.n_fine, "refined-mesh velocities")
        out = x[:, torch.as_tensor(self.fine_of_coarse, device=x.device)]
        return out if flat else out.reshape(out.shape[0], self.n_coarse, self.ncomp)

    def at_nodes(self, u: torch.Tensor) -> torch.Tensor:
        """``restrict(P(u))``: the divergence-free velocity's values at the original P2 nodes.

        Without gradients and with the stream form, computed without forming the refined
        field (:meth:`StreamSolver.forward_at_nodes
        <fe_operators.fem.leray_stream.StreamSolver.forward_at_nodes>`): the step of a
        rollout that keeps the structure (:func:`leray_state_projection`).  Float64 output.
        """
        if self.stream is None or (torch.is_grad_enabled() and u.requires_grad):
            return self.restrict(self(u))
        x, flat = self._flat(u, self.n_coarse, "original-mesh velocities")
        X = np.ascontiguousarray(x.detach().to("cpu", torch.float64).numpy().T)
        out = self.stream.forward_at_nodes(X, self.embedding, self.fine_of_coarse)
        v = torch.from_numpy(np.ascontiguousarray(out.T)).to(u.device)
        return v if flat else v.reshape(v.shape[0], self.n_coarse, self.ncomp)

    def divergence_ratio(self, v: torch.Tensor | np.ndarray) -> np.ndarray:
        """``‖div v‖_L2 / ‖∇v‖_L2`` of refined velocities, per sample, ``(batch,)`` (exact quadrature).

        ``div v`` is a P1disc field on the refined mesh: its coefficients ``M⁻¹ B v``
        (``M`` the block-diagonal P1disc mass) are formed first and their norm
        ``(Bv)ᵀ M⁻¹ (Bv)`` is a sum of small positive terms, so a divergence at round-off
        reads as round-off (``vᵀ (divᵀdiv) v`` would cancel down to ``√ε ≈ 1e-8`` only).
        """
        x = v.detach().to("cpu", torch.float64).numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        X = x.reshape(x.shape[0], -1).T
        BX = np.asarray(self.divergence @ X)
        num = np.einsum("ib,ib->b", BX, self._pressure_mass.solve(BX))
        den = np.einsum("ib,ib->b", X, self.stiffness @ X)
        return np.sqrt(np.maximum(num, 0.0) / den)

    def relative_l2(self, v: torch.Tensor, u: torch.Tensor) -> np.ndarray:
        """``‖v − u‖_L2 / ‖u‖_L2`` per sample, on the refined space: ``v`` refined, ``u`` original-mesh
        (embedded exactly) or refined velocities."""
        n = v.shape[0]
        U = u.reshape(n, -1)
        if U.shape[1] == self.n_coarse * self.ncomp:
            U = self.embed(U)
        X = v.detach().to("cpu", torch.float64).reshape(n, -1).numpy().T
        Y = U.detach().to("cpu", torch.float64).numpy().T
        D = X - Y
        num = np.einsum("ib,ib->b", D, self.mass @ D)
        den = np.einsum("ib,ib->b", Y, self.mass @ Y)
        return np.sqrt(np.maximum(num, 0.0) / den)

    def __repr__(self) -> str:
        return (f"LerayProjection(P2 {self.n_coarse} nodes -> Alfeld P2 {self.n_fine} nodes, ncomp={self.ncomp}, "
                f"dirichlet_dofs={self.constrained.size}, pressure_multiplier={self.pressure_multiplier}, "
                f"form={'stream (%d unknowns)' % self.stream.size if self.stream is not None else 'saddle'})")


class _SymmetricLU:
    """A sparse LU factorisation (MUMPS through PETSc, METIS-type ordering) of a symmetric
    matrix, solving many right-hand sides at once; ``solve(Y, trans)`` as scipy's ``splu``
    (the transpose is the matrix itself).

    Why not scipy's SuperLU: its column orderings fill the saddle-point matrix's factors
    about ten times more (25M against 2.9M entries on ``dfg_mesh(r=0.5)``).
    """

    def __init__(self, K: sp.csr_matrix, refinement_steps: int = 0) -> None:
        self.refinement_steps = int(refinement_steps)
        self.K = sp.csr_matrix(K)
        self._ksp = direct_lu(self.K, "fe_operators_leray_", "mumps")
        pc = self._ksp.getPC()
        pc.setFactorSetUpSolverType()
        factor = pc.getFactorMatrix()
        # workspace headroom (percent): the multiplier's dense row and column make MUMPS's
        # estimate too small (INFOG(1) = -9 on a unit square without it)
        factor.setMumpsIcntl(14, 200)
        pc.setUp()
        info = factor.getMumpsInfog(1)
        if info < 0:
            raise SolveError(f"MUMPS could not factorise the Leray projection's saddle-point matrix (INFOG(1) = "
                             f"{info}, size {K.shape[0]})")
        self._factor = factor

    def _solve(self, Y: np.ndarray) -> np.ndarray:
        n, b = Y.shape
        comm = PETSc.COMM_SELF
        rhs = np.asfortranarray(Y, dtype=np.float64)
        B = PETSc.Mat().createDense((n, b), array=rhs, comm=comm)
        B.assemble()
        X = PETSc.Mat().createDense((n, b), comm=comm)
        X.setUp()
        X.assemble()
        try:
            self._factor.matSolve(B, X)
            return np.array(X.getDenseArray(), order="C")
        finally:
            B.destroy()
            X.destroy()

    def solve(self, Y: np.ndarray, trans: str = "N") -> np.ndarray:
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim == 1:
            return self.solve(Y[:, None])[:, 0]
        X = self._solve(Y)
        for _ in range(self.refinement_steps):
            X += self._solve(Y - self.K @ X)
        return X


class _LinearMap(torch.autograd.Function):
    """``x ↦ P x`` (or ``Π x``) on the CPU with the stored factors; backward: the adjoint."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, op: LerayProjection, embed: bool) -> torch.Tensor:
        ctx.op, ctx.embed, ctx.dtype = op, embed, x.dtype
        X = x.detach().to("cpu", torch.float64).numpy().T
        Y = op._forward_np(np.ascontiguousarray(X), embed)
        return torch.from_numpy(np.ascontiguousarray(Y.T)).to(x.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        G = g.detach().to("cpu", torch.float64).numpy().T
        out = ctx.op._adjoint_np(np.ascontiguousarray(G), ctx.embed)
        return torch.from_numpy(np.ascontiguousarray(out.T)).to(device=g.device, dtype=ctx.dtype), None, None


def _constrained(V: fd.FunctionSpace, bcs: Any) -> np.ndarray:
    if isinstance(bcs, DirichletDofs):
        return np.asarray(bcs.constrained, dtype=np.int64)
    if isinstance(bcs, np.ndarray) or (isinstance(bcs, Sequence) and bcs and not isinstance(bcs[0], fd.DirichletBC)):
        idx = np.unique(np.asarray(bcs, dtype=np.int64))
        if idx.size and (idx[0] < 0 or idx[-1] >= V.dof_dset.size * V.block_size):
            raise SpaceMismatchError(f"Dirichlet DOF indices out of range for a space of "
                                     f"{V.dof_dset.size * V.block_size} DOFs")
        return idx
    return np.asarray(DirichletDofs(V, bcs).constrained, dtype=np.int64)


def leray_projection(V: fd.FunctionSpace, bcs: fd.DirichletBC | Iterable[fd.DirichletBC] | DirichletDofs | np.ndarray,
                     *, refinement_steps: int = 0, method: str = "auto") -> LerayProjection:
    """Assemble and factorise the Leray projection of P2 velocities on ``V``'s mesh.

    Parameters
    ----------
    V
        Vector ``CG2`` on a serial 2D triangle mesh (the Taylor–Hood velocity space).
    bcs
        The velocity's Dirichlet conditions (their values are irrelevant: only which DOFs
        they constrain), a :class:`~fe_operators.fem.bcs.DirichletDofs`, or the flat
        (interleaved) constrained DOF indices.  Must not be empty.
    refinement_steps
        Steps of iterative refinement after each saddle-point solve (each costs another
        solve).  None are needed for the constraint: ``‖div v‖ / ‖∇v‖`` is about 2e-14
        with the plain LU solve on ``dfg_mesh(r=1)`` (3e-16 after one step).
    method
        ``"auto"``: the stream-function form where it applies, the saddle point
        otherwise (see the module docstring); ``"saddle"``: the saddle point always
        (the reference the tests compare with).

    Returns
    -------
    LerayProjection

    Raises
    ------
    UnsupportedSpaceError
        Not vector CG2 on a 2D triangle mesh (or a distributed mesh).
    SpaceMismatchError
        No Dirichlet DOFs (the correction would be defined up to rigid modes only).
    """
    el = V.ufl_element()
    if V.block_size != 2 or V.value_shape != (2,) or el.degree() != 2 or "Lagrange" not in el.family():
        raise UnsupportedSpaceError(f"the Leray projection needs a vector CG2 (Taylor–Hood) velocity space in 2D, "
                                    f"got {el} with value shape {V.value_shape}")
    if method not in ("auto", "saddle"):
        raise ValueError(f"expected method 'auto' or 'saddle', got {method!r}")
    constrained_c = _constrained(V, bcs)
    if constrained_c.size == 0:
        raise SpaceMismatchError("the Leray projection needs Dirichlet DOFs (no-slip or inflow): with none, the "
                                 "H1-seminorm correction is not unique")
    mesh = V.mesh()
    fine = alfeld_refine(mesh)
    emb = p2_embedding(fd.FunctionSpace(mesh, "CG", 2), fd.FunctionSpace(fine, "CG", 2))
    ncomp = 2
    E = emb.vector(ncomp)
    fine_of_coarse = emb.vector_index(ncomp)
    Vf = fd.VectorFunctionSpace(fine, "CG", 2)
    Q = fd.FunctionSpace(fine, "DG", 1)
    u, w = fd.TrialFunction(Vf), fd.TestFunction(Vf)
    A = assemble_scipy(fd.inner(fd.grad(u), fd.grad(w)) * fd.dx)
    A = sp.csr_matrix((A + A.T) * 0.5)  # exactly symmetric: the adjoint solve is the forward one
    B = assemble_scipy(fd.inner(fd.div(u), fd.TestFunction(Q)) * fd.dx)
    Mq = assemble_scipy(fd.inner(fd.TrialFunction(Q), fd.TestFunction(Q)) * fd.dx)
    M = assemble_scipy(fd.inner(u, w) * fd.dx)
    n = A.shape[0]
    constrained = np.sort(fine_of_coarse[constrained_c])
    is_c = np.zeros(n, dtype=bool)
    is_c[constrained] = True
    free = np.flatnonzero(~is_c)
    S_f = sp.identity(n, format="csr")[free]
    S_D = sp.identity(n, format="csr")[constrained]
    A_ff = S_f @ A @ S_f.T
    B_f = B @ S_f.T
    # constants in the left null space of B_f: Dirichlet on the whole boundary
    multiplier = bool(np.abs(np.asarray(B_f.sum(axis=0))).max() <= _NULL_TOL * np.abs(B.data).max())
    nq = B.shape[0]
    blocks = [[A_ff, B_f.T], [B_f, None]]
    if multiplier:
        m = sp.csr_matrix(np.asarray(fd.assemble(fd.TestFunction(Q) * fd.dx).dat.data_ro).reshape(-1, 1))
        blocks = [[A_ff, B_f.T, None], [B_f, None, m], [None, m.T, None]]
    K = sp.bmat(blocks, format="csc")
    rhs_rows = [A_ff @ S_f, -(B @ S_D.T) @ S_D]
    if multiplier:
        rhs_rows.append(sp.csr_matrix((1, n)))
    R = sp.csr_matrix(sp.vstack(rhs_rows))
    assert R.shape[0] == K.shape[0] == free.size + nq + int(multiplier)
    P = LerayProjection(space=Vf, embedding=E, fine_of_coarse=fine_of_coarse, constrained=constrained, rhs=R,
                        factor=lambda: _SymmetricLU(K, refinement_steps), stiffness=A, divergence=B,
                        pressure_mass=Mq, mass=M, pressure_multiplier=multiplier)
    if method == "auto":
        P.stream = stream_solver(Vf, mesh, A, constrained, P._saddle_np)
    return P


def leray_state_projection(P: LerayProjection, start: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A map of flat states whose velocity block (entries ``start`` to ``start + P.n_coarse P.ncomp``,
    interleaved components) is replaced by ``P.restrict(P(u))``: the divergence-free velocity
    nearest to it, interpolated back at the original P2 nodes; the rest of the state as it is.

    For :meth:`fe_operators.models.rollout.RolloutSPON.rollout`'s ``project``: a rollout
    that keeps the divergence-free structure at every step, each step taken from the
    projected state (the refined-mesh field ``P(u)`` is divergence-free to round-off; its
    interpolant on the original mesh is close to it, not exactly so).  The Dirichlet values
    of the block are kept bit for bit (``P`` copies them).

    Shapes
    ------
    ``(batch, n_dofs) -> (batch, n_dofs)``.
    """
    stop = start + P.n_coarse * P.ncomp

    def project(s: torch.Tensor) -> torch.Tensor:
        if s.ndim != 2 or s.shape[1] < stop:
            raise SpaceMismatchError(f"expected flat states (batch, >= {stop}) with the velocity block at "
                                     f"{start}:{stop}, got {tuple(s.shape)}")
        out = s.clone()
        out[:, start:stop] = P.at_nodes(s[:, start:stop]).to(s.dtype)
        return out

    return project
