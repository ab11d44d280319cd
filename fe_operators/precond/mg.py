r"""Galerkin multigrid with learned smoothers, in PETSc.

The V-cycle of the SPD neural multigrid (docs/design.md §6.2), for a fine SPD matrix :math:`A`
whose Dirichlet rows are identity rows (Firedrake's assembly) and prolongations
:math:`P_l` from level :math:`l-1` to :math:`l`:

* **boundary masks** — :math:`b_L` the decoupled rows of :math:`A` (no off-diagonal
  entry); on a coarser level, :math:`b_{l-1} = [P_l^T b_l > 1/2]`: the coarse nodes whose
  basis functions reach the fine Dirichlet nodes, i.e. the coarse Dirichlet nodes of a
  nested Lagrange hierarchy (:data:`~fe_operators.multigrid.galerkin.BOUNDARY_THRESHOLD`);
* **masked prolongations** :math:`\tilde P_l = (I - B_l) P_l (I - B_{l-1})`
  (:math:`B = \mathrm{diag}(b)`): coarse corrections never touch Dirichlet rows;
* **Galerkin operators** :math:`A_{l-1} = \tilde P_l^T A_l \tilde P_l + B_{l-1}`
  (:func:`~fe_operators.multigrid.galerkin.galerkin_product`, ``MatPtAP``; the identity
  keeps the coarse Dirichlet rows decoupled and the matrix non-singular), down to the
  coarsest level, solved exactly (LU);
* **compact coarse patterns** (``GalerkinHierarchy(compact=True)``, NeuralMG's, one
  process): ``MatPtAP``'s symbolic pattern holds about 1.4 times the entries the coarse
  operator needs (1.84M against 1.31M on the 1.05M-DOF unit square's first coarse level;
  for nested finite elements :math:`(\tilde P^T A \tilde P)_{ij}` is the form on two
  coarse basis functions, zero unless their supports overlap; the rest are cancellations,
  zero to round-off).  At the first set-up each level's pattern is cut to
  the entries above :data:`PATTERN_TOLERANCE` of :math:`\sqrt{a_{ii} a_{jj}}` (symmetrised,
  diagonal kept), a symbolic structure reused for every new coefficient; each update
  copies the product's kept values and adds every row's dropped entries' absolute sum to
  its diagonal: :math:`A_c = A_{full} + (\mathrm{diag}(|E|\mathbf 1) - E)` with
  :math:`E` the dropped part, and :math:`\mathrm{diag}(|E|\mathbf 1) - E` is symmetric
  diagonally dominant, so :math:`A_c \succeq A_{full} \succ 0`: SPD for any entries
  dropped, equal to the product to round-off when they are round-off.  A level whose
  dropped entries exceed :data:`DROP_TOLERANCE` of the diagonal for a new coefficient keeps
  the full product from then on (rebuilt).  Every coarser product, the smoothers' row
  features and every product of the cycle then touch the compact pattern;
* **smoothing** — ``sweeps`` Richardson steps :math:`x \leftarrow x + S_l(b - A_l x)` with
  the learned diagonal :math:`S_l` (:class:`~fe_operators.precond.smoother.LearnedJacobi`)
  before and after the coarse correction; :math:`S_l` is symmetric, so the post-smoother
  is the pre-smoother's adjoint.  With a polynomial network, one Richardson step with the
  learned polynomial :math:`M_l = p_l(S_l A_l) S_l`
  (:class:`~fe_operators.precond.smoother.LearnedPolynomial`, symmetric and
  energy-convergent for any weights: :mod:`~fe_operators.precond.smoother`) instead.

The cycle is then symmetric, and positive definite because every :math:`S_l` is
energy-convergent: :math:`B = \bar S + (I - S A) \tilde P B_c \tilde P^T (I - A S)` with
:math:`\bar S = S(2S^{-1} - A)S \succ 0` and :math:`B_c \succ 0` by induction.

:class:`GalerkinHierarchy` builds and updates the operators with PETSc (any number of
processes); :func:`fe_operators.multigrid.galerkin.galerkin_hierarchy` is the same in scipy
(a :class:`~fe_operators.multigrid.hierarchy.Hierarchy`), for training and tests;
:func:`setup_learned_mg` configures a ``PCMG`` with it; :class:`NeuralAMG` is the plain
petsc4py PC for matrices without a mesh hierarchy (PETSc's GAMG with learned smoothers).
Nothing here imports Firedrake.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numba
import numpy as np

from fe_operators.errors import PreconditionerSetupError
from fe_operators.multigrid.galerkin import BOUNDARY_THRESHOLD, galerkin_product
from fe_operators.precond.base import options_prefix, resolve_model
from fe_operators.precond.features import row_parts
from fe_operators.precond.smoother import LearnedJacobi, LearnedPolynomial

__all__ = ["GalerkinHierarchy", "setup_learned_mg", "install_learned_smoothers", "NeuralAMG",
           "PATTERN_TOLERANCE", "DROP_TOLERANCE"]

#: compact patterns: an off-diagonal entry is kept when ``|a_ij| > PATTERN_TOLERANCE sqrt(a_ii a_jj)`` at the
#: first set-up (round-off cancellations are ~1e-16 of that; a real coupling, even at contrast 1e8, far above)
PATTERN_TOLERANCE = 1e-12
#: compact patterns: a new coefficient whose dropped entries sum to more than this fraction of a row's diagonal
#: makes its level keep the full product (the pattern cut was not structural)
DROP_TOLERANCE = 1e-8


# ----------------------------------------------------------------------------- PETSc
@numba.njit(cache=True)
def _refill(indptr: np.ndarray, data: np.ndarray, slot: np.ndarray, diag: np.ndarray, out: np.ndarray) -> float:
    """The compact values ``out`` of a full product's rows (``slot``: each entry's place in ``out``,
    -1 dropped), every row's dropped absolute sum added to its diagonal; the largest ratio of a
    row's dropped sum to its new diagonal."""
    n = indptr.shape[0] - 1
    out[:] = 0.0
    worst = 0.0
    for i in range(n):
        drop = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            c = slot[k]
            if c >= 0:
                out[c] += data[k]
            else:
                drop += abs(data[k])
        if drop > 0:
            out[diag[i]] += drop
            d = out[diag[i]]
            worst = max(worst, drop / d if d > 0 else np.inf)
    return worst


