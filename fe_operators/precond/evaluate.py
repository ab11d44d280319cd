"""Solves with learned and classical preconditioners on the same matrices: ``precond evaluate``.

:func:`evaluate_preconditioners` draws coefficients of the operator family (never the
training ones: another seed), assembles each once, and solves
:math:`-\\nabla\\cdot(a\\nabla u) = 1`, :math:`u = 0` with every method to ``rtol`` on the
true (unpreconditioned) residual from a zero initial guess, through Firedrake's
``LinearVariationalSolver`` with the methods' solver parameters
(:func:`solver_parameters`).  Set-up and solve times are PETSc's ``PCSetUp`` and
``KSPSolve`` event times of that solve (assembly excluded); each method first solves one
warm-up coefficient (kernel compilation, first set-up), then the measured coefficients
through the same solver, as a sequence of solves with new coefficients would (every
solve re-assembles the matrix, so every set-up is a full one for new values; with
``repeats > 1`` each coefficient is solved that many times and the fastest set-up and
solve are kept, against the noise of a shared machine).  The true relative residual
``‖b − Ax‖/‖b‖`` is recomputed after every solve.

Methods (:data:`METHODS`: every registered kind's rows, :mod:`~fe_operators.precond.registry`,
then the classical ones): ``neural_mg``, ``neural_amg`` (a smoother checkpoint),
``dcdm`` (a DCDM checkpoint), ``galerkin_jacobi`` (the same Galerkin V-cycle with
classical ℓ1-Jacobi weights), ``gamg``, ``gmg`` (Firedrake's ``pc_type mg`` on the same
hierarchy: Chebyshev(2)/Jacobi smoothing, LU coarse), ``icc``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Sequence

import numpy as np

from fe_operators.precond.registry import evaluation_methods, learned_methods

__all__ = ["METHODS", "LEARNED", "NEEDS_HIERARCHY", "methods", "SolveRow", "solver_parameters", "fallback_count",
           "setup_breakdown", "format_setup_parts",
           "true_residual", "check_methods", "check_hierarchy", "evaluate_preconditioners", "format_rows"]

def __getattr__(name: str) -> Any:
    # the methods come from the registered kinds (fe_operators.precond.registry): computed on use
    if name == "METHODS":
        return methods()
    if name == "LEARNED":
        return {m: kind.name for m, kind in learned_methods().items()}
    if name == "NEEDS_HIERARCHY":
        return tuple(m for m, kind in learned_methods().items() if kind.methods[m].needs_hierarchy) + ("gmg",)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def methods() -> dict[str, str]:
    """Method -> what it is, in the order of the table: every registered kind's rows
    (:mod:`~fe_operators.precond.registry`), then ``gamg``, ``gmg``, ``icc``."""
    return evaluation_methods()


@dataclasses.dataclass
class SolveRow:
    """One method's solves (means over the measured coefficients).

    Attributes
    ----------
    method
        Key of :data:`METHODS`.
    dofs
        Unknowns.
    iterations
        Mean Krylov iterations.
    setup_seconds, solve_seconds
        Mean ``PCSetUp`` and ``KSPSolve`` times.
    fallbacks
        Network fallbacks summed over the measured solves (DCDM: applications that fell
        back to Jacobi; multigrid: rows given the classical weight); None for classical
        methods.
    converged
        Every solve converged (PETSc reason > 0) with a true relative residual within
        ``rtol`` (and 1% slack for round-off).
    residual
        Largest true relative residual.
    setup_parts
        Mean seconds of the set-up's parts, for a PC that reports them (NeuralMG:
        ``features``, ``network``, ``coarse operators``, ``LU``); None otherwise.
    """

    method: str
    dofs: int
    iterations: float
    setup_seconds: float
    solve_seconds: float
    fallbacks: int | None
    converged: bool
    residual: float
    setup_parts: dict[str, float] | None = None


def solver_parameters(method: str, model: Any = None, *, rtol: float = 1e-8,
                      max_it: int = 10000) -> dict[str, Any]:
    """The PETSc options of a method (see :data:`METHODS`).

    ``model`` is a checkpoint path (the PC's ``model`` option), or a network, which the
    caller hands over in ``appctx["precond_model"]`` (no option is set).

    Raises
    ------
    ValueError
        Unknown method, or a learned method without ``model``.
    """
    table = methods()
    if method not in table:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(table)}")
    krylov = {"mat_type": "aij", "ksp_type": "cg", "ksp_rtol": rtol, "ksp_atol": 0.0, "ksp_max_it": max_it,
              "ksp_norm_type": "unpreconditioned"}
    kind = learned_methods().get(method)
    if kind is not None:
        if kind.methods[method].takes_model and model is None:
            raise ValueError(f"method {method!r} needs a trained model ({kind.model_flag} PATH)")
        return kind.solver_parameters(method, model if kind.methods[method].takes_model else None, krylov)
    if method == "gamg":
        return {**krylov, "pc_type": "gamg"}
    if method == "gmg":
        return {**krylov, "pc_type": "mg", "mg_levels_ksp_type": "chebyshev", "mg_levels_ksp_max_it": 2,
                "mg_levels_pc_type": "jacobi", "mg_coarse_ksp_type": "preonly", "mg_coarse_pc_type": "lu"}
    return {**krylov, "pc_type": "icc"}


def true_residual(ksp: Any) -> float:
    """``‖b − Ax‖/‖b‖`` of a KSP's last solve, recomputed (not the residual the KSP reported)."""
    A, _ = ksp.getOperators()
    b, x = ksp.getRhs(), ksp.getSolution()
    r = b.duplicate()
    A.mult(x, r)
    r.aypx(-1.0, b)
    return r.norm() / b.norm()


def fallback_count(pc: Any) -> int | None:
    """Network fallbacks of a learned PC's last solve (None for a classical PC)."""
    if pc.getType() != "python":
        return None
    ctx = pc.getPythonContext()
    counter = getattr(ctx, "counter", None)
    if counter is not None:
        return int(counter.fallbacks)
    return int(getattr(ctx, "fallback_rows", 0))


def setup_breakdown(pc: Any) -> dict[str, float] | None:
    """The parts of a learned PC's last set-up (its ``setup_breakdown``; None when it has none)."""
    if pc.getType() != "python":
        return None
    parts = getattr(pc.getPythonContext(), "setup_breakdown", None)
    return dict(parts) if parts else None


def format_setup_parts(rows: Sequence[SolveRow]) -> list[str]:
    """One line per row with set-up parts: ``neural_mg set-up 0.070 s: features 0.012 s (17%), ...``."""
    lines = []
    for r in rows:
        if r.setup_parts:
            parts = ", ".join(f"{k} {v:.3f} s ({100 * v / r.setup_seconds:.0f}%)" if r.setup_seconds > 0 else
                              f"{k} {v:.3f} s" for k, v in r.setup_parts.items())
            rest = r.setup_seconds - sum(r.setup_parts.values())
            lines.append(f"{r.method} set-up {r.setup_seconds:.3f} s: {parts}, other {max(rest, 0.0):.3f} s")
    return lines


def check_methods(methods: Sequence[str], models: dict[str, Any]) -> None:
    """Check the methods and their models before any KSP is set up: known methods, and a model
    of the right kind for each learned method (read and checked, not only found).

    Parameters
    ----------
    methods
        Keys of :data:`METHODS`.
    models
        Method -> checkpoint path or network.

    Raises
    ------
    ValueError
        An unknown method, or a learned method without a model.
    CheckpointError
        A missing, unreadable or refused checkpoint.
    ModelKindError
        A checkpoint of another kind than its method needs.
    """
    from fe_operators.precond.base import load_precond_model

    table, learned = evaluation_methods(), learned_methods()
    unknown = [m for m in methods if m not in table]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown))}; expected some of {', '.join(table)}")
    for method in methods:
        if method in learned and learned[method].methods[method].takes_model:
            solver_parameters(method, models.get(method))  # a model is given
            load_precond_model(models[method], learned[method].name, f"method {method}")


