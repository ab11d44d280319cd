r"""The learned SPD smoother: per-row Jacobi weights from a small network, fixed at set-up.

docs/design.md §6.2: the smoother is :math:`S = \mathrm{diag}(m)` with

.. math::

    m_i = \frac{2 s_i}{\sum_j |a_{ij}|}, \qquad s_i = \epsilon + (1 - 2\epsilon)\,
    \mathrm{sigmoid}\big(\mathrm{net}(\text{features}_i)\big) \in (0, 1),

i.e. :math:`S = \mathrm{diag}(w) D^{-1}` with :math:`w_i = s_i \cdot 2 d_i / \sum_j
|a_{ij}|`.  Then :math:`2S^{-1} - A` has diagonal :math:`\sum_j |a_{ij}| / s_i - a_{ii} >
\sum_{j \ne i} |a_{ij}|`: it is strictly diagonally dominant with a positive diagonal,
hence SPD, so :math:`S` is convergent in the energy norm whatever the network outputs;
a V-cycle with :math:`S` before and after the coarse correction is SPD and plain CG
applies.  Rows with no off-diagonal entries (Dirichlet identity rows) get
:math:`m_i = 1/a_{ii}`: solved exactly (:math:`s_i = 1/2`).

The network (:class:`SmootherNet`) sees only the dimensionless row features of
:mod:`~fe_operators.precond.features`; it runs once per set-up, in float32 (the guarantee
holds for any ``s`` in (0, 1), rounded or not), as a compiled loop over blocks of rows on
the feature-major float32 features (:func:`smoother_multipliers`; about 3x cheaper than
torch's layer-by-layer evaluation on a million rows), and the smoother's apply is a
pointwise product of PETSc vectors (:class:`LearnedJacobi`), at sparse-kernel speed.
A non-finite network output gets the classical weight :math:`s_i = 1/2` (the
:math:`\ell_1`-Jacobi smoother :math:`m_i = 1/\sum_j|a_{ij}|`) and is counted.

**The learned polynomial smoother** (``SmootherNet(poly_levels=L)``).  Instead of ``k``
equal Richardson steps with :math:`S`, level :math:`l` applies
:math:`M_l = p_l(SA)\,S` with the learned polynomial defined by its error polynomial

.. math::

    r_l(x) = 1 - x\,p_l(x) = \prod_{j=1}^{k} (1 - \omega_{l,j}\,x), \qquad
    \omega_{l,j} = \epsilon + (1 - 2\epsilon)\,\mathrm{sigmoid}(\theta_{l,j}) \in (0, 1),

:math:`\theta` learned per level (:meth:`SmootherNet.step_weights`; counted from the
finest level, deeper levels than trained use the last row).  ``I - M A = r(SA)``, and
:math:`M = S^{1/2} p(S^{1/2} A S^{1/2}) S^{1/2}` is symmetric.  The guarantee:
the eigenvalues :math:`x` of :math:`SA` lie in :math:`(0, 2)` (above: :math:`2S^{-1} - A
\succ 0`), where every factor satisfies :math:`|1 - \omega x| < 1` because
:math:`0 < \omega < 1`; so :math:`|r(x)| < 1` on the spectrum, :math:`\|I - MA\|_A < 1`
and :math:`2M^{-1} - A \succ 0` — the smoother is energy-convergent for any network and
any :math:`\theta`, and the V-cycle stays SPD.  What it adds over equal steps: the
row factors :math:`s` may use all of :math:`(0, 2)` (with :math:`\omega = 1` the top of
the spectrum, :math:`x \to 2`, is not damped at all), and the :math:`k` roots
:math:`1/\omega_{l,j}` spread over the spectrum as Chebyshev's do.  Applied as one
Richardson step with :math:`M` (:class:`LearnedPolynomial`: ``k - 1`` products with
:math:`A` inside, the same count as ``k`` plain sweeps).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numba
import numpy as np
import torch

from fe_operators.models.layers.mlp import ACTIVATIONS, MLP
from fe_operators.precond.base import options_prefix, resolve_model
from fe_operators.errors import PreconditionerSetupError
from fe_operators.precond.features import (FEATURE_NAMES, RowFeatures, checked_csr, petsc_row_features,
                                           row_feature_values)
from fe_operators.sparse.petsc import seqaij_csr

__all__ = ["SmootherNet", "smoother_multipliers", "fused_multipliers", "multipliers_torch", "LearnedJacobi",
           "LearnedPolynomial", "S_MARGIN", "INFERENCE_DTYPE"]

#: ``s`` stays in ``[S_MARGIN, 1 - S_MARGIN]``, strictly inside (0, 1) in float32 and float64
S_MARGIN = 1e-6

#: dtype of the network at set-up in the PETSc preconditioners (training runs in float64)
INFERENCE_DTYPE = torch.float32
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


class SmootherNet(torch.nn.Module):
    """Per-row smoothing factors ``s ∈ (0, 1)`` from row features: ``ε + (1 − 2ε) sigmoid(MLP)``.

    Parameters
    ----------
    hidden
        Width of the hidden layers.
    layers
        Number of hidden layers.
    act
        Activation (``"relu"``, ``"tanh"``, ``"gelu"``, ``"silu"``).
    sweeps
        Smoothing sweeps per level before and after the coarse correction that the
        weights were trained for (the preconditioners' default).
    features
        The feature names the network reads, :data:`FEATURE_NAMES` (stored, and checked
        against this version's features when a checkpoint is loaded).
    init_s
        The factor ``s`` of every row at initialisation (zero last layer), e.g. 0.5 for
        the classical ℓ1-Jacobi smoother.
    poly_levels
        0: ``sweeps`` equal Richardson steps.  ``L > 0``: the learned polynomial smoother
        of degree ``sweeps`` (module docstring) with step weights for the finest ``L``
        levels (deeper levels use the last), initialised to ``init_omega``.
    init_omega
        The largest step weight ``ω`` at initialisation (polynomial only; the others
        spread down to ``0.6 init_omega``: distinct, since the loss is symmetric in them).

    Shapes
    ------
    ``forward(x)``: ``(n, n_features) -> (n,)``.
    """

    def __init__(self, hidden: int = 16, layers: int = 2, act: str = "relu", sweeps: int = 2,
                 features: list[str] | tuple[str, ...] = FEATURE_NAMES, init_s: float | None = None,
                 poly_levels: int = 0, init_omega: float = 0.9) -> None:
        super().__init__()
        if list(features) != list(FEATURE_NAMES):
            raise ValueError(f"this fe_operators computes the smoother features {list(FEATURE_NAMES)}; the model "
                             f"reads {list(features)}: retrain it with this version")
        if hidden < 1 or layers < 0 or sweeps < 1:
            raise ValueError(f"expected hidden >= 1, layers >= 0, sweeps >= 1, got {hidden}, {layers}, {sweeps}")
        self.hidden, self.layers, self.act, self.sweeps = int(hidden), int(layers), act, int(sweeps)
        self.mlp = MLP([len(FEATURE_NAMES)] + [self.hidden] * self.layers + [1], act)
        if poly_levels < 0 or not 0 < init_omega < 1:
            raise ValueError(f"expected poly_levels >= 0 and 0 < init_omega < 1, got {poly_levels}, {init_omega}")
        self.poly_levels = int(poly_levels)
        if self.poly_levels:
            # distinct weights (from init_omega down to 0.6 of it): r is symmetric in the weights,
            # so equal ones would get equal gradients and stay equal
            spread = [init_omega * (1 - 0.4 * j / max(self.sweeps - 1, 1)) for j in range(self.sweeps)]
            self.step_logits = torch.nn.Parameter(torch.tensor([[_logit(w) for w in spread]] * self.poly_levels))
        if init_s is not None:
            self.set_constant(init_s)

    @property
    def polynomial(self) -> bool:
        """Whether this is the learned polynomial smoother (module docstring)."""
        return self.poly_levels > 0

    def step_weights(self, smoothed_levels: int) -> list[torch.Tensor]:
        """The step weights ``ω`` of each smoothed level, coarsest first (as the levels of a
        hierarchy without its coarsest), each ``(sweeps,)`` in ``(0, 1)``.

        Level ``i`` counted from the finest takes row ``min(i, poly_levels - 1)``.
        """
        if not self.polynomial:
            raise ValueError("this smoother network has no polynomial step weights (poly_levels 0)")
        w = S_MARGIN + (1 - 2 * S_MARGIN) * torch.sigmoid(self.step_logits)
        rows = [w[min(i, self.poly_levels - 1)] for i in range(smoothed_levels)]
        return rows[::-1]

    def set_constant(self, s: float) -> None:
        """Make every row's factor ``s`` (last layer zero, its bias ``logit``)."""
        if not 0 < s < 1:
            raise ValueError(f"expected 0 < s < 1, got {s}")
        last = self.mlp[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(_logit(s))

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""
        config = {"hidden": self.hidden, "layers": self.layers, "act": self.act, "sweeps": self.sweeps,
                  "features": list(FEATURE_NAMES)}
        if self.poly_levels:  # older checkpoints have no such key: the plain smoother
            config["poly_levels"] = self.poly_levels
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SmootherNet":
        """Rebuild from :attr:`config` (fresh weights)."""
        return cls(**config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Factors ``s`` of each row, in ``[ε, 1 − ε]``."""
        return S_MARGIN + (1 - 2 * S_MARGIN) * torch.sigmoid(self.mlp(x)).squeeze(-1)


def _logit(s: float) -> float:
    """The pre-activation giving ``ε + (1 − 2ε) sigmoid(·) = s``."""
    z = (s - S_MARGIN) / (1 - 2 * S_MARGIN)
    return math.log(z / (1 - z))


def multipliers_torch(s: torch.Tensor, abs_row_sum: torch.Tensor, diagonal: torch.Tensor,
                      decoupled: torch.Tensor) -> torch.Tensor:
    """``m = 2 s / Σ_j|a_ij|``, ``1/a_ii`` on decoupled rows (differentiable in ``s``).

    Shapes
    ------
    all ``(n,)``.
    """
    return torch.where(decoupled, 1.0 / diagonal, 2.0 * s / abs_row_sum)


#: activation modules the compiled network evaluation knows (codes of :func:`_mlp_factors`)
_ACT_CODES: dict[type, int] = {torch.nn.ReLU: 0, torch.nn.Tanh: 1, torch.nn.GELU: 2, torch.nn.SiLU: 3}


def _compiled_mlp(net: torch.nn.Module) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``(params, sizes, act)`` of a :class:`SmootherNet` whose factors :func:`_mlp_factors` computes
    exactly as its ``forward`` does, or None (a subclass with its own ``forward``, other modules).

    ``params``: every layer's weight ``(out, in)`` (row-major) then bias, flattened, in the
    network's dtype; ``sizes``: the layer widths; ``act``: the activation's code.
    """
    if not isinstance(net, SmootherNet) or type(net).forward is not SmootherNet.forward:
        return None
    modules = list(net.mlp)
    linears, acts = modules[0::2], {type(m) for m in modules[1::2]}
    if not all(type(m) is torch.nn.Linear for m in linears) or len(acts) > 1 or not acts <= set(_ACT_CODES):
        return None
    if any(isinstance(m, torch.nn.GELU) and m.approximate != "none" for m in net.mlp):
        return None
    dtype = linears[0].weight.dtype
    if dtype not in (torch.float32, torch.float64) or linears[-1].out_features != 1:
        return None
    with torch.no_grad():
        params = torch.cat([t.detach().reshape(-1).to(dtype) for m in linears for t in (m.weight, m.bias)])
    sizes = np.array([linears[0].in_features] + [m.out_features for m in linears], dtype=np.int64)
    act = _ACT_CODES[acts.pop()] if acts else 0
    return params.cpu().numpy(), sizes, act


@numba.njit(cache=True)
def _mlp_block(cur: np.ndarray, nxt: np.ndarray, m: int, params: np.ndarray, sizes: np.ndarray,
               act: int) -> np.ndarray:
    """The network's output on the block's ``m`` rows: ``cur[:sizes[0], :m]`` holds the inputs
    feature-major; ``cur`` and ``nxt`` are swapped between layers (the one returned holds the
    output in row 0).  The activation between layers as torch's (ReLU keeps NaN)."""
    n_layers = sizes.shape[0] - 1
    off = 0
    for layer in range(n_layers):
        fi, fo = sizes[layer], sizes[layer + 1]
        for o in range(fo):
            b = params[off + fo * fi + o]
            for i in range(m):
                nxt[o, i] = b
            for k in range(fi):
                w = params[off + o * fi + k]
                for i in range(m):
                    nxt[o, i] += w * cur[k, i]
            if layer < n_layers - 1:
                for i in range(m):
                    z = nxt[o, i]
                    if act == 0:
                        if z < 0:  # not max(z, 0): NaN stays NaN, as in torch
                            nxt[o, i] = 0
                    elif act == 1:
                        nxt[o, i] = math.tanh(z)
                    elif act == 2:
                        nxt[o, i] = 0.5 * z * (1.0 + math.erf(z / math.sqrt(2.0)))
                    else:
                        nxt[o, i] = z / (1.0 + math.exp(-z))
        off += fo * fi + fo
        cur, nxt = nxt, cur
    return cur


@numba.njit(cache=True)
def _factor(z: float, margin: float) -> tuple:
    """``(s, fell back)``: ``ε + (1 − 2ε) sigmoid(z)`` in float64, 1/2 when not finite."""
    v = margin + (1.0 - 2.0 * margin) / (1.0 + math.exp(-np.float64(z)))
    if not np.isfinite(v):
        return 0.5, True
    return v, False


_BLOCK = 1024  # rows per block of the compiled network: its activations stay in cache


@numba.njit(cache=True)
def _mlp_factors(xt: np.ndarray, params: np.ndarray, sizes: np.ndarray, act: int, margin: float) -> tuple:
    """``s = ε + (1 − 2ε) sigmoid(MLP(x))`` of every row, and the count of non-finite ones (set to 1/2).

    ``xt`` is the ``(features, n)`` feature-major input in the parameters' dtype; the layers
    run on blocks of rows (each feature a contiguous run: vectorised), the sigmoid in float64.
    """
    n = xt.shape[1]
    width = sizes.max()
    cur = np.empty((width, _BLOCK), dtype=xt.dtype)
    nxt = np.empty((width, _BLOCK), dtype=xt.dtype)
    s = np.empty(n)
    bad = 0
    for start in range(0, n, _BLOCK):
        m = min(start + _BLOCK, n) - start
        for k in range(sizes[0]):
            for i in range(m):
                cur[k, i] = xt[k, start + i]
        out = _mlp_block(cur, nxt, m, params, sizes, act)
        for i in range(m):
            s[start + i], fell = _factor(out[0, i], margin)
            bad += fell
    return s, bad


@numba.njit(cache=True)
def _fused_multipliers(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, d: np.ndarray,
                       params: np.ndarray, sizes: np.ndarray, act: int, margin: float, m_out: np.ndarray) -> int:
    """The smoother's diagonal ``m`` of a whole square matrix, straight from its CSR rows: each
    block's features (:func:`~fe_operators.precond.features.row_feature_values`) go into the
    network's input buffer, never into an ``(n, 6)`` array; the count of fallback rows."""
    n = indptr.shape[0] - 1
    width = sizes.max()
    cur = np.empty((width, _BLOCK), dtype=params.dtype)
    nxt = np.empty((width, _BLOCK), dtype=params.dtype)
    total = np.empty(_BLOCK)
    free = np.empty(_BLOCK, dtype=np.bool_)
    inv_sqrt_d = 1.0 / np.sqrt(d)
    bad = 0
    for start in range(0, n, _BLOCK):
        m = min(start + _BLOCK, n) - start
        for i in range(m):
            f0, f1, f2, f3, f4, f5, total[i], free[i] = row_feature_values(
                indptr, indices, data, start + i, 0, d[start + i], 0.0, inv_sqrt_d)
            cur[0, i] = f0
            cur[1, i] = f1
            cur[2, i] = f2
            cur[3, i] = f3
            cur[4, i] = f4
            cur[5, i] = f5
        out = _mlp_block(cur, nxt, m, params, sizes, act)
        for i in range(m):
            s, fell = _factor(out[0, i], margin)
            bad += fell
            m_out[start + i] = 1.0 / d[start + i] if free[i] else 2.0 * s / total[i]
    return bad


def fused_multipliers(net: torch.nn.Module, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                      out: np.ndarray) -> int | None:
    """:func:`smoother_multipliers` of a whole square CSR matrix (one process) in one compiled pass,
    written into ``out`` (``(n,)`` float64, e.g. a PETSc Vec's array); the fallback count, or None
    (nothing written) for a network the compiled loop does not evaluate.

    The values of ``smoother_multipliers(net, serial_row_features(..., dtype))`` with the
    network's dtype (the same features, rounded to it, and the same arithmetic: bit for bit in
    float64, to round-off in float32, where the compiler may contract products differently); the
    ``(n, 6)`` feature array and the temporaries of the two-step route are never made (1.05M
    rows, one core: 66 ms against 81 ms for the diagonal, the features and the network).

    Raises
    ------
    ValueError
        A non-positive diagonal entry.
    """
    compiled = _compiled_mlp(net)
    if compiled is None:
        return None
    params, sizes, act = compiled
    indptr, indices, data, d = checked_csr(indptr, indices, data)
    return int(_fused_multipliers(indptr, indices, data, d, params, sizes, act, S_MARGIN, out))


@torch.no_grad()
def smoother_multipliers(net: torch.nn.Module, features: RowFeatures) -> tuple[np.ndarray, int]:
    """The smoother's diagonal ``m`` for the rows of ``features``, and how many rows fell back.

    Non-finite network outputs (and rows where the network is not even called, none)
    get ``s = 1/2``.  A plain :class:`SmootherNet` is evaluated by a compiled loop in its
    own dtype (:func:`_mlp_factors`: no tensors, float32 at set-up; several times cheaper
    than torch's layer by layer on a million rows); any other network by its ``forward``.

    Returns
    -------
    tuple
        ``(m, n_fallback)``: ``(n,)`` float64, and the number of rows whose ``s`` was
        not finite.
    """
    compiled = _compiled_mlp(net) if features.n_rows else None
    if compiled is not None:
        params, sizes, act = compiled
        xt = np.ascontiguousarray(features.values.T, dtype=params.dtype)  # no copy for float32 set-up features
        s, n_bad = _mlp_factors(xt, params, sizes, act, S_MARGIN)
        d, decoupled = features.diagonal, features.decoupled
        m = np.where(decoupled, 1.0 / d, 2.0 * s / features.abs_row_sum)
        return m, int(n_bad)
    x = torch.from_numpy(np.asarray(features.values))
    s = net(x.to(next(net.parameters()).dtype)).to(torch.float64) if features.n_rows else torch.zeros(0)
    bad = ~torch.isfinite(s)
    n_bad = int(bad.sum())
    if n_bad:
        s = torch.where(bad, torch.full_like(s, 0.5), s)
    m = multipliers_torch(s, torch.from_numpy(features.abs_row_sum), torch.from_numpy(features.diagonal),
                          torch.from_numpy(features.decoupled))
    return m.numpy(), n_bad


class LearnedJacobi:
    """A petsc4py Python PC: the learned diagonal smoother ``y = m ⊙ x`` of the PC's matrix.

    Use it as a multigrid level smoother with Richardson iterations (any PCMG: PETSc's
    GAMG, Firedrake's ``pc_type mg``, or the inner MG of
    :class:`~fe_operators.precond.NeuralMG`)::

        mg_levels_ksp_type richardson
        mg_levels_ksp_max_it 2
        mg_levels_pc_type python
        mg_levels_pc_python_type fe_operators.precond.LearnedJacobi
        mg_levels_learnedjacobi_model smoother.pt

    Set-up reads the local rows of the PC's (assembled) matrix, computes the row
    features and runs the network once; apply is one ``VecPointwiseMult``.  The
    operator is symmetric (``applyTranspose`` is ``apply``).

    Parameters
    ----------
    model
        The network (or a checkpoint path); None: from the option
        ``-<pc prefix>learnedjacobi_model PATH``.

    Attributes
    ----------
    multipliers
        The PETSc Vec ``m`` (after set-up).
    fallback_rows
        Rows whose network output was not finite at the last set-up (they use the
        classical weight).
    setup_seconds
        Wall time of the last set-up.
    feature_seconds_total, network_seconds_total
        Time in the row features and in the network, summed over every set-up.
    """

    prefix = "learnedjacobi_"
    name = "fe_operators.precond.LearnedJacobi"

    def __init__(self, model: Any = None) -> None:
        self.model = model
        self.net: torch.nn.Module | None = None
        self.multipliers = None
        self.fallback_rows = 0
        self.rows = 0
        self.setup_seconds = 0.0
        self.feature_seconds_total = 0.0  # row features, summed over every set-up (set-up breakdowns)
        self.network_seconds_total = 0.0  # the network's forward pass, likewise
        self._state: tuple[int, int] | None = None

    def setUp(self, pc: Any) -> None:
        """Compute the multipliers from the PC's matrix (the ``Pmat``).

        Nothing is recomputed when called again for the same matrix in the same state
        (one context may serve several PCs, e.g. a level's pre- and post-smoother).
        """
        t0 = time.perf_counter()
        if self.net is None:
            net = resolve_model(self.name, options_prefix(pc, self.prefix), self.model, kind="neural_mg")
            self.net = copy.deepcopy(net).to(INFERENCE_DTYPE).eval()
        _, P = pc.getOperators()
        state = (P.handle, P.stateGet())
        if state == self._state:
            return
        if self.multipliers is None or self.multipliers.getSizes() != P.getSizes()[0]:
            self.multipliers = P.createVecLeft()
        t1 = time.perf_counter()
        view = seqaij_csr(P)
        try:
            # one process: features and network in one compiled pass (counted as the network)
            fallback = None if view is None else fused_multipliers(self.net, *view, self.multipliers.array)
            if fallback is None:  # several processes, or a network the compiled pass does not run
                feats = petsc_row_features(P, _NUMPY_DTYPES[INFERENCE_DTYPE])
                t2 = time.perf_counter()
                self.feature_seconds_total += t2 - t1
                t1 = t2
                m, fallback = smoother_multipliers(self.net, feats)
                self.multipliers.array[:] = m
        except ValueError as exc:
            raise PreconditionerSetupError(self.name, str(exc)) from None
        self.network_seconds_total += time.perf_counter() - t1
        self.fallback_rows = fallback
        self.rows = P.getLocalSize()[0]
        self._state = state
        self.setup_seconds = time.perf_counter() - t0

    def apply(self, pc: Any, x: Any, y: Any) -> None:
        """``y = m ⊙ x``."""
        y.pointwiseMult(x, self.multipliers)

    applyTranspose = apply

    def view(self, pc: Any, viewer: Any = None) -> None:
        """Print the smoother's summary to an ASCII viewer."""
        if viewer is None or viewer.getType() != "ascii":
            return
        viewer.printfASCII(f"  learned Jacobi smoother ({self.rows} local rows, {self.fallback_rows} with the "
                           f"classical weight after a non-finite network output)\n")

    def destroy(self, pc: Any) -> None:
        """Free the multiplier Vec."""
        if self.multipliers is not None:
            self.multipliers.destroy()
            self.multipliers = None


class LearnedPolynomial(LearnedJacobi):
    """A petsc4py Python PC: the learned polynomial smoother ``y = M x``, ``M = p(SA) S`` (module docstring).

    ``M x`` is ``k`` Richardson steps from zero, ``y ← y + ω_j m ⊙ (x − A y)``, with the
    level's step weights ``ω`` (``k - 1`` products with ``A``); symmetric, so
    ``applyTranspose`` is ``apply``.  Use it with one Richardson step per smoothing
    (:func:`~fe_operators.precond.mg.setup_learned_mg` does).

    Parameters
    ----------
    model
        The network (its ``step_weights``), or a checkpoint path.
    omegas
        The level's step weights, ``(k,)`` in ``(0, 1)``.
    """

    name = "fe_operators.precond.smoother.LearnedPolynomial"

    def __init__(self, model: Any, omegas: Any) -> None:
        super().__init__(model)
        self.omegas = [float(w) for w in omegas]
        if not all(0 < w < 1 for w in self.omegas):
            raise ValueError(f"expected step weights in (0, 1), got {self.omegas}")
        self._A = None
        self._work: tuple[Any, Any] | None = None

    def setUp(self, pc: Any) -> None:
        """The multipliers (:meth:`LearnedJacobi.setUp`) and the level's matrix for the inner steps."""
        super().setUp(pc)
        _, self._A = pc.getOperators()
        if self._work is None or self._work[0].getSizes() != self._A.getSizes()[0]:
            self._work = (self._A.createVecLeft(), self._A.createVecLeft())

    def apply(self, pc: Any, x: Any, y: Any) -> None:
        """``y = M x``: ``k`` weighted Richardson steps on ``A y = x`` from ``y = 0``."""
        r, t = self._work
        y.pointwiseMult(x, self.multipliers)
        y.scale(self.omegas[0])
        for w in self.omegas[1:]:
            self._A.mult(y, r)
            r.aypx(-1.0, x)  # r = x - A y
            t.pointwiseMult(r, self.multipliers)
            y.axpy(w, t)

    applyTranspose = apply

    def destroy(self, pc: Any) -> None:
        """Free the multiplier and work Vecs."""
        super().destroy(pc)
        if self._work is not None:
            for v in self._work:
                v.destroy()
            self._work = None