class _Compaction:
    """A level's compact pattern (module docstring): the full product, the compact matrix sharing
    its value array with numpy, and the map between them."""

    def __init__(self, full: Any) -> None:
        import scipy.sparse as sp
        from petsc4py import PETSc

        from fe_operators.sparse.petsc import seqaij_csr

        indptr, indices, data = seqaij_csr(full)
        n = full.getSize()[0]
        rows = np.repeat(np.arange(n), np.diff(indptr))
        d = np.zeros(n)
        on_diag = indices == rows
        d[rows[on_diag]] = data[on_diag]
        big = np.abs(data) > PATTERN_TOLERANCE * np.sqrt(np.abs(d[rows] * d[indices]))
        K = sp.csr_matrix((big.astype(np.float64), indices.copy(), indptr.copy()), shape=(n, n))  # not the views
        K.eliminate_zeros()
        S = (K + K.T + sp.identity(n, format="csr")).tocsr()  # symmetric, diagonal kept
        S.sort_indices()
        keys = S.indices.astype(np.int64) + np.repeat(np.arange(n, dtype=np.int64), np.diff(S.indptr)) * n
        full_keys = indices.astype(np.int64) + rows.astype(np.int64) * n
        pos = np.minimum(np.searchsorted(keys, full_keys), keys.size - 1)
        self.slot = np.where(keys[pos] == full_keys, pos, -1).astype(np.int64)
        self.diag = np.searchsorted(keys, np.arange(n, dtype=np.int64) * (n + 1)).astype(np.int64)
        self.values = np.zeros(S.nnz)
        self.full = full
        self.matrix = PETSc.Mat().createAIJWithArrays(
            (n, n), (S.indptr.astype(PETSc.IntType), S.indices.astype(PETSc.IntType), self.values),
            comm=full.comm)
        self.dropped = 0.0  # the last refill's largest dropped-to-diagonal ratio

    def refill(self) -> Any:
        """Copy the full product's values in (the matrix's state increased); the compact matrix."""
        from fe_operators.sparse.petsc import seqaij_csr

        indptr, _, data = seqaij_csr(self.full)
        self.dropped = float(_refill(indptr, data, self.slot, self.diag, self.values))
        self.matrix.stateIncrease()
        return self.matrix

    def destroy(self) -> None:
        self.full.destroy()
        self.matrix.destroy()