def check_hierarchy(methods: Sequence[str], mesh: Any, mesh_spec: str) -> None:
    """Raise :class:`~fe_operators.errors.NoHierarchyError` if a method of :data:`NEEDS_HIERARCHY`
    is to run on a mesh (loaded from ``mesh_spec``) that is no level of a MeshHierarchy."""
    learned = learned_methods()
    need = [m for m in methods if m == "gmg" or (m in learned and learned[m].methods[m].needs_hierarchy)]
    if need:
        from firedrake.mg.utils import get_level

        from fe_operators.errors import NoHierarchyError

        hierarchy, level = get_level(mesh)
        if hierarchy is None or level != int(level):
            spec = str(mesh_spec) if len(str(mesh_spec)) <= 60 else str(mesh_spec)[:57] + "..."
            raise NoHierarchyError(
                f"mesh {spec!r} is no level of a MeshHierarchy, which {', '.join(need)} need: give a mesh spec with "
                f"/rK refinements (--mesh {spec}/r2: {spec} refined twice; load_mesh('{spec}/r2') in Python), or "
                f"leave {', '.join(need)} out of the methods")


def _operator_family(mesh: Any, problem: Any, params: dict[str, Any] | None, coefficient: str,
                     variance: float, length_scale: float | None) -> Any:
    """The operators to solve with: the diffusion family, or ``problem``'s ``spd_operator`` hook."""
    from fe_operators.precond.data import DiffusionFamily, ProblemFamily
    from fe_operators.problems.registry import resolve_problem

    if problem is None:
        return DiffusionFamily(mesh, coefficient, variance, length_scale)
    cls = resolve_problem(problem) if isinstance(problem, (str, type)) else None
    return ProblemFamily(cls(mesh, **dict(params or {})) if cls is not None else problem)