def _ptap_rap(A: Any, P: Any) -> Any:
    """A new ``MatPtAP`` on one process with PETSc's ``rap`` algorithm (``Pᵀ`` formed once, then
    ``Pᵀ(AP)``) unless the user chose one (``-matptap_via``): its numeric product, repeated for
    every new coefficient, took 31 ms against the default ``scalable``'s 42 ms on the 263k-DOF
    unit square's levels (best of 16, one shared core), for an intermediate ``AP`` kept in memory."""
    from petsc4py import PETSc

    opts = PETSc.Options()
    if opts.hasName("matptap_via"):
        return galerkin_product(A, P)
    opts.setValue("matptap_via", "rap")
    try:
        return galerkin_product(A, P)
    finally:
        opts.delValue("matptap_via")


class _PatternChanged(Exception):
    """A compact level dropped more than :data:`DROP_TOLERANCE` for a new coefficient."""


def _decoupled_vec(A: Any) -> Any:
    """A Vec with 1 on the decoupled rows of ``A`` (local rows), 0 elsewhere."""
    from fe_operators.sparse.petsc import seqaij_csr

    indptr, indices, data = seqaij_csr(A) or A.getValuesCSR()  # one process: a view, not a row-by-row copy
    b = row_parts(indptr, indices, data, A.getOwnershipRange()[0])[2]
    vec = A.createVecLeft()
    vec.array[:] = b
    return vec


class GalerkinHierarchy:
    """The masked Galerkin operators of a fine PETSc matrix and prolongations (module docstring).

    Parameters
    ----------
    A
        The fine matrix (assembled AIJ, SPD, Dirichlet rows as identity rows).
    prolongations
        PETSc AIJ matrices ``P_l``, coarsest first (``prolongations[l - 1]``: level
        ``l - 1`` to ``l``); not modified (masked copies are made).
    compact
        Cut the coarse operators to their compact patterns (module docstring; one process,
        ``seqaij`` only: elsewhere the full products).

    Attributes
    ----------
    operators
        ``A_l``, coarsest first (the last is ``A`` itself).
    prolongations
        The masked ``P̃_l``.
    setup_seconds
        Wall time of the last build or update.
    """

    def __init__(self, A: Any, prolongations: Sequence[Any], compact: bool = False) -> None:
        self._raw = list(prolongations)
        self.operators: list[Any] = []
        self.prolongations: list[Any] = []
        self._masks: list[np.ndarray] = []
        self.setup_seconds = 0.0
        self.compact = bool(compact) and A.comm.getSize() == 1
        self._compactions: dict[int, _Compaction] = {}
        self._full_levels: set[int] = set()  # levels whose pattern cut was refused by a later coefficient
        self.update(A)

    @property
    def n_levels(self) -> int:
        """Number of levels."""
        return len(self._raw) + 1

    def update(self, A: Any) -> None:
        """(Re)compute the coarse operators for new values of ``A`` (same sparsity).

        The masked prolongations and the symbolic products are reused when the
        Dirichlet rows did not change (decided on all processes together); otherwise
        everything is rebuilt and the old matrices freed (check :attr:`prolongations`
        and :attr:`operators` for new objects), as when a compact level refuses its cut.
        """
        t0 = time.perf_counter()
        try:
            self._update(A)
        except _PatternChanged:
            self.destroy()
            self._update(A)
        self.setup_seconds = time.perf_counter() - t0

    def _update(self, A: Any) -> None:
        vecs = [_decoupled_vec(A)]
        for P in reversed(self._raw):  # fine to coarse
            bc = P.createVecRight()
            P.multTranspose(vecs[-1], bc)
            bc.array[:] = (bc.array_r > BOUNDARY_THRESHOLD).astype(np.float64)
            vecs.append(bc)
        vecs.reverse()  # coarsest first
        masks = [v.array_r.astype(bool) for v in vecs]
        same = bool(self.operators) and all(np.array_equal(m, old) for m, old in zip(masks, self._masks))
        reuse = A.comm.tompi4py().allreduce(same, op=_land())
        if not reuse:
            self.destroy()
        self._before_coarse_operators()
        ops = [A]
        for level in range(self.n_levels - 2, -1, -1):  # the coarse level made from level + 1
            if reuse:
                Ac = self._coarse_operator(level, ops[-1], self.prolongations[level], vecs[level],
                                           self.operators[level])
            else:
                Pm = self._raw[level].duplicate(copy=True)
                Pm.diagonalScale(_complement(vecs[level + 1]), _complement(vecs[level]))
                self.prolongations.insert(0, Pm)
                Ac = self._coarse_operator(level, ops[-1], Pm, vecs[level], None)
                Ac.setOption(Ac.Option.NEW_NONZERO_ALLOCATION_ERR, False)
            Ac.setDiagonal(vecs[level], addv=True)
            ops.append(Ac)
        self.operators = list(reversed(ops))
        self._masks = masks

    def _before_coarse_operators(self) -> None:
        """Called by :meth:`update` before the coarse operators are computed (a subclass's hook)."""

    def _coarse_operator(self, level: int, fine: Any, P: Any, boundary: Any, result: Any) -> Any:
        """The coarse operator of ``level`` without its boundary identity: ``P̃ᵀ A_{level+1} P̃``.

        Parameters
        ----------
        level
            The coarse level (0: coarsest).
        fine
            ``A_{level + 1}``.
        P
            The masked prolongation ``P̃_{level + 1}``.
        boundary
            The Vec ``b_level`` (1 on the coarse Dirichlet rows).
        result
            The previous operator of this level (same pattern), refilled in place; None: a new one.

        Raises
        ------
        _PatternChanged
            A compact level's dropped entries over :data:`DROP_TOLERANCE` (it is marked to
            keep the full product; :meth:`update` rebuilds).
        """
        compaction = self._compactions.get(level)
        if result is not None and compaction is None:
            return galerkin_product(fine, P, result=result)
        if compaction is not None:
            galerkin_product(fine, P, result=compaction.full)
            Ac = compaction.refill()
            if compaction.dropped > DROP_TOLERANCE:
                self._full_levels.add(level)
                raise _PatternChanged(level)
            return Ac
        full = _ptap_rap(fine, P) if self.compact else galerkin_product(fine, P)
        if not self.compact or level in self._full_levels or full.getType() != "seqaij":
            return full
        compaction = _Compaction(full)
        self._compactions[level] = compaction
        return compaction.refill()

    def destroy(self) -> None:
        """Free the coarse operators and masked prolongations (not the fine matrix)."""
        compact = {id(c.matrix) for c in self._compactions.values()}
        for M in self.operators[:-1] + self.prolongations:
            if id(M) not in compact:
                M.destroy()
        for c in self._compactions.values():
            c.destroy()
        self._compactions = {}
        self.operators, self.prolongations, self._masks = [], [], []


def _complement(b: Any) -> Any:
    """A new Vec ``1 - b``."""
    keep = b.duplicate()
    keep.set(1.0)
    keep.axpy(-1.0, b)
    return keep


def _land() -> Any:
    from mpi4py import MPI

    return MPI.LAND


def _configure_smoother(ksp: Any, sweeps: int, context: Any) -> None:
    from petsc4py import PETSc

    ksp.setType(PETSc.KSP.Type.RICHARDSON)
    ksp.setTolerances(max_it=int(sweeps))
    ksp.setNormType(PETSc.KSP.NormType.NONE)  # also selects KSPConvergedSkip
    pc = ksp.getPC()
    pc.setType(PETSc.PC.Type.PYTHON)
    pc.setPythonContext(context)


def _step_weights(model: Any, smoothed_levels: int) -> list[list[float]] | None:
    """The polynomial smoother's step weights per smoothed level (coarsest first), or None."""
    if not getattr(model, "polynomial", False):
        return None
    import torch

    with torch.no_grad():
        return [w.double().tolist() for w in model.step_weights(smoothed_levels)]


def setup_learned_mg(mg: Any, hierarchy: GalerkinHierarchy, model: Any, sweeps: int) -> list[LearnedJacobi]:
    """Configure ``mg`` (a new PETSc PC with its options prefix set) as the learned V-cycle.

    Multiplicative V-cycle on ``hierarchy``'s levels; on every level but the coarsest
    ``sweeps`` Richardson steps with a :class:`LearnedJacobi` of ``model`` before and
    after the coarse correction (one smoother, two KSPs: the first starts from zero);
    the coarsest level solved by LU
    (``redundant`` LU on several processes).  Options under ``mg``'s prefix are applied
    last (``-<prefix>mg_levels_ksp_max_it 3``, ``-<prefix>mg_coarse_pc_type cholesky``).

    Returns
    -------
    list of LearnedJacobi
        The smoothers' contexts, finest level first (their ``fallback_rows`` after set-up).
    """
    from petsc4py import PETSc

    n = hierarchy.n_levels
    mg.setType(PETSc.PC.Type.MG)
    mg.setMGLevels(n)
    mg.setMGType(PETSc.PC.MGType.MULTIPLICATIVE)
    mg.setMGCycleType(PETSc.PC.MGCycleType.V)
    A = hierarchy.operators[-1]
    mg.setOperators(A, A)
    for level in range(1, n):
        mg.setMGInterpolation(level, hierarchy.prolongations[level - 1])
    contexts = []
    steps = _step_weights(model, n - 1)
    for level in range(n):
        A_l = hierarchy.operators[level]
        if level:
            # distinct KSPs before and after the coarse correction (one context, computed once):
            # the pre-smoother then starts from a zero guess and skips the product A 0
            ctx = LearnedJacobi(model) if steps is None else LearnedPolynomial(model, steps[level - 1])
            for ksp in (mg.getMGSmootherDown(level), mg.getMGSmootherUp(level)):
                ksp.setOperators(A_l, A_l)
                _configure_smoother(ksp, sweeps if steps is None else 1, ctx)
            contexts.append(ctx)
        else:
            ksp = mg.getMGCoarseSolve()
            ksp.setOperators(A_l, A_l)
            ksp.setType(PETSc.KSP.Type.PREONLY)
            cpc = ksp.getPC()
            cpc.setType(PETSc.PC.Type.REDUNDANT if mg.comm.getSize() > 1 else PETSc.PC.Type.LU)
    mg.setFromOptions()
    return contexts[::-1]