def evaluate_preconditioners(mesh_spec: str, methods: Sequence[str], *, models: dict[str, Any] | None = None,
                             samples: int = 1, repeats: int = 1, seed: int | Sequence[int] = 1000,
                             rtol: float = 1e-8, coefficient: str = "lognormal",
                             variance: float = 2.0, length_scale: float | None = None,
                             problem: Any = None, params: dict[str, Any] | None = None,
                             options: dict[str, dict[str, Any]] | None = None,
                             log: Any = None, comm: Any = None) -> tuple[list[SolveRow], dict[str, Any]]:
    """Solve with each method on the same sampled matrices (module docstring).

    Parameters
    ----------
    mesh_spec
        The mesh (a level of a hierarchy for ``neural_mg``, ``gmg``, ``dcdm``), e.g.
        ``"unitsquare:16/r4"`` (66,049 DOFs).
    methods
        Keys of :data:`METHODS`.
    models
        Method -> checkpoint path (or network) for the learned methods; each is read and
        checked to be of its method's kind before any solve (:func:`check_methods`).
    samples
        Measured coefficients (after one warm-up coefficient).
    repeats
        Solves per measured coefficient; the fastest set-up and solve count.
    seed
        Seed of the coefficients (keep it away from the training seed); an int or a
        sequence of ints (``numpy.random.default_rng``'s entropy).
    rtol
        Relative tolerance on the true residual.
    coefficient, variance, length_scale
        The operator family when ``problem`` is None
        (:class:`~fe_operators.precond.data.DiffusionFamily`, solving ``-div(a grad u) = 1``).
    problem, params
        Instead, a problem family with the ``spd_operator`` hook: a registered name
        (``"elasticity"``), a ``"module:Class"`` the user names (imported), a class, or a
        Problem instance; ``params`` its constructor parameters.  The load is ``∫ 1·v``;
        a vector family of the mesh's dimension gets its rigid-body modes as the near
        nullspace (used by ``gamg`` and ``neural_amg``).
    options
        Method -> PETSc options added to (or overriding) :func:`solver_parameters`, e.g.
        ``{"gamg": {"pc_gamg_threshold": 0.02}}``.
    log
        Called with a line per finished method (None: silent).
    comm
        Communicator of the mesh (None: COMM_WORLD).

    Returns
    -------
    tuple
        ``(rows, info)``: a :class:`SolveRow` per method, and ``{"dofs", "contrasts"}``.

    Raises
    ------
    ValueError, CheckpointError, ModelKindError, NoHierarchyError
        See :func:`check_methods` and :func:`check_hierarchy`: what the solves need is
        checked before any solve.
    """
    import firedrake as fd
    from firedrake.petsc import PETSc

    from fe_operators.io import load_mesh
    from fe_operators.precond.base import APPCTX_KEY
    models = dict(models or {})
    learned = learned_methods()
    check_methods(methods, models)  # the model files first: they need no mesh
    mesh = load_mesh(mesh_spec) if comm is None else load_mesh(mesh_spec, comm=comm)
    check_hierarchy(methods, mesh, mesh_spec)
    family = _operator_family(mesh, problem, params, coefficient, variance, length_scale)
    near_nullspace = family.near_nullspace()
    rng = np.random.default_rng(seed)
    coefficients = [family.sample_coefficient(rng) for _ in range(samples + 1)]
    contrasts = [family.contrast(a) for a in coefficients[1:]]
    a = family.holder()
    PETSc.Log.begin()
    rows = []
    for method in methods:
        params = {**solver_parameters(method, models.get(method), rtol=rtol), **(options or {}).get(method, {})}
        appctx = {}
        if method in learned:
            spec = learned[method].methods[method]
            if not spec.takes_model:
                appctx[APPCTX_KEY] = learned[method].fixed_model(method)
            elif not isinstance(models[method], (str, os.PathLike)) or spec.model_option is None:
                appctx[APPCTX_KEY] = models[method]
        u = fd.Function(family.V)
        lvp = fd.LinearVariationalProblem(family.form(a), family.rhs_form(), u, bcs=family.bcs)
        solver = fd.LinearVariationalSolver(lvp, solver_parameters=params, appctx=appctx,
                                            options_prefix=f"precond_eval_{method}_", near_nullspace=near_nullspace)
        ksp = solver.snes.ksp
        its, setups, solves, fallbacks, residual, ok, parts = [], [], [], 0, 0.0, True, []
        for k, coeff in enumerate(coefficients):
            family.assign(a, coeff)
            best_setup = best_solve = math.inf
            for rep in range(1 if k == 0 else repeats):
                u.dat.zero()
                # a stage of the same name is the same stage, whose event times accumulate over
                # every call in this process: time this solve as the difference
                stage = PETSc.Log.Stage(f"precond_eval_{method}_{k}_{rep}")
                before = [PETSc.Log.Event(e).getPerfInfo(stage)["time"] for e in ("PCSetUp", "KSPSolve")]
                stage.push()
                try:
                    solver.solve()
                    converged = True
                except fd.ConvergenceError:
                    converged = False
                finally:
                    stage.pop()
                after = [PETSc.Log.Event(e).getPerfInfo(stage)["time"] for e in ("PCSetUp", "KSPSolve")]
                if after[0] - before[0] < best_setup:  # the parts of the set-up that counts
                    best_setup, part = after[0] - before[0], setup_breakdown(ksp.getPC())
                best_solve = min(best_solve, after[1] - before[1])
            if k == 0:
                continue  # warm-up: kernels compiled, first set-up done
            rel = true_residual(ksp)
            residual = max(residual, rel)
            ok = ok and converged and ksp.getConvergedReason() > 0 and rel <= 1.01 * rtol
            its.append(ksp.getIterationNumber())
            setups.append(best_setup)
            solves.append(best_solve)
            fb = fallback_count(ksp.getPC())
            fallbacks = None if fb is None else fallbacks + fb
            if part:
                parts.append(part)
        row = SolveRow(method, family.V.dim(), float(np.mean(its)), float(np.mean(setups)), float(np.mean(solves)),
                       fallbacks, ok, residual,
                       {k: float(np.mean([p[k] for p in parts])) for k in parts[0]} if parts else None)
        rows.append(row)
        if log is not None:
            log(format_rows([row], header=False))
    return rows, {"dofs": family.V.dim(), "contrasts": contrasts}


def format_rows(rows: Sequence[SolveRow], header: bool = True) -> str:
    """A plain-text table: method, DOFs, iterations, set-up s, solve s, total s, fallbacks, converged."""
    lines = []
    if header:
        lines.append(f"{'method':<16} {'DOFs':>9} {'its':>7} {'setup s':>8} {'solve s':>8} {'total s':>8} "
                     f"{'fallbacks':>9} {'converged':>9} {'true res':>9}")
    for r in rows:
        fb = "-" if r.fallbacks is None else str(r.fallbacks)
        its = f"{r.iterations:.0f}" if float(r.iterations).is_integer() else f"{r.iterations:.1f}"
        lines.append(f"{r.method:<16} {r.dofs:>9} {its:>7} {r.setup_seconds:>8.3f} {r.solve_seconds:>8.3f} "
                     f"{r.setup_seconds + r.solve_seconds:>8.3f} {fb:>9} {'yes' if r.converged else 'NO':>9} "
                     f"{r.residual:>9.1e}")
    return "\n".join(lines)