def install_learned_smoothers(mg: Any, model: Any, sweeps: int) -> list[LearnedJacobi]:
    """Give every non-coarse level of a set-up ``PCMG`` (e.g. GAMG's) the learned smoother.

    Levels whose PC already holds a :class:`LearnedJacobi` keep it (they re-read their
    matrix at the next set-up).

    Returns
    -------
    list of LearnedJacobi
        The contexts, finest level first.
    """
    contexts = []
    steps = _step_weights(model, mg.getMGLevels() - 1)
    for level in range(mg.getMGLevels() - 1, 0, -1):
        ksp = mg.getMGSmoother(level)
        pc = ksp.getPC()
        ctx = pc.getPythonContext() if pc.getType() == "python" else None
        if not isinstance(ctx, LearnedJacobi):
            ctx = LearnedJacobi(model) if steps is None else LearnedPolynomial(model, steps[level - 1])
            _configure_smoother(ksp, sweeps if steps is None else 1, ctx)
        contexts.append(ctx)
    return contexts


class _LearnedMGBase:
    """What the two learned-multigrid PCs share: apply, view and the smoothers' report."""

    _prefix = ""
    name = ""

    def __init__(self) -> None:
        self.mg = None
        self.net = None
        self.smoothers: list[LearnedJacobi] = []
        self.sweeps = 0
        self.setup_seconds = 0.0
        self.setup_breakdown: dict[str, float] = {}

    def _timed_mg_setup(self, coarse_seconds: float | None) -> None:
        """``mg.setUp()``, and :attr:`setup_breakdown` of this set-up: the smoothers' row features
        and network (one compiled pass on one process, counted as the network), the coarse
        operators (when given), and the rest of the PCMG set-up, which is the coarse LU
        factorisation (and PETSc's work vectors)."""
        def spent() -> tuple[float, float]:
            return (sum(s.feature_seconds_total for s in self.smoothers),
                    sum(s.network_seconds_total for s in self.smoothers))

        f0, n0 = spent()
        t0 = time.perf_counter()
        self.mg.setUp()
        total = time.perf_counter() - t0
        f1, n1 = spent()
        self.setup_breakdown = {"features": f1 - f0, "network": n1 - n0}
        if coarse_seconds is not None:
            self.setup_breakdown["coarse operators"] = coarse_seconds
        self.setup_breakdown["LU"] = max(0.0, total - (f1 - f0) - (n1 - n0))

    @property
    def fallback_rows(self) -> int:
        """Rows (local, all levels) whose smoother weight fell back to the classical one."""
        return sum(s.fallback_rows for s in self.smoothers)

    def _sweeps(self, prefix: str) -> int:
        from petsc4py import PETSc

        default = int(getattr(self.net, "sweeps", 2))
        sweeps = PETSc.Options(prefix).getInt("sweeps", default)
        if sweeps < 1:
            raise PreconditionerSetupError(self.name, f"-{prefix}sweeps: expected at least 1, got {sweeps}")
        if getattr(self.net, "polynomial", False) and sweeps != default:
            raise PreconditionerSetupError(self.name, f"-{prefix}sweeps {sweeps}: the polynomial smoother's degree "
                                                      f"is its training's, {default}; leave the option out")
        return sweeps

    def apply(self, pc: Any, x: Any, y: Any) -> None:
        """One V-cycle: ``y = B x``."""
        self.mg.apply(x, y)

    def applyTranspose(self, pc: Any, x: Any, y: Any) -> None:
        """``y = Bᵀ x = B x`` (the cycle is symmetric)."""
        self.mg.apply(x, y)

    def _report(self) -> str:
        return (f"{self.name}: learned smoothers on {len(self.smoothers)} levels, {self.sweeps} sweeps; "
                f"{self.fallback_rows} rows with the classical weight after non-finite network output; "
                f"set-up {self.setup_seconds:.3f} s")

    def view(self, pc: Any, viewer: Any = None) -> None:
        """Print the summary and the inner multigrid PC."""
        if viewer is None or viewer.getType() != "ascii":
            return
        viewer.printfASCII(self._report() + "\n")
        if self.mg is not None:
            self.mg.view(viewer)

    def postSolve(self, pc: Any, ksp: Any, b: Any, x: Any) -> None:
        """Report smoother fallbacks after a solve (nothing when there were none)."""
        if self.fallback_rows:
            from petsc4py import PETSc

            PETSc.Sys.Print(self._report(), comm=pc.comm)

    def destroy(self, pc: Any) -> None:
        """Free the inner PC."""
        if self.mg is not None:
            self.mg.destroy()
            self.mg = None


class NeuralAMG(_LearnedMGBase):
    """A petsc4py Python PC for any assembled SPD matrix: PETSc's GAMG with learned smoothers.

    For matrices that did not come from a Firedrake mesh hierarchy.  Select it with::

        -pc_type python -pc_python_type fe_operators.precond.NeuralAMG
        -neuralamg_model smoother.pt

    (options prefix ``<pc prefix>neuralamg_``).  The inner GAMG reads its options under
    the same prefix (``-neuralamg_pc_gamg_threshold 0.02``); after its set-up every level
    but the coarsest gets ``sweeps`` Richardson steps with a
    :class:`~fe_operators.precond.smoother.LearnedJacobi` (before and after the coarse
    correction: the cycle stays symmetric, use ``-ksp_type cg``).

    Options
    -------
    ``-<prefix>model PATH``
        The trained smoother network (or pass ``model=`` to the constructor).
    ``-<prefix>sweeps N``
        Smoothing sweeps per level (default: the network's ``sweeps``).

    Parameters
    ----------
    model
        The network or a checkpoint path (instead of the option).
    """

    _prefix = "neuralamg_"
    name = "fe_operators.precond.NeuralAMG"

    def __init__(self, model: Any = None) -> None:
        super().__init__()
        self.model = model

    def setUp(self, pc: Any) -> None:
        """Set up GAMG on the PC's matrix, then its learned smoothers."""
        from petsc4py import PETSc

        t0 = time.perf_counter()
        prefix = options_prefix(pc, self._prefix)
        _, P = pc.getOperators()
        if P.getType() in ("python", "shell"):
            raise PreconditionerSetupError(self.name, f"expected an assembled (AIJ) matrix, got type "
                                                      f"{P.getType()!r}: assemble the operator (mat_type aij)")
        if self.net is None:
            self.net = resolve_model(self.name, prefix, self.model, kind="neural_mg")
            self.sweeps = self._sweeps(prefix)
        if self.mg is None:
            self.mg = PETSc.PC().create(comm=pc.comm)
            self.mg.setOptionsPrefix(prefix)
            self.mg.setType(PETSc.PC.Type.GAMG)
            self.mg.setFromOptions()
        A, _ = pc.getOperators()
        self.mg.setOperators(A, P)
        # GAMG makes its level smoothers from options during set-up: cheap placeholders (no
        # eigenvalue estimates) until the learned smoothers replace them, unless the user set some
        opts = PETSc.Options(prefix)
        added = [key for key in ("mg_levels_ksp_type", "mg_levels_pc_type") if not opts.hasName(key)]
        for key in added:
            opts.setValue(key, "richardson" if key.endswith("ksp_type") else "jacobi")
        try:
            self.mg.setUp()
        finally:
            for key in added:
                opts.delValue(key)
        self.smoothers = install_learned_smoothers(self.mg, self.net, self.sweeps)
        for level in range(1, self.mg.getMGLevels()):
            self.mg.getMGSmoother(level).setUp()
        self.setup_seconds = time.perf_counter() - t0
